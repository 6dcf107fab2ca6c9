"""The ``camnet`` console script and ``python -m camnet_cli``.

Loading the command line takes a second, most of it torch. ``develop`` spends that second
decoding its first raw and warming up ExifTool: both start before anything heavy is imported.
"""

from __future__ import annotations

import sys
from pathlib import Path

from camnet_cli import decoding, metadata
from camnet_cli.inputs import expand_inputs
from camnet_cli.raw import RAW_EXTENSIONS

# ``develop``'s options that take a value (the next argument is not an input); a test checks the
# list against the command itself.
DEVELOP_VALUE_OPTIONS = frozenset(
    "-o --output -f --format --quality --bits --name --color-space --max-size --linear-bits -s --style --restore "
    "--wb --iso --noise --chroma-nr --shard -j --jobs --decode-timeout --device --precision --tile --ensemble".split()
)


def first_raw(argv: list[str]) -> Path | None:
    """The raw a ``camnet develop`` command line starts with, if one can be told without loading the
    command line: the first raw file its first input names (a file, a folder's first raw, a pattern's
    first match; ``inputs.expand_inputs``). None for other commands, where ``--iso`` or ``--noise``
    change how the raw decodes, with ``--shard`` (the first raw may be another shard's), and for a
    folder with ``-r`` (its tree is walked once, by the command)."""
    args = [a for a in argv if a != "--debug"]
    if not args or args[0] != "develop":
        return None
    inputs, after_value = [], False
    for arg in args[1:]:
        if after_value:
            after_value = False
        elif arg in ("--iso", "--noise", "--shard") or arg.startswith(("--iso=", "--noise=", "--shard=")):
            return None  # the raw would decode otherwise, or may be another shard's
        elif arg in DEVELOP_VALUE_OPTIONS:
            after_value = True
        elif not arg.startswith("-"):
            inputs.append(arg)
    if not inputs or (("-r" in args or "--recursive" in args) and not Path(inputs[0]).is_file()):
        return None
    files, _ = expand_inputs(inputs[:1])
    first = files[0] if files else None
    return first if first is not None and first.suffix.lower() in RAW_EXTENSIONS and first.is_file() else None


def main() -> None:
    """Start decoding ``develop``'s first raw, then load and run the command line."""
    first = first_raw(sys.argv[1:])
    if first is not None:
        early = decoding.start_early(first)
        metadata.warm_up(first, after=lambda: early.wait(30))
    # Imported here, not above: torch loads while the first raw decodes.
    from camnet_cli import cli

    cli.main()


if __name__ == "__main__":  # decoding children must not run the app again
    main()
