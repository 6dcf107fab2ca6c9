"""Raw file in, frame out: CameraNet's data-preparation module (paper §III-C).

``load_frame`` opens a raw file with rawpy (LibRaw), refuses what camnet cannot
develop with a one-line ``RawError``, and returns a ``Frame``: the visible Bayer
data cropped to RGGB phase, black-subtracted, normalised to [0, 1], bad pixels
repaired and packed into four planes; plus white balance, colour matrix,
orientation, EXIF metadata and the noise level.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import io
import logging
import math
import os
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import rawpy

from camnet_cli import colorimetry, noise
from camnet_cli.noise import NoiseProfile

# File name extensions of raw formats LibRaw reads; used to pick files out of folders.
RAW_EXTENSIONS = frozenset(
    ".3fr .ari .arw .bay .cr2 .cr3 .crw .dcr .dcs .dng .erf .fff .gpr .iiq .k25 .kdc .mdc .mef .mos "
    ".mrw .nef .nrw .orf .pef .ptx .raf .raw .rw2 .rwl .sr2 .srf .srw .x3f".split()
)

# exifread logs "File format not recognized" and the like for every file it cannot parse;
# camnet reports such files itself, once.
logging.getLogger("exifread").setLevel(logging.CRITICAL)
logging.getLogger("tifffile").setLevel(logging.CRITICAL)

# LibRaw's sizes.flip -> EXIF Orientation (dcraw: bit 4 = transpose, 2 = flip rows, 1 = flip columns).
_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}

# Where a 2x2 Bayer pattern has its red site; cropping that many rows and columns
# makes any Bayer phase RGGB.
_RED_SITE = {"RGGB": (0, 0), "GRBG": (0, 1), "GBRG": (1, 0), "BGGR": (1, 1)}

# Bad pixel repair: rawpy.enhance's threshold (max(max_raw / 150, 20) DN from the 3x3
# same-colour neighbourhood), raised to this many noise standard deviations so that
# high-ISO noise is never mistaken for a hot pixel.
_BAD_PIXEL_SIGMAS = 8.0
_BAD_PIXEL_SPACING = 4  # packed pixels; a defect has no other outlier this close
_BAD_PIXEL_MARGIN = 0.999 * _BAD_PIXEL_SIGMAS  # the first pass's: a little looser, against rounding
_BAD_PIXEL_ROWS = 32  # rows of a plane that first pass takes at a time
_NOISE_VAR_FLOOR = 1 / 65535**2 / 12  # a 16-bit step's quantisation variance: an estimate may say 0 read noise

# TIFF and DNG tags read with tifffile (TIFF 6.0, DNG 1.6 spec).
_TAG_NEW_SUBFILE_TYPE, _TAG_COMPRESSION, _TAG_PHOTOMETRIC = 254, 259, 262
_TAG_SAMPLES_PER_PIXEL, _TAG_DNG_VERSION, _TAG_NOISE_PROFILE = 277, 50706, 51041
_PHOTOMETRIC_CFA, _PHOTOMETRIC_LINEAR_RAW, _PHOTOMETRIC_BLACK_IS_ZERO = 32803, 34892, 1
_COMPRESSION_JPEG_XL = 52546

# What the header may say; beyond these limits a value is damage, not a photograph.
# The highest ISO believed: above any camera's (the Nikon D5 reaches 3,280,000).
MAX_ISO = 10_000_000
# EXIF numbers outside these ranges are dropped (they would reach the output's EXIF and the noise table).
_EXIF_RANGES = {
    "ISO": (1.0, float(MAX_ISO)),
    "exposure time": (1e-6, 86_400.0),  # seconds: shutters reach 1/80,000 s, star trails hours
    "f-number": (0.3, 1000.0),  # pinhole cameras reach f/500
    "focal length": (0.1, 100_000.0),  # mm: phone sensors' 1.5 mm to beyond telescopes
}
# Raw areas above this are refused before LibRaw allocates them (2 bytes a pixel and more): above
# any sensor, and multi-shot composites (Hasselblad H6D-400c MS, Fujifilm pixel shift) reach 400 MP.
_MAX_PIXELS = 500_000_000
# The smallest image developed, after the phase crop: noise estimation needs 16 packed rows and columns.
_MIN_SIDE = 32
# White-balance gains (normalised to green) beyond six stops either way are no light source.
_MAX_WB_GAIN = 64.0
# Real cameras' camera -> XYZ entries lie within about +-3; beyond this the matrix is damage
# (and would amplify the noise as much).
_MAX_MATRIX_ENTRY = 16.0


class RawError(Exception):
    """A file camnet cannot develop. ``str(error)`` is one line: ``<path>: <reason>``."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass(frozen=True)
