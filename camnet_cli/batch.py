"""A batch of raw files through camnet: decode, develop, encode, overlapped and crash-proof.

- Decoding runs in child processes, one per file, a few ahead of the network
  (``decoding.Decode``): a crashed or hung decoder costs only its file.
- The network runs in this process on one frame at a time.
- Encoding runs in threads, a few behind the network.
So while image k is on the device, k+1 is being decoded and k-1 encoded, and no more than
a handful of images are in memory, however long the batch.

Runs may share an output folder. Each output is claimed (``files.claim``) before its raw is
decoded, so two runs never develop the same one, and every output records the raw it came from
(``source_id``, in its XMP): a name already taken by another raw's output gives this raw a name of
its own (``<stem>-<id>``), never a silent skip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import signal
import string
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camnet_cli import __version__, decoding, export, files, metadata
from camnet_cli.decoding import Decode, InternalError, context, decode_child
from camnet_cli.dng import DngMetadata, linear_dng_writer
from camnet_cli.engine import Engine
from camnet_cli.noise import NoiseProfile
from camnet_cli.pipeline import Developed, develop_frame
from camnet_cli.raw import Frame, Metadata, RawError, read_metadata


@dataclass(frozen=True)
class Job:
    """One input and where its outputs go (before the claim: where they would go by name)."""

    path: Path
    output: Path
    linear_output: Path | None = None


@dataclass
class Outcome:
    """What happened to one job: status "ok", "skipped" or "failed".

    Attributes:
        internal: the failure was a bug of camnet's (``details`` holds its traceback).
    """

    job: Job
    status: str
    error: str = ""
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    internal: bool = False
    details: str = ""


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
    style: str = ""  # the weights' names, recorded in each output
    restore: str = ""
    max_size: int | None = None  # the outputs' longest side at most, in pixels
    space: str = "srgb"  # the photo's colour space (color.RGB_SPACES)
    linear_bits: int = 16  # the linear companion's: 16-bit integers in [0, 1], or 32-bit float, unclipped

    def digest(self) -> str:
        """Identifies what changes the pixels (not the batch options), to tell outputs of other settings."""
        what = (self.style, self.restore, self.fmt, self.quality, self.bits, self.wb, self.iso, self.noise, self.chroma, self.max_size, self.space, self.linear_bits)
        return hashlib.sha256(repr(what).encode()).hexdigest()[:12]


# What an output name template (``--name``) may use: the raw's own name, and what its EXIF says.
NAME_FIELDS = ("stem", "ext", "style", "camera", "make", "model", "iso", "date", "time", "lens")
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]+")  # path separators and control characters become "_"


def check_template(template: str) -> None:
    """Raise ValueError unless ``template`` (e.g. ``"{date}-{stem}"``) uses only ``NAME_FIELDS``."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ValueError(f"--name {template!r}: {e}") from None
    unknown = [f for f in fields if f not in NAME_FIELDS]
    if unknown or not fields:
        raise ValueError(f"--name {template!r}: use fields among {{{'}, {'.join(NAME_FIELDS)}}}, e.g. '{{date}}-{{stem}}'")


def output_stem(path: Path, template: str, style: str = "") -> str:
    """The output name ``template`` gives the raw at ``path`` (metadata fields from its EXIF, empty
    where it has none), each field made safe for a file name."""
    meta = read_metadata(path) if any(f"{{{f}" in template for f in NAME_FIELDS[3:]) else Metadata()
    date = (meta.date or "").replace("-", "").replace(":", "")
    values = {
        "stem": path.stem, "ext": path.suffix.lstrip("."), "style": style, "camera": meta.camera if meta.model else "",
        "make": meta.make or "", "model": meta.model or "", "iso": "" if meta.iso is None else f"{meta.iso:g}",
        "date": date[:8], "time": date[9:15], "lens": meta.lens or "",
    }
    name = template.format(**{k: _UNSAFE.sub("_", v).strip("._") for k, v in values.items()})
    return name.strip(". ") or path.stem


