"""The training loop shared by ``train-restore``, ``train-enhance`` and ``finetune``.

CameraNet's two-step scheme (paper §III-E): first Restore-Net (Eq. 5) and Enhance-Net
(Eq. 6, on the restoration ground truth) are trained apart, then both are fine-tuned
together (Eq. 7). A one-stage baseline (one UNet, raw to sRGB, paper §IV-C) trains with
the same loop.

Checkpoints are safetensors files (tensors and a JSON header, no pickle), written to a
temporary name and renamed. A checkpoint holds the networks (and their moving average with
``--ema``), the optimiser, the step, the best validation score and the random state; samples
are a pure function of their index, so a resumed run continues the very same curve. Under
torchrun the loop runs with DistributedDataParallel; rank 0 validates, logs and saves.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from camnet_cli import checkpoint, color, losses, metrics
from camnet_cli.data import DataConfig, StepSampler, synthetic
from camnet_cli.data.datasets import make_datasets
from camnet_cli.data.datasets import noise_range as dataset_noise_range
from camnet_cli.engine import pick_device
from camnet_cli.model import (
    EnhanceNet,
    OneStageNet,
    RestoreNet,
    enhance_config,
    onestage_config,
    restore_config,
)
from camnet_cli.weights import WeightsError, load_weights, save_named

STAGES = ("restore", "enhance", "joint", "onestage")


class TrainError(Exception):
    """Training cannot start or go on as asked; the message is one line for the user."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; stored in every checkpoint."""

    stage: str  # one of STAGES
    dataset: str = "synthetic"
    data_root: str = "."
    output: str = "runs/camnet"
    model: str = "paper"  # "paper" or "lite" (ignored for nets given by --restore/--enhance)
    steps: int = 100_000
    patch_size: int = 512  # the paper trains on 1024 pixels
    batch_size: int = 1  # the paper: 1
    lr: float | None = None  # default 1e-4, fine-tuning 1e-5 (paper §IV-B)
    lam: float | None = None  # Eq. 7's lambda; default per dataset (losses.LAMBDA)
    log_weight: float = 1.0  # weight of Eq. 5's log term (the paper: 1)
    curve_weight: float = 0.0  # losses.curve_loss added to the restoration loss (0: the paper's alone)
    curve_norm: str = "l1"  # its norm (losses.CURVE_NORMS)
    skip_lr: float | None = None  # Restore-Net's linear path (RestoreNetConfig.skip): its own rate, scheduled alike
    restore_lr: float | None = None  # joint: Restore-Net's own rate, scheduled alike (0: held as it is); default lr
    grid_weight: float = 0.0  # losses.grid_loss on each network's output, added to the paper's loss (0: the paper's alone)
    ema: float = 0.0  # decay of the weights' moving average (0: none); validated and exported instead of the raw weights
    seed: int = 0
    workers: int = 2
    checkpoint_every: int = 1000
    validate_every: int = 1000
    val_samples: int = 16  # patches of the validation set (data.VALIDATION_SEED: the same for every run)
    device: str = "auto"
    precision: str = "auto"  # "auto": bf16 autocast on CUDA, fp32 elsewhere; "bf16": autocast on any device; "fp32"
    compile: bool = False
    restore_init: str | None = None  # weights to start Restore-Net from
    enhance_init: str | None = None  # weights to start Enhance-Net from
    perceptual: str | None = None  # local VGG-19 safetensors: adds the perceptual loss
    perceptual_weight: float = 0.01
    name: str = "default"  # of the exported weights: restore-<name>, enhance-<name>
    export_dtype: str = "fp32"
    enhance_gt: str | None = None  # SID: folder of enhancement ground truths
    expert: str = "C"  # FiveK: whose retouching
    exposure: tuple[float, float] | None = None  # synthetic: raw exposure range (default synthetic.EXPOSURE_RANGE)
    scale: tuple[float, float] | None = None  # synthetic: photo downscaling range (default synthetic.SCALE_RANGE)
    iso_range: tuple[float, float] | None = None  # synthetic: ISO range of the noise (default synthetic.ISO_RANGE)
    read_range: tuple[float, float] | None = None  # synthetic: factor range of the read noise (default synthetic.READ_RANGE)

    @property
    def data(self) -> DataConfig:
        """The settings the data modules read."""
        return DataConfig(self.dataset, self.data_root, self.patch_size, self.seed, self.enhance_gt, self.expert, self.exposure, self.scale, self.iso_range, self.read_range)

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else (1e-5 if self.stage == "joint" else 1e-4)

    @property
    def weight_lambda(self) -> float:
        return self.lam if self.lam is not None else losses.LAMBDA.get(self.dataset, 0.5)


