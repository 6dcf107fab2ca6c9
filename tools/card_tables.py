"""Turn `camnet eval --json` output into the model card's per-ISO tables.

Usage:
    camnet eval --dataset synthetic --data-root PHOTOS --enhance weights/enhance-natural.safetensors \\
        --baseline libraw,bilinear --json > eval.json
    python tools/card_tables.py eval.json [MORE.json ...]

Every method in the files gets its columns (camnet first); files of the same images add their
methods to the first's (a baseline scored in a separate run, say).
"""

import json
import sys
from collections import defaultdict

import numpy as np

LABELS = {"camnet": "camnet", "libraw": "LibRaw", "denoise": "AHD + NLM", "bilinear": "bilinear", "plain": "plain", "psnr": "PSNR", "ssim": "SSIM", "scielab": "S-CIELAB", "de2000": "ΔE00", "grid": "grid"}


def _cells(group: str) -> list[str]:
    """The row labels of a group: "ISO400" -> ["400"], "exposure0.35@ISO400" -> ["0.35", "400"],
    "noise0.0016" (from --noise-levels) -> ["0.0016"]."""
    return [part.removeprefix("exposure").removeprefix("ISO").removeprefix("noise") for part in group.split("@")]


def _cell(values: list[float | None], key: str) -> str:
    """The mean of a group's scores, or a dash where a file predates the score (restoration S-CIELAB)."""
    if any(v is None for v in values):
        return "—"
    return f"{np.mean(values):.{4 if key == 'ssim' else 2}f}"


def main(*paths: str) -> None:
    images: dict[str, dict] = {}
    for path in paths:
        with open(path) as f:
            for image in json.load(f)["images"]:
                images.setdefault(image["name"], {}).update({k: v for k, v in image.items() if k != "name"})
    methods = list(dict.fromkeys(m for scores in images.values() for m in scores))
    groups: dict[str, list[dict]] = defaultdict(list)
    for name, scores in images.items():
        groups[name.split("@", 1)[1]].append(scores)  # "ISO400", or "exposure0.35@ISO400" from --exposure
    exposures = any(group.startswith("exposure") for group in groups)
    levels = any(group.startswith("noise") for group in groups)
    # restore_curve: the restoration after the sRGB curve, where a viewer sees its error.
    stages = (("restore_curve", ("psnr", "ssim")), ("restore", ("psnr", "ssim", "scielab")), ("final", ("psnr", "ssim", "scielab", "de2000", "grid")))
    for stage, keys in stages:
        shown = [m for m in methods if all(stage in s.get(m, {}) for s in images.values())]
        if not shown:
            continue
        print(f"\n{stage}:\n")
        print("| " + "exposure | " * exposures + ("ω | " if levels else "ISO | ") + " | ".join(f"{LABELS.get(m, m)} {LABELS[k]}" for k in keys for m in shown) + " |")
        print("|---|" + "---|" * (exposures + len(shown) * len(keys)))
        for group in sorted(groups, key=lambda g: [float(c) for c in _cells(g)]):
            cells = [_cell([s[m][stage].get(k) for s in groups[group]], k) for k in keys for m in shown]
            print("| " + " | ".join(_cells(group) + cells) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:])
