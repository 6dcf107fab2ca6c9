"""``camnet train-restore``, ``train-enhance`` and ``finetune``: CameraNet's two-step training."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from camnet_cli import checkpoint, losses
from camnet_cli.checkpoint import CheckpointError
from camnet_cli.commands import EXIT_OK, stderr, usage_error
from camnet_cli.data import DATASETS, DatasetError
from camnet_cli.engine import EngineError
from camnet_cli.model import MODEL_SIZES
from camnet_cli.train import Progress as StepProgress
from camnet_cli.train import TrainConfig, TrainError, train
from camnet_cli.weights import WeightsError

DATA, RUN, OUT, DEVICE = "Data", "Schedule", "Output", "Device"

Dataset = Annotated[str, typer.Option(help=f"{', '.join(DATASETS)}.", rich_help_panel=DATA)]
DataRoot = Annotated[Path, typer.Option(help="The dataset's folder (synthetic: any folder of photographs).", rich_help_panel=DATA)]
EnhanceGT = Annotated[Path | None, typer.Option(help="SID: folder of enhancement ground truths (default: built-in auto-enhancement).", rich_help_panel=DATA)]
Expert = Annotated[str, typer.Option(help="FiveK: whose retouching, A-E (the paper: C).", rich_help_panel=DATA)]
Exposure = Annotated[
    str | None, typer.Option(help="Synthetic: exposure range of the raws relative to the photos, LO,HI (default 0.35,0.71).", rich_help_panel=DATA)
]
Scale = Annotated[
    str | None,
    typer.Option(help="Synthetic: how much the photos are downscaled before cropping, LO,HI in (0, 1] (default 0.35,1); smaller is sharper.", rich_help_panel=DATA),
]
IsoRange = Annotated[
    str | None,
    typer.Option(
        "--iso-range",
        help="Synthetic: ISO range of the raws' noise, LO,HI (default 100,25600); above a camera's highest calibrated ISO the noise is pushed, as SID's amplified raws.",
        rich_help_panel=DATA,
    ),
]
ReadRange = Annotated[
    str | None,
    typer.Option(
        "--read-range",
        help="Synthetic: the calibrated read noise times a factor in LO,HI (default 1,1), e.g. 0.5,8 for sensors and pushed shadows with more read noise; for a Restore-Net with a read plane (the lite preset).",
        rich_help_panel=DATA,
    ),
]
CurveWeight = Annotated[
    float,
    typer.Option(help="Weight of a restoration term after the tone curve (L1 of the plain renderings; 0: the paper's loss alone): errors in the shadows as a viewer sees them.", min=0.0, rich_help_panel=RUN),
]
CurveNorm = Annotated[
    str,
    typer.Option(
        help="Norm of that term: l1, or psnr (log MSE per image: the mean PSNR eval reports, so quiet images weigh as much as noisy ones).",
        rich_help_panel=RUN,
    ),
]
Init = Annotated[
    Path | None,
    typer.Option(help="Start from these networks (a weight file, e.g. a shipped one, or a training checkpoint) with a fresh optimiser and schedule.", rich_help_panel=RUN),
]
Model = Annotated[str, typer.Option(help="Network size: paper or lite.", rich_help_panel=RUN)]
Steps = Annotated[int, typer.Option(help="Training steps.", min=1, rich_help_panel=RUN)]
PatchSize = Annotated[int, typer.Option(help="Patch side in pixels, a multiple of 32 (the paper: 1024).", min=32, rich_help_panel=RUN)]
BatchSize = Annotated[int, typer.Option(help="Patches per step (the paper: 1).", min=1, rich_help_panel=RUN)]
Lr = Annotated[float | None, typer.Option(help="Learning rate (default 1e-4; finetune 1e-5); divided by 10 at 3/4 of the steps.", rich_help_panel=RUN)]
LogWeight = Annotated[
    float,
    typer.Option(help="Weight of the restoration loss's log term (paper Eq. 5: 1). It weighs errors by 1/x, so dark pixels dominate; lower it to favour detail in bright ones.", min=0.0, rich_help_panel=RUN),
]
SkipLr = Annotated[
    float | None,
    typer.Option(help="Learning rate of Restore-Net's linear path (default: --lr), e.g. when the path was just added to trained weights.", min=0.0, rich_help_panel=RUN),
]
GridWeight = Annotated[
    float,
    typer.Option(
        help="Weight of a term against the 2-pixel grid the sub-pixel output layer can leave in flat areas (the error's 2x2-periodic part, window by window; 0: the paper's loss alone).",
        min=0.0, rich_help_panel=RUN,
    ),
]
Ema = Annotated[
    float,
    typer.Option(help="Keep a moving average of the weights with this decay (e.g. 0.999; 0: none): validated, checkpointed and exported instead of the last step's.", min=0.0, max=0.9999, rich_help_panel=RUN),
]
Seed = Annotated[int, typer.Option(help="Seeds initialisation and the data: the same seed gives the same run.", rich_help_panel=RUN)]
Workers = Annotated[int, typer.Option(help="Data-loading processes.", min=0, rich_help_panel=RUN)]
Perceptual = Annotated[Path | None, typer.Option(help="A local VGG-19 safetensors file: adds the perceptual loss (nothing is downloaded).", rich_help_panel=RUN)]
PerceptualWeight = Annotated[float, typer.Option(help="Weight of the perceptual loss.", rich_help_panel=RUN)]
Output = Annotated[Path, typer.Option("--output", "-o", help="Folder for checkpoints, metrics.csv and the exported weights.", rich_help_panel=OUT)]
Resume = Annotated[
    str | None,
    typer.Option(help="Continue from a checkpoint: a path, or 'last' (a bare --resume means last) for OUTPUT/checkpoints/last.", rich_help_panel=OUT),
]
CheckpointEvery = Annotated[int, typer.Option(help="Save a checkpoint every N steps.", min=1, rich_help_panel=OUT)]
ValidateEvery = Annotated[int, typer.Option(help="Validate (PSNR, SSIM) every N steps; the best checkpoint is kept.", min=1, rich_help_panel=OUT)]
ValSamples = Annotated[
    int, typer.Option(help="Validation patches (the same ones whatever --seed); more make the best checkpoint's choice less noisy.", min=1, rich_help_panel=OUT)
]
Name = Annotated[str, typer.Option(help="Name of the exported weights: restore-NAME / enhance-NAME (the style).", rich_help_panel=OUT)]
ExportDtype = Annotated[str, typer.Option(help="Precision of the exported weights: fp32, fp16 or bf16.", rich_help_panel=OUT)]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.", rich_help_panel=DEVICE)]
Precision = Annotated[str, typer.Option(help="auto (bf16 autocast on CUDA, fp32 elsewhere), bf16 (autocast on any device, e.g. a CPU with AMX) or fp32.", rich_help_panel=DEVICE)]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the networks.", rich_help_panel=DEVICE)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]


def train_restore(
    dataset: Dataset = "synthetic", data_root: DataRoot = Path("."), model: Model = "paper", steps: Steps = 100_000,
    patch_size: PatchSize = 512, batch_size: BatchSize = 1, lr: Lr = None, log_weight: LogWeight = 1.0, curve_weight: CurveWeight = 0.0, curve_norm: CurveNorm = "l1", skip_lr: SkipLr = None, grid_weight: GridWeight = 0.0,
    ema: Ema = 0.0, seed: Seed = 0, workers: Workers = 2, output: Output = Path("runs/restore"), resume: Resume = None, checkpoint_every: CheckpointEvery = 1000,
    validate_every: ValidateEvery = 1000, val_samples: ValSamples = 16, name: Name = "default", export_dtype: ExportDtype = "fp32",
    enhance_gt: EnhanceGT = None, expert: Expert = "C", exposure: Exposure = None, scale: Scale = None, iso_range: IsoRange = None, read_range: ReadRange = None, init: Init = None,
    device: Device = "auto", precision: Precision = "auto", compile_: Compile = False, quiet: Quiet = False,
    one_stage: Annotated[bool, typer.Option("--one-stage", help="Train the one-stage baseline instead: one UNet from raw to the final sRGB (paper §IV-C).", rich_help_panel=RUN)] = False,
) -> None:
    """Step 1a: train Restore-Net (demosaicking, denoising) on the restoration ground truth (paper Eq. 5).

    Writes OUTPUT/restore-NAME.safetensors, usable with `camnet develop --restore`.

    Example:

        camnet train-restore --dataset synthetic --data-root photos/ --model lite --steps 20000 --output runs/restore
    """
    _run("onestage" if one_stage else "restore", locals())


def train_enhance(
    dataset: Dataset = "synthetic", data_root: DataRoot = Path("."), model: Model = "paper", steps: Steps = 100_000,
    patch_size: PatchSize = 512, batch_size: BatchSize = 1, lr: Lr = None, grid_weight: GridWeight = 0.0, ema: Ema = 0.0, seed: Seed = 0,
    workers: Workers = 2, output: Output = Path("runs/enhance"), resume: Resume = None, checkpoint_every: CheckpointEvery = 1000,
    validate_every: ValidateEvery = 1000, val_samples: ValSamples = 16, name: Name = "natural", export_dtype: ExportDtype = "fp32",
    enhance_gt: EnhanceGT = None, expert: Expert = "C", exposure: Exposure = None, scale: Scale = None, iso_range: IsoRange = None, read_range: ReadRange = None, init: Init = None,
    perceptual: Perceptual = None, perceptual_weight: PerceptualWeight = 0.01, device: Device = "auto", precision: Precision = "auto",
    compile_: Compile = False, quiet: Quiet = False,
) -> None:
    """Step 1b: train Enhance-Net (a style) from the restoration ground truth to the final image (paper Eq. 6).

    Writes OUTPUT/enhance-NAME.safetensors.

    Example:

        camnet train-enhance --dataset fivek --data-root fivek/ --expert C --name expertC --output runs/enhance
    """
    _run("enhance", locals())


def finetune(
    restore: Annotated[Path, typer.Option(help="Restore-Net weights from train-restore (a weight file or a checkpoint).", rich_help_panel=RUN)],
    enhance: Annotated[Path, typer.Option(help="Enhance-Net weights from train-enhance (a weight file or a checkpoint).", rich_help_panel=RUN)],
    dataset: Dataset = "synthetic", data_root: DataRoot = Path("."), steps: Steps = 20_000,
    patch_size: PatchSize = 512, batch_size: BatchSize = 1, lr: Lr = None,
    lam: Annotated[float | None, typer.Option("--lambda", help="Weight of the restoration loss in Eq. 7 (default per dataset: FiveK 0.1, HDR+ 0.5, SID 0.9).", rich_help_panel=RUN)] = None,
    log_weight: LogWeight = 1.0, curve_weight: CurveWeight = 0.0, curve_norm: CurveNorm = "l1", skip_lr: SkipLr = None,
    restore_lr: Annotated[
        float | None,
        typer.Option(
            help="Learning rate of Restore-Net (default: --lr), e.g. lower than a fresh Enhance-Net's; 0 holds Restore-Net as it is.",
            min=0.0, rich_help_panel=RUN,
        ),
    ] = None,
    grid_weight: GridWeight = 0.0, ema: Ema = 0.0, seed: Seed = 0, workers: Workers = 2,
    output: Output = Path("runs/finetune"),
    resume: Resume = None,
    checkpoint_every: CheckpointEvery = 1000, validate_every: ValidateEvery = 1000, val_samples: ValSamples = 16, name: Name = "natural",
    export_dtype: ExportDtype = "fp32", enhance_gt: EnhanceGT = None, expert: Expert = "C", exposure: Exposure = None,
    scale: Scale = None, iso_range: IsoRange = None, read_range: ReadRange = None, perceptual: Perceptual = None, perceptual_weight: PerceptualWeight = 0.01, device: Device = "auto", precision: Precision = "auto",
    compile_: Compile = False, quiet: Quiet = False,
) -> None:
    """Step 2: fine-tune both networks together on the joint loss (paper Eq. 7).

    Writes OUTPUT/restore-NAME.safetensors and OUTPUT/enhance-NAME.safetensors: the style NAME
    for `camnet develop --style`, which picks its restoration weights by itself.

    Example:

        camnet finetune --restore runs/restore/restore-natural.safetensors --enhance runs/enhance/enhance-natural.safetensors --data-root photos/
    """
    _run("joint", locals())


def _run(stage: str, options: dict) -> None:
    if options.get("model", "paper") not in MODEL_SIZES:
        raise usage_error(f"--model {options['model']}: use one of {', '.join(MODEL_SIZES)}")
    if options["dataset"] not in DATASETS:
        raise usage_error(f"--dataset {options['dataset']}: use one of {', '.join(DATASETS)}")
    if options["export_dtype"] not in ("fp32", "fp16", "bf16"):
        raise usage_error(f"--export-dtype {options['export_dtype']}: use fp32, fp16 or bf16")
    if options.get("curve_norm", "l1") not in losses.CURVE_NORMS:
        raise usage_error(f"--curve-norm {options['curve_norm']}: use one of {', '.join(losses.CURVE_NORMS)}")
    for key, top in (("exposure", None), ("scale", 1.0), ("iso_range", None), ("read_range", None)):
        if options.get(key):
            options = {**options, key: _range(key.replace("_", "-"), options[key], top)}
    if options.get("init") is not None and not Path(options["init"]).is_file():
        raise usage_error(f"--init {options['init']}: no such file")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    init_field = "enhance_init" if stage == "enhance" else "restore_init"
    renames = {"compile_": "compile", "restore": "restore_init", "enhance": "enhance_init", "init": init_field}
    values = {renames.get(k, k): (str(v) if isinstance(v, Path) else v) for k, v in options.items()}
    cfg = TrainConfig(stage=stage, **{k: v for k, v in values.items() if k in fields})
    resume = _checkpoint(options["resume"], Path(cfg.output))
    rank0 = int(os.environ.get("RANK", "0")) == 0
    quiet = options["quiet"] or not rank0

    progress = Progress(
        TextColumn(f"[bold]{stage}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=stderr, disable=quiet, transient=True,
    )
    task = progress.add_task(stage, total=cfg.steps, completed=0, info="")

    def report(p: StepProgress) -> None:
        terms = " ".join(f"{k} {v:.4f}" for k, v in p.terms.items())
        rate = (p.step - first[0]) / p.seconds if p.seconds > 0 else 0.0
        progress.update(task, completed=p.step, info=f"loss {p.loss:.4f} ({terms}) lr {p.lr:.1e} {rate:.2f} it/s")
        if p.val and rank0:
            progress.console.print(f"step {p.step}: loss {p.loss:.4f}, validation PSNR {p.val['psnr']:.2f} dB, SSIM {p.val['ssim']:.4f}", highlight=False, soft_wrap=True)

    first = [0]
    try:
        if resume is not None:
            first[0] = int(checkpoint.load(resume)[0]["step"])
            progress.update(task, completed=first[0])
        with progress:
            files = train(cfg, resume, report)
    except (TrainError, CheckpointError, DatasetError, WeightsError, EngineError) as e:
        raise usage_error(str(e)) from None
    if rank0:
        for stage_name, path in files.items():
            stderr.print(f"wrote {stage_name} weights: {path}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_OK)


def _range(name: str, text: str, top: float | None) -> tuple[float, float]:
    """LO,HI from an option, with 0 < LO <= HI (<= top)."""
    try:
        lo, hi = (float(v) for v in text.split(","))
        if not 0 < lo <= hi or (top is not None and hi > top):
            raise ValueError
    except ValueError:
        bound = f" <= {top:g}" if top is not None else ""
        raise usage_error(f"--{name} {text}: use LO,HI with 0 < LO <= HI{bound}") from None
    return lo, hi


def _checkpoint(resume: str | None, output: Path) -> Path | None:
    """The checkpoint --resume names; None to start fresh."""
    if resume is None:
        return None
    if resume == "last":
        path = output / "checkpoints" / "last.safetensors"
        if not path.exists():
            stderr.print(f"no checkpoint in {path.parent} yet: starting from the beginning", highlight=False, soft_wrap=True)
            return None
        return path
    path = Path(resume)
    if not path.is_file():
        raise usage_error(f"--resume {resume}: no such checkpoint")
    return path
