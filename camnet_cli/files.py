"""Files that several camnet runs may share: atomic writes, temporaries named by their process,
and claims that keep two runs from developing the same output.

- ``atomic_write`` writes under a temporary name beside the target, then renames it: no reader
  ever sees half a file. The temporary's name carries the host and process that own it, so that
  a later run clears only the temporaries of runs that are gone (``remove_stale``), never those
  of a run still writing.
- ``claim`` takes an exclusive lock on a hidden file beside an output before it is developed. The
  lock goes with its process, however that process ends, so a killed run never blocks a later one.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs there do not coordinate
    fcntl = None  # type: ignore[assignment]

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: setting it to read it is not thread-safe, and encoders run in threads
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64] or "host"
_OWNED = re.compile(r"\.camnet-(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[^.]+\.tmp$")


class WriteError(Exception):
    """Writing one of a group of files failed; ``path`` is the one at fault."""

    def __init__(self, path: Path, cause: BaseException) -> None:
        super().__init__(f"cannot write {path}: {cause}")
        self.path = path


def _owner() -> str:
    return f"camnet-{_HOST}-{os.getpid()}"


def temp_pattern(path: Path) -> str:
    """The glob of the temporaries ``atomic_write`` makes beside ``path``, whichever run made them."""
    return f".{path.name}.camnet-*.tmp"


def atomic_write(path: Path | str, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)``, then rename the temporary over ``path``.

    The temporary sits in ``path``'s folder (a rename within one file system is atomic) and gets
    the permissions of a plainly created file; it is removed if ``write`` fails or is interrupted.
    """
    try:
        atomic_write_all([(Path(path), write)])
    except WriteError as e:
        raise e.__cause__ from None  # one file: its own error, as open() would give it


def atomic_write_all(items: Sequence[tuple[Path, Callable[[str], None]]]) -> None:
    """Write several files as one unit: every one is written to its temporary first, then all are
    renamed into place. If any write or rename fails, none of them is left (the ones already
    renamed are removed again), and the ``WriteError`` names the file at fault.
    """
    temporaries: list[tuple[Path, str]] = []
    done: list[Path] = []
    try:
        for path, write in items:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_owner()}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            temporaries.append((path, tmp))
            try:
                write(tmp)
                os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600
            except Exception as e:
                raise WriteError(path, e) from e
        for path, tmp in temporaries:
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise WriteError(path, e) from e
            done.append(path)
    except BaseException:
        for _, tmp in temporaries:
            Path(tmp).unlink(missing_ok=True)
        if len(items) > 1:
            for path in done:
                path.unlink(missing_ok=True)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale(path: Path) -> None:
    """Remove the temporaries beside ``path`` that runs on this host left when they were killed.

    A temporary whose process is still alive is another run's work in progress and is kept;
    so is one made on another host (a shared folder), whose process cannot be checked from here.
    """
    if not path.parent.is_dir():
        return
    for tmp in path.parent.glob(temp_pattern(path)):
        owner = _OWNED.search(tmp.name)
        if owner and owner["host"] == _HOST and not _alive(int(owner["pid"])):
            tmp.unlink(missing_ok=True)


def lock_path(path: Path) -> Path:
    """The hidden file whose lock claims ``path``."""
    return path.with_name(f".{path.name}.camnet-lock")


class Claim:
    """An exclusive claim on an output, held until ``release``; its lock file names what is made there."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    def release(self) -> None:
        """Give the output up (after it is written, or failed); the lock file goes too."""
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            if os.fstat(self._fd).st_ino == os.stat(lock_path(self.path)).st_ino:
                os.unlink(lock_path(self.path))
        os.close(self._fd)
        self._fd = -1


def claim(path: Path, label: str) -> Claim | str:
    """Claim ``path`` for this process, writing ``label`` (what will be made there) into its lock file.

    Returns:
        the ``Claim``, or, when another live process holds it, the label that process wrote.
    """
    lock = lock_path(path)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            return Claim(path, fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            held = os.read(fd, 4096).decode("utf-8", "replace")
            os.close(fd)
            return held
        # The holder before us may have removed the file between our open and our lock: then the
        # lock is on a file no one else will find, and we start again.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, label.encode("utf-8"))
        return Claim(path, fd)
