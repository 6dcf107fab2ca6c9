"""``camnet develop``: raw files in, finished photos out."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from camnet_cli.batch import NAME_FIELDS, Job, Outcome, Settings, check_template, plan_jobs, run_batch, stop_on_interrupt
from camnet_cli.color import RGB_SPACES
from camnet_cli.commands import (
    ENSEMBLE_HELP,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_OK,
    error,
    internal_error,
    make_engine,
    one_line,
    parse_chroma,
    parse_noise,
    parse_shard,
    parse_wb,
    stderr,
    stdout,
    usage_error,
    warning,
)
from camnet_cli.engine import available_cpus
from camnet_cli.export import FORMATS
from camnet_cli.inputs import expand_inputs, subfolders
from camnet_cli.raw import MAX_ISO
from camnet_cli.weights import WeightsError, companion_restore, find_weights, load_weights

DEFAULT_STYLE = "natural"
EXIT_INTERRUPTED = 130

OUTPUT, DEVELOP, ENGINE, BATCH = "Output", "Development", "Engine", "Batch"
_ALIASES = {"jpg": "jpeg", "tif": "tiff"}
# -o with one of these extensions names the output file itself, as darktable-cli's does.
_BY_EXTENSION = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".tif": "tiff", ".tiff": "tiff", ".dng": "dng"}


def develop(
    files: Annotated[list[str], typer.Argument(help="Raw files, folders or glob patterns (quoted patterns are expanded too).", show_default=False)],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Folder for the developed files, created if missing; or, for one input, the file to write (its extension sets the format).",
            rich_help_panel=OUTPUT,
        ),
    ] = Path("."),
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="jpeg (jpg), png, tiff (tif), or dng: the restoration as a linear DNG for raw editors (no style); default jpeg, or -o's extension.", rich_help_panel=OUTPUT)] = None,
    quality: Annotated[int, typer.Option(help="JPEG quality.", min=1, max=100, rich_help_panel=OUTPUT)] = 92,
    bits: Annotated[int, typer.Option(help="Bits per channel for png and tiff: 8 or 16.", rich_help_panel=OUTPUT)] = 8,
    name: Annotated[
        str,
        typer.Option(
            "--name", help=f"Output name template from {{{'}, {'.join(NAME_FIELDS)}}}, e.g. '{{date}}_{{stem}}'; the extension follows the format.",
            rich_help_panel=OUTPUT,
        ),
    ] = "{stem}",
    space: Annotated[
        str,
        typer.Option(
            "--color-space", help="The photo's colour space: srgb, p3 (Display P3) or adobe (Adobe RGB 1998), with its ICC profile.",
            rich_help_panel=OUTPUT,
        ),
    ] = "srgb",
    max_size: Annotated[
        int | None,
        typer.Option(
            "--max-size", help="Longest side of the outputs at most, in pixels: resampled down (antialiased bicubic) once upright.",
            min=16, rich_help_panel=OUTPUT,
        ),
    ] = None,
    save_linear: Annotated[
        bool,
        typer.Option("--save-linear", help="Also write the restoration stage as <name>.linear.tif: 16-bit linear sRGB primaries (D65).", rich_help_panel=OUTPUT),
    ] = False,
    linear_bits: Annotated[
        int,
        typer.Option(
            "--linear-bits", help="The linear file's samples: 16 (integers, clipped to [0, 1]) or 32 (float, scene-referred, unclipped).",
            rich_help_panel=OUTPUT,
        ),
    ] = 16,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (they are skipped otherwise).", rich_help_panel=OUTPUT)] = False,
    style: Annotated[str, typer.Option("--style", "-s", help="Style name or .safetensors path (Enhance-Net).", rich_help_panel=DEVELOP)] = DEFAULT_STYLE,
    restore: Annotated[
        str | None, typer.Option(help="Restoration weights, name or path; default: the ones the style was trained with.", rich_help_panel=DEVELOP)
    ] = None,
    wb: Annotated[str, typer.Option("--wb", help="White balance: camera (as shot), auto (grey world) or R,G,B gains.", rich_help_panel=DEVELOP)] = "camera",
    iso: Annotated[float | None, typer.Option(help="Take the noise level of this ISO instead of the file's.", min=1, max=MAX_ISO, rich_help_panel=DEVELOP)] = None,
    noise_level: Annotated[
        str | None, typer.Option("--noise", help="Noise level: OMEGA, or SHOT,READ, in normalised raw units.", rich_help_panel=DEVELOP)
    ] = None,
    chroma_nr: Annotated[
        str,
        typer.Option(
            "--chroma-nr",
            help="Chroma noise reduction after the style: auto (stronger at higher noise), off, or a width in pixels.",
            rich_help_panel=DEVELOP,
        ),
    ] = "auto",
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Look into subfolders of folders, and keep their tree under the output folder.", rich_help_panel=BATCH)
    ] = False,
    shard: Annotated[
        str | None,
        typer.Option(
            help="I/N: develop only the I-th of N parts of the inputs (every N-th file, from the I-th), so that N processes or "
            "machines given the same inputs share them, nothing done twice or missed (SLURM arrays, GNU parallel).",
            rich_help_panel=BATCH,
        ),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Decoding and encoding workers (files in flight).", min=1, rich_help_panel=BATCH)] = max(
        1, min(4, available_cpus())
    ),
    decode_timeout: Annotated[float, typer.Option(help="Seconds before a stuck raw decoder is killed.", min=1, rich_help_panel=BATCH)] = 300,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, only errors.", rich_help_panel=BATCH)] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON line per file on stdout: input, output, seconds, status, error.", rich_help_panel=BATCH)
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.", rich_help_panel=ENGINE)] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16.", rich_help_panel=ENGINE)] = "auto",
    tile: Annotated[
        int | None, typer.Option(help="Tile side in packed pixels (half the image's); 0 never tiles; default from free memory.", min=0, rich_help_panel=ENGINE)
    ] = None,
    compile_: Annotated[bool, typer.Option("--compile", help="Compile the networks (torch.compile): slow start, faster batches.", rich_help_panel=ENGINE)] = False,
    ensemble: Annotated[int, typer.Option(help=ENSEMBLE_HELP, min=1, max=8, rich_help_panel=ENGINE)] = 1,
) -> None:
    """Develop raw files into finished photos with a CameraNet style.

    Each input becomes <name>.jpg (or .png, .tif) in the output folder, with the raw's
    EXIF, an sRGB ICC profile and upright pixels. Bad files get one line each and the
    batch goes on. Exit code 0 when every file was developed or skipped, 1 when any
    failed, 2 for usage errors, 3 when camnet hit an internal error (a bug) on any file,
    130 when interrupted.

    Examples:

        camnet develop IMG_0001.ARW

        camnet develop photos/ -r --format tiff --bits 16 -o developed/

        camnet develop "shoot/*.NEF" --style natural --save-linear --json -o out/

        camnet develop shoot/ --shard "$SLURM_ARRAY_TASK_ID/8" -o out/
    """
    into_file = output.suffix.lower() in _BY_EXTENSION and not output.is_dir()
    if fmt is None:
        fmt = _BY_EXTENSION[output.suffix.lower()] if into_file else "jpeg"
    fmt = _ALIASES.get(fmt.lower(), fmt.lower())
    if fmt not in FORMATS:
        raise usage_error(f"--format {fmt}: use one of jpeg (jpg), png, tiff (tif) or dng")
    if into_file and _BY_EXTENSION[output.suffix.lower()] != fmt:
        raise usage_error(f"-o {output}: a {_BY_EXTENSION[output.suffix.lower()]} name, but --format {fmt}")
    if linear_bits not in (16, 32):
        raise usage_error(f"--linear-bits {linear_bits}: use 16 or 32")
    if space not in RGB_SPACES:
        raise usage_error(f"--color-space {space}: use one of {', '.join(RGB_SPACES)}")
    if bits not in (8, 16) or (fmt == "jpeg" and bits != 8):
        raise usage_error(f"--bits {bits}: use 8, or 16 with png or tiff")
    try:
        wb_choice = parse_wb(wb)
        override = parse_noise(noise_level) if noise_level is not None else None
        chroma = parse_chroma(chroma_nr)
    except ValueError as e:
        raise usage_error(str(e)) from None

    try:
        part = parse_shard(shard) if shard is not None else None
        check_template(name)
    except ValueError as e:
        raise usage_error(str(e)) from None

    paths, notes = expand_inputs(files, recursive=recursive)
    for note in notes:
        warning(note)
    if not paths:
        raise usage_error("no input files")
    if part is not None:
        i, n = part
        paths = paths[i - 1 :: n]  # the expanded list is the same, in the same order, for every shard
        if not paths:
            if not json_output and not quiet:
                stderr.print(f"shard {i}/{n}: no files in this part", soft_wrap=True)
            raise typer.Exit(EXIT_OK)
    if into_file and len(paths) > 1:
        raise usage_error(f"-o {output}: names one file, but there are {len(paths)} inputs; give a folder")

    try:
        style_path = find_weights(style, "enhance")
        restore_path = find_weights(restore, "restore") if restore else companion_restore(style_path)
        restore_net, _ = load_weights(restore_path, "restore")
        enhance_net, _ = load_weights(style_path, "enhance")
    except WeightsError as e:
        raise usage_error(str(e)) from None
    engine = make_engine(restore_net, enhance_net, device=device, precision=precision, compile=compile_, tile=tile, ensemble=ensemble)
    folder = output.parent if into_file else output
    _check_writable(folder)  # last: a usage error leaves no folder behind

    if into_file:
        job_list = [Job(paths[0], output, output.with_suffix(".linear.tif") if save_linear else None)]
    else:
        folders = subfolders(paths, files) if recursive else None
        job_list = plan_jobs(paths, output, FORMATS[fmt], linear=save_linear, template=name, style=style_path.stem.removeprefix("enhance-"), folders=folders)
    settings = Settings(
        fmt=fmt, quality=quality, bits=bits, wb=wb_choice, iso=iso, noise=override, chroma=chroma, overwrite=overwrite, jobs=jobs,
        decode_timeout=decode_timeout, style=style_path.name, restore=restore_path.name, max_size=max_size, space=space, linear_bits=linear_bits,
    )
    counts = {"ok": 0, "skipped": 0, "failed": 0}
    internal = 0
    started = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]developing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[current]}"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=stderr,
        disable=quiet or json_output,
        transient=True,
    )
    task = progress.add_task("develop", total=len(job_list), current="", rate="")

    def on_start(job: Job) -> None:
        progress.update(task, current=job.path.name)

    def report(outcome: Outcome) -> None:
        nonlocal internal
        counts[outcome.status] += 1
        internal += outcome.internal
        done = counts["ok"] + counts["failed"]
        elapsed = time.perf_counter() - started
        progress.update(task, advance=1, rate=f"{done / elapsed:.2f} img/s" if done and elapsed > 0 else "")
        if outcome.internal:
            internal_error(outcome.error, outcome.details)
        elif outcome.status == "failed":
            error(outcome.error)
        elif outcome.status == "skipped" and not quiet and not json_output:
            progress.console.print(f"skipped: {one_line(outcome.error)}", highlight=False, soft_wrap=True, markup=False)
        if json_output:
            stdout.out(
                json.dumps(
                    {
                        "input": str(outcome.job.path),
                        "output": str(outcome.job.output) if outcome.status != "failed" else None,
                        "seconds": round(outcome.seconds, 3),
                        "status": outcome.status,
                        "error": outcome.error if outcome.status == "failed" else None,
                    }
                ),
                highlight=False,
            )

    with stop_on_interrupt("stopping after the files in progress (Ctrl-C again to abort)") as stop, progress:
        outcomes = run_batch(job_list, engine, settings, report, stop=stop, on_start=on_start)
    elapsed = time.perf_counter() - started
    if len(outcomes) < len(job_list):
        stderr.print(f"interrupted: {counts['ok']} of {len(job_list)} files developed", soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if not quiet and not json_output:
        rate = f", {counts['ok'] / elapsed:.2f} images/s" if counts["ok"] else ""
        stderr.print(
            f"developed {counts['ok']}, skipped {counts['skipped']}, failed {counts['failed']} in {elapsed:.1f} s{rate}"
            f" ({engine.device.type}, {engine.precision})",
            soft_wrap=True,
            highlight=False,
        )
    raise typer.Exit(EXIT_INTERNAL if internal else EXIT_FAILED if counts["failed"] else EXIT_OK)


def _check_writable(folder: Path) -> None:
    """Create the output folder and prove we can write there, or stop with a usage error."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".camnet-write-test-"):
            pass
    except OSError as e:
        raise usage_error(f"{folder}: output folder is not writable ({e.strerror or e})") from None
