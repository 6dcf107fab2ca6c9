"""``camnet example``: the raw file that ships with camnet, to try it on."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from camnet_cli.commands import EXIT_OK, stdout, usage_error
from camnet_cli.weights import shipped

EXAMPLE_RAW = shipped("example", "examples") / "sony_a7r3_iso3200_crop.dng"


def example(
    folder: Annotated[Path, typer.Argument(help="Where to put it; created if missing.")] = Path("."),
) -> None:
    """Copy the example raw that ships with camnet into FOLDER (default: here) and print its path.

    The example is a 960x640 crop of a Sony a7R III frame at ISO 3200, Bayer data untouched, as
    a DNG.

    Example:

        camnet example && camnet develop sony_a7r3_iso3200_crop.dng -o out/
    """
    target = folder / EXAMPLE_RAW.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if target.exists() and target.read_bytes() != EXAMPLE_RAW.read_bytes():
            raise usage_error(f"{target}: exists and is another file; pick another folder")
        if not target.exists():
            shutil.copyfile(EXAMPLE_RAW, target)
    except OSError as e:
        raise usage_error(f"{target}: cannot be written ({e.strerror or e})") from None
    stdout.out(str(target), highlight=False)
    raise typer.Exit(EXIT_OK)
