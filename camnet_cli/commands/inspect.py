"""``camnet inspect``: what camnet reads from raw files, before any development."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from camnet_cli.commands import EXIT_FAILED, EXIT_INTERNAL, EXIT_OK, error, internal_error, parse_noise, stdout, usage_error, warning
from camnet_cli.decoding import InternalError, decode
from camnet_cli.inputs import expand_inputs
from camnet_cli.raw import MAX_ISO, Frame, RawError

# Human names of EXIF orientations.
_ORIENTATION = {
    1: "normal",
    2: "mirrored",
    3: "rotated 180°",
    4: "mirrored vertically",
    5: "mirrored, rotated 90° CW",
    6: "rotated 90° CW",
    7: "mirrored, rotated 90° CCW",
    8: "rotated 90° CCW",
}


def inspect(
    files: Annotated[
        list[str],
        typer.Argument(help="Raw files, folders or glob patterns (quoted patterns are expanded too).", show_default=False),
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per file, one per line, for scripts.")
    ] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Look into subfolders of folders.")] = False,
    iso: Annotated[
        float | None,
        typer.Option(help="Look the noise level up at this ISO instead of the file's.", rich_help_panel="Noise", min=1, max=MAX_ISO),
    ] = None,
    noise_level: Annotated[
        str | None,
        typer.Option(
            "--noise",
            help="Use this noise level instead of the file's: OMEGA (variance at full scale), "
            "or SHOT,READ (read as a standard deviation), in normalised raw units.",
            rich_help_panel="Noise",
        ),
    ] = None,
    decode_timeout: Annotated[float, typer.Option(help="Seconds before a stuck raw decoder is killed.", min=1)] = 300,
) -> None:
    """Show what camnet reads from raw files: camera, exposure, Bayer pattern, levels, white balance, noise.

    Files camnet cannot develop get one line each on stderr saying why; the others are
    still shown. Each file is read in a child process, so that a file that crashes or hangs
    the raw decoder costs only itself. Exit code 1 when any file failed, 3 on an internal error.

    Examples:

        camnet inspect IMG_0001.ARW

        camnet inspect photos/ -r --json
    """
    override = None
    if noise_level is not None:
        try:
            override = parse_noise(noise_level)
        except ValueError as e:
            raise usage_error(str(e)) from None
    paths, notes = expand_inputs(files, recursive=recursive)
    for note in notes:
        warning(note)
    if not paths:
        raise usage_error("no input files")

    failed = internal = 0
    for path in paths:
        try:
            frame = decode(path, iso=iso, noise=override, timeout=decode_timeout)
        except RawError as e:
            error(str(e))
            failed += 1
            continue
        except InternalError as e:
            internal_error(str(e), e.details)
            internal += 1
            continue
        for note in frame.warnings:
            warning(f"{path}: {note}")
        if json_output:
            stdout.out(json.dumps(summary(frame)), highlight=False)
        else:
            stdout.print(_table(frame))
    raise typer.Exit(EXIT_INTERNAL if internal else EXIT_FAILED if failed else EXIT_OK)


def summary(frame: Frame) -> dict[str, Any]:
    """The ``--json`` record of a frame."""
    meta = frame.metadata
    width, height = frame.size
    return {
        "path": str(frame.path),
        "make": meta.make,
        "model": meta.model,
        "iso": _number(meta.iso),
        "exposure_time": meta.exposure_time,
        "f_number": meta.f_number,
        "focal_length": meta.focal_length,
        "lens": meta.lens,
        "date": meta.date,
        "cfa_pattern": frame.cfa_pattern,
        "width": width,
        "height": height,
        "black_level": [_number(b) for b in frame.black_level],
        "white_level": _number(frame.white_level),
        "wb": [round(g, 6) for g in frame.wb],
        "orientation": frame.orientation,
        "noise": {
            "shot": frame.noise.shot,
            "read": frame.noise.read,
            "omega": frame.noise.omega,
            "source": frame.noise.source,
        },
    }


def _number(x: float | None) -> float | int | None:
    """3200.0 -> 3200, so JSON reads like the EXIF."""
    return int(x) if x is not None and float(x).is_integer() else x


def _table(frame: Frame) -> Table:
    meta = frame.metadata
    width, height = frame.size
    table = Table(title=str(frame.path), show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    exposure = []
    if meta.exposure_time:
        t = meta.exposure_time
        exposure.append(f"1/{round(1 / t)} s" if t < 0.5 else f"{t:g} s")
    if meta.f_number:
        exposure.append(f"f/{meta.f_number:g}")
    if meta.iso:
        exposure.append(f"ISO {meta.iso:g}")
    if meta.focal_length:
        exposure.append(f"{meta.focal_length:g} mm")
    rows = [
        ("camera", meta.camera),
        ("lens", meta.lens or "—"),
        ("exposure", ", ".join(exposure) or "—"),
        ("date", meta.date or "—"),
        ("size", f"{width} × {height} ({_ORIENTATION.get(frame.orientation, '?')})"),
        ("CFA", f"{frame.cfa_pattern}" + ("" if frame.cfa_pattern == "RGGB" else " (cropped to RGGB)")),
        ("black / white", f"{' '.join(f'{b:g}' for b in frame.black_level)} / {frame.white_level:g}"),
        ("white balance", f"R {frame.wb[0]:.3f}  G 1  B {frame.wb[2]:.3f} ({frame.wb_source})"),
        ("colour matrix", frame.matrix_source),
        (
            "noise",
            f"ω {frame.noise.omega:.3g} = shot {frame.noise.shot:.3g} + read {frame.noise.read:.3g}² ({frame.noise.source})",
        ),
        ("bad pixels", f"{frame.bad_pixels} repaired"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table
