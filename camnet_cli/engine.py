"""The inference engine: it runs the networks, and nothing else (``pipeline`` chains the stages).

It puts the networks on a device (cuda, then mps, then cpu, or as asked), in a precision
(fp32, bf16, fp16), in channels-last layout, optionally compiled, and runs images through
them whole or in tiles (``tiling``), choosing the tile size from free memory and
retrying with smaller tiles when the device runs out.

Reduced precision casts the networks themselves rather than using autocast: for
inference nothing needs fp32, and on a CPU autocast's per-call casts cost more than the
convolutions (measured: 1.6x slower on the paper Restore-Net).
"""

from __future__ import annotations

import copy
import ctypes
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from camnet_cli import color
from camnet_cli.model import EnhanceNet, RestoreNet, UNet
from camnet_cli.tiling import run_tiled

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICES = ("auto", "cpu", "cuda", "mps")

# Peak activation memory of a UNet pass per input pixel, in units of (first-level channels x
# bytes per element); measured on the CPU for the paper nets (about 1.4 KB per packed pixel in
# fp32), with a margin.
_ACTIVATION_FACTOR = 16
_MEMORY_SHARE = 0.5  # of the free memory a pass may plan to use
_MIN_AUTO_TILE = 256
# The tile side (packed pixels) a CPU runs fastest, by the width of the net's first level, measured
# on 2 cores in bf16: the paper nets (32 channels) at 4032x3024 took 9.4 s whole and 2.9 GB, 7.6 s in
# tiles of 1024, 6.2 s in tiles of 512 (1.6 GB), 3-5% more in tiles of 448; the lite nets (16) on the
# 18 MP ARW 0.95x the whole develop's time in tiles of 640 against 512 (peak RSS 1.43 against 1.39 GB;
# tiles of 768: 0.92x at 1.48 GB). Larger tiles repeat less of their neighbours' overlap; smaller
# ones keep the activations in the caches.
_CPU_TILE = {16: 640}
_CPU_TILE_DEFAULT = 512


class EngineError(Exception):
    """The engine cannot run as asked (device missing, out of memory even in small tiles)."""


def pick_device(name: str = "auto") -> torch.device:
    """cuda if there is one, then Apple's mps, then the CPU; or the device asked for.

    Raises:
        EngineError: the device asked for is not available here.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EngineError(f"unknown device {name!r}; use one of {', '.join(DEVICES)}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EngineError("no CUDA device here (torch sees none)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise EngineError("no Apple GPU (mps) here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise EngineError(f"unknown device {name!r}; use one of {', '.join(DEVICES)}")
    return device


def pick_precision(name: str, device: torch.device) -> torch.dtype:
    """The dtype for ``name``; "auto" is bf16 where the hardware runs it natively, else fp32."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and torch.backends.mkldnn.is_available() and _cpu_has_bf16():
            return torch.bfloat16
        return torch.float32
    if name not in PRECISIONS:
        raise EngineError(f"unknown precision {name!r}; use auto, {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


def _cpu_has_bf16() -> bool:
    """Whether the CPU has bf16 instructions (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def available_cpus() -> int:
    """How many CPUs this process may use: its affinity mask (taskset, SLURM, containers' cpusets)
    and its cgroup's CPU quota (docker --cpus, Kubernetes limits), not the machine's core count,
    which oversubscribes the cores when they are shared."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        n = os.cpu_count() or 1
    for quota_file, period_file in (("cpu.max", None), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")):  # cgroup v2, v1
        try:
            fields = (Path("/sys/fs/cgroup") / quota_file).read_text().split()
            quota, period = fields[0], (fields[1] if period_file is None else (Path("/sys/fs/cgroup") / period_file).read_text().split()[0])
            if quota not in ("max", "-1"):
                n = min(n, max(1, math.ceil(int(quota) / int(period))))
            break
        except (OSError, ValueError, IndexError):
            continue
    return max(1, n)


# glibc malloc's settings (malloc.h): blocks up to _HEAP_BLOCK are served from the heap, and up to
# _KEPT of freed heap is kept for the next blocks instead of handed back to the system.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_HEAP_BLOCK, _KEPT = 32 << 20, 256 << 20


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for the next allocations of a develop: a tile's
    activations, a band's intermediates. By default blocks above a threshold it moves up and down
    come straight from the system and go back to it when freed, so each is zeroed and faulted in
    page by page again: 1.4 million page faults on the 18 MP ARW, a fifth of develop's CPU time.
    (The threshold's most, 32 MB, is glibc's own; larger blocks, whole frames, still come from the
    system, which keeps the peak where it was.) False where the C library has no mallopt (macOS)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCK)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEPT))


