"""Give trained Enhance-Net weights the notch against the sub-pixel layer's grid (``EnhanceNetConfig.notch``).

Usage: python weights/add_notch.py ENHANCE.safetensors OUT.safetensors [SIGMA]

The weights stay as they are (the same tensors, the same dtype); only the config in the header
gains ``notch`` (default 2 pixels, the default of new networks), so that the network's output is
filtered by ``networks.remove_grid``. Style, training notes and the restoration it pairs with
are kept. OUT may be ENHANCE itself (it is written atomically).
"""

import dataclasses
import sys

from camnet_cli.model import EnhanceNet, EnhanceNetConfig
from camnet_cli.weights import load_weights, save_weights, stored_dtype


def main(src: str, dst: str, sigma: str = str(EnhanceNetConfig.notch)) -> None:
    net, info = load_weights(src, "enhance")
    new = EnhanceNet(dataclasses.replace(net.config, notch=float(sigma)))
    new.load_state_dict(net.state_dict())
    save_weights(dst, new, style=info.style, training_data=info.training_data, noise_range=info.noise_range, dtype=stored_dtype(src), extra=info.extra)


if __name__ == "__main__":
    main(*sys.argv[1:4])
