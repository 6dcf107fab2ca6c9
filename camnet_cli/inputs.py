"""Command-line inputs -> files: paths, glob patterns (also quoted ones) and folders."""

from __future__ import annotations

import glob
from pathlib import Path

from camnet_cli.raw import RAW_EXTENSIONS, not_a_regular_file

_GLOB_CHARS = set("*?[")


def expand_inputs(args: list[str], *, recursive: bool = False) -> tuple[list[Path], list[str]]:
    """Expand what the user typed into the files to process, in order, without repeats.

    A path that exists is taken as is (a folder contributes the raw files in it, by
    extension, and in its subfolders with ``recursive``). A glob pattern is expanded
    here, so quoting it in a script works too. A plain path that does not exist (or is a
    broken or looping link), and a pattern that matches nothing, are kept, so that processing
    them reports why like any other bad input.

    Returns:
        ``(files, notes)``: the files, and one line for each folder that contributed nothing,
        each folder entry with a raw extension that is no regular file,
        and each folder whose subfolders were not searched.
    """
    files: list[Path] = []
    notes: list[str] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found = _raw_files_in(path, recursive, notes)
            if not found:
                notes.append(f"{arg}: no raw files in this folder")
            files += found
        elif not path.exists() and _GLOB_CHARS & set(arg):
            matches = sorted(glob.glob(arg, recursive=recursive))
            found = [p for m in matches for p in (_raw_files_in(Path(m), recursive, notes) if Path(m).is_dir() else [Path(m)])]
            # A pattern that matches nothing is a missing input, as a missing file is (the shell
            # passes an unmatched pattern on as it is): processing it reports it.
            files += found or [path]
        else:
            files.append(path)
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = _identity(f)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, notes


def _identity(path: Path) -> Path:
    """The file a path names, for spotting repeats; the path itself where it cannot be resolved
    (a symbolic link loop: processing it says so)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python < 3.13 on a link loop
        return path.absolute()


def _raw_files_in(folder: Path, recursive: bool, notes: list[str]) -> list[Path]:
    """The regular files with a raw extension in ``folder``; a note for each other entry with one
    (a FIFO, a broken link, a folder named x.dng) and, without ``recursive``, one for the other
    subfolders."""
    try:
        entries = sorted(folder.rglob("*") if recursive else folder.iterdir())
    except OSError as e:
        notes.append(f"{folder}: cannot be read ({e.strerror or e})")
        return []
    found, subfolders = [], 0
    for p in entries:
        reason = not_a_regular_file(p)
        is_dir = reason == "is a directory"
        if is_dir and recursive:
            continue  # rglob lists what is in it
        if p.suffix.lower() in RAW_EXTENSIONS:
            if reason:
                notes.append(f"{p}: skipped, {reason}" + (" (use -r)" if is_dir else ""))
            else:
                found.append(p)
        elif is_dir:
            subfolders += 1
    if subfolders:
        notes.append(f"{folder}: {subfolders} subfolder{'s' if subfolders > 1 else ''} not searched (use -r)")
    return found


def subfolders(files: list[Path], args: list[str]) -> list[Path]:
    """For each file, the folder it lies in below the folder argument it was found in (``-r``
    keeping the input's tree under the output folder); ``.`` for files named on their own."""
    roots = [Path(a) for a in args if Path(a).is_dir()]
    out = []
    for f in files:
        rel = next((f.relative_to(r) for r in roots if f.is_relative_to(r)), None)
        out.append(rel.parent if rel is not None else Path("."))
    return out
