"""``camnet eval``'s measurements: each held-out image through the networks, and LibRaw's pipeline.

Two comparisons per image, as the paper's §IV: the restoration stage (linear XYZ) against
the restoration ground truth, and the whole pipeline (sRGB) against the final ground truth.
Baselines, scored the same way on the same raws:
- ``libraw``: LibRaw's classical pipeline (AHD demosaic, camera white balance) into linear XYZ
  and into sRGB;
- ``denoise``: LibRaw's AHD, then non-local means with its strength from the file's noise level
  (``denoise_nlm``), rendered by the same Enhance-Net: the classical chain that denoises;
- ``bilinear``: a plain bilinear demosaic with the file's white balance and colour matrix in
  place of Restore-Net, then the same Enhance-Net: what Restore-Net adds over the textbook
  demosaic, in both stages.

The restorations that go through ``pipeline.develop`` (camnet's, and the ``denoise`` and
``bilinear`` baselines') are scored as develop writes them (``--save-linear``), with the chroma
noise reduction it gives every output; LibRaw's as LibRaw gives it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from camnet_cli import color, metrics, noise, pipeline
from camnet_cli.dng import to_dn, write_dng
from camnet_cli.engine import Engine


@dataclass
class ImageScores:
    """Scores of one image: per method ("camnet", a baseline), per stage ("restore", "final")."""

    name: str
    scores: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def score(
    pred_xyz: torch.Tensor | None, pred_srgb: torch.Tensor, xyz: torch.Tensor, srgb: torch.Tensor, gain: float = 1.0
) -> dict[str, dict[str, float]]:
    """Scores of one image, by stage.

    - "restore": the restoration in linear XYZ, clipped to [0, 1]: PSNR, SSIM, S-CIELAB;
    - "restore_curve": the restoration where a viewer sees it, after the tone curve: both XYZ through
      the plain rendering at the final ground truth's ``gain`` (``color.render_plain``): PSNR, SSIM.
      In linear light the shadows weigh almost nothing; after the curve they carry most of the
      visible noise;
    - "final": the image as developed: PSNR, SSIM, S-CIELAB, CIEDE2000 and the 2-pixel grid's RMS in
      8-bit levels (``metrics.grid``).
    """
    out: dict[str, dict[str, float]] = {}
    if pred_xyz is not None:
        a, b = pred_xyz.clamp(0, 1), xyz.clamp(0, 1)
        out["restore"] = {"psnr": metrics.psnr(a, b).item(), "ssim": metrics.ssim(a, b).item(), "scielab": metrics.scielab_xyz(a, b).item()}
        a, b = color.render_plain(pred_xyz, gain), color.render_plain(xyz, gain)
        out["restore_curve"] = {"psnr": metrics.psnr(a, b).item(), "ssim": metrics.ssim(a, b).item()}
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
    read = float(sample["read"]) if "read" in sample else None
    developed = pipeline.develop(
        engine, packed, float(sample["omega"]), sample["wb"], sample["cam_to_xyz"], chroma=chroma, camera=camera, read=read, linear=True, linear_float=True
    )
    # The restoration as develop writes it (--save-linear, unclipped), its chroma noise reduction included.
    xyz = color.apply_matrix(torch.from_numpy(developed.linear).permute(2, 0, 1), color.SRGB_TO_XYZ)
    return xyz, torch.from_numpy(developed.srgb).permute(2, 0, 1).contiguous()


BASELINES = ("libraw", "denoise", "bilinear", "plain")
TWO_STAGE_BASELINES = ("denoise", "bilinear", "plain")  # they render or replace a restoration, which a one-stage net has not


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


def run_libraw(sample: dict[str, torch.Tensor], srgb: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(XYZ, sRGB) of a sample's raw developed by LibRaw: written as a DNG, AHD, camera white balance.

    No auto-brightening and no rotation, so that both align with the ground truths; a synthetic
    raw's sRGB rendering is brightened by the gain its final ground truth was rendered with
    (the sample's ``render_gain``, LibRaw's ``bright``), like a camera's JPEG. ``srgb``: False
    for the XYZ alone (sRGB None).
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
        for space in (rawpy.ColorSpace.XYZ, rawpy.ColorSpace.sRGB) if srgb else (rawpy.ColorSpace.XYZ,):
            linear = space == rawpy.ColorSpace.XYZ
            bright = 1.0 if linear else gain
            with rawpy.imread(str(path)) as raw:
                img = raw.postprocess(
                    output_color=space, gamma=(1, 1) if linear else (2.4, 12.92), no_auto_bright=True, bright=bright,
                    output_bps=16, use_camera_wb=True, user_flip=0, demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD,
                )
            results.append(torch.from_numpy(img.astype(np.float32) / 65535).permute(2, 0, 1))
    return results[0], results[1] if srgb else None


# The classical chain with a denoiser: LibRaw's AHD, then non-local means (Buades, Coll and Morel,
# CVPR 2005; scikit-image's) on the image after the sRGB curve, which roughly stabilises shot noise.
# Its strength is h = NLM_STRENGTH x the noise the file's level predicts there (never the ground
# truth); the factor was chosen on training photographs (tools/tune_denoise_baseline.py).
NLM_STRENGTH = 2.8


def noise_after_curve(linear: torch.Tensor, omega: float) -> float:
    """The noise's standard deviation after the sRGB curve of a linear image, averaged over its pixels:
    the curve's slope times sqrt(shot * x + read^2), the level split into shot and read as develop does."""
    profile = noise.split_omega(max(omega, 1e-12))
    x = linear.clamp(1e-4, 1.0)
    return float((color.srgb_slope(x) * torch.sqrt(profile.shot * x + profile.read**2)).mean())


