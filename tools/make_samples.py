"""Make the model card's sample images: a raw developed by camnet beside LibRaw's default rendering.

Usage: python tools/make_samples.py PATH/TO/sony_ILCE-7RM3_iso3200_DSC2164.ARW

Writes weights/samples/<stem>-camnet.jpg, <stem>-libraw.jpg (1296 pixels wide) and a
1:1 crop of each (<stem>-camnet-crop.jpg, <stem>-libraw-crop.jpg).
"""

import sys
from pathlib import Path

import numpy as np
import rawpy
import torch
import torch.nn.functional as F
from PIL import Image

from camnet_cli.engine import Engine
from camnet_cli.pipeline import develop_frame
from camnet_cli.raw import load_frame
from camnet_cli.weights import companion_restore, find_weights, load_weights

WIDTH = 1296
CROP = (1700, 1500, 640, 960)  # top, left, height, width: the guitarist's hands


def _save(rgb: np.ndarray, path: Path) -> None:
    Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(path, quality=88)


def _small(rgb: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    h = round(rgb.shape[0] * WIDTH / rgb.shape[1])
    return F.interpolate(t, size=(h, WIDTH), mode="bilinear", antialias=True, align_corners=False)[0].permute(1, 2, 0).numpy()


def main(raw_path: str) -> None:
    out = Path(__file__).parents[1] / "weights" / "samples"
    out.mkdir(exist_ok=True)
    stem = Path(raw_path).stem
    style = find_weights("natural", "enhance")
    engine = Engine(load_weights(companion_restore(style), "restore")[0], load_weights(style, "enhance")[0], precision="fp32")
    camnet = develop_frame(engine, load_frame(raw_path)).srgb
    with rawpy.imread(raw_path) as raw:
        libraw = raw.postprocess(use_camera_wb=True).astype(np.float32) / 255  # LibRaw's defaults: AHD, auto-brightness
    top, left, h, w = CROP
    for name, img in (("camnet", camnet), ("libraw", libraw)):
        _save(_small(img), out / f"{stem}-{name}.jpg")
        _save(img[top : top + h, left : left + w], out / f"{stem}-{name}-crop.jpg")


if __name__ == "__main__":
    main(sys.argv[1])
