"""The ``camnet`` command line: a Typer app with one module per command in ``commands/``."""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer

from camnet_cli import __version__, commands
from camnet_cli.commands import bench, develop, evaluate, example, inspect, styles, train

app = typer.Typer(
    name="camnet",
    help="A raw photo developer whose pipeline is a learned network (CameraNet).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(develop.develop)
app.command()(styles.styles)
app.command()(example.example)
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
    debug: Annotated[bool, typer.Option("--debug", help="Print the traceback of internal errors (may also follow the command).")] = False,
) -> None:
    """A raw photo developer whose pipeline is a learned network (CameraNet)."""
    commands.DEBUG = debug


def with_debug_first(argv: list[str]) -> list[str]:
    """``--debug`` belongs to ``camnet`` itself; users also put it after the command."""
    return ["--debug", *[a for a in argv if a != "--debug"]] if "--debug" in argv else argv


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
    """The ``camnet`` console script: no traceback escapes it, unless asked for with ``--debug``."""
    argv = with_debug_first(with_optional_values(sys.argv[1:]))
    try:
        app(args=argv, prog_name="camnet")
    except Exception as e:  # a bug of ours that no command caught
        commands.internal_error(f"internal error ({type(e).__name__}: {e})", traceback.format_exc())
        sys.exit(commands.EXIT_INTERNAL)
