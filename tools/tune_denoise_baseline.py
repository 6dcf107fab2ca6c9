"""Choose the strength of camnet eval's classical denoising baseline on training photographs.

Usage: python tools/tune_denoise_baseline.py PHOTOS_DIR [N_PHOTOS]

The baseline (LibRaw's AHD, then non-local means after the sRGB curve, ``evaluate.denoise_nlm``)
sets h to a factor times the noise the file's level predicts; this prints, for a few factors, the
restoration's PSNR after the curve on the first N training photographs (never the held-out ones)
at the noise levels camnet is measured at, so the factor is not tuned on what it is scored on.
"""

import sys
from pathlib import Path

import numpy as np

from camnet_cli import color, metrics
from camnet_cli.data import synthetic
from camnet_cli.evaluate import denoise_nlm, run_libraw

LEVELS = ((2.0e-4, 1.2e-3), (1.6e-3, 4.0e-3), (6.4e-3, 1.2e-2), (1.28e-2, 2.2e-2))
FACTORS = (1.4, 2.0, 2.8, 4.0, 5.6)


def main(root: str, count: int = 4) -> None:
    training = synthetic.split(synthetic.find_photos(Path(root)), "train")
    photos = training[:: max(1, len(training) // count)][:count]
    data = synthetic.SyntheticEvalSet(photos, noises=LEVELS, max_side=512)
    scores = {f: {level: [] for level in range(len(LEVELS))} for f in (0.0, *FACTORS)}
    for i in range(len(data)):
        sample, level = data[i], i % len(LEVELS)
        gain = float(sample["render_gain"])
        truth = color.render_plain(sample["xyz"], gain)
        ahd = run_libraw(sample, srgb=False)[0]
        for f in scores:
            xyz = ahd if f == 0 else denoise_nlm(ahd, float(sample["omega"]), f)
            scores[f][level].append(metrics.psnr(color.render_plain(xyz, gain), truth).item())
    print("factor  " + "  ".join(f"omega {s + r * r:.1e}" for s, r in LEVELS) + "   mean")
    for f, by_level in scores.items():
        means = [float(np.mean(v)) for v in by_level.values()]
        print(f"{f:6.2f}  " + "  ".join(f"{m:13.2f}" for m in means) + f"  {np.mean(means):6.2f}")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
