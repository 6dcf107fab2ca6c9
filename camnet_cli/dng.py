"""Writers of DNG files that LibRaw and raw editors read: Bayer (CFA) and LinearRaw.

``write_dng`` writes a Bayer mosaic, for test fixtures, crops of real raws and the synthetic
training data: one uncompressed IFD with the DNG tags a raw developer needs (DNG 1.6
specification, Adobe 2021): CFA layout, black and white levels, colour matrix, as-shot neutral,
noise profile and the usual TIFF/EP exposure tags.

``write_linear_dng`` writes Restore-Net's output, demosaiced and denoised but still linear
camera RGB, as a LinearRaw DNG that darktable, RawTherapee and Lightroom open as a raw file:
an 8-bit sRGB preview in IFD0, the image in its SubIFD, the shot in an EXIF IFD.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import tifffile
import torch

from camnet_cli import __version__, color
from camnet_cli.files import atomic_write
from camnet_cli.raw import Metadata

# DNG CFAPattern codes per colour: 0 = red, 1 = green, 2 = blue (TIFF/EP CFAPattern).
_CFA_CODES = {"R": 0, "G": 1, "B": 2}
_PHOTOMETRIC_CFA = 32803
_PHOTOMETRIC_LINEAR_RAW = 34892
_ILLUMINANT_D65 = 21  # EXIF LightSource code for D65
_TAG_EXIF_IFD = 34665
# tifffile will not write tag 34665 ("ExifIFD and GPSIFD tags are not supported"): IFD0 gets this
# unregistered tag in its place (it sorts among the others as 34665 does), renamed once written.
_TAG_EXIF_PLACEHOLDER = 34664
_TAG_SUB_IFDS = 330
# TIFF field types (TIFF 6.0, section 2) of the tags in the EXIF IFD written by hand.
_ASCII, _SHORT, _LONG, _RATIONAL, _UNDEFINED = 2, 3, 4, 5, 7
# IFD0's preview: the long side of the thumbnail Adobe's DNG Converter writes there.
_PREVIEW_SIDE = 256


@dataclass(frozen=True)
class DngMetadata:
    """What a written DNG says about its camera and shot."""

    make: str = "camnet"
    model: str = "synthetic"
    iso: int | None = None
    exposure_time: float | None = None  # seconds
    f_number: float | None = None
    focal_length: float | None = None  # mm
    date: str | None = None  # EXIF form, "YYYY:MM:DD HH:MM:SS" (write_linear_dng also takes ISO 8601)
    orientation: int = 1
    lens: str | None = None  # EXIF LensModel; written by write_linear_dng

    @classmethod
    def from_shot(cls, meta: Metadata, orientation: int = 1) -> DngMetadata:
        """What a raw file said about its shot (``raw.Metadata``), as a DNG's."""
        return cls(
            make=meta.make or "unknown", model=meta.model or "camera", iso=None if meta.iso is None else round(meta.iso),
            exposure_time=meta.exposure_time, f_number=meta.f_number, focal_length=meta.focal_length, date=meta.date,
            orientation=orientation, lens=meta.lens,
        )


def to_dn(normalised: np.ndarray, black_level: Sequence[float] | float, white_level: int) -> np.ndarray:
    """Normalised mosaic values -> 16-bit DN: ``x * (white - black) + black``, rounded and clipped.

    Args:
        normalised: (H, W) mosaic; values below 0 (noise under the black level) are kept
            down to DN 0.
        black_level: one value, or four in the order of the 2x2 sites (row-major).
        white_level: saturation in DN.
    """
    black = _site_map(black_level, normalised.shape)
    dn = np.rint(normalised * (white_level - black) + black)
    return np.clip(dn, 0, 65535).astype(np.uint16)


