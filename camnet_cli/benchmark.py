"""Measuring speed and memory: the model on a synthetic frame, and whole files end to end.

Numbers come from runs, never from assertions in tests (machines are shared and noisy);
``camnet bench`` prints them and BENCHMARKS.md records them.
"""

from __future__ import annotations

import math
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from camnet_cli import export
from camnet_cli.batch import Outcome, Settings, plan_jobs, run_batch
from camnet_cli.engine import Engine
from camnet_cli.model import EnhanceNet, RestoreNet
from camnet_cli.pipeline import develop
from camnet_cli.raw import read_metadata


def count_gflops(restore: RestoreNet, enhance: EnhanceNet, width: int, height: int) -> float:
    """GFLOPs (2 x multiply-adds) of both nets on a width x height frame.

    Counted with torch's FlopCounterMode: on the frame itself up to 1.5 MP, else on a ~1 MP
    frame of the same aspect scaled by the pixel count, as every layer's cost is proportional
    to it. The proxy's sides are multiples of 32 (Enhance-Net's input needs no padding) less
    4 for Restore-Net (its input with the two-pixel border needs none either).
    """
    if width * height <= 1_500_000:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            enhance(restore(torch.rand(1, 4, height // 2, width // 2), 1e-3))
        return counter.get_total_flops() / 1e9
    scale = math.sqrt(width * height / 1_000_000)
    w, h = max(64, round(width / scale / 32) * 32), max(64, round(height / scale / 32) * 32)
    flops = 0.0
    for net, x in ((restore, (torch.rand(1, 4, h // 2 - 2, w // 2 - 2), 1e-3)), (enhance, (torch.rand(1, 3, h, w),))):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(*x)
        area = x[0].shape[-2] * x[0].shape[-1] * (4 if net is restore else 1)
        flops += counter.get_total_flops() * (width * height) / area
    return flops / 1e9


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple {platform.machine()} (mps)"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {torch.get_num_threads()} threads"


def peak_memory_mb(device: torch.device) -> float:
    """Peak device memory since the last reset (CUDA), or the process's peak RSS (CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if device.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def bench_model(engine: Engine, width: int, height: int, iters: int = 3, warmup: int = 1) -> dict:
    """Time a synthetic raw of width x height through both networks.

    Returns the ``camnet bench --json`` record.
    """
    restore, enhance = engine.restore_net, engine.enhance_net
    assert enhance is not None
    params = sum(p.numel() for p in restore.parameters()) + sum(p.numel() for p in enhance.parameters())
    gflops = count_gflops(RestoreNet(restore.config), EnhanceNet(enhance.config), width, height)
    rng = np.random.default_rng(0)
    packed = (rng.random((4, height // 2, width // 2), dtype=np.float32) * 0.5).astype(np.float32)
    wb, matrix, omega = (2.0, 1.0, 1.5), np.eye(3), 1e-3
    for _ in range(warmup):
        develop(engine, packed, omega, wb, matrix)
    if engine.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(engine.device)
    times = []
    for _ in range(max(1, iters)):
        _sync(engine.device)
        t = time.perf_counter()
        develop(engine, packed, omega, wb, matrix)
        _sync(engine.device)
        times.append((time.perf_counter() - t) * 1000)
    median = statistics.median(times)
    return {
        "params": params,
        "gflops": round(gflops, 1),
        "ms_median": round(median, 2),
        "ms_min": round(min(times), 2),
        "ms_max": round(max(times), 2),
        "mpix_per_s": round(width * height / 1e6 / (median / 1000), 3),
        "peak_mem_mb": round(peak_memory_mb(engine.device), 1),
        "device": device_name(engine.device),
        "precision": engine.precision,
        "resolution": f"{width}x{height}",
    }


@dataclass
class EndToEnd:
    """Per-file stage times (seconds) and the batch's rate."""

    files: list[Outcome] = field(default_factory=list)
    wall: float = 0.0
    baseline_files_per_s: float | None = None

    @property
    def files_per_s(self) -> float:
        done = sum(o.status == "ok" for o in self.files)
        return done / self.wall if self.wall else 0.0


def bench_end_to_end(paths: list[Path], engine: Engine, settings: Settings, baseline: bool = False) -> EndToEnd:
    """Develop ``paths`` into a temporary folder, timing decode, restore, enhance and encode.

    With ``baseline``, also time LibRaw's own pipeline (AHD demosaic, camera white balance,
    sRGB, 8 bits) with the same JPEG writer on the same files.
    """
    result = EndToEnd()
    with tempfile.TemporaryDirectory(prefix="camnet-bench-") as out:
        jobs = plan_jobs(paths, Path(out), export.FORMATS[settings.fmt])
        t = time.perf_counter()
        result.files = run_batch(jobs, engine, Settings(**{**settings.__dict__, "overwrite": True}), lambda o: None)
        result.wall = time.perf_counter() - t
        if baseline:
            seconds, done = _libraw_baseline(jobs)
            result.baseline_files_per_s = done / seconds if seconds else 0.0
    return result


def _libraw_baseline(jobs: list) -> tuple[float, int]:
    """Seconds for LibRaw's pipeline over the jobs, and how many files it developed."""
    import rawpy


    t, done = time.perf_counter(), 0
    for job in jobs:
        try:
            with rawpy.imread(str(job.path)) as raw:
                rgb = raw.postprocess(use_camera_wb=True, output_bps=8)  # AHD is LibRaw's default demosaic
        except rawpy.LibRawError:
            continue
        export.write_image(job.output.with_suffix(".libraw.jpg"), rgb.astype(np.float32) / 255, read_metadata(job.path))
        done += 1
    return time.perf_counter() - t, done
