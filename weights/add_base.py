"""Put the plain rendering under trained Enhance-Net weights (``EnhanceNetConfig.base``), to train on.

Usage: python weights/add_base.py ENHANCE.safetensors OUT.safetensors [GAIN]

The config in the header gains ``base`` (default 2, the default of new networks) and the UNet's
output layer is set to zero, so the network develops as the plain rendering (XYZ to sRGB, times
the gain, clipped, the sRGB curve) and further training teaches the UNet only the style's
difference from it, starting from the trained body's features. Not a finished style by
itself: fine-tune it with its Restore-Net (``camnet finetune --enhance OUT``: for ``natural``,
whose ground truth is this rendering of the true XYZ, step 1 alone has nothing to teach it), or
for another style train it (``camnet train-enhance --init OUT``). Style, notes and dtype are kept.
"""

import dataclasses
import sys

import torch

from camnet_cli.model import EnhanceNet, EnhanceNetConfig
from camnet_cli.weights import load_weights, save_weights, stored_dtype


def main(src: str, dst: str, gain: str = str(EnhanceNetConfig.base)) -> None:
    net, info = load_weights(src, "enhance")
    new = EnhanceNet(dataclasses.replace(net.config, base=float(gain)))
    state = net.state_dict()
    for key in ("unet.out.weight", "unet.out.bias"):
        state[key] = torch.zeros_like(state[key])
    new.load_state_dict(state)
    save_weights(dst, new, style=info.style, training_data=info.training_data, noise_range=info.noise_range, dtype=stored_dtype(src), extra=info.extra)


if __name__ == "__main__":
    main(*sys.argv[1:4])
