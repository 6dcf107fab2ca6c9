"""The ``camnet`` command line: a Typer app with one module per command in ``commands/``."""

from __future__ import annotations

from typing import Annotated

import typer

from camnet_cli import __version__
from camnet_cli.commands import bench, develop, inspect

app = typer.Typer(
    name="camnet",
    help="A raw photo developer whose pipeline is a learned network (CameraNet).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(develop.develop)
app.command()(bench.bench)
app.command()(inspect.inspect)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"camnet {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """A raw photo developer whose pipeline is a learned network (CameraNet)."""
