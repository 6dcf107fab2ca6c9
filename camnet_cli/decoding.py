"""Decoding raw files in child processes: LibRaw can crash or hang on malformed input, and then
only that file fails.

A child that dies, or does not answer within the timeout, is that file's failure (a ``RawError``);
a bug of ours inside the child comes back as an ``InternalError`` with its traceback.
"""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import signal
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from camnet_cli.noise import NoiseProfile
from camnet_cli.raw import Frame, RawError, load_frame


class InternalError(Exception):
    """A bug of camnet's met while handling one file. ``str(error)`` is one line; ``details`` the traceback."""

    def __init__(self, path: Path | str, what: str, details: str = "") -> None:
        super().__init__(f"{path}: internal error {what}")
        self.path = Path(path)
        self.details = details


def decode_child(path: str, iso: float | None, noise: NoiseProfile | None, conn: Connection) -> None:
    """What the child runs: ``load_frame`` and send back the frame, a refusal or a bug."""
    try:
        frame = load_frame(path, noise_override=noise, iso_override=iso)
        conn.send(("ok", frame))
    except RawError as e:
        conn.send(("error", e.reason))
    except BaseException as e:  # a bug, reported as this file's internal error
        conn.send(("internal", f"while decoding ({type(e).__name__}: {e})", traceback.format_exc()))
    finally:
        conn.close()


def _as_package_main() -> None:
    """Let the running ``__main__`` stand for ``python -m camnet_cli``.

    The console script's ``__main__`` is a wrapper file that imports camnet. multiprocessing runs a
    script's ``__main__`` again in every child it starts, so each raw decoder would import all of
    camnet and torch (a second or two) before decoding; a ``-m`` package's ``__main__`` it does not
    run again. Only a ``__main__`` without a module spec (a script) is changed.
    """
    script = sys.modules.get("__main__")
    if script is not None and getattr(script, "__spec__", None) is None:
        script.__spec__ = importlib.util.find_spec("camnet_cli.__main__")


def context() -> mp.context.BaseContext:
    """forkserver where there is one: children start fast and clean (no threads forked)."""
    _as_package_main()
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["camnet_cli.raw"])
        return ctx
    return mp.get_context("spawn")


class Decode:
    """One file being decoded in its own process, started on construction.

    Args:
        target: what the child runs (a module-level function: children look it up by name);
            tests pass one that crashes or hangs.
    """

    def __init__(
        self,
        ctx: mp.context.BaseContext,
        path: Path,
        iso: float | None,
        noise: NoiseProfile | None,
        target: Callable[..., None] = decode_child,
    ) -> None:
        self.path = path
        self.started = time.monotonic()
        self.conn, child_conn = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=target, args=(str(path), iso, noise, child_conn), daemon=True)
        self.process.start()
        child_conn.close()

    def result(self, timeout: float) -> Frame:
        """The frame; or a RawError saying why not (a crashed or hung decoder included), or an InternalError."""
        try:
            if not self.conn.poll(max(0.0, timeout - (time.monotonic() - self.started))):
                self.kill()
                raise RawError(self.path, f"decoder did not finish within {timeout:g} s (killed)")
            status, *value = self.conn.recv()
        except (EOFError, ConnectionError):
            self.process.join(5)
            code = self.process.exitcode
            why = f"signal {_signal_name(-code)}" if code and code < 0 else f"exit code {code}"
            raise RawError(self.path, f"the raw decoder crashed ({why})") from None
        finally:
            self.conn.close()
        self.process.join(5)
        if status == "error":
            raise RawError(self.path, value[0])
        if status == "internal":
            raise InternalError(self.path, *value)
        return value[0]

    def wait(self, timeout: float) -> None:
        """Wait until the child has its answer (or has died), at most ``timeout`` seconds; ``result`` takes it."""
        self.conn.poll(timeout)

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)


# The decode ``start_early`` began, until the batch takes it (``start``) or drops it.
_early: Decode | None = None


def start_early(path: Path) -> Decode:
    """Start decoding ``path`` (with the camera's own noise level) before the rest of camnet loads."""
    global _early
    _early = Decode(context(), path, None, None)
    return _early


def start(
    ctx: mp.context.BaseContext, path: Path, iso: float | None, noise: NoiseProfile | None,
    target: Callable[..., None] = decode_child,
) -> Decode:
    """A ``Decode`` of ``path``: the one ``start_early`` began if it is this one, else a new one.
    The early one is used by the first call or not at all."""
    global _early
    early, _early = _early, None
    if early is not None:
        if early.path == path and iso is None and noise is None and target is decode_child:
            return early
        early.kill()
    return Decode(ctx, path, iso, noise, target)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time or unknown signal
        return str(number)


def decode(path: Path, *, iso: float | None = None, noise: NoiseProfile | None = None, timeout: float = 300.0) -> Frame:
    """``load_frame`` in a child process, with a timeout.

    Raises:
        RawError: the file cannot be developed, or its decoder crashed or hung.
        InternalError: a bug of ours while decoding it.
    """
    return Decode(context(), path, iso, noise).result(timeout)
