"""Measuring speed and memory: the model on a synthetic frame, and whole files end to end.

Numbers come from runs, never from assertions in tests (machines are shared and noisy);
``camnet bench`` prints them and BENCHMARKS.md records them.
"""

from __future__ import annotations

import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from camnet_cli import __version__, export
from camnet_cli.batch import Outcome, Settings, plan_jobs, run_batch
from camnet_cli.engine import Engine
from camnet_cli.model import EnhanceNet, RestoreNet
from camnet_cli.pipeline import develop


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

    @property
    def files_per_s(self) -> float:
        done = sum(o.status == "ok" for o in self.files)
        return done / self.wall if self.wall else 0.0


def bench_end_to_end(paths: list[Path], engine: Engine, settings: Settings) -> EndToEnd:
    """Develop ``paths`` into a temporary folder in this process, timing decode, restore, enhance and encode."""
    result = EndToEnd()
    with tempfile.TemporaryDirectory(prefix="camnet-bench-") as out:
        jobs = plan_jobs(paths, Path(out), export.FORMATS[settings.fmt])
        t = time.perf_counter()
        result.files = run_batch(jobs, engine, Settings(**{**settings.__dict__, "overwrite": True}), lambda o: None)
        result.wall = time.perf_counter() - t
    return result


# --- whole processes, camnet beside the classical developers ------------------------------------

# The developers `bench --e2e --baseline` compares camnet with, each as a user runs it with its
# default settings, writing a JPEG. Each gets a fresh configuration and cache folder (XDG and
# darktable's --configdir), so neither a user's own settings nor their caches change the figures.
BASELINES = ("darktable", "rawtherapee", "libraw")
BASELINE_TOOLS = {"darktable": "darktable-cli", "rawtherapee": "rawtherapee-cli"}

# LibRaw's own pipeline through rawpy (AHD, the camera's white balance, sRGB, 8 bits), in a
# fresh interpreter like the others; its JPEG at camnet's default quality.
_LIBRAW_SCRIPT = """\
import sys, imageio.v3 as iio, rawpy
with rawpy.imread(sys.argv[1]) as raw:
    rgb = raw.postprocess(use_camera_wb=True, output_bps=8)
iio.imwrite(sys.argv[2], rgb, quality=int(sys.argv[3]))
"""


def baseline_command(name: str, raw: Path, out: Path, config: Path) -> list[str] | None:
    """The command line that develops ``raw`` into the folder ``out`` with a baseline's
    defaults, or None when the tool is not installed."""
    if name == "libraw":
        return [sys.executable, "-c", _LIBRAW_SCRIPT, str(raw), str(out / f"{raw.stem}.jpg"), str(Settings.quality)]
    exe = shutil.which(BASELINE_TOOLS[name])
    if exe is None:
        return None
    if name == "darktable":
        return [exe, str(raw), str(out / f"{raw.stem}.jpg"), "--core", "--configdir", str(config / "darktable")]
    return [exe, "-o", str(out), "-d", "-Y", "-c", str(raw)]  # -d: RawTherapee's default profile


