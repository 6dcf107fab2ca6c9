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
import logging
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rawpy

from camnet_cli import color, noise
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

# TIFF and DNG tags read with tifffile (TIFF 6.0, DNG 1.6 spec).
_TAG_NEW_SUBFILE_TYPE, _TAG_COMPRESSION, _TAG_PHOTOMETRIC = 254, 259, 262
_TAG_SAMPLES_PER_PIXEL, _TAG_DNG_VERSION, _TAG_NOISE_PROFILE = 277, 50706, 51041
_PHOTOMETRIC_CFA, _PHOTOMETRIC_LINEAR_RAW, _PHOTOMETRIC_BLACK_IS_ZERO = 32803, 34892, 1
_COMPRESSION_JPEG_XL = 52546


class RawError(Exception):
    """A file camnet cannot develop. ``str(error)`` is one line: ``<path>: <reason>``."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass(frozen=True)
class Metadata:
    """What the file says about the shot. Any field may be missing."""

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
    """(H', W', C) -> (H, W, C): put back the rows and columns the RGGB crop removed (edge-repeated)."""
    return np.pad(image, ((crop.top, crop.bottom), (crop.left, crop.right), (0, 0)), mode="edge")


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to (H, W, C) pixels; the result needs orientation 1."""
    return np.ascontiguousarray(_UPRIGHT.get(orientation, _UPRIGHT[1])(image))


@dataclass(frozen=True, eq=False)
class Frame:
    """One raw frame, ready for Restore-Net.

    Attributes:
        path: the file it came from.
        packed: (4, H/2, W/2) float32 in [0, 1]: R, G1, G2, B planes (``color.PACKED_CHANNELS``),
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
        metadata: EXIF, with LibRaw's values where EXIF has none.
        noise: noise level, with its source.
        bad_pixels: how many hot or dead pixels were repaired.
        warnings: one line each, for things that were guessed.
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

    @property
    def orientation(self) -> int:
        return self.metadata.orientation or 1

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the developed image: visible area, upright."""
        h, w = self.visible_size
        return (h, w) if self.orientation >= 5 else (w, h)


# --- metadata ----------------------------------------------------------------------------


def read_metadata(path: Path) -> Metadata:
    """Read EXIF with exifread. Fields exifread cannot find are left empty."""
    import exifread

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
        if isinstance(value, str):
            value = value.strip().strip("\x00").strip()
            return value or None
        return None

    def number(*names: str) -> float | None:
        value = first(*names)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        try:
            x = float(value)  # exifread's Ratio is a Fraction
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        return x if math.isfinite(x) and x > 0 else None

    orientation = number("Image Orientation")
    return Metadata(
        make=text("Image Make"),
        model=text("Image Model"),
        iso=number("EXIF ISOSpeedRatings", "Image ISOSpeedRatings", "EXIF RecommendedExposureIndex"),
        exposure_time=number("EXIF ExposureTime", "Image ExposureTime"),
        f_number=number("EXIF FNumber", "Image FNumber"),
        focal_length=number("EXIF FocalLength", "Image FocalLength"),
        lens=text("EXIF LensModel"),
        date=_iso_date(text("EXIF DateTimeOriginal", "Image DateTimeOriginal", "Image DateTime")),
        orientation=int(orientation) if orientation and 1 <= orientation <= 8 else None,
    )


def _iso_date(exif_date: str | None) -> str | None:
    """'2018:07:11 01:18:47' -> '2018-07-11T01:18:47'."""
    if not exif_date:
        return None
    try:
        return dt.datetime.strptime(exif_date[:19], "%Y:%m:%d %H:%M:%S").isoformat()
    except ValueError:
        return None