def plan_jobs(
    paths: list[Path], out_dir: Path, ext: str, linear: bool = False, *, template: str = "{stem}", style: str = "",
    folders: list[Path] | None = None,
) -> list[Job]:
    """Name each input's outputs ``<name><ext>`` (and ``<name>.linear.tif``) in ``out_dir``.

    Args:
        template: the name, from ``NAME_FIELDS`` (``output_stem``); default the raw's stem.
        folders: for each input, the subfolder of ``out_dir`` it goes to (``-r`` keeping the input's tree).

    These are the names by default: where another raw's output already has one, the batch gives
    this raw ``<name>-<id><ext>`` when it claims it (``claim_output``), whatever else is in the batch.
    """
    jobs = []
    for i, p in enumerate(paths):
        folder = out_dir / folders[i] if folders else out_dir
        stem = output_stem(p, template, style)
        jobs.append(Job(p, folder / f"{stem}{ext}", folder / f"{stem}.linear.tif" if linear else None))
    return jobs


def source_id(path: Path) -> str:
    """What identifies a raw: its real path (links followed), hashed so that no folder name is published."""
    return hashlib.sha256(os.path.realpath(path).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _renamed(job: Job, stem: str) -> Job:
    out = job.output.with_name(f"{stem}{job.output.suffix}")
    return dataclasses.replace(job, output=out, linear_output=out.with_name(f"{stem}.linear.tif") if job.linear_output else None)


def claim_output(job: Job, settings: Settings) -> tuple[Job, files.Claim] | Outcome:
    """Claim the output this raw should get, or say why it is skipped or cannot be developed.

    The default name is taken unless another raw's output has it (recorded in that file), or
    another run is developing another raw there; then ``<stem>-<id>``, whose id is this raw's own.
    An output of this same raw is skipped (replaced with ``overwrite``); so is a file at the name
    that camnet did not record, which may be anyone's.
    """
    sid = source_id(job.path)
    candidates = [job, _renamed(job, f"{job.output.stem}-{sid[:8]}")]
    job.output.parent.mkdir(parents=True, exist_ok=True)  # a subfolder of -r's tree
    for candidate in candidates:
        got = files.claim(candidate.output, sid)
        if isinstance(got, str):
            if got in ("", sid):
                return Outcome(candidate, "skipped", f"{candidate.output} is being developed by another camnet run")
            continue  # another run develops another raw under this name
        if candidate.output.exists() and os.path.samefile(candidate.output, job.path):
            got.release()
            continue  # the raw itself (a DNG developed to DNG in its own folder): never written over
        recorded = export.read_provenance(candidate.output) if candidate.output.exists() else None
        if recorded is not None and recorded.get("Source", sid) != sid:
            got.release()
            continue
        if recorded is not None and not settings.overwrite:
            got.release()
            other = recorded and recorded.get("Settings") != settings.digest()
            why = "exists, made from this raw with other settings" if other else "exists"
            return Outcome(candidate, "skipped", f"{candidate.output} {why} (use --overwrite to replace it)")
        for out in (candidate.output, candidate.linear_output):
            if out is not None:
                files.remove_stale(out)
        return candidate, got
    return Outcome(job, "failed", f"{job.path}: {job.output.name} and {candidates[1].output.name} are both taken by other raws' outputs")


# --- the batch ------------------------------------------------------------------------------


@contextmanager
def stop_on_interrupt(notice: str = "") -> Iterator[threading.Event]:
    """The first Ctrl-C sets the event (finish the current file, then stop) and prints ``notice``;
    a second one aborts."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if notice:
            os.write(2, f"\n{notice}\n".encode())  # plain write: safe in a signal handler, under a progress bar

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _encode(
    job: Job, meta: Metadata, developed: Developed, settings: Settings, provenance: dict[str, str], dng: dict[str, Any] | None
) -> float:
    """Write a job's outputs as one unit: the photo (or DNG) and its linear companion both, or neither."""
    t = time.perf_counter()
    common = {"provenance": provenance, "source": job.path}
    if dng is not None:
        write_dng = linear_dng_writer(developed.camera, **dng, xmp=export.xmp_packet(provenance))

        def write(tmp: str) -> None:
            write_dng(tmp)
            metadata.copy_from_raw(job.path, tmp, fmt="dng", size=(0, 0))

        main = (job.output, write)
    else:
        main = (
            job.output,
            export.image_writer(developed.srgb, meta, fmt=settings.fmt, quality=settings.quality, bits=settings.bits, space=settings.space, **common),
        )
    writes = [main]
    if job.linear_output is not None and developed.linear is not None:
        writes.append((job.linear_output, export.image_writer(developed.linear, meta, fmt="tiff", bits=settings.linear_bits, linear=True, **common)))
    files.atomic_write_all(writes)
    return time.perf_counter() - t


def _dng_options(frame: Frame, developed: Developed) -> dict[str, Any]:
    """What ``dng.linear_dng_writer`` needs of a frame besides its pixels.

    The camera's own ColorMatrix where the file has one; else the one that gives camnet's own
    colours at the as-shot white balance (the inverse of its camera -> XYZ with those gains).
    """
    gains = np.asarray(developed.wb, dtype=np.float64)
    xyz_to_cam = frame.xyz_to_cam if frame.xyz_to_cam is not None else np.linalg.inv(frame.cam_to_xyz @ np.diag(gains))
    c = frame.crop
    return {
        "xyz_to_cam": xyz_to_cam,
        "as_shot_neutral": (1 / gains).tolist(),
        "metadata": DngMetadata.from_shot(frame.metadata, frame.orientation),
        "crop": (c.top, c.left, c.bottom, c.right),  # the rows and columns uncrop repeated: not image
    }


def _out_of_memory(e: BaseException) -> bool:
    return isinstance(e, (MemoryError, torch.OutOfMemoryError)) or (isinstance(e, RuntimeError) and "can't allocate memory" in str(e))


def _failure(job: Job, e: BaseException, started: float, stages: dict[str, float] | None = None) -> Outcome:
    """The outcome of an exception met while developing or writing ``job``: one line, and whether it is a bug of ours."""
    seconds = time.perf_counter() - started
    if isinstance(e, RawError):
        return Outcome(job, "failed", str(e), seconds)
    if isinstance(e, InternalError):
        return Outcome(job, "failed", str(e), seconds, internal=True, details=e.details)
    if _out_of_memory(e):
        return Outcome(job, "failed", f"{job.path}: not enough memory to develop it ({type(e).__name__}); try a smaller --tile", seconds, stages or {})
    if isinstance(e, files.WriteError) and isinstance(e.__cause__, OSError):
        return Outcome(job, "failed", str(e), seconds, stages or {})  # a full disk, a permission problem
    where = f" writing {e.path}" if isinstance(e, files.WriteError) else ""
    cause = e.__cause__ if isinstance(e, files.WriteError) and e.__cause__ else e
    details = "".join(traceback.format_exception(cause))
    return Outcome(job, "failed", f"{job.path}: internal error{where} ({type(cause).__name__}: {cause})", seconds, stages or {}, True, details)


def run_batch(
    jobs: list[Job],
    engine: Engine,
    settings: Settings,
    report: Callable[[Outcome], None],
    *,
    stop: threading.Event | None = None,
    on_start: Callable[[Job], None] | None = None,
    decoder: Callable[..., None] = decode_child,
) -> list[Outcome]:
    """Develop every job; ``report`` is called once per job, in order, as each finishes.

    No file ends the batch: a bad raw, a crashed decoder, a full disk or a bug of ours while
    developing one file is that file's failed outcome, and the batch goes on.

    Args:
        decoder: what the child processes run (a module-level function: children look it up
            by name); tests pass one that crashes or hangs.

    Returns the outcomes of the jobs that were reached (fewer than ``jobs`` if stopped).
    """
    stop = stop or threading.Event()
    ctx = context()
    metadata.start()  # here, in the main thread, not in the encoders' (``metadata.start``)
    ahead = max(1, settings.jobs)
    claims: dict[int, tuple[Job, files.Claim] | Outcome] = {}
    decodes: dict[int, Decode] = {}
    outcomes: list[Outcome] = []
    pending: deque[tuple[Job, files.Claim, float, dict[str, float], Future[float]]] = deque()

    def finish(outcome: Outcome) -> None:
        outcomes.append(outcome)
        report(outcome)

    def finish_oldest() -> None:
        job, claim, started, stages, future = pending.popleft()
        try:
            stages["encode"] = future.result()
            finish(Outcome(job, "ok", seconds=time.perf_counter() - started, stages=stages))
        except Exception as e:
            finish(_failure(job, e, started, stages))
        finally:
            claim.release()

    def start_decodes(i: int) -> None:
        """Claim the next few outputs and start decoding their raws."""
        for k in range(i, min(len(jobs), i + ahead + 1)):
            if k not in claims:
                try:
                    claims[k] = claim_output(jobs[k], settings)
                except OSError as e:  # the output folder is gone, or not ours to write
                    claims[k] = Outcome(jobs[k], "failed", f"cannot write {jobs[k].output}: {e.strerror or e}")
            if k not in decodes and not isinstance(claims[k], Outcome) and len(decodes) < ahead + 1:
                decodes[k] = decoding.start(ctx, jobs[k].path, settings.iso, settings.noise, decoder)

    with ThreadPoolExecutor(max_workers=max(1, settings.jobs)) as encoders:
        try:
            for i in range(len(jobs)):
                if stop.is_set():
                    break
                start_decodes(i)
                claimed = claims.pop(i)
                if isinstance(claimed, Outcome):
                    while pending:
                        finish_oldest()
                    finish(claimed)
                    continue
                job, claim = claimed
                if on_start:
                    on_start(job)
                started = time.perf_counter()
                try:
                    frame = decodes.pop(i).result(settings.decode_timeout)
                    stages = {"decode": time.perf_counter() - started}
                    start_decodes(i + 1)
                    planes, frame = frame.hand_over()  # the develop alone holds the planes, and lets them go early
                    developed = develop_frame(
                        engine, frame, settings.wb, linear=job.linear_output is not None, chroma=settings.chroma, max_size=settings.max_size,
                        dng=settings.fmt == "dng", linear_float=settings.linear_bits == 32, planes=planes,
                    )
                    made = developed.camera if settings.fmt == "dng" else developed.srgb
                    if not np.isfinite(made).all():  # weights that hold huge values overflow
                        raise RawError(job.path, "the networks gave NaN or infinite values: are the weights broken?")
                except Exception as e:
                    while pending:
                        finish_oldest()
                    claim.release()
                    finish(_failure(job, e, started))
                    continue
                stages.update(developed.seconds)
                provenance = _provenance(job, frame, settings)
                dng = _dng_options(frame, developed) if settings.fmt == "dng" else None
                developed.xyz = None  # type: ignore[assignment]
                # The encoder gets the images and the metadata only: the frame's planes and the XYZ go now.
                future = encoders.submit(_encode, job, frame.metadata, developed, settings, provenance, dng)
                pending.append((job, claim, started, stages, future))
                del frame, developed
                while len(pending) > settings.jobs:
                    finish_oldest()
            while pending:
                finish_oldest()
        finally:
            for d in decodes.values():
                d.kill()
            for c in claims.values():
                if not isinstance(c, Outcome):
                    c[1].release()
            for _, claim, *_ in pending:  # after a second Ctrl-C
                claim.release()
    return outcomes


def _provenance(job: Job, frame: Frame, settings: Settings) -> dict[str, str]:
    """What the output's XMP records: the raw it came from (``claim_output`` reads it back) and how it was made."""
    return {
        "Source": source_id(job.path),
        "SourceName": job.path.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),  # XMP is UTF-8
        "Settings": settings.digest(),
        "Style": settings.style,
        "Restore": settings.restore,
        "NoiseLevel": f"{frame.noise.omega:.4g}",
        "NoiseSource": frame.noise.source,
        "Version": __version__,
    }
