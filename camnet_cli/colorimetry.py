"""Colour science on NumPy float64 matrices: the colour spaces' matrices and a camera's colour
transform, derived once per file by the front end (``camnet_cli.raw``). No torch here: the raw
decoder's child processes import this module and start in a fraction of the time.

The colour spaces are described in ``camnet_cli.color``, which re-exports all of this.
"""

from __future__ import annotations

import numpy as np

# Linear sRGB -> XYZ (D65), from the sRGB primaries and white of IEC 61966-2-1:1999,
# as tabulated by B. Lindbloom (brucelindbloom.com, "RGB/XYZ Matrices").
SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
XYZ_TO_SRGB = np.linalg.inv(SRGB_TO_XYZ)

# Bradford chromatic adaptation D65 -> D50, as tabulated by B. Lindbloom
# (brucelindbloom.com, "Chromatic Adaptation"): ICC profiles and DNG ForwardMatrix work in D50.
BRADFORD_D65_TO_D50 = np.array(
    [
        [1.0478112, 0.0228866, -0.0501270],
        [0.0295424, 0.9904844, -0.0170491],
        [-0.0092345, 0.0150436, 0.7521316],
    ]
)


def rgb_to_xyz_matrix(primaries: tuple[tuple[float, float], ...], white: tuple[float, float]) -> np.ndarray:
    """(3, 3) linear RGB -> XYZ of an RGB space given its primaries' and white's CIE xy (white Y = 1)."""
    xyz = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries]).T
    wx, wy = white
    scale = np.linalg.solve(xyz, np.array([wx / wy, 1.0, (1 - wx - wy) / wy]))
    return xyz * scale


_D65_XY = (0.3127, 0.3290)
# Output colour spaces: linear RGB -> XYZ (D65), and the transfer curve's gamma (None: the sRGB curve).
# Display P3: DCI-P3 primaries (SMPTE EG 432-1) with D65 and the sRGB curve, as Apple defines it.
# Adobe RGB (1998): Adobe's "Adobe RGB (1998) Color Image Encoding" (2005), gamma 563/256.
RGB_SPACES: dict[str, tuple[np.ndarray, float | None]] = {
    "srgb": (SRGB_TO_XYZ, None),
    "p3": (rgb_to_xyz_matrix(((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)), _D65_XY), None),
    "adobe": (rgb_to_xyz_matrix(((0.640, 0.330), (0.210, 0.710), (0.150, 0.060)), _D65_XY), 563 / 256),
}


# The D65 white point, Y = 1 (CIE 15:2004): what white-balanced neutral maps to (the rows of
# SRGB_TO_XYZ sum to it), CIELAB's reference white and the ICC profiles' media white.
D65 = (0.95047, 1.0, 1.08883)

# The 2x2 site order of a packed RGGB mosaic: channel k holds site (k // 2, k % 2),
# the order of torch's pixel_unshuffle(2).
PACKED_CHANNELS = ("R", "G1", "G2", "B")


def cam_to_xyz_from_xyz_to_cam(xyz_to_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn a DNG-style ColorMatrix (XYZ -> camera) into a white-balanced camera -> XYZ matrix.

    The method is dcraw's ``cam_xyz_coeff``: go through linear sRGB, normalise the
    sRGB -> camera rows to sum to one so that white-balanced neutral stays neutral,
    and invert.

    Args:
        xyz_to_cam: (3, 3) XYZ (D65) -> camera RGB, as LibRaw's ``rgb_xyz_matrix[:3]``.

    Returns:
        ``(cam_to_xyz, d65_gains)``: the (3, 3) matrix from white-balanced camera RGB
        to XYZ, and the camera's white-balance gains for a D65 scene, G = 1.
    """
    if xyz_to_cam.shape != (3, 3):
        raise ValueError(f"expected a (3, 3) matrix, got shape {xyz_to_cam.shape}")
    srgb_to_cam = xyz_to_cam @ SRGB_TO_XYZ
    row_sums = srgb_to_cam.sum(axis=1)
    d65_gains = 1.0 / row_sums
    srgb_to_cam = srgb_to_cam / row_sums[:, None]
    cam_to_xyz = SRGB_TO_XYZ @ np.linalg.inv(srgb_to_cam)
    return cam_to_xyz, d65_gains / d65_gains[1]


def cam_to_xyz_from_cam_to_srgb(cam_to_srgb: np.ndarray) -> np.ndarray:
    """White-balanced camera -> XYZ from a camera -> linear sRGB matrix (LibRaw's ``color_matrix``).

    Args:
        cam_to_srgb: (3, 3) white-balanced camera RGB -> linear sRGB, rows summing to ~1.
    """
    if cam_to_srgb.shape != (3, 3):
        raise ValueError(f"expected a (3, 3) matrix, got shape {cam_to_srgb.shape}")
    return SRGB_TO_XYZ @ cam_to_srgb
