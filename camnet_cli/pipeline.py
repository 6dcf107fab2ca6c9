"""One frame through the networks into upright images: what ``develop`` does per file.

Restoration gives camera RGB; white balance and the camera matrix take it to XYZ; the
style renders sRGB. The RGGB phase crop is undone (edge pixels repeated) so the image
has the visible area's size, and EXIF orientation is applied to the pixels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from camnet_cli import color
from camnet_cli.engine import Engine
from camnet_cli.raw import Crop, Frame

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


def parse_wb(text: str) -> str | tuple[float, float, float]:
    """``--wb`` value: "camera", "auto", or "R,G,B" gains (normalised to G = 1).

    Raises:
        ValueError: with a message fit for the user.
    """
    if text in ("camera", "auto"):
        return text
    try:
        gains = [float(v) for v in text.split(",")]
    except ValueError:
        gains = []
    if len(gains) != 3 or min(gains) <= 0:
        raise ValueError(f"--wb takes camera, auto or three positive gains R,G,B; got {text!r}")
    return (gains[0] / gains[1], 1.0, gains[2] / gains[1])


def parse_chroma(text: str) -> float | None:
    """``--chroma-nr`` value: "auto" (None: the width follows each file's noise level), "off" (0) or a width in pixels.

    Raises:
        ValueError: with a message fit for the user.
    """
    if text == "auto":
        return None
    if text == "off":
        return 0.0
    try:
        sigma = float(text)
    except ValueError:
        sigma = -1.0
    if not 0 <= sigma <= 64:
        raise ValueError(f"--chroma-nr takes auto, off or a width in pixels from 0 to 64; got {text!r}")
    return sigma


def chroma_width(chroma: float | None, omega: float) -> float:
    """The chroma noise reduction's width in pixels: ``chroma`` (a ``parse_chroma`` value), or for
    None (auto) the one for the noise level ``omega`` (``color.chroma_sigma``)."""
    return color.chroma_sigma(omega) if chroma is None else chroma


def auto_white_balance(packed: np.ndarray) -> tuple[float, float, float]:
    """Grey-world gains (R, G, B), G = 1: the scene's average is taken to be neutral.

    After Buchsbaum, "A spatial processor model for object colour perception" (1980), on the
    raw planes, leaving out clipped and near-black pixels, which carry no colour.
    """
    r, g1, g2, b = packed
    g = (g1 + g2) / 2
    usable = (np.maximum(np.maximum(r, g), b) < 0.95) & (g > 0.01)
    if usable.sum() < 100:
        usable = np.ones_like(usable)
    mr, mg, mb = (float(c[usable].mean()) for c in (r, g, b))
    if min(mr, mg, mb) <= 0:
        return (1.0, 1.0, 1.0)
    return (mg / mr, 1.0, mg / mb)


def uncrop(image: np.ndarray, crop: Crop) -> np.ndarray:
    """(H', W', C) -> (H, W, C): put back the rows and columns the RGGB crop removed (edge-repeated)."""
    return np.pad(image, ((crop.top, crop.bottom), (crop.left, crop.right), (0, 0)), mode="edge")


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to (H, W, C) pixels; the result needs orientation 1."""
    return np.ascontiguousarray(_UPRIGHT.get(orientation, _UPRIGHT[1])(image))


@dataclass
class Developed:
    """A developed frame: upright (H, W, 3) float32 images in [0, 1] and where time went."""

    srgb: np.ndarray
    linear: np.ndarray | None = None  # linear sRGB primaries, D65, when asked for
    wb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    seconds: dict[str, float] = field(default_factory=dict)


def develop_frame(
    engine: Engine, frame: Frame, wb: str | tuple[float, float, float] = "camera", linear: bool = False, chroma: float | None = None
) -> Developed:
    """Run a frame through both networks and make its images.

    ``chroma``: the chroma noise reduction's width in pixels; None: from the frame's noise level
    (``chroma_width``).
    """
    gains = frame.wb if wb == "camera" else auto_white_balance(frame.packed) if wb == "auto" else wb
    t0 = time.perf_counter()
    camera = engine.restore(frame.packed, frame.noise.omega)
    xyz = color.camera_to_xyz(camera, torch.tensor(gains, dtype=torch.float32), torch.as_tensor(frame.cam_to_xyz, dtype=torch.float32))
    t1 = time.perf_counter()
    srgb = engine.enhance(xyz, chroma_width(chroma, frame.noise.omega))
    t2 = time.perf_counter()

    def finish(img: torch.Tensor) -> np.ndarray:
        hwc = img.clamp(0.0, 1.0).permute(1, 2, 0).numpy()
        return upright(uncrop(hwc, frame.crop), frame.orientation)

    out = Developed(srgb=finish(srgb), wb=tuple(gains), seconds={"restore": t1 - t0, "enhance": t2 - t1})  # type: ignore[arg-type]
    if linear:
        out.linear = finish(color.apply_matrix(xyz, color.XYZ_TO_SRGB))
    return out