def lr_at(step: int, total: int, base: float) -> float:
    """The paper's schedule: ``base``, divided by 10 at three quarters of the steps."""
    return base if step < 0.75 * total else base * 0.1


def ema_decay(step: int, decay: float) -> float:
    """The moving average's decay after ``step`` updates: ``decay``, lower at first.

    (1 + step) / (10 + step) as TensorFlow's ExponentialMovingAverage with num_updates, so that a
    fresh average is not held at the initial weights for ~1 / (1 - decay) steps.
    """
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(average: nn.Module, net: nn.Module, decay: float) -> None:
    """average <- decay * average + (1 - decay) * net, parameter by parameter; buffers are copied."""
    for a, p in zip(average.parameters(), net.parameters()):
        a.lerp_(p.detach(), 1 - decay)
    for a, b in zip(average.buffers(), net.buffers()):
        a.copy_(b)


@dataclass
class Progress:
    """What the loop reports after each step (rank 0 only)."""

    step: int
    total: int
    loss: float
    terms: dict[str, float]
    lr: float
    seconds: float
    val: dict[str, float] = field(default_factory=dict)


# --- networks of a stage -------------------------------------------------------------------


def _initial_net(path: str, stage: str) -> nn.Module:
    """The network to start from: a weight file, or a training checkpoint that holds ``stage``."""
    try:
        return load_weights(path, stage)[0]
    except WeightsError as error:
        try:
            header, tensors = checkpoint.load(Path(path))
        except checkpoint.CheckpointError:
            raise error from None
    if stage not in json.loads(header["nets"]):
        article = "an" if stage[0] in "aeiou" else "a"
        raise TrainError(f"{path}: a checkpoint without {article} {stage} network")
    return checkpoint.network(header, tensors, stage)


def _networks(cfg: TrainConfig) -> dict[str, nn.Module]:
    nets: dict[str, nn.Module] = {}
    if cfg.stage in ("restore", "joint"):
        nets["restore"] = _initial_net(cfg.restore_init, "restore") if cfg.restore_init else RestoreNet(restore_config(cfg.model))
    if cfg.stage in ("enhance", "joint"):
        nets["enhance"] = _initial_net(cfg.enhance_init, "enhance") if cfg.enhance_init else EnhanceNet(enhance_config(cfg.model))
    if cfg.stage == "onestage":
        nets["onestage"] = _initial_net(cfg.restore_init, "onestage") if cfg.restore_init else OneStageNet(onestage_config(cfg.model))
    if cfg.stage == "joint" and not (cfg.restore_init and cfg.enhance_init):
        raise TrainError("fine-tuning needs Restore-Net and Enhance-Net weights from the first training step")
    return nets


def _forward(nets: dict[str, nn.Module], batch: dict[str, torch.Tensor], cfg: TrainConfig, perceptual: nn.Module | None):
    """The stage's loss, its terms, and the images to validate (prediction, target)."""
    loss, terms, shown, grids = _stage_loss(nets, batch, cfg, perceptual)
    if cfg.grid_weight > 0:
        terms["grid"] = sum(losses.grid_loss(pred, target) for pred, target in grids)
        loss = loss + cfg.grid_weight * terms["grid"]
    return loss, terms, shown


