"""The raw's whole metadata in the outputs, with ExifTool where it is installed.

camnet writes the EXIF it reads itself (export.exif_bytes: camera, exposure, lens, date). Where
ExifTool (Phil Harvey's, https://exiftool.org; GPL or Artistic licence, run as a separate program,
never linked) is on PATH, an output also gets what the raw holds beyond that, as darktable-cli
gives it: exposure program and compensation, metering, flash, lens info, the 35 mm focal length,
time offsets, GPS, XMP and IPTC, and the maker notes. Tags that describe the raw's own pixels
(sizes, orientation, colour profile, previews, DNG and CFA tags) are not copied: the output has its
own. ``CAMNET_EXIFTOOL`` names another exiftool, or ``off``.

One ExifTool process serves a whole run (``-stay_open``): a start costs it about half a second.
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

# What is copied from the raw: the EXIF sub-IFDs, GPS, XMP, IPTC, the maker notes, and of IFD0
# only the tags that describe the shot (IFD0 of a raw also holds its pixels' structure and, in a
# DNG, the colour tags of the mosaic, which must not land in a TIFF).
_COPY = (
    "-ExifIFD:all", "-GPS:all", "-InteropIFD:all", "-XMP:all", "-IPTC:all", "-MakerNotes",
    "-IFD0:Make", "-IFD0:Model", "-IFD0:Artist", "-IFD0:Copyright", "-IFD0:ImageDescription",
    "-IFD0:Rating", "-IFD0:RatingPercent",
)
# Of those, what describes the raw's pixels rather than the shot.
_SKIP = ("--ExifImageWidth", "--ExifImageHeight", "--ColorSpace", "--ComponentsConfiguration", "--CompressedBitsPerPixel", "--XResolution", "--YResolution", "--ResolutionUnit")


def exiftool() -> str | None:
    """The exiftool to run, or None (not installed, or ``CAMNET_EXIFTOOL=off``)."""
    chosen = os.environ.get("CAMNET_EXIFTOOL", "exiftool")
    return None if chosen == "off" else shutil.which(chosen)


class ExifTool:
    """An ExifTool process kept open for many files, one command at a time (threads share it)."""

    def __init__(self, program: str) -> None:
        self._lock = threading.Lock()
        # -stay_open reads on past the end of its input: an ExifTool whose camnet was killed (kill -9,
        # the OOM killer) would poll its closed pipe for ever. Where util-linux's setpriv is, the
        # kernel kills it with the thread that started it (PR_SET_PDEATHSIG; ``start``).
        guard = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        self._process = subprocess.Popen(
            [*guard, program, "-stay_open", "True", "-@", "-"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace",
        )

    def run(self, args: list[str]) -> str:
        """Run one ExifTool command; what it printed (``{ready}``, which ``-stay_open`` prints after
        each command, marks the end)."""
        with self._lock:
            stdin, stdout = self._process.stdin, self._process.stdout
            assert stdin is not None and stdout is not None
            stdin.write("\n".join([*args, "-execute"]) + "\n")
            stdin.flush()
            lines = []
            while (line := stdout.readline()) and line.strip() != "{ready}":
                lines.append(line)
            if not line:
                raise OSError("exiftool stopped")
            return "".join(lines)

    def close(self) -> None:
        with self._lock:
            if self._process.poll() is None:
                assert self._process.stdin is not None
                self._process.stdin.write("-stay_open\nFalse\n")
                self._process.stdin.flush()
                try:
                    self._process.wait(5)
                except subprocess.TimeoutExpired:
                    self._process.kill()


_shared: ExifTool | None = None
_shared_lock = threading.Lock()


def start() -> None:
    """Start the ExifTool a run shares, if it is installed. Call it from the main thread: an ExifTool
    is stopped with the thread that started it, and one a worker thread started would stop when
    that thread does (``_tool`` then starts another)."""
    _tool()


def _tool() -> ExifTool | None:
    global _shared
    program = exiftool()
    if program is None:
        return None
    with _shared_lock:
        if _shared is None or _shared._process.poll() is not None:
            _shared = ExifTool(program)
            atexit.register(_shared.close)  # camnet leaves no process behind
        return _shared


def copy_from_raw(raw: Path, target: str | Path, *, fmt: str, size: tuple[int, int], srgb: bool = True) -> bool:
    """Copy the raw's metadata into ``target`` (a JPEG, PNG, TIFF or linear DNG camnet wrote) with ExifTool.

    Args:
        fmt: "jpeg", "png", "tiff" or "dng".
        size: the target's (width, height), for its EXIF.
        srgb: the target is sRGB (EXIF ColorSpace 1); else uncalibrated (65535), its ICC profile says.

    Returns:
        whether it was done (False without ExifTool, or when ExifTool could not write the file:
        the target keeps the EXIF camnet wrote itself).
    """
    tool = _tool()
    if tool is None:
        return False
    copy = list(_COPY)
    if not tool.run(["-s3", "-charset", "filename=utf8", "-GPS:GPSLatitude", os.fsdecode(raw)]).strip():
        copy.remove("-GPS:all")  # a GPS IFD without a position ("measurement void") says nothing, and is invalid in a TIFF
    args = ["-overwrite_original", "-m", "-charset", "filename=utf8", "-TagsFromFile", os.fsdecode(raw), *copy, *_SKIP]
    width, height = size
    if fmt == "dng":  # the DNG writer's own tags stand; what it lacks (lens info, compensation, maker notes) comes over
        args += [f"-ExifIFD:{tag}=" for tag in ("ExifImageWidth", "ExifImageHeight", "ComponentsConfiguration")]
        return "1 image files updated" in tool.run([*args, os.fsdecode(target)])
    if fmt == "tiff":  # TIFF has its own size tags; the shot's tags go to the EXIF IFD, where readers look
        args += [f"-ExifIFD:{tag}=" for tag in ("ExifImageWidth", "ExifImageHeight", "ComponentsConfiguration")]
        args += [f"-IFD0:{tag}=" for tag in ("ExposureTime", "FNumber", "ISO", "DateTimeOriginal", "FocalLength")]
    else:  # what EXIF 2.32 requires of a JPEG (and a PNG's eXIf) beside what the raw holds
        args += [f"-ExifIFD:ExifImageWidth#={width}", f"-ExifIFD:ExifImageHeight#={height}", "-ExifIFD:ExifVersion=0232", "-ExifIFD:FlashpixVersion=0100"]
        args += ["-IFD0:XResolution=72", "-IFD0:YResolution=72", "-IFD0:ResolutionUnit=inches"]
        if fmt == "jpeg":
            args += ["-ExifIFD:ComponentsConfiguration#=1 2 3 0", "-IFD0:YCbCrPositioning#=1"]
    args.append(f"-ExifIFD:ColorSpace#={1 if srgb else 65535}")
    return "1 image files updated" in tool.run([*args, os.fsdecode(target)])


# A 1x1 grey JPEG (Pillow, quality 50), for warm_up.
_TINY_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1R"
    "V19iZ2hnPk1xeXBkeFxlZ2P/wAALCAABAAEBAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgED"
    "AwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RF"
    "RkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJ"
    "ytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/APP6/9k="
)


def warm_up(raw: Path, after: Callable[[], object] = lambda: None) -> threading.Thread | None:
    """Start ExifTool and have it copy ``raw``'s metadata once, onto a throwaway JPEG, in a thread.

    ExifTool's first copy in a process loads its writing modules (0.2-0.3 s of a core); made while
    camnet itself loads, the first photo's copy does not wait for them. ExifTool itself is started
    in the calling thread (``start``).

    Args:
        after: what the thread waits for first (the first raw's decode: until it is done, the
            cores have work enough).

    Returns the thread (None without ExifTool).
    """
    if exiftool() is None:
        return None
    start()

    def run() -> None:
        after()
        try:
            with tempfile.TemporaryDirectory(prefix="camnet-") as folder:
                tiny = Path(folder) / "warm-up.jpg"
                tiny.write_bytes(_TINY_JPEG)
                copy_from_raw(raw, tiny, fmt="jpeg", size=(1, 1))
        except OSError:  # no temporary folder, or ExifTool stopped: the real copy says so or does without
            pass

    thread = threading.Thread(target=run, name="exiftool-warm-up", daemon=True)
    thread.start()
    return thread