class Metadata:
    """What the file says about the shot. Any field may be missing; implausible values are left out."""

    make: str | None = None
    model: str | None = None
    iso: float | None = None
    exposure_time: float | None = None  # seconds
    f_number: float | None = None
    focal_length: float | None = None  # mm
    lens: str | None = None
    date: str | None = None  # ISO 8601, local time of the camera
    orientation: int | None = None  # EXIF Orientation, 1..8

    @property
    def camera(self) -> str:
        """Make and model for people, e.g. 'SONY ILCE-7RM3'."""
        if self.make and self.model and self.model.lower().startswith(self.make.lower()):
            return self.model  # 'Canon EOS 350D DIGITAL', not 'Canon Canon EOS ...'
        return " ".join(p for p in (self.make, self.model) if p) or "unknown camera"


@dataclass(frozen=True)
class Crop:
    """Rows and columns cut from the visible area to reach RGGB phase and even size."""

    top: int
    left: int
    bottom: int
    right: int


# EXIF orientation -> how to make stored pixels upright, as Pillow's ImageOps.exif_transpose.
_UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, k=1),
}


def uncrop(image: np.ndarray, crop: Crop) -> np.ndarray:
    """(H', W', C) -> (H, W, C): put back the rows and columns the RGGB crop removed (edge-repeated);
    ``image`` itself when there are none."""
    if not (crop.top or crop.left or crop.bottom or crop.right):
        return image
    return np.pad(image, ((crop.top, crop.bottom), (crop.left, crop.right), (0, 0)), mode="edge")


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to (H, W, C) pixels; the result needs orientation 1."""
    return np.ascontiguousarray(_UPRIGHT.get(orientation, _UPRIGHT[1])(image))


@dataclass(frozen=True, eq=False)
class Frame:
    """One raw frame, ready for Restore-Net.

    Attributes:
        path: the file it came from.
        packed: (4, H/2, W/2) float32 in [0, 1]: R, G1, G2, B planes (``colorimetry.PACKED_CHANNELS``),
            black-subtracted, divided by (white - black), bad pixels repaired, clipped.
        cfa_pattern: the file's own 2x2 pattern, e.g. "GRBG", before the phase crop.
        crop: what was cut from the visible area; padding it back restores the geometry.
        visible_size: (height, width) of the visible area, before crop and orientation.
        black_level: black level in DN at each 2x2 site, in ``cfa_pattern`` order.
        white_level: saturation in DN.
        wb: white-balance gains (R, G, B) with G = 1.
        wb_source: "camera" (as shot), "daylight" (LibRaw's daylight multipliers),
            "matrix" (neutral of the colour matrix under D65) or "none".
        cam_to_xyz: (3, 3) white-balanced camera RGB -> CIE XYZ (D65).
        matrix_source: "rgb_xyz_matrix", "color_matrix" or "none" (sRGB primaries assumed).
        xyz_to_cam: (3, 3) the camera's own ColorMatrix (XYZ, D65 -> camera RGB) where the file has
            one (matrix_source "rgb_xyz_matrix"), for a DNG of the restoration; else None.
        metadata: EXIF, with LibRaw's values where EXIF has none.
        noise: noise level, with its source.
        bad_pixels: how many hot or dead pixels were repaired.
        warnings: one line each, for things that were guessed or left out as implausible.
    """

    path: Path
    packed: np.ndarray
    cfa_pattern: str
    crop: Crop
    visible_size: tuple[int, int]
    black_level: tuple[float, float, float, float]
    white_level: float
    wb: tuple[float, float, float]
    wb_source: str
    cam_to_xyz: np.ndarray
    matrix_source: str
    metadata: Metadata
    noise: NoiseProfile
    bad_pixels: int = 0
    warnings: tuple[str, ...] = field(default=())
    xyz_to_cam: np.ndarray | None = None

    @property
    def orientation(self) -> int:
        return self.metadata.orientation or 1

    def hand_over(self) -> tuple[list[np.ndarray], Frame]:
        """The packed planes in a list, for ``pipeline.develop_frame`` to empty, and this frame without
        them (``packed`` None). Once their last holder is the develop, they are freed as soon as
        Restore-Net is done with them."""
        return [self.packed], replace(self, packed=None)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the developed image: visible area, upright."""
        h, w = self.visible_size
        return (h, w) if self.orientation >= 5 else (w, h)


# --- metadata ----------------------------------------------------------------------------


def read_metadata(path: Path, notes: list[str] | None = None) -> Metadata:
    """Read EXIF with exifread. Fields exifread cannot find are left empty, and so are numbers
    outside ``_EXIF_RANGES``; an invalid orientation becomes 1 (as stored).

    Args:
        notes: where to say, one line each, what was invalid and left out.
    """
    import exifread

    notes = [] if notes is None else notes
    try:
        with open(path, "rb") as f:
            tags = exifread.process_file(f, details=False)
    except Exception:  # exifread raises all sorts on files it does not understand
        return Metadata()

    def first(*names: str) -> object | None:
        for name in names:
            tag = tags.get(name)
            if tag is not None and tag.values not in (None, "", []):
                return tag.values
        return None

    def text(*names: str) -> str | None:
        value = first(*names)
        return _clean_text(value) if isinstance(value, str) else None

    def number(*names: str) -> float | None:
        value = first(*names)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        try:
            return float(value)  # exifread's Ratio is a Fraction
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            return None

    def plausible(what: str, *names: str) -> float | None:
        x = number(*names)
        if x is None or x == 0:  # 0: unknown, as some cameras write it
            return None
        kept = _plausible(what, x)
        if kept is None:
            notes.append(f"implausible EXIF {what} {x:g}; ignored")
        return kept

    orientation = number("Image Orientation")
    if orientation is not None and orientation not in range(1, 9):
        notes.append(f"invalid EXIF orientation {orientation:g}; leaving the image as stored")
        orientation = 1
    return Metadata(
        make=text("Image Make"),
        model=text("Image Model"),
        iso=plausible("ISO", "EXIF ISOSpeedRatings", "Image ISOSpeedRatings", "EXIF RecommendedExposureIndex"),
        exposure_time=plausible("exposure time", "EXIF ExposureTime", "Image ExposureTime"),
        f_number=plausible("f-number", "EXIF FNumber", "Image FNumber"),
        focal_length=plausible("focal length", "EXIF FocalLength", "Image FocalLength"),
        lens=text("EXIF LensModel"),
        date=_iso_date(text("EXIF DateTimeOriginal", "Image DateTimeOriginal", "Image DateTime")),
        orientation=None if orientation is None else int(orientation),
    )


def _clean_text(value: str) -> str | None:
    """A header string fit for one line of output: control characters and runs of white space
    made single spaces, at most 100 characters; None when nothing is left."""
    value = " ".join("".join(c if c.isprintable() else " " for c in value).split())
    return value[:100] or None


def _plausible(what: str, x: float) -> float | None:
    """``x`` if it lies in ``_EXIF_RANGES[what]``, else None."""
    lo, hi = _EXIF_RANGES[what]
    return float(x) if lo <= x <= hi else None


def _iso_date(exif_date: str | None) -> str | None:
    """'2018:07:11 01:18:47' -> '2018-07-11T01:18:47'."""
    if not exif_date:
        return None
    try:
        return dt.datetime.strptime(exif_date[:19], "%Y:%m:%d %H:%M:%S").isoformat()
    except ValueError:
        return None


def _with_libraw_fallbacks(meta: Metadata, raw: rawpy.RawPy, notes: list[str]) -> Metadata:
    """Fill what EXIF lacked from LibRaw's own parse of the maker's metadata (implausible values left out)."""
    try:
        other = raw.other
    except (OverflowError, OSError, ValueError) as e:  # rawpy makes a datetime of the file's date
        notes.append(f"unreadable date in the file ({e}); ignored")
        other = rawpy.Other(0, 0, 0, 0, None, 0, "")
    lens = raw.lens
    return Metadata(
        make=meta.make,
        model=meta.model,
        iso=meta.iso or _plausible("ISO", other.iso_speed),
        exposure_time=meta.exposure_time or _plausible("exposure time", other.shutter_speed),
        f_number=meta.f_number or _plausible("f-number", other.aperture),
        focal_length=meta.focal_length or _plausible("focal length", other.focal_length),
        lens=meta.lens or _clean_text(lens.model),
        # LibRaw reports a missing date as the Unix epoch.
        date=meta.date or (other.timestamp.isoformat() if other.timestamp and other.timestamp.year > 1970 else None),
        orientation=meta.orientation or _FLIP_TO_ORIENTATION.get(raw.sizes.flip, 1),
    )


# --- the TIFF structure of TIFF-based raws (DNG, ARW, NEF, CR2, ...) ------------------------


@dataclass(frozen=True)
class _TiffInfo:
    """What the raw image's IFD says, read without decoding anything."""

    is_dng: bool
    photometric: int | None
    compression: int | None
    samples: int
    pixels: int
    data_end: int  # one past the last byte of the image data
    data_bytes: int
    noise_profile: tuple[float, ...] | None


def _read_tiff_info(path: Path) -> _TiffInfo | None:
    """Find the main raw IFD: the largest full-resolution image (NewSubFileType 0), maybe in a SubIFD.

    Returns None for files that are not TIFF-based (RAF, CR3, ...) or that tifffile cannot parse.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.pages:
                return None
            ifd0 = tif.pages[0]
            stack, best = [ifd0], None
            while stack:
                page = stack.pop(0)
                stack.extend(page.pages or ())
                subfile = page.tags.get(_TAG_NEW_SUBFILE_TYPE)
                if subfile is not None and subfile.value != 0:
                    continue
                pixels = int(np.prod(page.shape[:2])) if page.shape else 0
                if best is None or pixels > best[1]:
                    best = (page, pixels)
            if best is None or best[1] == 0:
                return None
            page, pixels = best
            offsets, counts = page.dataoffsets or (0,), page.databytecounts or (0,)

            def tag(p: object, code: int) -> object | None:
                t = p.tags.get(code)  # type: ignore[attr-defined]
                return None if t is None else t.value

            noise_tag = tag(page, _TAG_NOISE_PROFILE) or tag(ifd0, _TAG_NOISE_PROFILE)
            return _TiffInfo(
                is_dng=_TAG_DNG_VERSION in ifd0.tags,
                photometric=_as_int(tag(page, _TAG_PHOTOMETRIC)),
                compression=_as_int(tag(page, _TAG_COMPRESSION)),
                samples=_as_int(tag(page, _TAG_SAMPLES_PER_PIXEL)) or 1,
                pixels=pixels,
                data_end=max(int(o) + int(c) for o, c in zip(offsets, counts)),
                data_bytes=int(sum(int(c) for c in counts)),
                noise_profile=tuple(float(v) for v in np.ravel(noise_tag)) if noise_tag is not None else None,
            )
    except Exception:  # not a TIFF, or a broken one: LibRaw will say what it makes of it
        return None


def _as_int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _refuse_from_tiff(path: Path, info: _TiffInfo, file_size: int) -> None:
    """Refuse what the raw IFD already shows camnet cannot develop."""
    if info.is_dng:
        if info.compression == _COMPRESSION_JPEG_XL:
            raise RawError(path, "JPEG XL-compressed DNG (DNG 1.7) is not supported by this LibRaw build")
        if info.photometric == _PHOTOMETRIC_LINEAR_RAW and info.samples >= 3:
            raise RawError(path, "LinearRaw DNG is already demosaiced; camnet develops Bayer raw data")
        if info.photometric in (_PHOTOMETRIC_LINEAR_RAW, _PHOTOMETRIC_BLACK_IS_ZERO):
            raise RawError(path, "monochrome DNG (no colour filter array); camnet needs a Bayer sensor")
    if info.data_end > file_size:
        raise RawError(
            path,
            f"image data missing: the raw data should end at byte {info.data_end:,} "
            f"but the file has {file_size:,} bytes (truncated or stripped file)",
        )
    # Even lossy raw formats spend well over half a byte per pixel; a few hundred bytes for
    # megapixels means the image data was removed.
    if info.data_bytes < 0.05 * info.pixels:
        raise RawError(
            path,
            f"image data missing: {info.data_bytes:,} bytes for {info.pixels:,} pixels (stripped file)",
        )


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence what LibRaw prints on the C level ("data corrupted at ...") while it decodes.

    camnet reports the failure itself, in one line.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# --- loading -----------------------------------------------------------------------------


def load_frame(
    path: Path | str,
    *,
    noise_override: NoiseProfile | None = None,
    iso_override: float | None = None,
    repair_bad_pixels: bool = True,
) -> Frame:
    """Read a raw file into a ``Frame``.

    Args:
        path: a raw file LibRaw reads, with a 2x2 Bayer colour filter array.
        noise_override: use this noise level instead of the file's.
        iso_override: look the calibration table up at this ISO instead of the file's (1 to ``MAX_ISO``).
        repair_bad_pixels: replace hot and dead pixels by their same-colour neighbours.

    Raises:
        RawError: the file cannot be developed; the message says why in one line.
    """
    path = Path(path)
    if iso_override is not None and _plausible("ISO", iso_override) is None:
        raise RawError(path, f"ISO {iso_override:g} is not between 1 and {MAX_ISO:,}")
    reason = not_a_regular_file(path)
    if reason:
        raise RawError(path, reason)
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as e:
        raise RawError(path, f"cannot be read ({e.strerror or e})") from None
    if size == 0:
        raise RawError(path, "file is empty")

    tiff = _read_tiff_info(path)
    if tiff is not None:
        _refuse_from_tiff(path, tiff, size)
    notes: list[str] = []
    exif = read_metadata(path, notes)

    try:
        with _quiet_stderr():
            raw = rawpy.imread(_libraw_source(path))  # parses the header only
    except (rawpy.LibRawError, OSError) as e:
        raise _libraw_error(path, e, exif) from None
    with raw:
        _refuse_size(path, raw.sizes, size)
        try:
            with _quiet_stderr():
                raw.unpack()
        except rawpy.LibRawError as e:
            raise _libraw_error(path, e, exif) from None
        dng_noise = tiff.noise_profile if tiff is not None and tiff.is_dng else None
        return _frame_from_libraw(path, raw, exif, dng_noise, noise_override, iso_override, repair_bad_pixels, notes)


def _libraw_source(path: Path) -> str | io.BytesIO:
    """What rawpy opens: the path, or for a name that is not UTF-8 (which rawpy cannot pass on) the bytes."""
    name = str(path)
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return io.BytesIO(path.read_bytes())


# What stat calls the files camnet does not open (opening a FIFO waits for a writer).
_SPECIAL_FILES = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def not_a_regular_file(path: Path) -> str | None:
    """Why ``path`` is no file to read, in a few words ("no such file", "broken symbolic link",
    "symbolic link loop", "is a directory", "not a regular file (a FIFO)", ...), or None for a
    regular file or a link to one. Decided by ``stat`` alone, without opening anything."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            if path.is_symlink():
                return "broken symbolic link"
            return "no such file" + (" (nothing matches this pattern)" if set("*?[") & set(path.name) else "")
        if e.errno == errno.ELOOP:
            return "symbolic link loop"
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _SPECIAL_FILES if test(mode)), "a special file")
    return f"not a regular file ({kind})"


