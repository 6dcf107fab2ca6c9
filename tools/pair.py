"""Ship separately trained networks as a style: restore-NAME and enhance-NAME, fp16, paired.

Usage: python tools/pair.py RESTORE.safetensors ENHANCE.safetensors NAME [OUT_DIR]

Writes OUT_DIR/restore-NAME.safetensors and OUT_DIR/enhance-NAME.safetensors (default: this
folder), the enhance file naming its restoration weights, as `camnet finetune` writes them, and
each keeping the training notes of its source file.
"""

import sys
from pathlib import Path

import torch

from camnet_cli.weights import load_weights, save_named


def main(restore: str, enhance: str, name: str, out: str = str(Path(__file__).parents[1] / "weights")) -> None:
    for stage, src in (("restore", restore), ("enhance", enhance)):
        net, info = load_weights(src, stage)
        extra = {k: v for k, v in info.extra.items() if k in ("trained_steps", "best_val_psnr")}
        save_named(out, net, name, training_data=info.training_data, noise_range=info.noise_range, dtype=torch.float16, extra=extra)


if __name__ == "__main__":
    main(*sys.argv[1:5])
