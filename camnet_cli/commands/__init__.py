"""One module per command. Shared here: how commands talk to the terminal.

Errors and warnings go to stderr, one line each (never wrapped, so scripts can grep
them); results go to stdout.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

ENSEMBLE_HELP = (
    "Restore each raw from N views of its mosaic (1-8: as is, transposed, turned, flipped) and average them: "
    "less noise and fewer artefacts, N times the restoration's time."
)

# Exit codes, as darktable-cli and friends: 0 all good, 1 some input failed, 2 usage error.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def error(message: str) -> None:
    """One line on stderr: ``error: <message>``."""
    stderr.print(f"[bold red]error:[/] {escape(message)}")


def warning(message: str) -> None:
    """One line on stderr: ``warning: <message>``."""
    stderr.print(f"[yellow]warning:[/] {escape(message)}")


def usage_error(message: str) -> typer.Exit:
    """Report a usage error and return the exit to raise."""
    error(message)
    return typer.Exit(EXIT_USAGE)
