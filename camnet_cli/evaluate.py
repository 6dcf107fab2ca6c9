"""``camnet eval``'s measurements: each held-out image through the networks, and LibRaw's pipeline.

Two comparisons per image, as the paper's §IV: the restoration stage (linear XYZ) against
the restoration ground truth, and the whole pipeline (sRGB) against the final ground truth.
Baselines, scored the same way on the same raws:
- ``libraw``: LibRaw's classical pipeline (AHD demosaic, camera white balance) into linear XYZ
  and into sRGB;
- ``bilinear``: a plain bilinear demosaic with the file's white balance and colour matrix in
  place of Restore-Net, then the same Enhance-Net: what Restore-Net adds over the textbook
  demosaic, in both stages.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from camnet_cli import color, metrics, pipeline
from camnet_cli.dng import to_dn, write_dng
from camnet_cli.engine import Engine


@dataclass
class ImageScores:
    """Scores of one image: per method ("camnet", a baseline), per stage ("restore", "final")."""

    name: str
    scores: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def score(pred_xyz: torch.Tensor | None, pred_srgb: torch.Tensor, xyz: torch.Tensor, srgb: torch.Tensor) -> dict[str, dict[str, float]]:
    """Restoration (PSNR, SSIM, S-CIELAB in linear XYZ, clipped to [0, 1]) and final (PSNR, SSIM, S-CIELAB, CIEDE2000,
    and the 2-pixel grid's RMS in 8-bit levels, ``metrics.grid``)."""
    out: dict[str, dict[str, float]] = {}
    if pred_xyz is not None:
        a, b = pred_xyz.clamp(0, 1), xyz.clamp(0, 1)
        out["restore"] = {"psnr": metrics.psnr(a, b).item(), "ssim": metrics.ssim(a, b).item(), "scielab": metrics.scielab_xyz(a, b).item()}
    a, b = pred_srgb.clamp(0, 1), srgb.clamp(0, 1)
    out["final"] = {
        "psnr": metrics.psnr(a, b).item(),
        "ssim": metrics.ssim(a, b).item(),
        "scielab": metrics.scielab(a, b).item(),
        "de2000": metrics.delta_e2000(a, b).item(),
        "grid": 255 * metrics.grid(a, b).item(),
    }
    return out


def run_camnet(
    engine: Engine, sample: dict[str, torch.Tensor], one_stage: bool = False, chroma: float | None = None, camera: torch.Tensor | None = None
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(XYZ, sRGB) of a sample through ``pipeline.develop``, as ``camnet develop`` develops it (``chroma``:
    the chroma noise reduction's width, None for auto; ``camera``: a demosaic to use instead of
    Restore-Net's); a one-stage net gives sRGB only."""
    if one_stage:
        return None, engine.restore(sample["packed"].numpy(), float(sample["omega"]))
    packed = sample["packed"].numpy()
    developed = pipeline.develop(engine, packed, float(sample["omega"]), sample["wb"], sample["cam_to_xyz"], chroma=chroma, camera=camera)
    return developed.xyz, torch.from_numpy(developed.srgb).permute(2, 0, 1).contiguous()


BASELINES = ("libraw", "bilinear", "plain")
TWO_STAGE_BASELINES = ("bilinear", "plain")  # they render or replace a restoration, which a one-stage net has not


# Bilinear interpolation of a Bayer mosaic as normalised convolution: each colour's samples
# (zeros elsewhere) blurred by its kernel, divided by the kernel's weight on that colour's
# sites. Red and blue take their 2 or 4 nearest samples, green the 4 beside a red or blue site;
# inside the image this is the textbook bilinear demosaic, at the borders it averages the
# neighbours that exist.
_CORNERS = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
_CROSS = torch.tensor([[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]])
_BILINEAR = torch.stack([_CORNERS, _CROSS, _CORNERS])[:, None]  # (3, 1, 3, 3), one per colour
# Which packed plane (R, G1, G2, B) holds each colour's samples.
_SITES = torch.tensor([[1.0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]]).reshape(3, 4, 1, 1)


def bilinear_demosaic(packed: torch.Tensor) -> torch.Tensor:
    """(4, h, w) packed RGGB planes -> (3, 2h, 2w) camera RGB by bilinear interpolation."""
    mask = color.unpack_bayer(_SITES.to(packed.dtype).expand(3, 4, *packed.shape[1:]))[:, 0]  # (3, 2h, 2w)
    sparse = mask * color.unpack_bayer(packed)
    kernel = _BILINEAR.to(packed.dtype)
    num = F.conv2d(sparse[None], kernel, padding=1, groups=3)
    den = F.conv2d(mask[None], kernel, padding=1, groups=3)
    return (num / den)[0]


def run_bilinear(engine: Engine, sample: dict[str, torch.Tensor], chroma: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(XYZ, sRGB) of a sample with a bilinear demosaic instead of Restore-Net, then the rest as ``run_camnet``."""
    return run_camnet(engine, sample, chroma=chroma, camera=bilinear_demosaic(sample["packed"].float()))  # type: ignore[return-value]


def run_plain(xyz: torch.Tensor, sample: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(XYZ, sRGB) of camnet's own restoration rendered plainly instead of by Enhance-Net
    (``color.render_plain``), brightened by the final ground truth's gain like the LibRaw baseline:
    what Enhance-Net adds to (or takes from) the restoration."""
    return xyz, color.render_plain(xyz, float(sample.get("render_gain", 1.0)))


def run_libraw(sample: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(XYZ, sRGB) of a sample's raw developed by LibRaw: written as a DNG, AHD, camera white balance.

    No auto-brightening and no rotation, so that both align with the ground truths; a synthetic
    raw's sRGB rendering is brightened by the gain its final ground truth was rendered with
    (the sample's ``render_gain``, LibRaw's ``bright``), like a camera's JPEG.
    """
    import rawpy


    mosaic = color.unpack_bayer(sample["packed"].float())[0].numpy()
    cam_to_xyz = sample["cam_to_xyz"].double().numpy()
    srgb_to_cam = np.linalg.inv(cam_to_xyz) @ color.SRGB_TO_XYZ  # rows sum to one, as dcraw normalises
    xyz_to_cam = srgb_to_cam @ color.XYZ_TO_SRGB
    wb = sample["wb"].double().numpy()
    gain = float(sample.get("render_gain", 1.0))
    with tempfile.TemporaryDirectory(prefix="camnet-eval-") as tmp:
        path = Path(tmp) / "raw.dng"
        write_dng(path, to_dn(mosaic, 512, 16383), xyz_to_cam=xyz_to_cam, as_shot_neutral=1 / wb)
        results = []
        for space in (rawpy.ColorSpace.XYZ, rawpy.ColorSpace.sRGB):
            linear = space == rawpy.ColorSpace.XYZ
            bright = 1.0 if linear else gain
            with rawpy.imread(str(path)) as raw:
                img = raw.postprocess(
                    output_color=space, gamma=(1, 1) if linear else (2.4, 12.92), no_auto_bright=True, bright=bright,
                    output_bps=16, use_camera_wb=True, user_flip=0, demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD,
                )
            results.append(torch.from_numpy(img.astype(np.float32) / 65535).permute(2, 0, 1))
    return results[0], results[1]


def evaluate(
    engine: Engine, dataset, *, one_stage: bool = False, baselines: tuple[str, ...] = (), limit: int | None = None,
    chroma: float | None = None,
) -> list[ImageScores]:
    """Score every image of an evaluation set, with the networks and each of ``baselines``.

    ``chroma``: the chroma noise reduction after Enhance-Net as ``develop --chroma-nr`` (None: auto).
    """
    results = []
    for i in range(len(dataset) if limit is None else min(limit, len(dataset))):
        sample = dataset[i]
        entry = ImageScores(dataset.name(i) if hasattr(dataset, "name") else str(i))
        xyz, srgb = run_camnet(engine, sample, one_stage, chroma)
        entry.scores["camnet"] = score(xyz, srgb, sample["xyz"], sample["srgb"])
        for name in baselines:
            if name == "libraw":
                bxyz, bsrgb = run_libraw(sample)
            elif name == "bilinear":
                bxyz, bsrgb = run_bilinear(engine, sample, chroma)
            elif name == "plain" and xyz is not None:
                bxyz, bsrgb = run_plain(xyz, sample)
            else:
                raise ValueError(f"baseline {name!r}: not one of {', '.join(BASELINES)}, or not for a one-stage net")
            entry.scores[name] = score(bxyz, bsrgb, sample["xyz"], sample["srgb"])
        results.append(entry)
    return results


def means(results: list[ImageScores]) -> dict[str, dict[str, dict[str, float]]]:
    """The mean of every score over the images."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method in results[0].scores if results else []:
        out[method] = {}
        for stage, values in results[0].scores[method].items():
            out[method][stage] = {k: float(np.mean([r.scores[method][stage][k] for r in results])) for k in values}
    return out
