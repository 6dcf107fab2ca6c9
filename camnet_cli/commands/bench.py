"""``camnet bench``: how fast, how much memory."""

from __future__ import annotations

import json
import re
from typing import Annotated

import torch
import typer
from rich.table import Table

from camnet_cli.batch import Settings
from camnet_cli.benchmark import bench_end_to_end, bench_model
from camnet_cli.commands import EXIT_OK, make_engine, stderr, stdout, usage_error, warning
from camnet_cli.commands.develop import DEFAULT_STYLE
from camnet_cli.engine import Engine
from camnet_cli.inputs import expand_inputs
from camnet_cli.model import MODEL_SIZES, EnhanceNet, RestoreNet, enhance_config, restore_config
from camnet_cli.weights import WeightsError, companion_restore, find_weights, load_weights

ENGINE = "Engine"


def bench(
    files: Annotated[list[str] | None, typer.Argument(help="Raw files for --e2e.", show_default=False)] = None,
    resolution: Annotated[str, typer.Option(help="WIDTHxHEIGHT of the synthetic raw.")] = "4032x3024",
    model: Annotated[str, typer.Option(help="Network size: lite (what the shipped style uses) or paper (random weights: speed only).")] = "lite",
    iters: Annotated[int, typer.Option(help="Timed runs.", min=1)] = 3,
    warmup: Annotated[int, typer.Option(help="Untimed runs first.", min=0)] = 1,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    e2e: Annotated[bool, typer.Option("--e2e", help="Time FILES end to end: decode, restoration, enhancement, encode.")] = False,
    baseline: Annotated[str | None, typer.Option(help="With --e2e: also time 'libraw' (LibRaw's AHD pipeline) on the same files.")] = None,
    style: Annotated[str, typer.Option(help="With --e2e: the style to develop with; random weights if not installed.")] = DEFAULT_STYLE,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.", rich_help_panel=ENGINE)] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16.", rich_help_panel=ENGINE)] = "auto",
    tile: Annotated[int | None, typer.Option(help="Tile side in packed pixels; 0 never tiles; default from free memory.", min=0, rich_help_panel=ENGINE)] = None,
    compile_: Annotated[bool, typer.Option("--compile", help="Compile the networks (torch.compile).", rich_help_panel=ENGINE)] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="With --e2e: decoding and encoding workers.", min=1)] = 2,
) -> None:
    """Measure speed and memory: a synthetic raw through both networks, or real files end to end.

    Examples:

        camnet bench --resolution 4032x3024

        camnet bench --e2e photos/*.ARW --baseline libraw
    """
    if model not in MODEL_SIZES:
        raise usage_error(f"--model {model}: use one of {', '.join(MODEL_SIZES)}")
    match = re.fullmatch(r"(\d+)x(\d+)", resolution)
    if not match or min(int(match[1]), int(match[2])) < 32:
        raise usage_error(f"--resolution {resolution}: use WIDTHxHEIGHT, e.g. 4032x3024")
    if baseline not in (None, "libraw"):
        raise usage_error(f"--baseline {baseline}: the only baseline is libraw")
    if e2e and not files:
        raise usage_error("--e2e needs raw files")
    width, height = int(match[1]) // 2 * 2, int(match[2]) // 2 * 2

    restore, enhance, weights = _nets(style if e2e else None, model)
    engine = make_engine(restore, enhance, device=device, precision=precision, tile=tile, compile=compile_)

    if not e2e:
        record = bench_model(engine, width, height, iters=iters, warmup=warmup)
        if json_output:
            stdout.out(json.dumps(record), highlight=False)
        else:
            table = Table(title=f"camnet bench: {model} model, {record['resolution']}", show_header=False, box=None, title_justify="left")
            rows = [
                ("parameters", f"{record['params']:,}"),
                ("GFLOPs", f"{record['gflops']:.0f}"),
                ("latency", f"{record['ms_median']:.0f} ms median ({record['ms_min']:.0f} min, {record['ms_max']:.0f} max, {iters} runs)"),
                ("throughput", f"{record['mpix_per_s']:.2f} megapixels/s"),
                ("peak memory", f"{record['peak_mem_mb']:.0f} MB ({'device' if engine.device.type != 'cpu' else 'process RSS'})"),
                ("tiles", _tiles(engine)),
                ("device", f"{record['device']}, {record['precision']}"),
                ("torch", torch.__version__),
            ]
            for k, v in rows:
                table.add_row(k, v)
            stdout.print(table)
        raise typer.Exit(EXIT_OK)

    paths, notes = expand_inputs(files or [])
    for note in notes:
        warning(note)
    if not paths:
        raise usage_error("no input files")
    result = bench_end_to_end(paths, engine, Settings(jobs=jobs), baseline=baseline == "libraw")
    stages = ("decode", "restore", "enhance", "encode")
    if json_output:
        record = {
            "files": [{"input": str(o.job.path), "status": o.status, **{s: round(o.stages.get(s, 0.0), 3) for s in stages}} for o in result.files],
            "files_per_s": round(result.files_per_s, 3),
            "weights": weights,
            "device": engine.device.type,
            "precision": engine.precision,
        }
        if result.baseline_files_per_s is not None:
            record["libraw_files_per_s"] = round(result.baseline_files_per_s, 3)
        stdout.out(json.dumps(record), highlight=False)
        raise typer.Exit(EXIT_OK)
    table = Table(title=f"camnet bench --e2e ({weights}, {engine.device.type}, {engine.precision})", title_justify="left")
    table.add_column("file")
    for s in stages:
        table.add_column(f"{s} s", justify="right")
    for o in result.files:
        table.add_row(o.job.path.name, *(f"{o.stages[s]:.2f}" if s in o.stages else "—" for s in stages))
    stdout.print(table)
    stdout.print(f"{result.files_per_s:.3f} files/s ({len(paths)} files in {result.wall:.1f} s, {jobs} workers)")
    if result.baseline_files_per_s is not None:
        libraw = result.baseline_files_per_s
        stdout.print(f"LibRaw AHD baseline: {libraw:.3f} files/s; camnet takes {libraw / max(result.files_per_s, 1e-9):.1f}x as long per file")
    for o in result.files:
        if o.status == "failed":
            stderr.print(f"error: {o.error}", soft_wrap=True, highlight=False)
    raise typer.Exit(EXIT_OK)


def _nets(style: str | None, model: str) -> tuple[RestoreNet, EnhanceNet, str]:
    """The style's trained networks for --e2e when installed, else random ones of the model size."""
    if style is not None:
        try:
            style_path = find_weights(style, "enhance")
            restore_path = companion_restore(style_path)
            restore, _ = load_weights(restore_path, "restore")
            enhance, _ = load_weights(style_path, "enhance")
            return restore, enhance, f"style {style}"  # type: ignore[return-value]
        except WeightsError:
            warning(f"style {style!r} not installed: timing random {model} weights (speed only)")
    return RestoreNet(restore_config(model)), EnhanceNet(enhance_config(model)), f"random {model} weights"


def _tiles(engine: Engine) -> str:
    used = {k: v.tile for k, v in engine.last.items()}
    if not any(used.values()):
        return "none (whole frame)"
    return ", ".join(f"{k} {v} px" if v else f"{k} whole" for k, v in used.items())
