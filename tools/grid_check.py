"""Measure the 2-pixel grid a style leaves (``camnet_cli.metrics.phase_pattern``), in 8-bit levels.

Usage: python tools/grid_check.py [--style NAME_OR_PATH] [RAW ...]

- Flat fields: the style's Enhance-Net on uniform linear colours (grey, a saturated blue, a warm
  and a green tone, each from deep shadow to a light tone): the RMS and the largest of the grid.
  A uniform input has no detail, so any 2x2-periodic pattern in the output is the network's own.
- Each RAW developed with the style (fp32): the grid's RMS over the flat windows (16 pixels,
  the blurred image's spread under 1.5 8-bit levels), where a grid shows; real detail has no
  fixed phase and averages out there. LibRaw's default rendering on the same windows beside it.
"""

import argparse

import numpy as np
import rawpy
import torch
import torch.nn.functional as F

from camnet_cli import color, metrics
from camnet_cli.engine import Engine
from camnet_cli.pipeline import develop_frame
from camnet_cli.raw import load_frame
from camnet_cli.weights import companion_restore, find_weights, load_weights

COLOURS = {"grey": (1.0, 1.0, 1.0), "blue": (0.1, 0.15, 1.0), "warm": (1.0, 0.6, 0.35), "green": (0.2, 1.0, 0.3)}
LEVELS = (0.0005, 0.005, 0.05, 0.3)  # linear sRGB of the brightest channel
FLAT = 1.5 / 255


def flat_fields(enhance: torch.nn.Module) -> list[float]:
    """The grid (8-bit levels) of the style's output on each uniform colour and level."""
    to_xyz = torch.linalg.inv(torch.as_tensor(color.XYZ_TO_SRGB, dtype=torch.float32))
    out = []
    with torch.no_grad():
        for rgb in COLOURS.values():
            for level in LEVELS:
                linear = torch.tensor(rgb)[:, None, None] * level * torch.ones(3, 96, 96)
                srgb = enhance(color.apply_matrix(linear, to_xyz)[None]).clamp(0, 1)[..., 16:-16, 16:-16]
                out.append(255 * metrics.grid(srgb, torch.zeros_like(srgb)).item())
    return out


def flat_window_grid(rgb: np.ndarray, flat: torch.Tensor | None = None) -> tuple[float, torch.Tensor]:
    """RMS grid (8-bit levels) over an (H, W, 3) image's flat windows (or those of ``flat``), and those windows."""
    image = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float64)).permute(2, 0, 1)[None]
    image = image[..., : image.shape[-2] // 2 * 2, : image.shape[-1] // 2 * 2]
    pattern = metrics.phase_pattern(image)  # (1, 3, 4, h, w)
    side = metrics.GRID_WINDOW
    blurred = metrics.binomial_blur(image)
    mean = F.avg_pool2d(blurred, side, stride=side // 2)
    spread = (F.avg_pool2d(blurred**2, side, stride=side // 2) - mean**2).clamp(min=0).sqrt().amax(dim=1)  # (1, h, w)
    flat = spread < FLAT if flat is None else flat
    if not flat.any():
        return float("nan"), flat
    values = pattern.permute(0, 3, 4, 1, 2)[flat]  # (n, 3, 4)
    return 255 * values.pow(2).mean().sqrt().item(), flat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--style", default="natural")
    parser.add_argument("raws", nargs="*")
    args = parser.parse_args()
    style = find_weights(args.style, "enhance")
    enhance = load_weights(style, "enhance")[0].float().eval()
    grids = flat_fields(enhance)
    print(f"{style.name}: flat fields, grid RMS {np.sqrt(np.mean(np.square(grids))):.2f}, largest {max(grids):.2f} (8-bit levels)")
    if not args.raws:
        return
    engine = Engine(load_weights(companion_restore(style), "restore")[0], enhance, precision="fp32")
    for path in args.raws:
        with rawpy.imread(path) as raw:
            libraw = raw.postprocess(use_camera_wb=True).astype(np.float64) / 255  # AHD, auto-brightness
        developed = develop_frame(engine, load_frame(path)).srgb
        value, flat = flat_window_grid(developed)
        print(f"{path}: camnet, grid RMS {value:.2f} over its flat windows ({100 * flat.float().mean().item():.0f}% of the frame)")
        if libraw.shape == developed.shape:  # LibRaw's noise leaves nothing flat: the same windows
            print(f"{path}: LibRaw, grid RMS {flat_window_grid(libraw, flat)[0]:.2f} over the same windows")


if __name__ == "__main__":
    main()
