"""Writing a file so that no reader ever sees half of it: a temporary name beside it, then a rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def temp_pattern(path: Path) -> str:
    """The glob of the temporary files ``atomic_write`` leaves beside ``path`` if killed (for clean-up)."""
    return f".{path.name}.*.tmp"


def atomic_write(path: Path | str, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)``, then rename the temporary over ``path``.

    The temporary sits in ``path``'s folder (a rename within one file system is atomic) and gets
    the permissions of a plainly created file; it is removed if ``write`` fails or is interrupted.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
