"""A batch of raw files through camnet: decode, develop, encode, overlapped and crash-proof.

- Decoding runs in child processes, one per file, a few ahead of the network: LibRaw can
  crash the process on malformed input, and then only that file fails. A child that dies
  or does not answer within the timeout is that file's failure.
- The network runs in this process on one frame at a time.
- Encoding runs in threads, a few behind the network.
So while image k is on the device, k+1 is being decoded and k-1 encoded, and no more than
a handful of images are in memory, however long the batch.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from camnet_cli import export
from camnet_cli.engine import Engine
from camnet_cli.files import temp_pattern
from camnet_cli.noise import NoiseProfile
from camnet_cli.pipeline import develop_frame
from camnet_cli.raw import Frame, Metadata, RawError, load_frame


@dataclass(frozen=True)
class Job:
    """One input and where its outputs go."""

    path: Path
    output: Path
    linear_output: Path | None = None


@dataclass
class Outcome:
    """What happened to one job: status "ok", "skipped" or "failed"."""

    job: Job
    status: str
    error: str = ""
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """How to develop and write each file."""

    fmt: str = "jpeg"
    quality: int = 92
    bits: int = 8
    wb: str | tuple[float, float, float] = "camera"
    iso: float | None = None
    noise: NoiseProfile | None = None
    chroma: float | None = None  # chroma noise reduction width in pixels; None: from the noise level
    overwrite: bool = False
    jobs: int = 2
    decode_timeout: float = 300.0


def plan_jobs(paths: list[Path], out_dir: Path, ext: str, linear: bool = False) -> list[Job]:
    """Name each input's outputs ``<stem><ext>`` in ``out_dir``, never two the same.

    Stems that collide (``a/IMG_1.ARW`` and ``b/IMG_1.ARW``, or ``IMG_1.ARW`` and
    ``IMG_1.DNG``) get the raw's extension, then a counter, in input order, so that names are
    the same on every run of the same batch.
    """
    stems = [p.stem for p in paths]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s.lower()] = counts.get(s.lower(), 0) + 1
    names: list[str] = []
    taken: set[str] = set()
    for path, stem in zip(paths, stems):
        name = stem if counts[stem.lower()] == 1 else f"{stem}_{path.suffix.lstrip('.')}"
        unique, n = name, 2
        while unique.lower() in taken:
            unique, n = f"{name}-{n}", n + 1
        taken.add(unique.lower())
        names.append(unique)
    return [
        Job(path, out_dir / f"{name}{ext}", out_dir / f"{name}.linear.tif" if linear else None)
        for path, name in zip(paths, names)
    ]


# --- decoding in child processes ------------------------------------------------------------


def _decode_child(path: str, iso: float | None, noise: NoiseProfile | None, conn: Connection) -> None:
    try:
        frame = load_frame(path, noise_override=noise, iso_override=iso)
        conn.send(("ok", frame))
    except RawError as e:
        conn.send(("error", e.reason))
    except BaseException as e:  # a bug, reported as this file's failure
        conn.send(("error", f"internal error while decoding: {type(e).__name__}: {e}"))
    finally:
        conn.close()


def _context() -> mp.context.BaseContext:
    """forkserver where there is one: children start fast and clean (no threads forked)."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["camnet_cli.raw"])
        return ctx
    return mp.get_context("spawn")


class _Decode:
    """One file being decoded in its own process."""

    def __init__(self, ctx: mp.context.BaseContext, path: Path, settings: Settings, target: Callable[..., None]) -> None:
        self.path = path
        self.started = time.monotonic()
        self.conn, child_conn = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=target, args=(str(path), settings.iso, settings.noise, child_conn), daemon=True)
        self.process.start()
        child_conn.close()

    def result(self, timeout: float) -> Frame:
        """The frame, or a RawError saying why not (including a crashed or hung decoder)."""
        try:
            if not self.conn.poll(max(0.0, timeout - (time.monotonic() - self.started))):
                self.kill()
                raise RawError(self.path, f"decoder did not finish within {timeout:g} s (killed)")
            status, value = self.conn.recv()
        except EOFError:
            self.process.join(5)
            code = self.process.exitcode
            why = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit code {code}"
            raise RawError(self.path, f"the raw decoder crashed ({why})") from None
        finally:
            self.conn.close()
        self.process.join(5)
        if status == "error":
            raise RawError(self.path, value)
        return value

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)