def _stage_loss(nets: dict[str, nn.Module], batch: dict[str, torch.Tensor], cfg: TrainConfig, perceptual: nn.Module | None):
    """The paper's loss of the stage, its terms, the images to validate, and each network's (output, target)."""
    terms: dict[str, torch.Tensor] = {}
    if cfg.stage == "onestage":
        pred = nets["onestage"](batch["packed"], batch["omega"], read=batch.get("read"))
        terms["enhance"] = losses.enhance_loss(pred, batch["srgb"])
        return terms["enhance"], terms, (pred, batch["srgb"]), [(pred, batch["srgb"])]
    grids = []
    if "restore" in nets:
        camera = nets["restore"](batch["packed"], batch["omega"], read=batch.get("read"))
        xyz = color.camera_to_xyz(camera.float(), batch["wb"], batch["cam_to_xyz"])
        terms["restore"] = losses.restore_loss(xyz, batch["xyz"], cfg.log_weight)
        if cfg.curve_weight > 0:
            gain = batch.get("render_gain", torch.ones(len(xyz), device=xyz.device))
            terms["restore"] = terms["restore"] + cfg.curve_weight * losses.curve_loss(xyz, batch["xyz"], gain, cfg.curve_norm)
        grids.append((xyz, batch["xyz"]))
    if cfg.stage == "restore":
        return terms["restore"], terms, (xyz, batch["xyz"]), grids
    enhance_in = xyz if cfg.stage == "joint" else batch["xyz"]  # Enhance-Net alone learns on the ground truth
    pred = nets["enhance"](enhance_in)
    terms["enhance"] = losses.enhance_loss(pred, batch["srgb"])
    grids.append((pred, batch["srgb"]))
    if perceptual is not None:
        terms["perceptual"] = perceptual(pred.float().clamp(0, 1), batch["srgb"])
    loss = terms["enhance"] if cfg.stage == "enhance" else losses.joint_loss(terms["restore"], terms["enhance"], cfg.weight_lambda)
    if "perceptual" in terms:
        loss = loss + cfg.perceptual_weight * terms["perceptual"]
    return loss, terms, (pred, batch["srgb"]), grids


# --- the loop --------------------------------------------------------------------------------


def _param_groups(nets: dict[str, nn.Module], cfg: TrainConfig) -> list[dict]:
    """The optimiser's groups, each with its rate as a multiple of the schedule's (``lr_scale``).

    Restore-Net's linear path learns at ``skip_lr`` when given: fine-tuned at a small rate, kernels
    that start at zero would barely move. Fine-tuning, Restore-Net learns at ``restore_lr`` when given
    (its linear path too, unless ``skip_lr`` is given): slower than a fresh Enhance-Net, or not at all
    (0): held, it gets no gradients and stays out of the optimiser, and a step costs only its forward pass. Groups come in a fixed order, so that a
    resumed run with the same options lines up with its checkpoint.
    """
    restore = nets.get("restore")
    path = getattr(restore, "skip", None)
    skip = list(path.parameters()) if path is not None and cfg.skip_lr is not None else []
    ids = {id(p) for p in skip}
    own = restore is not None and cfg.restore_lr is not None  # Restore-Net in a group of its own
    groups = [
        ([p for name, net in nets.items() if not (own and name == "restore") for p in net.parameters() if id(p) not in ids], 1.0),
        ([p for p in restore.parameters() if id(p) not in ids] if own else [], (cfg.restore_lr or 0.0) / cfg.base_lr),
        (skip, (cfg.skip_lr or 0.0) / cfg.base_lr),
    ]
    for params, scale in groups:
        if scale == 0:
            for p in params:
                p.requires_grad_(False)
    return [{"params": params, "lr_scale": scale} for params, scale in groups if params and scale > 0]


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); joins the process group when run under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if world > 1:
        return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    """The run's device (``engine.pick_device``); under torchrun each rank takes its local GPU."""
    device = pick_device(cfg.device)
    return torch.device("cuda", local_rank) if device.type == "cuda" and device.index is None else device


