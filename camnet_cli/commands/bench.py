"""``camnet bench``: how fast, how much memory."""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.table import Table

from camnet_cli.batch import Settings
from camnet_cli.benchmark import BASELINES, bench_end_to_end, bench_model, compare_whole_process
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
    baseline: Annotated[
        str | None,
        typer.Option(help="With --e2e: compare camnet with these developers, comma-separated: darktable, rawtherapee, libraw (those installed; whole processes, alternating, --iters rounds)."),
    ] = None,
    load: Annotated[int, typer.Option(help="With --baseline: CPU-bound processes to run beside every tool, as when the cores are shared.", min=0)] = 0,
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

        camnet bench --e2e photos/*.ARW

        camnet bench --e2e photo.ARW --baseline darktable,rawtherapee,libraw --load 1
    """
    if model not in MODEL_SIZES:
        raise usage_error(f"--model {model}: use one of {', '.join(MODEL_SIZES)}")
    match = re.fullmatch(r"(\d+)x(\d+)", resolution)
    if not match or min(int(match[1]), int(match[2])) < 32:
        raise usage_error(f"--resolution {resolution}: use WIDTHxHEIGHT, e.g. 4032x3024")
    baselines = [b.strip() for b in baseline.split(",") if b.strip()] if baseline is not None else []
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown or (baseline is not None and not baselines):
        raise usage_error(f"--baseline {baseline}: use one or more of {', '.join(BASELINES)}, comma-separated")
    if baselines and not e2e:
        raise usage_error("--baseline needs --e2e and raw files")
    if e2e and not files:
        raise usage_error("--e2e needs raw files")
    width, height = int(match[1]) // 2 * 2, int(match[2]) // 2 * 2

    if e2e:
        paths, notes = expand_inputs(files or [])
        for note in notes:
            warning(note)
        if not paths:
            raise usage_error("no input files")
    if baselines:  # the networks run in the camnet processes timed, not in this one
        engine_options = _engine_options(device=device, precision=precision, tile=tile, compile_=compile_)
        _compare(paths, baselines, style, engine_options, rounds=iters, warmup=warmup, load=load, json_output=json_output)
        raise typer.Exit(EXIT_OK)
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

    result = bench_end_to_end(paths, engine, Settings(jobs=jobs))
    stages = ("decode", "restore", "enhance", "networks", "encode")
    # Of the batch's wall time (a file's encoding overlaps the next one's development), what is not
    # the networks' passes: in all, and the steps between decoding and encoding alone (restore and
    # enhance less the passes).
    done = [o for o in result.files if o.status == "ok"]
    outside = 1 - sum(o.stages["networks"] for o in done) / result.wall if done else None
    share = sum(o.stages["restore"] + o.stages.get("enhance", 0.0) - o.stages["networks"] for o in done) / result.wall if done else None
    if json_output:
        record = {
            "files": [{"input": str(o.job.path), "status": o.status, **{s: round(o.stages.get(s, 0.0), 3) for s in stages}} for o in result.files],
            "files_per_s": round(result.files_per_s, 3),
            "outside_networks_share": None if outside is None else round(outside, 3),
            "around_networks_share": None if share is None else round(share, 3),
            "weights": weights,
            "device": engine.device.type,
            "precision": engine.precision,
        }
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
    if share is not None:
        stdout.print(f"outside the networks' passes: {outside:.0%} of the wall time; the steps around them (restore and enhance less the passes): {share:.0%}")
    for o in result.files:
        if o.status == "failed":
            stderr.print(f"error: {o.error}", soft_wrap=True, highlight=False)
    raise typer.Exit(EXIT_OK)


def _engine_options(device: str, precision: str, tile: int | None, compile_: bool) -> list[str]:
    """The engine options given to bench, passed on to the ``camnet develop`` it times."""
    options = [] if device == "auto" else ["--device", device]
    options += [] if precision == "auto" else ["--precision", precision]
    options += [] if tile is None else ["--tile", str(tile)]
    return options + (["--compile"] if compile_ else [])


def _compare(paths: list[Path], baselines: list[str], style: str, options: list[str], rounds: int, warmup: int, load: int, json_output: bool) -> None:
    """``bench --e2e --baseline``: camnet and the classical developers as whole processes, alternating."""

    def camnet(raw: Path, out: Path) -> list[str]:
        return [sys.executable, "-m", "camnet_cli", "develop", str(raw), "-o", str(out), "--style", style, *options]

    result = compare_whole_process(paths, camnet, baselines, rounds=rounds, warmup=warmup, load=load)
    for name, why in result.skipped.items():
        warning(f"--baseline {name}: {why}; left out")
    tools = list(result.runs)
    if json_output:
        record = {
            "files": [str(p) for p in paths],
            "rounds": rounds,
            "load": load,
            "tools": {
                tool: {
                    "version": result.versions[tool],
                    "wall_s": [round(r.wall, 3) for r in result.ok(tool)],
                    "cpu_s": [round(r.cpu, 3) for r in result.ok(tool)],
                    "peak_rss_mb": round(max((r.peak_rss_mb for r in result.ok(tool)), default=0.0), 1),
                    "errors": result.errors(tool),
                    **({} if tool == "camnet" else {"camnet_wall_ratio": _round(result.ratio(tool)), "camnet_cpu_ratio": _round(result.ratio(tool, "cpu"))}),
                }
                for tool in tools
            },
            "skipped": result.skipped,
        }
        stdout.out(json.dumps(record), highlight=False)
        return
    beside = f", {load} CPU-bound process{'es' if load > 1 else ''} beside" if load else ""
    title = f"camnet bench --e2e: whole processes, alternating, {rounds} round{'s' if rounds > 1 else ''} of {len(paths)} file{'s' if len(paths) > 1 else ''}{beside}"
    table = Table(title=title, title_justify="left")
    for column in ("tool", "version", "wall s a file, median (min–max)", "CPU s a file", "peak RSS", "camnet takes (wall, CPU)"):
        table.add_column(column, justify="left" if column in ("tool", "version") else "right")
    for tool in tools:
        ok = result.ok(tool)
        if not ok:
            table.add_row(tool, result.versions[tool], "failed", "—", "—", "—")
            continue
        walls = [r.wall for r in ok]
        wall = f"{statistics.median(walls):.2f} ({min(walls):.2f}–{max(walls):.2f})"
        cpu = f"{statistics.median(r.cpu for r in ok):.2f}"
        rss = f"{max(r.peak_rss_mb for r in ok) / 1024:.2f} GiB"
        wall_ratio, cpu_ratio = result.ratio(tool), result.ratio(tool, "cpu")
        ratio = "—" if tool == "camnet" or wall_ratio is None or cpu_ratio is None else f"{wall_ratio:.1f}×, {cpu_ratio:.1f}×"
        table.add_row(tool, result.versions[tool], wall, cpu, rss, ratio)
    stdout.print(table)
    for tool in tools:
        for error in result.errors(tool):
            stderr.print(f"error: {tool}: {error}", soft_wrap=True, highlight=False)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


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