# --- the batch ------------------------------------------------------------------------------


@contextmanager
def stop_on_interrupt() -> Iterator[threading.Event]:
    """The first Ctrl-C sets the event (finish the current file, then stop); a second one aborts."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _encode(job: Job, meta: Metadata, srgb: np.ndarray, linear: np.ndarray | None, settings: Settings) -> float:
    t = time.perf_counter()
    export.write_image(job.output, srgb, meta, fmt=settings.fmt, quality=settings.quality, bits=settings.bits)
    if job.linear_output is not None and linear is not None:
        export.write_image(job.linear_output, linear, meta, fmt="tiff", bits=16, linear=True)
    return time.perf_counter() - t


def run_batch(
    jobs: list[Job],
    engine: Engine,
    settings: Settings,
    report: Callable[[Outcome], None],
    *,
    stop: threading.Event | None = None,
    on_start: Callable[[Job], None] | None = None,
    decoder: Callable[..., None] = _decode_child,
) -> list[Outcome]:
    """Develop every job; ``report`` is called once per job, in order, as each finishes.

    Args:
        decoder: what the child processes run (a module-level function: children look it up
            by name); tests pass one that crashes or hangs.

    Returns the outcomes of the jobs that were reached (fewer than ``jobs`` if stopped).
    """
    stop = stop or threading.Event()
    ctx = _context()
    ahead = max(1, settings.jobs)
    decodes: dict[int, _Decode] = {}
    todo = [j for j in jobs]
    skip = [not settings.overwrite and j.output.exists() for j in todo]
    outcomes: list[Outcome] = []
    pending: deque[tuple[Job, float, dict[str, float], Future[float]]] = deque()

    def finish_oldest() -> None:
        job, started, stages, future = pending.popleft()
        try:
            stages["encode"] = future.result()
            outcome = Outcome(job, "ok", seconds=time.perf_counter() - started, stages=stages)
        except Exception as e:  # a full disk, a permission problem: this file fails, the batch goes on
            outcome = Outcome(job, "failed", f"cannot write {job.output}: {e}", time.perf_counter() - started, stages)
        outcomes.append(outcome)
        report(outcome)

    def start_decodes(i: int) -> None:
        for k in range(i, min(len(todo), i + ahead + 1)):
            if k not in decodes and not skip[k] and len(decodes) < ahead + 1:
                decodes[k] = _Decode(ctx, todo[k].path, settings, decoder)

    _remove_stale_temporaries(jobs)
    with ThreadPoolExecutor(max_workers=max(1, settings.jobs)) as encoders:
        try:
            for i, job in enumerate(todo):
                if stop.is_set():
                    break
                if skip[i]:
                    while pending:
                        finish_oldest()
                    outcome = Outcome(job, "skipped", f"{job.output} exists")
                    outcomes.append(outcome)
                    report(outcome)
                    continue
                start_decodes(i)
                if on_start:
                    on_start(job)
                started = time.perf_counter()
                try:
                    frame = decodes.pop(i).result(settings.decode_timeout)
                except RawError as e:
                    while pending:
                        finish_oldest()
                    outcome = Outcome(job, "failed", str(e), time.perf_counter() - started)
                    outcomes.append(outcome)
                    report(outcome)
                    continue
                stages = {"decode": time.perf_counter() - started}
                start_decodes(i + 1)
                developed = develop_frame(engine, frame, settings.wb, linear=job.linear_output is not None, chroma=settings.chroma)
                stages.update(developed.seconds)
                # The encoder gets the images and the metadata only: the frame's planes and the XYZ go now.
                pending.append((job, started, stages, encoders.submit(_encode, job, frame.metadata, developed.srgb, developed.linear, settings)))
                del frame, developed
                while len(pending) > settings.jobs:
                    finish_oldest()
            while pending:
                finish_oldest()
        finally:
            for d in decodes.values():
                d.kill()
    return outcomes


def _remove_stale_temporaries(jobs: list[Job]) -> None:
    """Temporary files a killed earlier run left next to these outputs."""
    for job in jobs:
        for out in (job.output, job.linear_output):
            if out is not None and out.parent.is_dir():
                for stale in out.parent.glob(temp_pattern(out)):
                    stale.unlink(missing_ok=True)
