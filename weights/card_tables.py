"""Turn `camnet eval --json --baseline libraw` output into the model card's per-ISO tables.

Usage:
    camnet eval --dataset synthetic --data-root PHOTOS --enhance weights/enhance-natural.safetensors \\
        --baseline libraw --json > eval.json
    python weights/card_tables.py eval.json
"""

import json
import sys
from collections import defaultdict

import numpy as np


def main(path: str) -> None:
    data = json.load(open(path))
    groups: dict[str, list[dict]] = defaultdict(list)
    for image in data["images"]:
        groups[image["name"].rsplit("@", 1)[1]].append(image)
    for stage, keys in (("restore", ("psnr", "ssim")), ("final", ("psnr", "ssim", "scielab", "de2000"))):
        print(f"\n{stage}:\n")
        print("| ISO | " + " | ".join(f"camnet {k} | LibRaw {k}" for k in keys) + " |")
        print("|---|" + "---|" * (2 * len(keys)))
        for iso in sorted(groups, key=lambda s: float(s.removeprefix("ISO"))):
            cells = []
            for k in keys:
                for method in ("camnet", "libraw"):
                    cells.append(f"{np.mean([im[method][stage][k] for im in groups[iso]]):.{4 if k == 'ssim' else 2}f}")
            print(f"| {iso.removeprefix('ISO')} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