def _refuse_size(path: Path, sizes: rawpy.ImageSizes, file_size: int) -> None:
    """Refuse a raw area the file cannot hold, before LibRaw allocates it."""
    w, h = sizes.raw_width, sizes.raw_height
    if w * h > _MAX_PIXELS:
        raise RawError(path, f"implausible size in the header: {w}x{h} pixels (at most {_MAX_PIXELS // 10**6} MP)")
    # As in _refuse_from_tiff: even lossy raw formats spend well over 0.05 bytes a pixel.
    if 0.05 * w * h > file_size:
        raise RawError(path, f"implausible size in the header: {w}x{h} pixels in a file of {file_size:,} bytes")


# How raw formats begin (their magic bytes), to tell a broken raw from something else.
_RAW_SIGNATURES = (
    (0, b"II*\x00"), (0, b"MM\x00*"),  # TIFF-based: DNG, NEF, CR2, ARW, PEF, ...
    (0, b"IIRO"), (0, b"IIRS"), (0, b"IIU\x00"),  # Olympus ORF, Panasonic RW2
    (0, b"FUJIFILM"), (0, b"FOVb"), (0, b"\x00MRM"),  # Fujifilm RAF, Sigma X3F, Minolta MRW
    (0, b"II\x1a\x00\x00\x00HEAPCCDR"), (4, b"ftypcrx "),  # Canon CRW, CR3
)