@torch.no_grad()
def validate(nets: dict[str, nn.Module], samples: list[dict[str, torch.Tensor]], cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """Mean PSNR and SSIM of the stage's output on fixed validation samples."""
    for net in nets.values():
        net.eval()
    psnrs, ssims = [], []
    for sample in samples:
        batch = {k: v[None].to(device) for k, v in sample.items()}
        _, _, (pred, target) = _forward(nets, batch, cfg, None)
        pred, target = pred.float().clamp(0, 1), target.float().clamp(0, 1)
        psnrs.append(metrics.psnr(pred, target).item())
        ssims.append(metrics.ssim(pred, target).item())
    for net in nets.values():
        net.train()
    return {"psnr": sum(psnrs) / len(psnrs), "ssim": sum(ssims) / len(ssims)}


def train(cfg: TrainConfig, resume: Path | None = None, report: Callable[[Progress], None] | None = None) -> dict[str, Path]:
    """Run (or resume) a training run; returns the exported weight files by stage.

    Raises:
        TrainError: bad settings, data or checkpoint (one line for the user).
    """
    if cfg.stage not in STAGES:
        raise TrainError(f"unknown stage {cfg.stage!r}")
    if cfg.patch_size % 32 or cfg.patch_size < 32:
        raise TrainError(f"patch size {cfg.patch_size}: use a multiple of 32")
    if cfg.base_lr <= 0:
        raise TrainError(f"learning rate {cfg.base_lr}: use a positive rate")
    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise TrainError(f"precision {cfg.precision!r}: use auto, bf16 or fp32")
    if cfg.iso_range and not synthetic.ISO_RANGE[0] <= cfg.iso_range[0] <= cfg.iso_range[1]:
        raise TrainError(f"ISO range {cfg.iso_range[0]:g}-{cfg.iso_range[1]:g}: the synthetic noise starts at ISO {synthetic.ISO_RANGE[0]:g}")
    if not 0 <= cfg.ema < 1:
        raise TrainError(f"moving-average decay {cfg.ema}: use a decay in [0, 1), e.g. 0.999 (0: no moving average)")
    rank, world, local_rank = _distributed()
    device = _device(cfg, local_rank)
    out = Path(cfg.output)
    torch.manual_seed(cfg.seed)
    nets = {k: v.to(device).train() for k, v in _networks(cfg).items()}
    averages = {k: copy.deepcopy(v).requires_grad_(False) for k, v in nets.items()} if cfg.ema else {}
    optimizer = torch.optim.Adam(_param_groups(nets, cfg), lr=cfg.base_lr, betas=(0.9, 0.99))
    start, best = 0, -math.inf
    if resume is not None:
        header, tensors = checkpoint.load(resume)
        saved = json.loads(header["config"])
        if saved.get("stage") != cfg.stage:
            raise TrainError(f"{resume}: a {saved.get('stage')} checkpoint, not {cfg.stage}")
        start, best = checkpoint.restore(header, tensors, nets, optimizer, averages)
        for net in [*nets.values(), *averages.values()]:
            net.to(device)
    train_set, val_set, data_note = make_datasets(cfg.data)
    perceptual = losses.PerceptualLoss(cfg.perceptual).to(device) if cfg.perceptual else None
    runners: dict[str, nn.Module] = dict(nets)
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        runners = {k: nn.parallel.DistributedDataParallel(v, device_ids=ids) for k, v in nets.items()}
    if cfg.compile:
        runners = {k: torch.compile(v) for k, v in runners.items()}  # type: ignore[misc]
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=StepSampler(start, cfg.steps, cfg.batch_size, rank, world),
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
    )
    val_samples = [val_set[i] for i in range(min(cfg.val_samples, len(val_set)))] if rank == 0 else []
    log = _Log(out, rank == 0, resume is not None)
    settings = dataclasses.asdict(cfg)
    step, t0 = start, time.perf_counter()
    for step, batch in zip(range(start, cfg.steps), loader):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        lr = lr_at(step, cfg.steps, cfg.base_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss, terms, _ = _forward(runners, batch, cfg, perceptual)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = step + 1
        for name, average in averages.items():
            update_ema(average, nets[name], ema_decay(done, cfg.ema))
        val: dict[str, float] = {}
        if rank == 0:
            if done % cfg.validate_every == 0 or done == cfg.steps:
                val = validate(averages or nets, [{k: v for k, v in s.items()} for s in val_samples], cfg, device)
                if val["psnr"] > best:
                    best = val["psnr"]
                    checkpoint.save(out / "checkpoints" / "best.safetensors", settings, nets, optimizer, done, best, averages)
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                checkpoint.save(out / "checkpoints" / "last.safetensors", settings, nets, optimizer, done, best, averages)
            progress = Progress(done, cfg.steps, loss.item(), {k: v.item() for k, v in terms.items()}, lr, time.perf_counter() - t0, val)
            log.write(progress)
            if report:
                report(progress)
        if world > 1:
            dist.barrier()
    log.close()
    exported: dict[str, Path] = {}
    if rank == 0 and step + 1 >= cfg.steps:
        exported = export(cfg, out, data_note)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return exported


def export(cfg: TrainConfig, out: Path, training_data: str) -> dict[str, Path]:
    """Write the best checkpoint's networks (the last one's without validation) as weight files."""
    source = out / "checkpoints" / ("best.safetensors" if (out / "checkpoints" / "best.safetensors").exists() else "last.safetensors")
    header, tensors = checkpoint.load(source)
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[cfg.export_dtype]
    noise_range = dataset_noise_range(cfg.data)
    files: dict[str, Path] = {}
    for name in json.loads(header["nets"]):
        extra = {"trained_steps": header["step"], "best_val_psnr": header["best"]}
        net = checkpoint.network(header, tensors, name)
        files[name] = save_named(out, net, cfg.name, training_data=training_data, noise_range=noise_range, dtype=dtype, extra=extra)
    return files


class _Log:
    """metrics.csv, and TensorBoard event files when tensorboard is installed (rank 0)."""

    def __init__(self, out: Path, active: bool, append: bool) -> None:
        self.active, self.writer, self.file, self.csv = active, None, None, None
        if not active:
            return
        out.mkdir(parents=True, exist_ok=True)
        path = out / "metrics.csv"
        fresh = not (append and path.exists())
        self.file = open(path, "w" if fresh else "a", newline="")
        self.csv = csv.writer(self.file)
        if fresh:
            self.csv.writerow(["step", "loss", "restore", "enhance", "perceptual", "lr", "val_psnr", "val_ssim", "seconds", "grid"])
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.writer = None

    def write(self, p: Progress) -> None:
        if not self.active:
            return
        self.csv.writerow([p.step, f"{p.loss:.6g}", *(f"{p.terms[k]:.6g}" if k in p.terms else "" for k in ("restore", "enhance", "perceptual")),
                           f"{p.lr:.3g}", *(f"{p.val[k]:.4f}" if k in p.val else "" for k in ("psnr", "ssim")), f"{p.seconds:.1f}",
                           f"{p.terms['grid']:.6g}" if "grid" in p.terms else ""])
        self.file.flush()
        if self.writer is not None:
            self.writer.add_scalar("loss/total", p.loss, p.step)
            for k, v in {**p.terms, **{f"val/{k}": v for k, v in p.val.items()}}.items():
                self.writer.add_scalar(k if k.startswith("val/") else f"loss/{k}", v, p.step)

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.writer is not None:
            self.writer.close()