def tool_version(name: str) -> str:
    """What a baseline reports itself as (its first line), for the record."""
    if name == "libraw":
        import rawpy

        return f"LibRaw {rawpy.libraw_version[0]}.{rawpy.libraw_version[1]} (rawpy {rawpy.__version__})"
    exe = shutil.which(BASELINE_TOOLS.get(name, ""))
    if exe is None:
        return ""
    flag = "--version" if name == "darktable" else "-v"
    try:
        done = subprocess.run([exe, flag], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return BASELINE_TOOLS[name]
    number = re.search(r"\d+(\.\d+)+", done.stdout + done.stderr)  # "this is darktable-cli 4.2.1", "RawTherapee, version 5.9"
    return f"{BASELINE_TOOLS[name]} {number[0]}" if number else BASELINE_TOOLS[name]


@dataclass
class ProcessTime:
    """One command's run: wall and CPU seconds (user + system, its children included), peak RSS."""

    wall: float
    cpu: float
    peak_rss_mb: float
    error: str = ""


# Runs the measured command as its own child and reports the kernel's account of it (wait4). A
# process's peak RSS starts from its parent's at exec (Linux records the forked copy's), so a
# command started straight from camnet, which holds torch, would show at least camnet's RSS; this
# launcher holds a few MB. Its result is one line on stdout: wall, CPU, max RSS, exit code.
_LAUNCHER = r"""
import os, sys, time
argv = sys.argv[1:]
null = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0), (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
t = time.perf_counter()
try:
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=null)
except OSError as e:
    print("error", f"{argv[0]}: {e.strerror or e}")
    raise SystemExit
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - t, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def time_process(argv: list[str], env: dict[str, str]) -> ProcessTime:
    """Run ``argv`` to its end; what it cost, from the kernel's account of the process (wait4),
    taken by a small launcher so that camnet's own memory does not count as the command's."""
    with tempfile.TemporaryFile() as err:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, *argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=env, text=True,
        )
        first, _, rest = done.stdout.strip().partition(" ")
        if first == "error":
            return ProcessTime(0.0, 0.0, 0.0, rest)
        if done.returncode != 0 or len(rest.split()) != 3:
            return ProcessTime(0.0, 0.0, 0.0, f"{argv[0]}: not run")
        wall, cpu, maxrss, code = first, *rest.split()
        rss = int(maxrss) / (2**20 if sys.platform == "darwin" else 1024)
        run = ProcessTime(float(wall), float(cpu), rss)
        if int(code) != 0:
            err.seek(0)
            lines = [line.strip() for line in err.read().decode(errors="replace").splitlines() if line.strip()]
            # the tool's first error line says most (a summary may follow it), else its last line
            said = next((line for line in lines if line.lower().startswith("error")), lines[-1] if lines else "")
            run.error = f"exit status {code}" + (f": {said}" if said else "")
    return run


@dataclass
class Comparison:
    """Every timed run of each tool, by round (a round runs each tool once on every file)."""

    runs: dict[str, list[list[ProcessTime]]]
    versions: dict[str, str]
    skipped: dict[str, str]
    files: int
    load: int

    def ok(self, tool: str) -> list[ProcessTime]:
        return [run for round_ in self.runs[tool] for run in round_ if not run.error]

    def errors(self, tool: str) -> list[str]:
        return sorted({run.error for round_ in self.runs[tool] for run in round_ if run.error})

    def ratio(self, tool: str, what: str = "wall") -> float | None:
        """How many times as long camnet took as ``tool``: the median over rounds of the two
        tools' totals in the same round, over the files both developed."""
        ratios = []
        for mine, theirs in zip(self.runs["camnet"], self.runs[tool]):
            both = [(a, b) for a, b in zip(mine, theirs) if not a.error and not b.error]
            total = sum(getattr(b, what) for _, b in both)
            if total > 0:
                ratios.append(sum(getattr(a, what) for a, _ in both) / total)
        return statistics.median(ratios) if ratios else None


def compare_whole_process(
    paths: list[Path],
    camnet: Callable[[Path, Path], list[str]],
    baselines: list[str],
    rounds: int = 3,
    warmup: int = 1,
    load: int = 0,
) -> Comparison:
    """Time camnet and the installed ``baselines``, alternating, each as a whole process per file.

    ``camnet(raw, out_dir)`` gives camnet's command line. The order of the tools turns with each
    round, so no tool always runs right after another; each run's output is checked and deleted.
    ``load`` CPU-bound processes run beside all of it, as on a machine whose cores are shared.
    The untimed ``warmup`` runs (first file) fill the disk cache and the tools' first-run set-up.
    """
    versions, skipped, commands = {"camnet": f"camnet {__version__}"}, {}, {"camnet": camnet}
    with tempfile.TemporaryDirectory(prefix="camnet-bench-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "XDG_CONFIG_HOME": str(root / "config"), "XDG_CACHE_HOME": str(root / "cache")}
        for name in baselines:
            if baseline_command(name, paths[0], root, root) is None:
                skipped[name] = f"{BASELINE_TOOLS[name]} is not on PATH"
            else:
                commands[name] = lambda raw, out, name=name: baseline_command(name, raw, out, root)  # type: ignore[misc]
                versions[name] = tool_version(name)
        tools = list(commands)
        runs: dict[str, list[list[ProcessTime]]] = {tool: [] for tool in tools}
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
        try:
            for tool in tools * warmup:
                _run_once(commands[tool], paths[0], root / "warmup", env)
            for r in range(rounds):
                for tool in tools[r % len(tools) :] + tools[: r % len(tools)]:
                    runs[tool].append([_run_once(commands[tool], path, root / f"{tool}-{r}", env) for path in paths])
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
    return Comparison(runs, versions, skipped, len(paths), load)


def _run_once(command: Callable[[Path, Path], list[str]], raw: Path, out: Path, env: dict[str, str]) -> ProcessTime:
    out.mkdir(parents=True, exist_ok=True)
    run = time_process(command(raw, out), env)
    if not run.error and not any(f.is_file() and f.stat().st_size for f in out.rglob("*")):
        run.error = f"{raw.name}: wrote no output"
    shutil.rmtree(out, ignore_errors=True)
    return run