def _looks_like_raw(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return any(head[at : at + len(magic)] == magic for at, magic in _RAW_SIGNATURES)


def _libraw_error(path: Path, error: Exception, exif: Metadata) -> RawError:
    """Turn LibRaw's exception into a sentence."""
    if not _looks_like_raw(path) and not (exif.make or exif.model):
        return RawError(path, "not a raw file LibRaw can read")
    if isinstance(error, rawpy.LibRawFileUnsupportedError):
        what = f" (the header says {exif.camera})" if exif.make or exif.model else ""
        return RawError(path, f"not a raw file LibRaw can read{what}")
    if isinstance(error, rawpy.LibRawIOError):
        return RawError(path, "truncated or corrupt: LibRaw could not read it")
    if isinstance(error, rawpy.LibRawDataError):
        return RawError(path, "corrupt image data: LibRaw could not decode it")
    return RawError(path, f"LibRaw failed: {type(error).__name__}")


def _frame_from_libraw(
    path: Path,
    raw: rawpy.RawPy,
    exif: Metadata,
    dng_noise: tuple[float, ...] | None,
    noise_override: NoiseProfile | None,
    iso_override: float | None,
    repair_bad_pixels: bool,
    notes: list[str],
) -> Frame:
    # Everything read from LibRaw, at once: rawpy's properties raise on half-broken files
    # (a colour filter LibRaw cannot describe, data it did not unpack).
    try:
        cfa = _bayer_pattern(path, raw)
        mosaic = raw.raw_image_visible
        colors = raw.raw_colors_visible[:2, :2]
        per_color = np.asarray(raw.black_level_per_channel, dtype=np.float64)
        white = float(raw.white_level)
        meta = _with_libraw_fallbacks(exif, raw, notes)
        presets = (raw.camera_whitebalance, raw.daylight_whitebalance)
        xyz_to_cam = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3, :3]
        cam_to_srgb = np.asarray(raw.color_matrix, dtype=np.float64)[:3, :3]
    except (rawpy.LibRawError, NotImplementedError, RuntimeError) as e:
        raise RawError(path, f"corrupt file: LibRaw cannot describe its raw data ({e})") from None
    visible_size = (int(mosaic.shape[0]), int(mosaic.shape[1]))

    # Black level per 2x2 site: LibRaw's per-colour black (black + cblack[c]) at each site's colour.
    black = per_color[colors]  # (2, 2), sites of the file's own pattern
    if not white > black.max():
        raise RawError(path, f"invalid levels: white level {white:g} is not above black level {black.max():g}")
    if white > 65535:  # LibRaw's raw data is 16-bit
        raise RawError(path, f"invalid levels: white level {white:g} is beyond 16-bit data")
    _refuse_empty_data(path, mosaic, float(per_color.min()), white)

    top, left = _RED_SITE[cfa]
    h, w = (visible_size[0] - top) // 2 * 2, (visible_size[1] - left) // 2 * 2
    if min(h, w) < _MIN_SIDE:
        raise RawError(path, f"image too small: {visible_size[1]}x{visible_size[0]} pixels (camnet needs {_MIN_SIDE}x{_MIN_SIDE})")
    crop = Crop(top, left, visible_size[0] - top - h, visible_size[1] - left - w)
    cropped = mosaic[top : top + h, left : left + w]
    black_rggb = np.roll(black, (-top, -left), axis=(0, 1))  # black at RGGB sites after the crop

    # (4, h/2, w/2) planes R, G1, G2, B, normalised but not yet clipped (noise estimation
    # needs the values below black).
    planes = cropped.reshape(h // 2, 2, w // 2, 2).transpose(1, 3, 0, 2).reshape(4, h // 2, w // 2)
    scale = (white - black_rggb).reshape(4, 1, 1)
    packed = planes.astype(np.float32)  # the one copy: the arithmetic is in place, as exact
    packed -= black_rggb.reshape(4, 1, 1).astype(np.float32)
    packed /= scale.astype(np.float32)

    if iso_override is not None:
        meta = dataclasses.replace(meta, iso=float(iso_override))

    noise_profile = noise_override
    if noise_profile is None and iso_override is not None:
        # The user asked for another ISO: the calibration at that ISO beats the file's own profile.
        noise_profile = noise.from_table(meta.make, meta.model, meta.iso)
        if noise_profile is None:
            notes.append(f"no noise calibration for {meta.camera} at ISO {iso_override:g}; the ISO given has no effect on the noise level")
    if noise_profile is None and dng_noise:
        noise_profile = noise.from_dng_noise_profile(dng_noise)
        if noise_profile is None:
            shown = ", ".join(f"{v:.3g}" for v in dng_noise[:6]) + (", ..." if len(dng_noise) > 6 else "")
            notes.append(f"ignoring the file's NoiseProfile ({shown}): not a plausible noise level")
    if noise_profile is None:
        noise_profile = noise.from_table(meta.make, meta.model, meta.iso)
    if noise_profile is None:
        noise_profile = noise.estimate_noise(packed)

    bad = 0
    if repair_bad_pixels:
        threshold = max(float(mosaic.max()) / 150, 20.0) / (white - float(black.max()))
        bad = _repair_bad_pixels(packed, noise_profile, threshold)
    np.clip(packed, 0.0, 1.0, out=packed)

    wb, wb_source = _white_balance(presets, notes)
    cam_to_xyz, matrix_source, d65_wb = _camera_matrix(xyz_to_cam, cam_to_srgb, notes)
    if wb_source == "none" and d65_wb is not None:
        wb, wb_source = d65_wb, "matrix"
        notes.append("no white balance in the file; using the colour matrix's daylight neutral")
    elif wb_source == "none":
        notes.append("no white balance in the file; using equal gains")

    return Frame(
        path=path,
        packed=np.ascontiguousarray(packed),
        cfa_pattern=cfa,
        crop=crop,
        visible_size=visible_size,
        black_level=tuple(float(b) for b in black.ravel()),  # type: ignore[arg-type]
        white_level=white,
        wb=wb,
        wb_source=wb_source,
        cam_to_xyz=cam_to_xyz,
        matrix_source=matrix_source,
        metadata=meta,
        noise=noise_profile,
        bad_pixels=bad,
        warnings=tuple(notes),
        xyz_to_cam=np.array(xyz_to_cam[:3, :3], dtype=np.float64) if matrix_source == "rgb_xyz_matrix" else None,
    )


def _bayer_pattern(path: Path, raw: rawpy.RawPy) -> str:
    """The file's 2x2 Bayer pattern as letters, or a RawError saying why it is not one."""
    if raw.raw_type != rawpy.RawType.Flat:
        raise RawError(path, "already demosaiced or multi-layer data (LinearRaw DNG or Foveon); camnet develops Bayer raw data")
    pattern = raw.raw_pattern
    if raw.num_colors == 1 or pattern is None:
        raise RawError(path, "monochrome sensor (no colour filter array); camnet needs a Bayer sensor")
    if pattern.shape == (6, 6):
        raise RawError(path, "X-Trans sensor (Fujifilm 6x6 colour filter); camnet needs a 2x2 Bayer sensor")
    colors = raw.raw_colors_visible[:4, :4]
    desc = raw.color_desc.decode("ascii", "replace")
    letters = "".join(desc[c] if c < len(desc) else "?" for c in colors[:2, :2].ravel())
    tiled = np.tile(colors[:2, :2], (2, 2))
    if colors.shape != (4, 4) or not np.array_equal(colors, tiled) or letters not in _RED_SITE:
        raise RawError(path, f"colour filter array {letters} is not a 2x2 RGB Bayer pattern")
    return letters


def _refuse_empty_data(path: Path, mosaic: np.ndarray, black: float, white: float) -> None:
    """Catch files that open but carry no image: stripped, blank, truncated or garbage.

    When the image data is missing LibRaw may hand back zeros or whatever its buffer
    held before, so several pixel statistics are checked.
    """
    if mosaic.size == 0:
        raise RawError(path, "no image data")
    sample = mosaic[::4, ::4]
    zero = float(np.mean(sample == 0))
    if zero > 0.5:
        raise RawError(path, f"image data is empty ({zero:.1%} of pixels are zero): stripped or blank file")
    # Real files overshoot the white level a little (the shared a7R III ARW by 1.5%), never by half.
    wild = float(np.mean(sample > 1.5 * white))
    if wild > 0.001:
        raise RawError(path, f"image data is invalid ({wild:.1%} of pixels far above the white level {white:g})")
    low, high = mosaic.min(axis=1), mosaic.max(axis=1)
    blank_rows = float(np.mean((low == high) & (high <= black)))
    if blank_rows > 0.01:
        raise RawError(path, f"image data is missing in {blank_rows:.0%} of rows: truncated or stripped file")
    # LibRaw fills a truncated stream with copies of the last rows it decoded; real rows are
    # never identical to the row two above (same colours) because of noise.
    if mosaic.shape[0] > 4:
        repeated = np.all(mosaic[2:] == mosaic[:-2], axis=1) & (low[2:] < white)  # clipped rows repeat legitimately
        if repeated.mean() > 0.01:
            first = int(np.argmax(repeated)) + 2
            raise RawError(path, f"truncated: image data ends at row {first} of {mosaic.shape[0]}")


def _repair_bad_pixels(packed: np.ndarray, profile: NoiseProfile, threshold: float) -> int:
    """Replace hot and dead pixels, in place, by the median of their 8 same-colour neighbours.

    A pixel is bad when it exceeds every same-colour neighbour (hot) or falls below
    every one (dead) by more than rawpy.enhance's threshold and more than
    ``_BAD_PIXEL_SIGMAS`` noise standard deviations at the neighbours' level, the other
    three pixels of its 2x2 cell do not stand out from their own neighbours (a sensor
    defect is one site; a glint or a star lights every colour of the cell), and no other
    such outlier lies within ``_BAD_PIXEL_SPACING`` cells. Neighbours beyond the edge are
    reflected (the edge pixel not repeated).
    """
    _, h, w = packed.shape
    cs, ys, xs = _bad_pixel_candidates(packed, profile, threshold)
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    rows = [_reflect(ys + dy, h) for dy, _ in offsets]
    cols = [_reflect(xs + dx, w) for _, dx in offsets]
    # The 8 same-colour neighbours of the candidates: (8, n), and the test against all of them.
    ring = np.stack([packed[cs, y, x] for y, x in zip(rows, cols)])
    hi, lo = ring.max(axis=0), ring.min(axis=0)
    value = packed[cs, ys, xs]
    passed = (value - hi > threshold) | (lo - value > threshold)
    cs, ys, xs, value, hi, lo = cs[passed], ys[passed], xs[passed], value[passed], hi[passed], lo[passed]
    rows, cols = [y[passed] for y in rows], [x[passed] for x in cols]
    if len(cs) == 0:
        return 0
    is_hot = value > hi
    level = np.where(is_hot, hi, lo)
    excess = np.abs(value - level) / _noise_sd(profile, level)
    # Every channel's neighbourhood at the candidate cells: (8, 4, n).
    around = np.stack([packed[:, y, x] for y, x in zip(rows, cols)])
    cell = packed[:, ys, xs]  # (4, n)
    mean = around.mean(axis=0)
    lift = (cell - mean) / _noise_sd(profile, mean)  # how far each colour stands out
    lift[cs, np.arange(len(cs))] = 0.0  # only the *other* colours count
    others = np.where(is_hot, lift.max(axis=0), (-lift).max(axis=0))
    keep = (excess > _BAD_PIXEL_SIGMAS) & (others < 3.0)
    cs, ys, xs, around = cs[keep], ys[keep], xs[keep], around[:, :, keep]
    # Defects are sparse (about 1e-5 of a sensor); outliers in crowds are texture, such as
    # the single-colour point sources of an LED wall.
    alone = _count_nearby(ys, xs, (h, w), _BAD_PIXEL_SPACING) == 1
    cs, ys, xs = cs[alone], ys[alone], xs[alone]
    packed[cs, ys, xs] = np.median(around[:, cs, np.flatnonzero(alone)], axis=0)
    return len(cs)


def _noise_sd(profile: NoiseProfile, x: np.ndarray) -> np.ndarray:
    """The noise's standard deviation at ``x``, no less than a 16-bit step's (an estimate may say 0 read noise)."""
    return np.sqrt(np.maximum(profile.variance(x), _NOISE_VAR_FLOOR))


def _reflect(i: np.ndarray, n: int) -> np.ndarray:
    """Indices one step outside [0, n) reflected in, as np.pad's "reflect": -1 -> 1, n -> n - 2."""
    i = np.abs(i)
    return np.where(i >= n, 2 * (n - 1) - i, i)


def _bad_pixel_candidates(packed: np.ndarray, profile: NoiseProfile, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(channel, row, column) of the pixels that may be bad: beyond their 4 nearest same-colour
    neighbours by the threshold and by _BAD_PIXEL_MARGIN noise standard deviations. A superset of
    those _repair_bad_pixels finds against all 8: a hot pixel's 4-neighbour maximum is no higher
    than its 8-neighbour one, so its excess over it is no smaller and the noise there no larger; a
    dead pixel's noise is measured at its own value, below the level its test uses. At ISO 3200
    the threshold alone passes 2% of an 18 MP frame; this, a few thousand pixels.

    Taken _BAD_PIXEL_ROWS rows of a plane at a time, so that the arithmetic stays in the cache.
    """
    _, h, w = packed.shape
    floor = _NOISE_VAR_FLOOR
    k2 = np.float32(_BAD_PIXEL_MARGIN**2)
    found = []
    for c in range(4):
        for y0 in range(0, h, _BAD_PIXEL_ROWS):
            y1 = min(y0 + _BAD_PIXEL_ROWS, h)
            block = packed[c].take(_reflect(np.arange(y0 - 1, y1 + 1), h), axis=0)
            block = np.pad(block, ((0, 0), (1, 1)), mode="reflect")
            value = block[1:-1, 1:-1]
            views = block[:-2, 1:-1], block[2:, 1:-1], block[1:-1, :-2], block[1:-1, 2:]
            hi = np.maximum(views[0], views[1])
            lo = np.minimum(views[0], views[1])
            for view in views[2:]:
                np.maximum(hi, view, out=hi)
                np.minimum(lo, view, out=lo)
            over, under = value - hi, lo - value
            ys, xs = np.nonzero((over > threshold) | (under > threshold))
            # The noise test on those alone: at the neighbours' highest (hot), at the pixel itself (dead).
            over, under = over[ys, xs], under[ys, xs]
            hot = (over > threshold) & (over * over > k2 * np.maximum(profile.variance(hi[ys, xs]), floor))
            dead = (under > threshold) & (under * under > k2 * np.maximum(profile.variance(value[ys, xs]), floor))
            ys, xs = ys[hot | dead], xs[hot | dead]
            found.append((np.full(len(ys), c), ys + y0, xs))
    return tuple(np.concatenate(parts) for parts in zip(*found))  # type: ignore[return-value]


def _count_nearby(ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int], radius: int) -> np.ndarray:
    """For each of the points (ys, xs), how many of their positions (its own included) lie within
    its (2 * radius + 1)^2 window: an integral image of the points, read at the points alone."""
    h, w = shape
    integral = np.zeros((h + 1, w + 1), dtype=np.int32)
    integral[ys + 1, xs + 1] = 1  # a position once, however many colours there
    integral.cumsum(0, out=integral)
    integral.cumsum(1, out=integral)
    y0, y1 = np.clip(ys - radius, 0, h), np.clip(ys + radius + 1, 0, h)
    x0, x1 = np.clip(xs - radius, 0, w), np.clip(xs + radius + 1, 0, w)
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def _white_balance(presets: tuple[list[float], list[float]], notes: list[str]) -> tuple[tuple[float, float, float], str]:
    """As-shot gains (R, G, B) with G = 1, falling back to LibRaw's daylight gains; gains beyond
    1/``_MAX_WB_GAIN``..``_MAX_WB_GAIN`` are left out.

    Args:
        presets: LibRaw's (R, G, B, G2) as-shot and daylight multipliers.
    """
    missing = why = "no as-shot white balance in the file"
    for gains, source in zip(presets, ("camera", "daylight")):
        r, g, b, g2 = (float(x) for x in gains)
        g = g if g > 0 else g2
        if not all(math.isfinite(x) and x > 0 for x in (r, g, b)):
            continue  # not in the file
        wb = (r / g, 1.0, b / g)
        if not all(1 / _MAX_WB_GAIN <= x <= _MAX_WB_GAIN for x in wb):
            if source == "camera":
                why = f"implausible as-shot white balance (R {wb[0]:.3g}, B {wb[2]:.3g})"
            continue
        if source == "daylight":
            notes.append(f"{why}; using the camera's daylight preset")
        return wb, source
    if why != missing:
        notes.append(f"{why}; ignored")
    return (1.0, 1.0, 1.0), "none"


def _camera_matrix(
    xyz_to_cam: np.ndarray, cam_to_srgb: np.ndarray, notes: list[str]
) -> tuple[np.ndarray, str, tuple[float, float, float] | None]:
    """White-balanced camera -> XYZ, where it came from, and the D65 gains it implies.

    Args:
        xyz_to_cam, cam_to_srgb: LibRaw's (3, 3) ``rgb_xyz_matrix`` and ``color_matrix``, all zeros
            where the file has none (DNGs: LibRaw leaves rgb_xyz_matrix empty and puts camera ->
            sRGB in color_matrix).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # garbled matrices overflow; refused below
        if _invertible(xyz_to_cam):
            cam_to_xyz, d65 = colorimetry.cam_to_xyz_from_xyz_to_cam(xyz_to_cam)
            if _plausible_matrix(cam_to_xyz) and np.all((1 / _MAX_WB_GAIN <= d65) & (d65 <= _MAX_WB_GAIN)):
                return cam_to_xyz, "rgb_xyz_matrix", (float(d65[0]), 1.0, float(d65[2]))
        if _invertible(cam_to_srgb):
            cam_to_xyz = colorimetry.cam_to_xyz_from_cam_to_srgb(cam_to_srgb)
            if _plausible_matrix(cam_to_xyz):
                return cam_to_xyz, "color_matrix", None
    found = "an implausible" if np.any(xyz_to_cam) or np.any(cam_to_srgb) else "no"
    notes.append(f"{found} colour matrix in the file; assuming sRGB primaries, colours will be off")
    return colorimetry.SRGB_TO_XYZ.copy(), "none", None


def _invertible(m: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(m)) and abs(np.linalg.det(m)) > 1e-8)


def _plausible_matrix(m: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(m)) and np.abs(m).max() <= _MAX_MATRIX_ENTRY)
