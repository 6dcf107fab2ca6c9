"""A small writer of Bayer (CFA) DNG files that LibRaw reads.

Used for test fixtures, for crops of real raws, and by the synthetic training data:
it writes one uncompressed IFD with the DNG tags a raw developer needs (DNG 1.6
specification, Adobe 2021): CFA layout, black and white levels, colour matrix,
as-shot neutral, noise profile and the usual TIFF/EP exposure tags.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import tifffile

from camnet_cli import __version__
from camnet_cli.files import atomic_write

# DNG CFAPattern codes per colour: 0 = red, 1 = green, 2 = blue (TIFF/EP CFAPattern).
_CFA_CODES = {"R": 0, "G": 1, "B": 2}
_PHOTOMETRIC_CFA = 32803
_ILLUMINANT_D65 = 21  # EXIF LightSource code for D65


@dataclass(frozen=True)
class DngMetadata:
    """What a written DNG says about its camera and shot."""

    make: str = "camnet"
    model: str = "synthetic"
    iso: int | None = None
    exposure_time: float | None = None  # seconds
    f_number: float | None = None
    focal_length: float | None = None  # mm
    date: str | None = None  # EXIF form, "YYYY:MM:DD HH:MM:SS"
    orientation: int = 1


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
    tags = [
        (271, "s", 0, metadata.make, True),  # Make
        (272, "s", 0, metadata.model, True),  # Model
        (274, "H", 1, metadata.orientation, True),  # Orientation
        (33421, "H", 2, (side, side), True),  # CFARepeatPatternDim
        (33422, "B", side * side, tuple(_CFA_CODES[c] for c in cfa_pattern), True),  # CFAPattern
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, f"{metadata.make} {metadata.model}", True),  # UniqueCameraModel
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50713, "H", 2, (2, 2), True),  # BlackLevelRepeatDim
        (50714, "I", 4, tuple(blacks), True),  # BlackLevel
        (50717, "I", 1, int(white_level), True),  # WhiteLevel
    ]
    if xyz_to_cam is not None:
        tags.append((50721, 10, 9, _rationals(np.ravel(xyz_to_cam)), True))  # ColorMatrix1
        tags.append((50778, "H", 1, _ILLUMINANT_D65, True))  # CalibrationIlluminant1
    if as_shot_neutral is not None:
        tags.append((50728, 5, 3, _rationals(as_shot_neutral), True))  # AsShotNeutral
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


def _rationals(values: Sequence[float] | np.ndarray) -> tuple[int, ...]:
    """Flatten numbers into TIFF (S)RATIONAL numerator/denominator pairs."""
    out: list[int] = []
    for v in values:
        f = Fraction(float(v)).limit_denominator(1_000_000)
        out += [f.numerator, f.denominator]
    return tuple(out)
