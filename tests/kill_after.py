"""Run the camnet command line and SIGKILL (or interrupt) it at a set point, with no timing involved.

    python -m tests.kill_after step N ARGS...       killed right after training step N is reported
    python -m tests.kill_after write N ARGS...      killed halfway through writing its N-th output file
    python -m tests.kill_after interrupt N ARGS...  a Ctrl-C (SIGINT) as it starts writing its N-th output file

What a crash, a kill -9 or a Ctrl-C does to a run at that point, every time: the tests then check
what it left behind and that a new run picks up from there.
"""

import os
import signal
import sys

from camnet_cli import cli, files
from camnet_cli.commands import train as train_command


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(point: str, n: int, argv: list[str]) -> None:
    if point == "step":
        real = train_command.train

        def train(cfg, resume=None, report=None):
            def reported(progress):
                if report:
                    report(progress)
                if progress.step == n:
                    _kill()

            return real(cfg, resume, reported)

        train_command.train = train
    elif point == "write":
        real_write, calls = files.atomic_write_all, [0]

        def atomic_write_all(items):
            calls[0] += len(items)
            if calls[0] < n:
                return real_write(items)
            path, write = items[-1]

            def half(tmp):
                write(tmp)
                with open(tmp, "r+b") as f:  # the temporary as a kill mid-write leaves it
                    f.truncate(os.path.getsize(tmp) // 2)
                _kill()

            return real_write([*items[:-1], (path, half)])

        files.atomic_write_all = atomic_write_all
    elif point == "interrupt":
        real_write, calls = files.atomic_write_all, [0]

        def interrupted_write(items):
            calls[0] += len(items)
            if calls[0] - len(items) < n <= calls[0]:
                os.kill(os.getpid(), signal.SIGINT)
            return real_write(items)

        files.atomic_write_all = interrupted_write
    else:
        raise SystemExit(f"unknown point {point!r}")
    sys.argv = ["camnet", *argv]
    cli.main()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