def denoise_nlm(xyz: torch.Tensor, omega: float, strength: float = NLM_STRENGTH) -> torch.Tensor:
    """(3, H, W) linear XYZ denoised by non-local means after the sRGB curve, back in linear XYZ."""
    try:
        from skimage.restoration import denoise_nl_means
    except ImportError:
        raise ValueError("the denoise baseline needs scikit-image (pip install 'camnet[eval]')") from None
    linear = color.apply_matrix(xyz.double(), color.XYZ_TO_SRGB).clamp(0, 1)
    curved = color.linear_to_srgb(linear).permute(1, 2, 0).numpy()
    sigma = noise_after_curve(linear, omega)
    clean = denoise_nl_means(curved, h=strength * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True, channel_axis=-1)
    back = color.srgb_to_linear(torch.from_numpy(np.ascontiguousarray(clean)).permute(2, 0, 1))
    return color.apply_matrix(back, color.SRGB_TO_XYZ).float()


def run_denoise(engine: Engine, sample: dict[str, torch.Tensor], chroma: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(XYZ, sRGB) of the classical chain: LibRaw's AHD (``run_libraw``), then ``denoise_nlm``; rendered
    as camnet's own restoration is, by the same Enhance-Net and chroma filter (``run_camnet``)."""
    xyz = denoise_nlm(run_libraw(sample, srgb=False)[0], float(sample["omega"]))
    to_camera = torch.linalg.inv(sample["cam_to_xyz"].double()).float()
    camera = color.apply_matrix(xyz, to_camera) / sample["wb"].float()[:, None, None]
    return run_camnet(engine, sample, chroma=chroma, camera=camera)  # type: ignore[return-value]


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
        gain = float(sample.get("render_gain", 1.0))
        entry.scores["camnet"] = score(xyz, srgb, sample["xyz"], sample["srgb"], gain)
        for name in baselines:
            if name == "libraw":
                bxyz, bsrgb = run_libraw(sample)  # type: ignore[assignment]
            elif name == "denoise" and engine.enhance_net is not None:
                bxyz, bsrgb = run_denoise(engine, sample, chroma)
            elif name == "bilinear":
                bxyz, bsrgb = run_bilinear(engine, sample, chroma)
            elif name == "plain" and xyz is not None:
                bxyz, bsrgb = run_plain(xyz, sample)
            else:
                raise ValueError(f"baseline {name!r}: not one of {', '.join(BASELINES)}, or not for a one-stage net")
            entry.scores[name] = score(bxyz, bsrgb, sample["xyz"], sample["srgb"], gain)
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
