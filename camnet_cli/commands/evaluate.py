"""``camnet eval``: PSNR, SSIM, S-CIELAB and CIEDE2000 on a dataset's held-out images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from camnet_cli.commands import ENSEMBLE_HELP, EXIT_OK, make_engine, parse_chroma, stdout, usage_error
from camnet_cli.data import DATASETS, DatasetError
from camnet_cli.data.datasets import make_eval_set
from camnet_cli.evaluate import BASELINES, TWO_STAGE_BASELINES, evaluate, means
from camnet_cli.weights import WeightsError, companion_restore, load_weights


def eval_(
    dataset: Annotated[str, typer.Option(help=f"{', '.join(DATASETS)}.")] = "synthetic",
    data_root: Annotated[Path, typer.Option(help="The dataset's folder.")] = Path("."),
    restore: Annotated[Path | None, typer.Option(help="Restore-Net weights (default: the style's own).")] = None,
    enhance: Annotated[Path | None, typer.Option(help="Enhance-Net weights (a style file).")] = None,
    one_stage: Annotated[Path | None, typer.Option("--one-stage", help="Evaluate a one-stage baseline instead.")] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            help="Also score baselines on the same raws, comma-separated: 'libraw' (LibRaw's AHD pipeline), "
            "'denoise' (LibRaw's AHD, then non-local means as strong as the file's noise level calls for, then the same Enhance-Net), "
            "'bilinear' (a bilinear demosaic in place of Restore-Net, then the same Enhance-Net), "
            "'plain' (camnet's restoration through a plain colorimetric rendering instead of Enhance-Net)."
        ),
    ] = None,
    exposure: Annotated[
        str | None,
        typer.Option(
            help="Synthetic: the raws' exposure relative to the photos, comma-separated for several "
            "(default 0.5; training draws 0.35 to 0.71). Names then carry the exposure."
        ),
    ] = None,
    iso: Annotated[
        str | None,
        typer.Option(help="Synthetic: the noise of these a7R III ISO settings, comma-separated (default 400,3200,12800,25600; above 25600 pushed)."),
    ] = None,
    noise_levels: Annotated[
        str | None,
        typer.Option("--noise-levels", help="Synthetic: noise levels as SHOT:READ pairs, comma-separated (normalised raw units), instead of --iso."),
    ] = None,
    chroma_nr: Annotated[
        str, typer.Option("--chroma-nr", help="Chroma noise reduction after Enhance-Net, as develop's: auto, off or a width in pixels.")
    ] = "auto",
    limit: Annotated[int | None, typer.Option(help="Only the first N images.", min=1)] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object: per image and mean.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16.")] = "fp32",
    ensemble: Annotated[int, typer.Option(help=ENSEMBLE_HELP, min=1, max=8)] = 1,
) -> None:
    """Score networks on a dataset's held-out images: PSNR, SSIM, S-CIELAB and CIEDE2000.

    The restoration stage is scored in linear XYZ against the restoration ground truth; the whole
    pipeline in sRGB against the final ground truth (S-CIELAB and CIEDE2000: lower is better;
    grid: the 2-pixel pattern's RMS in 8-bit levels, lower is better).

    Example:

        camnet eval --data-root photos/ --enhance runs/enhance/enhance-natural.safetensors --baseline libraw,denoise
    """
    baselines = tuple(dict.fromkeys(b.strip() for b in baseline.split(","))) if baseline else ()
    for name in baselines:  # before any weights are loaded
        if name not in BASELINES:
            raise usage_error(f"--baseline {name}: choose from {', '.join(BASELINES)}")
        if one_stage is not None and name in TWO_STAGE_BASELINES:
            raise usage_error(f"--baseline {name} needs the two-stage networks (--enhance); a one-stage net has no restoration to render")
    if one_stage is None and enhance is None:
        raise usage_error("give --enhance (and optionally --restore), or --one-stage")
    try:
        chroma = parse_chroma(chroma_nr)
    except ValueError as e:
        raise usage_error(str(e)) from None
    options = {}
    if exposure is not None:
        if dataset != "synthetic":
            raise usage_error(f"--exposure: only for --dataset synthetic (the {dataset} raws are as shot)")
        try:
            exposures = tuple(dict.fromkeys(float(e) for e in exposure.split(",")))
        except ValueError:
            raise usage_error(f"--exposure {exposure}: not numbers separated by commas") from None
        if not all(0 < e <= 1 for e in exposures):
            raise usage_error(f"--exposure {exposure}: each must lie in (0, 1]")
        options["exposures"] = exposures
    if (iso is not None or noise_levels is not None) and dataset != "synthetic":
        raise usage_error(f"--iso and --noise-levels: only for --dataset synthetic (the {dataset} raws have their own noise)")
    if iso is not None:
        try:
            options["isos"] = tuple(float(v) for v in iso.split(","))
        except ValueError:
            raise usage_error(f"--iso {iso}: not numbers separated by commas") from None
        if not all(100 <= v <= 409600 for v in options["isos"]):
            raise usage_error(f"--iso {iso}: each from 100 to 409600")
    if noise_levels is not None:
        try:
            pairs = tuple(tuple(float(x) for x in pair.split(":")) for pair in noise_levels.split(","))
        except ValueError:
            pairs = ((),)
        if not all(len(p) == 2 and p[0] >= 0 and p[1] >= 0 and p[0] + p[1] ** 2 > 0 and p[0] < 1 and p[1] < 1 for p in pairs):
            raise usage_error(f"--noise-levels {noise_levels}: use SHOT:READ pairs, e.g. 2e-4:1.2e-3, each in [0, 1), not both zero")
        options["noises"] = pairs
    try:
        if one_stage is not None:
            nets = [load_weights(one_stage, "onestage")[0]]
        else:
            nets = [load_weights(restore or companion_restore(enhance), "restore")[0], load_weights(enhance, "enhance")[0]]  # type: ignore[arg-type]
        data = make_eval_set(dataset, data_root, **options)
    except (WeightsError, DatasetError) as e:
        raise usage_error(str(e)) from None
    engine = make_engine(*nets, device=device, precision=precision, ensemble=ensemble)
    results = evaluate(engine, data, one_stage=one_stage is not None, baselines=baselines, limit=limit, chroma=chroma)
    mean = means(results)
    if json_output:
        stdout.out(json.dumps({"images": [{"name": r.name, **r.scores} for r in results], "mean": mean}), highlight=False)
        raise typer.Exit(EXIT_OK)
    columns = [("restore", "psnr", "R-PSNR"), ("restore", "ssim", "R-SSIM"), ("restore", "scielab", "R-S-CIELAB"),
               ("restore_curve", "psnr", "RC-PSNR"), ("restore_curve", "ssim", "RC-SSIM"), ("final", "psnr", "PSNR"), ("final", "ssim", "SSIM"),
               ("final", "scielab", "S-CIELAB"), ("final", "de2000", "ΔE00"), ("final", "grid", "grid")]
    table = Table(title=f"camnet eval: {dataset}, {len(results)} images", title_justify="left")
    table.add_column("image")
    table.add_column("method")
    for _, _, label in columns:
        table.add_column(label, justify="right")

    def row(name: str, method: str, scores: dict, style: str = "") -> None:
        cells = [f"{scores[s][k]:.4f}" if s in scores and k in scores[s] and k == "ssim" else f"{scores[s][k]:.2f}" if s in scores else "—" for s, k, _ in columns]
        table.add_row(name, method, *cells, style=style)

    for r in results:
        for method, scores in r.scores.items():
            row(r.name, method, scores)
    for method, scores in mean.items():
        row("mean", method, scores, style="bold")
    stdout.print(table)
    raise typer.Exit(EXIT_OK)
