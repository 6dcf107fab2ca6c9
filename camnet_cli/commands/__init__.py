"""One module per command. Shared here: how commands talk to the terminal, and option values they parse.

Errors and warnings go to stderr, one line each (never wrapped, so scripts can grep
them); results go to stdout.
"""

from __future__ import annotations

import math

import typer
from rich.console import Console
from rich.markup import escape

from camnet_cli.color import MAX_CHROMA
from camnet_cli.engine import Engine, EngineError, keep_freed_memory, pick_device, pick_precision, use_cpus
from camnet_cli.noise import MAX_OMEGA, NoiseProfile, split_omega

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

ENSEMBLE_HELP = (
    "Restore each raw from N views of its mosaic (1-8: as is, transposed, turned, flipped) and average them: "
    "less noise and fewer artefacts, N times the restoration's time."
)

# Exit codes, as darktable-cli and friends: 0 all good, 1 some input failed, 2 usage error;
# and 3: an internal error (a bug of camnet's) happened, on some file or on the whole run.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

# Set by ``camnet --debug``: internal errors print their traceback too.
DEBUG = False

# Control characters (a newline in a file name) would split a line a script greps for.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), 127]} | {10: "\\n", 13: "\\r", 9: "\\t"}


def one_line(text: str) -> str:
    """``text`` with control characters written as escapes, so that it stays on one line, and the
    bytes of a file name that is not UTF-8 as ``\\xNN`` (they cannot be printed as they are)."""
    return text.translate(_CONTROL).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def error(message: str) -> None:
    """One line on stderr: ``error: <message>``."""
    stderr.print(f"[bold red]error:[/] {escape(one_line(message))}")


def warning(message: str) -> None:
    """One line on stderr: ``warning: <message>``."""
    stderr.print(f"[yellow]warning:[/] {escape(one_line(message))}")


def internal_error(message: str, details: str) -> None:
    """An internal error's line, and with ``--debug`` its traceback."""
    error(message + ("" if DEBUG else " (a bug: run with --debug for the traceback, and report it)"))
    if DEBUG and details:
        stderr.out(details.rstrip(), highlight=False)


def usage_error(message: str) -> typer.Exit:
    """Report a usage error and return the exit to raise."""
    error(message)
    return typer.Exit(EXIT_USAGE)


def make_engine(*nets, device: str, precision: str, **options) -> Engine:
    """An ``Engine`` for a command's options, or a usage error that names the option at fault.
    torch's CPU threads are sized to the CPUs this process may use (``engine.use_cpus``), and
    malloc keeps the memory a frame's tiles and bands free for the next (``engine.keep_freed_memory``)."""
    use_cpus()
    keep_freed_memory()
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
    if len(gains) == 3 and all(math.isfinite(g) and g > 0 for g in gains):
        wb = (gains[0] / gains[1], 1.0, gains[2] / gains[1])
        if all(math.isfinite(g) and g > 0 for g in wb):  # neither over- nor underflowed
            return wb
    raise ValueError(f"--wb takes camera, auto or three positive gains R,G,B; got {text!r}")


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
    if not 0 <= sigma <= MAX_CHROMA:
        raise ValueError(f"--chroma-nr takes auto, off or a width in pixels from 0 to {MAX_CHROMA:g}; got {text!r}")
    return sigma


def parse_noise(text: str) -> NoiseProfile:
    """``--noise``: ``OMEGA`` or ``SHOT,READ`` (read as a standard deviation), omega = shot + read²
    above 0 and at most ``MAX_OMEGA`` (noise as large as the full scale)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"--noise takes OMEGA or SHOT,READ as numbers, got {text!r}") from None
    if len(numbers) not in (1, 2):
        raise ValueError(f"--noise takes OMEGA or SHOT,READ, got {text!r}")
    if not all(math.isfinite(x) and x >= 0 for x in numbers):
        raise ValueError(f"--noise takes non-negative finite numbers, got {text!r}")
    omega = numbers[0] if len(numbers) == 1 else numbers[0] + numbers[1] * numbers[1]
    if not 0 < omega <= MAX_OMEGA:
        raise ValueError(f"--noise level (omega) must be above 0 and at most {MAX_OMEGA:g}, got {text!r}")
    return split_omega(omega) if len(numbers) == 1 else NoiseProfile(numbers[0], numbers[1], "user")


def parse_shard(text: str) -> tuple[int, int]:
    """``--shard``: ``I/N`` with 1 <= I <= N."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        i = n = 0
    if not 1 <= i <= n:
        raise ValueError(f"--shard takes I/N with 1 <= I <= N, e.g. 2/8; got {text!r}")
    return i, n
