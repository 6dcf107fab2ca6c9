"""The development path: restore -> XYZ -> enhance -> chroma noise reduction -> upright.

``develop`` is the one place the stages are chained; ``camnet develop`` (per file, through
``develop_frame``), ``camnet eval`` and ``camnet bench`` all call it. The engine only runs the
networks; the fixed image processing between them is in ``color``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from camnet_cli import color
from camnet_cli.engine import Engine
from camnet_cli.raw import Crop, Frame, uncrop

NO_CROP = Crop(0, 0, 0, 0)


@dataclass
class Developed:
    """A developed frame.

    Attributes:
        xyz: the restoration in linear XYZ as stored (not upright, phase crop kept), float32, as its
            (12, H/2, W/2) phase planes (``color.apply_matrix``); ``xyz_image`` lays it out. None
            for a linear DNG alone (``keep_camera`` without ``render`` or ``linear``).
        srgb: upright (H, W, 3) float32 in [0, 1]; None without an Enhance-Net.
        linear: the restoration as upright linear sRGB primaries (D65), in [0, 1], when asked for,
            with the chroma noise reduction (``color.smooth_chroma_linear``).
        camera: the restoration as (H, W, 3) camera RGB, not white-balanced, as stored, when asked
            for, with the chroma noise reduction.
        seconds: where the time went ("restore", "enhance"; "networks": of those, the networks' passes).
    """

    xyz: torch.Tensor | None
    srgb: np.ndarray | None = None
    linear: np.ndarray | None = None
    camera: np.ndarray | None = None
    wb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    seconds: dict[str, float] = field(default_factory=dict)

    def xyz_image(self) -> torch.Tensor:
        """The restoration in linear XYZ, (3, H, W), as stored."""
        return F.pixel_shuffle(self.xyz[None], 2)[0]


# EXIF orientations on (C, H, W) tensors: raw.upright's on (H, W, C) arrays, one axis on.
_UPRIGHT_CHW = {
    2: lambda t: t.flip(2),
    3: lambda t: t.flip(1, 2),
    4: lambda t: t.flip(1),
    5: lambda t: t.transpose(1, 2),
    6: lambda t: t.rot90(-1, (1, 2)),
    7: lambda t: t.transpose(1, 2).flip(1, 2),
    8: lambda t: t.rot90(1, (1, 2)),
}


def to_upright_hwc(img: torch.Tensor, crop: Crop, orientation: int) -> np.ndarray:
    """(C, H, W) as stored -> upright (H, W, C) pixels, the phase crop put back (``raw.uncrop``,
    ``raw.upright``), copied by torch, whose copies use every thread: numpy's transposing copy of
    a whole frame took eight times as long."""
    if crop.top or crop.left or crop.bottom or crop.right:
        img = F.pad(img, (crop.left, crop.right, crop.top, crop.bottom), mode="replicate")
    turned = _UPRIGHT_CHW.get(orientation, lambda t: t)(img)
    return turned.permute(1, 2, 0).contiguous().numpy()


def chroma_width(chroma: float | None, omega: float) -> float:
    """The chroma noise reduction's width in pixels: ``chroma``, or for None (auto) the one for the
    noise level ``omega`` (``color.chroma_sigma``); never above ``color.MAX_CHROMA``."""
    return color.chroma_sigma(omega) if chroma is None else min(chroma, color.MAX_CHROMA)


def rendering_gain(engine: Engine) -> float:
    """The exposure of the plain rendering Enhance-Net styles (its ``base``; 1 without one): where
    the chroma filter is tuned, so where it filters a linear output too."""
    net = engine.enhance_net
    return float(net.config.base) if net is not None and net.config.base > 0 else 1.0


@torch.no_grad()  # the networks' finishing steps then work in place
def develop(
    engine: Engine,
    packed: np.ndarray | torch.Tensor | list,
    omega: float,
    wb: tuple[float, float, float] | torch.Tensor,
    cam_to_xyz: np.ndarray | torch.Tensor,
    *,
    chroma: float | None = None,
    crop: Crop = NO_CROP,
    orientation: int = 1,
    linear: bool = False,
    camera: torch.Tensor | None = None,
    max_size: int | None = None,
    render: bool = True,
    keep_camera: bool = False,
    linear_float: bool = False,
    read: float | None = None,
) -> Developed:
    """Develop packed raw planes into images.

    Args:
        packed: (4, h, w) RGGB planes in [0, 1]; or a list holding them alone, which develop
            empties: handed over so, they are freed as soon as Restore-Net is done with them
            instead of lasting to the end (72 MB of the 18 MP ARW's peak, in Enhance-Net).
        omega: the noise level.
        read: the read noise's standard deviation (a network with a read plane takes it; None:
            the one that usually goes with ``omega``, ``networks.default_read``).
        wb: white-balance gains (R, G, B).
        cam_to_xyz: (3, 3) white-balanced camera RGB -> XYZ.
        chroma: the chroma noise reduction's width in pixels; None: from ``omega`` (``chroma_width``).
        crop, orientation: the frame's phase crop and EXIF orientation, undone on the images.
        linear: also make the linear sRGB image; with ``linear_float``, not clipped to [0, 1] (scene-referred).
        camera: (3, 2h, 2w) camera RGB to use instead of Restore-Net's (a baseline's demosaic).
        max_size: the images' longest side at most, resampled down (``color.fit_within``) once upright.
        render: make the styled sRGB image (Enhance-Net); False for a linear DNG only.
        keep_camera: keep the restoration's camera RGB (``Developed.camera``: as stored, the phase
            crop undone, neither oriented nor resized), for a linear DNG.
    """
    t0, in_networks = time.perf_counter(), engine.network_seconds
    if isinstance(packed, list):
        packed = packed.pop()
    # From Restore-Net to Enhance-Net the image stays in the networks' own layout, its phase planes:
    # it is laid out only where asked for (2 x 0.1 s for 18 megapixels).
    camera = engine.restore(packed, omega, read, phases=True) if camera is None else F.pixel_unshuffle(camera[None], 2)[0]
    del packed  # handed over (a list), the planes go here
    styled = render and engine.enhance_net is not None
    # The camera RGB is ours; a linear DNG alone needs no XYZ.
    xyz = color.camera_to_xyz(camera, wb, cam_to_xyz, phases=True, inplace=not keep_camera) if styled or linear else None
    t1 = time.perf_counter()

    def finish(img: torch.Tensor, clip: bool = True) -> np.ndarray:
        # In place: each image here is this function's own, and copies of a whole frame add up.
        hwc = to_upright_hwc(img.clamp_(0.0, 1.0) if clip else img, crop, orientation)
        if max_size is not None and max(hwc.shape[:2]) > max_size:
            small = color.fit_within(torch.from_numpy(hwc).permute(2, 0, 1), max_size, clip=clip)
            hwc = np.ascontiguousarray(small.permute(1, 2, 0).numpy())
        return hwc

    out = Developed(xyz=xyz, wb=tuple(float(g) for g in wb), seconds={"restore": t1 - t0})  # type: ignore[arg-type]
    width, exposure = chroma_width(chroma, omega), rendering_gain(engine)
    # The restoration's own outputs (a linear DNG, --save-linear) have the chroma noise reduction the
    # styled image has, filtered as that is, after the curve.
    if keep_camera:
        to_srgb = torch.as_tensor(color.XYZ_TO_SRGB, dtype=torch.float32) @ color.camera_matrix(wb, cam_to_xyz)
        camera = color.smooth_chroma_linear(F.pixel_shuffle(camera[None].float(), 2), width, exposure, to_srgb, inplace=True)
        out.camera = uncrop(camera[0].permute(1, 2, 0).cpu().numpy(), crop)
    del camera  # the styled image needs only the XYZ (written over the camera RGB unless that is kept)
    if styled:
        srgb = color.smooth_chroma(engine.enhance(xyz, phases=True)[None], width, inplace=True)[0]
        out.srgb = finish(srgb.cpu())
        out.seconds["enhance"] = time.perf_counter() - t1
    if linear:
        rgb = out.xyz_image()  # a new image: the XYZ is kept
        color.apply_matrix(rgb, color.XYZ_TO_SRGB, out=rgb)
        out.linear = finish(color.smooth_chroma_linear(rgb[None], width, exposure, inplace=True)[0], clip=not linear_float)
    out.seconds["networks"] = engine.network_seconds - in_networks
    return out


def develop_frame(
    engine: Engine,
    frame: Frame,
    wb: str | tuple[float, float, float] = "camera",
    linear: bool = False,
    chroma: float | None = None,
    max_size: int | None = None,
    dng: bool = False,
    linear_float: bool = False,
    planes: list[np.ndarray] | None = None,
) -> Developed:
    """``develop`` a decoded raw frame; ``wb``: "camera" (as shot), "auto" (grey world) or gains;
    ``dng``: the restoration's camera RGB only (for a linear DNG), no styled image; ``planes``: the
    frame's packed planes handed over in a list, the frame holding none (``Frame.hand_over``)."""
    packed = frame.packed if planes is None else planes[0]
    gains = frame.wb if wb == "camera" else color.auto_white_balance(packed) if wb == "auto" else wb
    del packed
    return develop(
        engine, frame.packed if planes is None else planes, frame.noise.omega, gains, frame.cam_to_xyz,  # type: ignore[arg-type]
        chroma=chroma, crop=frame.crop, orientation=frame.orientation, linear=linear, max_size=max_size,
        render=not dng, keep_camera=dng, linear_float=linear_float, read=frame.noise.read,
    )
