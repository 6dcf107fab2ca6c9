"""One module per command. Shared here: how commands talk to the terminal, and option values they parse.

Errors and warnings go to stderr, one line each (never wrapped, so scripts can grep
them); results go to stdout.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from camnet_cli.engine import Engine, EngineError, pick_device, pick_precision
from camnet_cli.noise import NoiseProfile, split_omega

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


def make_engine(*nets, device: str, precision: str, **options) -> Engine:
    """An ``Engine`` for a command's options, or a usage error that names the option at fault."""
    try:
        chosen = pick_device(device)
    except EngineError as e:
        raise usage_error(f"--device: {e}") from None
    try:
        pick_precision(precision, chosen)
    except EngineError as e:
        raise usage_error(f"--precision: {e}") from None
    try:
        return Engine(*nets, device=device, precision=precision, **options)
    except EngineError as e:
        raise usage_error(str(e)) from None


# --- option values ---------------------------------------------------------------------------
# Each parser raises ValueError with a message fit for the user, naming the option.


def parse_wb(text: str) -> str | tuple[float, float, float]:
    """``--wb``: "camera", "auto", or "R,G,B" gains (normalised to G = 1)."""
    if text in ("camera", "auto"):
        return text
    try:
        gains = [float(v) for v in text.split(",")]
    except ValueError:
        gains = []
    if len(gains) != 3 or min(gains) <= 0:
        raise ValueError(f"--wb takes camera, auto or three positive gains R,G,B; got {text!r}")
    return (gains[0] / gains[1], 1.0, gains[2] / gains[1])


def parse_chroma(text: str) -> float | None:
    """``--chroma-nr``: "auto" (None: the width follows each file's noise level), "off" (0) or a width in pixels."""
    if text == "auto":
        return None
    if text == "off":
        return 0.0
    try:
        sigma = float(text)
    except ValueError:
        sigma = -1.0
    if not 0 <= sigma <= 64:
        raise ValueError(f"--chroma-nr takes auto, off or a width in pixels from 0 to 64; got {text!r}")
    return sigma


def parse_noise(text: str) -> NoiseProfile:
    """``--noise``: ``OMEGA`` or ``SHOT,READ`` (read as a standard deviation)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"--noise takes OMEGA or SHOT,READ as numbers, got {text!r}") from None
    if len(numbers) == 1:
        if not numbers[0] > 0:
            raise ValueError(f"--noise OMEGA must be positive, got {text!r}")
        return split_omega(numbers[0])
    if len(numbers) == 2:
        shot, read = numbers
        if shot < 0 or read < 0 or shot + read**2 <= 0:
            raise ValueError(f"--noise SHOT,READ must be non-negative and not both zero, got {text!r}")
        return NoiseProfile(shot, read, "user")
    raise ValueError(f"--noise takes OMEGA or SHOT,READ, got {text!r}")
