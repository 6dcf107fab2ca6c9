"""``camnet styles``: the installed styles, what they were trained on, and where they are."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from camnet_cli.commands import EXIT_OK, stdout, warning
from camnet_cli.commands.develop import DEFAULT_STYLE
from camnet_cli.weights import WeightsError, installed, read_info, search_dirs


def styles(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per style, one per line, for scripts.")] = False,
) -> None:
    """List the installed styles (Enhance-Nets) that `camnet develop --style NAME` takes.

    Each style shows what it was trained on, the restoration weights it was trained with, the
    noise levels it saw and its file. Styles are looked for in your folder ($CAMNET_WEIGHTS) and
    among the weights that ship with camnet.

    Example:

        camnet styles
    """
    rows = []
    for name, path in installed("enhance").items():
        try:
            info = read_info(path)
        except WeightsError as e:
            warning(f"{e} (not listed)")
            continue
        rows.append(
            {
                "style": name,
                "default": name == DEFAULT_STYLE,
                "training_data": info.training_data,
                "restore": info.extra.get("restore", ""),
                "noise_range": list(info.noise_range) if info.noise_range else None,
                "camnet_version": info.camnet_version,
                "path": str(path),
            }
        )
    if json_output:
        for row in rows:
            stdout.out(json.dumps(row), highlight=False)
        raise typer.Exit(EXIT_OK)
    if not rows:
        warning(f"no styles installed (looked in {', '.join(str(d) for d in search_dirs())})")
        raise typer.Exit(EXIT_OK)
    table = Table(box=None, pad_edge=False)
    for column in ("style", "trained on", "restoration", "file"):
        table.add_column(column, overflow="fold")
    for row in rows:
        name = f"{row['style']} (default)" if row["default"] else row["style"]
        table.add_row(name, row["training_data"] or "—", row["restore"] or "—", row["path"])
    stdout.print(table)
    raise typer.Exit(EXIT_OK)