def _site_map(black_level: Sequence[float] | float, shape: tuple[int, ...]) -> np.ndarray:
    sites = np.broadcast_to(np.asarray(black_level, dtype=np.float64), (4,)).reshape(2, 2)
    return np.tile(sites, ((shape[0] + 1) // 2, (shape[1] + 1) // 2))[: shape[0], : shape[1]]


def write_dng(
    path: Path | str,
    mosaic: np.ndarray,
    *,
    cfa_pattern: str = "RGGB",
    black_level: Sequence[int] | int = 512,
    white_level: int = 16383,
    xyz_to_cam: np.ndarray | None = None,
    as_shot_neutral: Sequence[float] | None = None,
    noise_profile: tuple[float, float] | None = None,
    metadata: DngMetadata = DngMetadata(),
) -> None:
    """Write a Bayer mosaic as an uncompressed DNG, atomically (temporary file, then rename).

    Args:
        path: where to write.
        mosaic: (H, W) uint16 DN, laid out in ``cfa_pattern``.
        cfa_pattern: the CFA at the top-left corner, row by row: "GRBG" for a Bayer phase,
            36 letters for a 6x6 X-Trans layout.
        black_level: one value, or four in the order of the 2x2 sites (row-major).
        white_level: saturation in DN.
        xyz_to_cam: (3, 3) ColorMatrix1, XYZ (D65) -> camera RGB; None writes none.
        as_shot_neutral: camera RGB of a neutral under the scene light (1 / white-balance gains).
        noise_profile: (shot, read variance) in normalised units, DNG NoiseProfile (S, O).
        metadata: camera and exposure tags.
    """
    if mosaic.ndim != 2 or mosaic.dtype != np.uint16:
        raise ValueError(f"expected an (H, W) uint16 mosaic, got {mosaic.dtype} {mosaic.shape}")
    side = math.isqrt(len(cfa_pattern))
    if side < 2 or side * side != len(cfa_pattern) or set(cfa_pattern) - set(_CFA_CODES):
        raise ValueError(f"expected a square CFA pattern of R, G, B like 'RGGB', got {cfa_pattern!r}")
    blacks = [int(b) for b in np.broadcast_to(np.asarray(black_level), (4,))]
    tags = _camera_tags(metadata, xyz_to_cam, as_shot_neutral) + [
        (33421, "H", 2, (side, side), True),  # CFARepeatPatternDim
        (33422, "B", side * side, tuple(_CFA_CODES[c] for c in cfa_pattern), True),  # CFAPattern
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50713, "H", 2, (2, 2), True),  # BlackLevelRepeatDim
        (50714, "I", 4, tuple(blacks), True),  # BlackLevel
        (50717, "I", 1, int(white_level), True),  # WhiteLevel
    ]
    if noise_profile is not None:
        tags.append((51041, "d", 2, tuple(float(v) for v in noise_profile), True))  # NoiseProfile
    if metadata.iso is not None:
        tags.append((34855, "H", 1, int(metadata.iso), True))  # ISOSpeedRatings
    if metadata.exposure_time is not None:
        tags.append((33434, 5, 1, _rationals([metadata.exposure_time]), True))  # ExposureTime
    if metadata.f_number is not None:
        tags.append((33437, 5, 1, _rationals([metadata.f_number]), True))  # FNumber
    if metadata.focal_length is not None:
        tags.append((37386, 5, 1, _rationals([metadata.focal_length]), True))  # FocalLength
    if metadata.date is not None:
        tags.append((36867, "s", 0, metadata.date, True))  # DateTimeOriginal

    atomic_write(
        path,
        lambda tmp: tifffile.imwrite(
            tmp, mosaic, photometric=_PHOTOMETRIC_CFA, metadata=None, software=f"camnet {__version__}", extratags=tags
        ),
    )


def write_linear_dng(path: Path | str, camera_rgb: np.ndarray, **options) -> None:
    """Write demosaiced linear camera RGB as a LinearRaw DNG, atomically (temporary file, then
    rename); ``options`` as ``linear_dng_writer``'s."""
    atomic_write(path, linear_dng_writer(camera_rgb, **options))


def linear_dng_writer(
    camera_rgb: np.ndarray,
    *,
    xyz_to_cam: np.ndarray,
    as_shot_neutral: Sequence[float],
    metadata: DngMetadata = DngMetadata(),
    crop: tuple[int, int, int, int] = (0, 0, 0, 0),
    preview: np.ndarray | None = None,
    baseline_exposure: float = 0.0,
    xmp: bytes | None = None,
) -> Callable[[str], None]:
    """What writes demosaiced linear camera RGB as a LinearRaw DNG to a path (for ``files.atomic_write``).

    The layout of the DNG specification's "Image File Directories" (and of Adobe's DNG Converter):
    IFD0 is an 8-bit sRGB preview (NewSubFileType 1) with the camera's tags (DNGVersion 1.4,
    Make, Model, UniqueCameraModel, Orientation, ColorMatrix1 (D65), ForwardMatrix1,
    AsShotNeutral, BaselineExposure) and a pointer to an EXIF IFD (exposure time, f-number,
    ISO, focal length, lens, date); its SubIFD is the image (NewSubFileType 0): uncompressed
    16-bit RGB, PhotometricInterpretation LinearRaw, BlackLevel 0, WhiteLevel 65535, DefaultCrop.

    Args:
        camera_rgb: (H, W, 3) float linear camera RGB, not white-balanced, as stored (not
            upright): 1 is the sensor's saturation; written as ``x * 65535``, clipped to [0, 1].
        xyz_to_cam: (3, 3) the camera's ColorMatrix, XYZ (D65) -> camera RGB, as LibRaw's
            ``rgb_xyz_matrix[:3, :3]`` (its scale per row matters: it is the sensor's response).
        as_shot_neutral: camera RGB of a neutral under the scene light: 1 / the white-balance gains.
        metadata: camera, shot and EXIF orientation (the tag; the pixels stay as stored).
        crop: (top, left, bottom, right) rows and columns at the edges that are padding, not
            image (``raw.Crop``'s order): the DefaultCrop leaves them out.
        preview: (h, w, 3) sRGB in [0, 1] of the cropped area, as stored, any size (reduced to
            256 pixels); None renders one plainly from ``camera_rgb`` (white balance, colour
            matrix, baseline exposure, sRGB curve).
        baseline_exposure: stops a raw editor adds to its default exposure (BaselineExposure).
        xmp: an XMP packet for IFD0 (export.xmp_packet: what made the file).
    """
    if camera_rgb.ndim != 3 or camera_rgb.shape[2] != 3 or not np.issubdtype(camera_rgb.dtype, np.floating):
        raise ValueError(f"expected (H, W, 3) float camera RGB, got {camera_rgb.dtype} {camera_rgb.shape}")
    xyz_to_cam = np.asarray(xyz_to_cam, dtype=np.float64)
    neutral = np.asarray(as_shot_neutral, dtype=np.float64)
    if neutral.shape != (3,) or not np.all(neutral > 0):
        raise ValueError(f"expected 3 positive as-shot neutral values, got {as_shot_neutral!r}")
    height, width = camera_rgb.shape[:2]
    top, left, bottom, right = crop
    if min(crop) < 0 or top + bottom >= height or left + right >= width:
        raise ValueError(f"crop {crop} does not leave an image of {width}x{height}")
    cam_to_xyz, _ = color.cam_to_xyz_from_xyz_to_cam(xyz_to_cam)  # white-balanced camera RGB -> XYZ
    neutral = neutral / neutral[1]
    if preview is None:
        visible = camera_rgb[top : height - bottom, left : width - right]
        small = color.fit_within(torch.from_numpy(np.ascontiguousarray(visible.transpose(2, 0, 1))).float(), _PREVIEW_SIDE)
        balanced = small.clamp(0.0, 1.0) / torch.as_tensor(neutral, dtype=torch.float32).view(3, 1, 1)
        xyz = color.apply_matrix(balanced, cam_to_xyz)
        rgb = color.linear_to_srgb(color.apply_matrix(xyz, color.XYZ_TO_SRGB) * 2.0**baseline_exposure)
    else:
        if preview.ndim != 3 or preview.shape[2] != 3:
            raise ValueError(f"expected an (h, w, 3) preview, got {preview.shape}")
        rgb = color.fit_within(torch.from_numpy(np.ascontiguousarray(preview.transpose(2, 0, 1))).float(), _PREVIEW_SIDE)
    thumbnail = np.rint(rgb.clamp(0.0, 1.0).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    pixels = np.rint(np.clip(camera_rgb, 0.0, 1.0) * 65535).astype(np.uint16)

    ifd0 = _camera_tags(metadata, xyz_to_cam, neutral) + [
        (50730, 10, 1, _rationals([baseline_exposure]), True),  # BaselineExposure
        # ForwardMatrix1, white-balanced camera RGB -> XYZ (D50): camnet's and LibRaw's transform
        # (white balance in camera RGB, then the matrix for D65). Adobe's readers prefer it to
        # ColorMatrix1, so they render the colours as LibRaw and darktable do; at D65 the two agree.
        (50964, 10, 9, _rationals(np.ravel(color.BRADFORD_D65_TO_D50 @ cam_to_xyz)), True),
        (_TAG_EXIF_PLACEHOLDER, "I", 1, 0, True),  # becomes the ExifIFD pointer
    ]
    if xmp:
        ifd0.append((700, "B", len(xmp), xmp, True))
    raw_ifd = [
        (50713, "H", 2, (1, 1), True),  # BlackLevelRepeatDim
        (50714, "H", 3, (0, 0, 0), True),  # BlackLevel, per sample
        (50717, "H", 3, (65535,) * 3, True),  # WhiteLevel, per sample
        (50719, "I", 2, (left, top), True),  # DefaultCropOrigin
        (50720, "I", 2, (width - left - right, height - top - bottom), True),  # DefaultCropSize
    ]

    def write(tmp: str) -> None:
        with tifffile.TiffWriter(tmp, byteorder="<") as tif:
            tif.write(thumbnail, photometric="rgb", subfiletype=1, subifds=1, metadata=None, software=f"camnet {__version__}", extratags=ifd0)
            tif.write(pixels, photometric=_PHOTOMETRIC_LINEAR_RAW, subfiletype=0, metadata=None, software=False, extratags=raw_ifd)
        _finish_ifd0(tmp, _exif_entries(metadata))

    return write


def _camera_tags(metadata: DngMetadata, xyz_to_cam: np.ndarray | None, neutral: Sequence[float] | None) -> list[tuple]:
    """IFD0's tags for the camera, in tifffile's ``extratags`` form."""
    camera = metadata.model
    if not metadata.model.lower().startswith(metadata.make.lower()):
        camera = f"{metadata.make} {metadata.model}"  # 'Canon EOS 350D DIGITAL', not 'Canon Canon EOS ...'
    tags = [
        (271, "s", 0, metadata.make, True),  # Make
        (272, "s", 0, metadata.model, True),  # Model
        (274, "H", 1, metadata.orientation, True),  # Orientation
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, camera, True),  # UniqueCameraModel
    ]
    if xyz_to_cam is not None:
        tags.append((50721, 10, 9, _rationals(np.ravel(xyz_to_cam)), True))  # ColorMatrix1
        tags.append((50778, "H", 1, _ILLUMINANT_D65, True))  # CalibrationIlluminant1
    if neutral is not None:
        tags.append((50728, 5, 3, _rationals(neutral), True))  # AsShotNeutral
    return tags


def _exif_entries(metadata: DngMetadata) -> list[tuple[int, int, int, bytes]]:
    """The EXIF IFD (EXIF 2.31) as (tag, type, count, little-endian value) entries."""

    def rational(x: float) -> tuple[int, int, int, bytes]:
        return _RATIONAL, 1, struct.pack("<2I", *_rationals([x]))

    def ascii_(text: str) -> tuple[int, int, int, bytes]:
        data = text.encode("ascii", "replace") + b"\0"
        return _ASCII, len(data), data

    entries = {36864: (_UNDEFINED, 4, b"0231")}  # ExifVersion
    if metadata.exposure_time is not None:
        entries[33434] = rational(metadata.exposure_time)  # ExposureTime
    if metadata.f_number is not None:
        entries[33437] = rational(metadata.f_number)  # FNumber
    if metadata.iso is not None:
        # PhotographicSensitivity is a SHORT; EXIF 2.3 writes 65535 for anything above.
        entries[34855] = (_SHORT, 1, struct.pack("<H", min(int(metadata.iso), 65535)))
    if metadata.date is not None:
        entries[36867] = ascii_(metadata.date.replace("-", ":").replace("T", " ")[:19])  # DateTimeOriginal
    if metadata.focal_length is not None:
        entries[37386] = rational(metadata.focal_length)  # FocalLength
    if metadata.lens:
        entries[42036] = ascii_(metadata.lens)  # LensModel
    return [(tag, *entry) for tag, entry in sorted(entries.items())]


def _finish_ifd0(path: str, exif: list[tuple[int, int, int, bytes]]) -> None:
    """Append the EXIF IFD to a file tifffile wrote and point IFD0 at it, in place of the placeholder.

    Also types IFD0's SubIFDs pointer LONG, as Adobe's DNG Converter does: tifffile's type IFD
    (13) is valid TIFF, but ExifTool's validation warns about it.

    Args:
        exif: (tag, type, count, little-endian value) entries, sorted by tag.
    """
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        # An IFD entry is tag (2 bytes), type (2), count (4), then the value or its offset (4).
        placeholder, sub_ifds = tags[_TAG_EXIF_PLACEHOLDER].valueoffset - 8, tags[_TAG_SUB_IFDS].valueoffset - 8
    with open(path, "r+b") as f:
        start = f.seek(0, 2)
        start += start % 2  # IFDs begin on a word boundary
        values_at = start + 2 + 12 * len(exif) + 4
        table, values = b"", b""
        for tag, kind, count, value in exif:
            if len(value) <= 4:
                table += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
            else:
                table += struct.pack("<HHII", tag, kind, count, values_at + len(values))
                values += value + b"\0" * (len(value) % 2)
        f.seek(start)
        f.write(struct.pack("<H", len(exif)) + table + struct.pack("<I", 0) + values)
        f.seek(placeholder)
        f.write(struct.pack("<HHII", _TAG_EXIF_IFD, _LONG, 1, start))
        f.seek(sub_ifds + 2)
        f.write(struct.pack("<H", _LONG))


def _rationals(values: Sequence[float] | np.ndarray) -> tuple[int, ...]:
    """Flatten numbers into TIFF (S)RATIONAL numerator/denominator pairs."""
    out: list[int] = []
    for v in values:
        f = Fraction(float(v)).limit_denominator(1_000_000)
        out += [f.numerator, f.denominator]
    return tuple(out)
