"""The ``camnet`` command line: a Typer app with one module per command in ``commands/``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from camnet_cli import __version__
from camnet_cli.commands import bench, develop, evaluate, inspect, train

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
app.command("train-restore")(train.train_restore)
app.command("train-enhance")(train.train_enhance)
app.command()(train.finetune)
app.command("eval")(evaluate.eval_)

# Options whose value may be left out on the command line, and what it then means
# (Typer has no optional-value options).
_OPTIONAL_VALUES = {"--resume": "last"}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"camnet {__version__}")
        raise typer.Exit()


@app.callback()
def callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """A raw photo developer whose pipeline is a learned network (CameraNet)."""


def with_optional_values(argv: list[str]) -> list[str]:
    """Give a bare ``--resume`` (last, or followed by another option) its implied value."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        out.append(arg)
        following = argv[i + 1] if i + 1 < len(argv) else None
        if arg in _OPTIONAL_VALUES and (following is None or following.startswith("-")):
            out.append(_OPTIONAL_VALUES[arg])
    return out


def main() -> None:
    """The ``camnet`` console script."""
    app(args=with_optional_values(sys.argv[1:]), prog_name="camnet")
