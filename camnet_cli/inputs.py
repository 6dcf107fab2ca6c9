"""Command-line inputs -> files: paths, glob patterns (also quoted ones) and folders."""

from __future__ import annotations

import glob
from pathlib import Path

from camnet_cli.raw import RAW_EXTENSIONS

_GLOB_CHARS = set("*?[")


def expand_inputs(args: list[str], *, recursive: bool = False) -> tuple[list[Path], list[str]]:
    """Expand what the user typed into the files to process, in order, without repeats.

    A path that exists is taken as is (a folder contributes the raw files in it, by
    extension, and in its subfolders with ``recursive``). A glob pattern is expanded
    here, so quoting it in a script works too. A plain path that does not exist is kept,
    so that processing it reports "no such file" like any other bad input.

    Returns:
        ``(files, notes)``: the files, and one line for each pattern or folder that
        contributed nothing.
    """
    files: list[Path] = []
    notes: list[str] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found = _raw_files_in(path, recursive)
            if not found:
                notes.append(f"{arg}: no raw files in this folder" + ("" if recursive else " (use -r for subfolders)"))
            files += found
        elif not path.exists() and _GLOB_CHARS & set(arg):
            matches = sorted(glob.glob(arg, recursive=recursive))
            found = [p for m in matches for p in (_raw_files_in(Path(m), recursive) if Path(m).is_dir() else [Path(m)])]
            if not found:
                notes.append(f"{arg}: pattern matched nothing")
            files += found
        else:
            files.append(path)
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, notes


def _raw_files_in(folder: Path, recursive: bool) -> list[Path]:
    walk = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in walk if p.is_file() and p.suffix.lower() in RAW_EXTENSIONS)
