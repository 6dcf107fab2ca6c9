"""Unprocessing: turn an sRGB photograph into a raw frame with known ground truth.

After Brooks et al., "Unprocessing Images for Learned Raw Denoising", CVPR 2019:
invert the sRGB curve, undo a digital gain, go from sRGB to XYZ to the camera's
primaries, undo white balance, sample through a Bayer filter and add shot and read
noise. Here the restoration ground truth is the photo's linear CIE XYZ, CameraNet's
intermediate space (paper §III-C), in exactly the colour convention ``raw.load_frame``
uses for real files, so a synthetic raw written with ``dng.write_dng`` and loaded back
needs the same transform as one from a camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from camnet_cli import color


@dataclass(frozen=True)
class SyntheticRaw:
    """A raw frame made from an sRGB image, with its ground truths.

    Attributes:
        mosaic: (1, H, W) noisy RGGB mosaic, normalised raw units; not clipped (noise
            goes below 0 as it does below a real black level), so clip before use as input.
        clean: (1, H, W) the same mosaic without noise, in [0, 1].
        xyz: (3, H, W) restoration ground truth: linear CIE XYZ (D65) of the scene at the
            raw's exposure.
        wb: white-balance gains (R, G, B), G = 1, that a camera would report for the scene.
        xyz_to_cam: (3, 3) the camera's ColorMatrix (XYZ -> camera RGB).
        shot: shot-noise parameter used.
        read: read-noise standard deviation used.
    """

    mosaic: torch.Tensor
    clean: torch.Tensor
    xyz: torch.Tensor
    wb: tuple[float, float, float]
    xyz_to_cam: np.ndarray
    shot: float
    read: float


def unprocess(
    srgb: torch.Tensor,
    *,
    xyz_to_cam: np.ndarray,
    wb: tuple[float, float, float],
    shot: float,
    read: float,
    exposure: float = 1.0,
    generator: torch.Generator | None = None,
) -> SyntheticRaw:
    """Make a noisy raw mosaic and its linear XYZ ground truth from an sRGB image.

    Args:
        srgb: (3, H, W) sRGB image in [0, 1], H and W even.
        xyz_to_cam: (3, 3) XYZ (D65) -> camera RGB, a DNG ColorMatrix.
        wb: white-balance gains (R, G, B) with G = 1; the raw is divided by them.
        shot: shot-noise parameter (variance per unit signal), normalised units.
        read: read-noise standard deviation, normalised units.
        exposure: scale applied to the linear scene before sampling (Brooks et al. divide by
            a random digital gain); 1 keeps the photo's exposure.
        generator: random source for the noise.

    Returns:
        The synthetic raw. Pixel values above 1 after unprocessing (possible with a camera
        matrix that reaches outside sRGB) clip in the clean mosaic, like a saturated sensor.
    """
    if srgb.dim() != 3 or srgb.shape[0] != 3 or srgb.shape[1] % 2 or srgb.shape[2] % 2:
        raise ValueError(f"expected an sRGB image shaped (3, H, W) with even H, W, got {tuple(srgb.shape)}")
    if wb[1] != 1.0 or min(wb) <= 0:
        raise ValueError(f"expected positive white-balance gains with G = 1, got {wb}")
    srgb = srgb.to(torch.float32)
    linear = color.srgb_to_linear(srgb) * exposure
    xyz = color.apply_matrix(linear, color.SRGB_TO_XYZ)
    cam_to_xyz, _ = color.cam_to_xyz_from_xyz_to_cam(np.asarray(xyz_to_cam, dtype=np.float64))
    balanced = color.apply_matrix(xyz, np.linalg.inv(cam_to_xyz))
    gains = torch.tensor(wb, dtype=torch.float32).view(3, 1, 1)
    camera = (balanced / gains).clamp(0.0, 1.0)
    clean = color.mosaic(camera)
    variance = shot * clean + read**2
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype) * variance.sqrt()
    return SyntheticRaw(
        mosaic=clean + noise,
        clean=clean,
        xyz=xyz,
        wb=(float(wb[0]), 1.0, float(wb[2])),
        xyz_to_cam=np.asarray(xyz_to_cam, dtype=np.float64),
        shot=float(shot),
        read=float(read),
    )