def use_cpus(n: int | None = None) -> int:
    """Size torch's CPU thread pool to ``n`` CPUs (default ``available_cpus``), unless the user set
    OMP_NUM_THREADS, which torch then follows. Returns the count in use."""
    if n is None and os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    n = n or available_cpus()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def free_memory(device: torch.device) -> int:
    """Bytes a pass could use now on ``device``."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class RunStats:
    """How the last image went through a network: the tile side used (0 = whole) and tiles count."""

    tile: int
    retries: int


class Engine:
    """Restore-Net and (optionally) Enhance-Net on one device, in one precision.

    Args:
        restore: Restore-Net.
        enhance: an Enhance-Net style, or None for restoration only.
        device: "auto", "cpu", "cuda", "cuda:1", "mps".
        precision: "auto", "fp32", "bf16", "fp16".
        compile: run the UNets through ``torch.compile``.
        tile: tile side in packed pixels; None chooses from free memory, 0 never tiles.
        overlap: tile overlap in packed pixels.
        batch: tiles per forward pass.
        ensemble: restore each raw from this many views of its mosaic (1-8: transposed,
            turned, flipped; ``color.SYMMETRIES``) and average them, a self-ensemble: less
            noise left and fewer artefacts, at N times the restoration's cost.
    """

    def __init__(
        self,
        restore: RestoreNet,
        enhance: EnhanceNet | None = None,
        *,
        device: str = "auto",
        precision: str = "auto",
        compile: bool = False,
        tile: int | None = None,
        overlap: int = 64,
        batch: int = 1,
        ensemble: int = 1,
    ) -> None:
        if not 1 <= ensemble <= len(color.SYMMETRIES):
            raise EngineError(f"an ensemble of {ensemble} views: use 1 to {len(color.SYMMETRIES)}")
        self.ensemble = ensemble
        self.device = pick_device(device)
        self.dtype = pick_precision(precision, self.device)
        self.tile, self.overlap, self.batch = tile, overlap, max(1, batch)
        self.restore_net = self._place(restore, compile)
        self.enhance_net = self._place(enhance, compile) if enhance is not None else None
        self.last: dict[str, RunStats] = {}
        # Seconds in the networks' passes (tiles cut and blended included), all images so far:
        # ``pipeline.develop`` reports each image's (``camnet bench --e2e``: what the steps around
        # the networks cost).
        self.network_seconds = 0.0

    def _place(self, net: torch.nn.Module, compile: bool) -> torch.nn.Module:
        # A copy: Module.to() works in place, and the caller's network should stay as it was.
        net = copy.deepcopy(net).eval().to(device=self.device, memory_format=torch.channels_last)
        # The 1x1 output conv (see UNet.forward) and Restore-Net's linear path stay in float32,
        # with their weights as given, not rounded through the network's precision.
        kept = [net.unet.out] + ([net.skip] if getattr(net, "skip", None) is not None else [])
        states = [copy.deepcopy(m.state_dict()) for m in kept]
        net.to(dtype=self.dtype)
        for module, state in zip(kept, states):
            module.float().load_state_dict(state)
        for p in net.parameters():
            p.requires_grad_(False)
        if compile:
            net.unet = torch.compile(net.unet)  # type: ignore[assignment]
        return net

    @property
    def precision(self) -> str:
        return next(k for k, v in PRECISIONS.items() if v == self.dtype)

    def auto_tile(self, unet: UNet, height: int, width: int) -> int:
        """The tile side (packed pixels) for an image of that size; 0 runs it whole.

        On a GPU: whole if the pass fits in free memory, else the largest tile that fits. On a
        CPU: tiles of ``_CPU_TILE``'s side for the net's width, which measured fastest and keep memory low.
        """
        per_pixel = _ACTIVATION_FACTOR * unet.config.channels[0] * torch.finfo(self.dtype).bits // 8
        budget = _MEMORY_SHARE * free_memory(self.device)
        side = int(math.sqrt(budget / per_pixel / self.batch)) // unet.multiple * unet.multiple
        if self.device.type == "cpu":
            side = min(side, _CPU_TILE.get(unet.config.channels[0], _CPU_TILE_DEFAULT))
        if max(height, width) <= side + unet.multiple and height * width * per_pixel <= budget:
            return 0
        # Smaller tiles see less context: 256 keeps tiled within ~50 dB of untiled on the paper
        # nets; only running out of memory (see _run) goes below.
        return max(side, _MIN_AUTO_TILE, unet.min_size)

    @torch.no_grad()  # not inference_mode: the fixed steps after it work on its output in place
    def _run(self, name: str, net: RestoreNet | EnhanceNet, x: torch.Tensor) -> torch.Tensor:
        """UNet pass of a prepared (1, C, h, w) input, tiled as needed, retried smaller on OOM."""
        started = time.perf_counter()
        x = x.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        unet = net.unet
        h, w = x.shape[-2:]
        tile = self.auto_tile(unet, h, w) if self.tile is None else self.tile
        retries = 0
        while True:
            try:
                if tile == 0:
                    y = unet(x).float()
                else:
                    y = run_tiled(unet, x, tile, self.overlap, self.batch)
                self.last[name] = RunStats(tile, retries)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)  # the time of the work, not of queueing it
                self.network_seconds += time.perf_counter() - started
                return y
            except (torch.OutOfMemoryError, RuntimeError) as e:
                if not isinstance(e, torch.OutOfMemoryError) and "out of memory" not in str(e) and "can't allocate" not in str(e):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                smaller = (tile or max(h, w)) // 2 // unet.multiple * unet.multiple
                if smaller < unet.min_size:
                    raise EngineError(f"out of memory on {self.device} even with {unet.min_size}-pixel tiles") from None
                log.info("out of memory with tile %s on %s; retrying with %s", tile or "none", self.device, smaller)
                tile, retries = smaller, retries + 1

    @torch.no_grad()
    def restore(self, packed: np.ndarray | torch.Tensor, omega: float, read: float | None = None, *, phases: bool = False) -> torch.Tensor:
        """Packed raw (4, h, w) + noise level (and the read noise's standard deviation, for a
        network that takes it; None: ``networks.default_read``) -> linear camera RGB (3, 2h, 2w),
        float32 on the CPU; with ``phases``, its phase planes (12, h, w) (``color.apply_matrix``)."""
        planes = torch.as_tensor(packed, dtype=torch.float32)[None].to(self.device)  # once: the UNet and the linear path read it
        if self.ensemble == 1:
            return self._restore(planes, omega, read, phases)[0].cpu()
        views = color.SYMMETRIES[: self.ensemble]
        total = sum(color.bayer_unview(self._restore(color.bayer_view(planes, s), omega, read), s) for s in views)
        mean = total / len(views)
        return (F.pixel_unshuffle(mean, 2) if phases else mean)[0].cpu()

    def _restore(self, planes: torch.Tensor, omega: float, read: float | None, phases: bool = False) -> torch.Tensor:
        x = self.restore_net.prepare(planes, omega, read)
        return self.restore_net.finish(self._run("restore", self.restore_net, x), x, phases=phases)

    @torch.no_grad()
    def enhance(self, xyz: torch.Tensor, *, phases: bool = False) -> torch.Tensor:
        """Linear XYZ (3, H, W), H and W even (with ``phases``, its phase planes (12, H/2, W/2),
        ``color.apply_matrix``) -> sRGB (3, H, W), float32 on the engine's device."""
        if self.enhance_net is None:
            raise EngineError("no Enhance-Net loaded")
        xyz = xyz[None].to(self.device, torch.float32)
        # The prepared input goes straight into the buffer _run takes as it is, in the engine's
        # precision and layout, band by band: no float32 curve and unshuffled copy of the image.
        h, w = (xyz.shape[-2], xyz.shape[-1]) if phases else (xyz.shape[-2] // 2, xyz.shape[-1] // 2)
        x = torch.empty((1, 12, h, w), dtype=self.dtype, device=self.device, memory_format=torch.channels_last)
        y = self._run("enhance", self.enhance_net, self.enhance_net.prepare(xyz, out=x, phases=phases))
        del x
        return self.enhance_net.finish(y, xyz, phases=phases)[0]