def _with_libraw_fallbacks(meta: Metadata, raw: rawpy.RawPy) -> Metadata:
    """Fill what EXIF lacked from LibRaw's own parse of the maker's metadata."""
    other, lens = raw.other, raw.lens

    def positive(x: float) -> float | None:
        return float(x) if x and math.isfinite(x) and x > 0 else None

    return Metadata(
        make=meta.make,
        model=meta.model,
        iso=meta.iso or positive(other.iso_speed),
        exposure_time=meta.exposure_time or positive(other.shutter_speed),
        f_number=meta.f_number or positive(other.aperture),
        focal_length=meta.focal_length or positive(other.focal_length),
        lens=meta.lens or (lens.model.strip() or None if lens.model else None),
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
        iso_override: look the calibration table up at this ISO instead of the file's.
        repair_bad_pixels: replace hot and dead pixels by their same-colour neighbours.

    Raises:
        RawError: the file cannot be developed; the message says why in one line.
    """
    path = Path(path)
    if not path.exists():
        raise RawError(path, "no such file")
    if path.is_dir():
        raise RawError(path, "is a directory")
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
    exif = read_metadata(path)

    raw = None
    try:
        with _quiet_stderr():
            raw = rawpy.imread(str(path))
            raw.unpack()
    except rawpy.LibRawError as e:
        if raw is not None:
            raw.close()
        raise _libraw_error(path, e, exif) from None
    with raw:
        dng_noise = tiff.noise_profile if tiff is not None and tiff.is_dng else None
        return _frame_from_libraw(path, raw, exif, dng_noise, noise_override, iso_override, repair_bad_pixels)


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
) -> Frame:
    notes: list[str] = []
    cfa = _bayer_pattern(path, raw)
    mosaic = raw.raw_image_visible
    _refuse_empty_data(path, mosaic, min(raw.black_level_per_channel), float(raw.white_level))
    visible_size = (int(mosaic.shape[0]), int(mosaic.shape[1]))

    # Black level per 2x2 site: LibRaw's per-colour black (black + cblack[c]) at each site's colour.
    colors = raw.raw_colors_visible[:2, :2]
    per_color = np.asarray(raw.black_level_per_channel, dtype=np.float64)
    black = per_color[colors]  # (2, 2), sites of the file's own pattern
    white = float(raw.white_level)
    if not white > black.max():
        raise RawError(path, f"invalid levels: white level {white:g} is not above black level {black.max():g}")

    top, left = _RED_SITE[cfa]
    h, w = (visible_size[0] - top) // 2 * 2, (visible_size[1] - left) // 2 * 2
    crop = Crop(top, left, visible_size[0] - top - h, visible_size[1] - left - w)
    cropped = mosaic[top : top + h, left : left + w]
    black_rggb = np.roll(black, (-top, -left), axis=(0, 1))  # black at RGGB sites after the crop

    # (4, h/2, w/2) planes R, G1, G2, B, normalised but not yet clipped (noise estimation
    # needs the values below black).
    planes = cropped.reshape(h // 2, 2, w // 2, 2).transpose(1, 3, 0, 2).reshape(4, h // 2, w // 2)
    scale = (white - black_rggb).reshape(4, 1, 1)
    packed = (planes.astype(np.float32) - black_rggb.reshape(4, 1, 1).astype(np.float32)) / scale.astype(np.float32)

    meta = _with_libraw_fallbacks(exif, raw)
    if iso_override:
        meta = dataclasses.replace(meta, iso=float(iso_override))

    noise_profile = noise_override
    if noise_profile is None and iso_override:
        # The user asked for another ISO: the calibration at that ISO beats the file's own profile.
        noise_profile = noise.from_table(meta.make, meta.model, meta.iso)
        if noise_profile is None:
            notes.append(f"no noise calibration for {meta.camera} at ISO {iso_override:g}; the ISO given has no effect on the noise level")
    if noise_profile is None and dng_noise:
        noise_profile = noise.from_dng_noise_profile(dng_noise)
    if noise_profile is None:
        noise_profile = noise.from_table(meta.make, meta.model, meta.iso)
    if noise_profile is None:
        noise_profile = noise.estimate_noise(packed)

    bad = 0
    if repair_bad_pixels:
        threshold = max(float(mosaic.max()) / 150, 20.0) / (white - float(black.max()))
        bad = _repair_bad_pixels(packed, noise_profile, threshold)
    np.clip(packed, 0.0, 1.0, out=packed)

    wb, wb_source = _white_balance(raw, notes)
    cam_to_xyz, matrix_source, d65_wb = _camera_matrix(raw, notes)
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
    such outlier lies within ``_BAD_PIXEL_SPACING`` cells.
    """
    _, h, w = packed.shape
    padded = np.pad(packed, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    offsets = [(dy, dx) for dy in (0, 1, 2) for dx in (0, 1, 2) if (dy, dx) != (1, 1)]
    hi = padded[:, 0:h, 0:w].copy()
    lo = hi.copy()
    for dy, dx in offsets[1:]:
        view = padded[:, dy : dy + h, dx : dx + w]
        np.maximum(hi, view, out=hi)
        np.minimum(lo, view, out=lo)
    # Cheap first pass with the fixed threshold; the rest only looks at these candidates.
    cs, ys, xs = np.nonzero((packed - hi > threshold) | (lo - packed > threshold))
    if len(cs) == 0:
        return 0
    value = packed[cs, ys, xs]
    is_hot = value > hi[cs, ys, xs]
    level = np.where(is_hot, hi[cs, ys, xs], lo[cs, ys, xs])
    excess = np.abs(value - level) / np.sqrt(profile.variance(level))
    # Every channel's neighbourhood at the candidate cells: (8, 4, n).
    around = np.stack([padded[:, ys + dy, xs + dx] for dy, dx in offsets])
    cell = packed[:, ys, xs]  # (4, n)
    mean = around.mean(axis=0)
    lift = (cell - mean) / np.sqrt(profile.variance(mean))  # how far each colour stands out
    lift[cs, np.arange(len(cs))] = 0.0  # only the *other* colours count
    others = np.where(is_hot, lift.max(axis=0), (-lift).max(axis=0))
    keep = (excess > _BAD_PIXEL_SIGMAS) & (others < 3.0)
    cs, ys, xs, around = cs[keep], ys[keep], xs[keep], around[:, :, keep]
    # Defects are sparse (about 1e-5 of a sensor); outliers in crowds are texture, such as
    # the single-colour point sources of an LED wall.
    mask = np.zeros((h, w), dtype=bool)
    mask[ys, xs] = True
    alone = _count_nearby(mask, _BAD_PIXEL_SPACING)[ys, xs] == 1
    cs, ys, xs = cs[alone], ys[alone], xs[alone]
    packed[cs, ys, xs] = np.median(around[:, cs, np.flatnonzero(alone)], axis=0)
    return len(cs)


def _count_nearby(mask: np.ndarray, radius: int) -> np.ndarray:
    """For each position, how many True values lie within a (2 * radius + 1)^2 window."""
    integral = np.pad(mask.astype(np.int32), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    h, w = mask.shape
    y0 = np.clip(np.arange(h) - radius, 0, h)
    y1 = np.clip(np.arange(h) + radius + 1, 0, h)
    x0 = np.clip(np.arange(w) - radius, 0, w)
    x1 = np.clip(np.arange(w) + radius + 1, 0, w)
    return (
        integral[y1][:, x1] - integral[y0][:, x1] - integral[y1][:, x0] + integral[y0][:, x0]
    )


def _white_balance(raw: rawpy.RawPy, notes: list[str]) -> tuple[tuple[float, float, float], str]:
    """As-shot gains (R, G, B) with G = 1, falling back to LibRaw's daylight gains."""
    for gains, source in ((raw.camera_whitebalance, "camera"), (raw.daylight_whitebalance, "daylight")):
        r, g, b, g2 = (float(x) for x in gains)
        g = g if g > 0 else g2
        if all(math.isfinite(x) and x > 0 for x in (r, g, b)):
            if source == "daylight":
                notes.append("no as-shot white balance in the file; using the camera's daylight preset")
            return (r / g, 1.0, b / g), source
    return (1.0, 1.0, 1.0), "none"


def _camera_matrix(raw: rawpy.RawPy, notes: list[str]) -> tuple[np.ndarray, str, tuple[float, float, float] | None]:
    """White-balanced camera -> XYZ, where it came from, and the D65 gains it implies."""
    xyz_to_cam = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3, :3]
    if np.any(xyz_to_cam) and abs(np.linalg.det(xyz_to_cam)) > 1e-8:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cam_to_xyz, d65 = color.cam_to_xyz_from_xyz_to_cam(xyz_to_cam)
        if np.all(np.isfinite(cam_to_xyz)) and np.all(d65 > 0):
            return cam_to_xyz, "rgb_xyz_matrix", (float(d65[0]), 1.0, float(d65[2]))
    # DNGs: LibRaw leaves rgb_xyz_matrix empty and puts camera -> sRGB in color_matrix.
    cam_to_srgb = np.asarray(raw.color_matrix, dtype=np.float64)[:3, :3]
    if np.any(cam_to_srgb) and abs(np.linalg.det(cam_to_srgb)) > 1e-8:
        return color.cam_to_xyz_from_cam_to_srgb(cam_to_srgb), "color_matrix", None
    notes.append("no colour matrix in the file; assuming sRGB primaries, colours will be off")
    return color.SRGB_TO_XYZ.copy(), "none", None
