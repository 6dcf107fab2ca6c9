"""Turn v1 Restore-Net weights (noise plane = omega) into a start for v2 (noise plane = log10(omega) + 4).

Usage: python weights/zero_noise_plane.py V1_RESTORE.safetensors START.safetensors

v1 fed omega itself, which its training never learned to use; its first convolution's weights
on that plane are set to zero, so the v2 network computes exactly what v1 did and learns to use
the new plane from there (`camnet train-restore --init START.safetensors`).
"""

import dataclasses
import sys

from camnet_cli.model import RestoreNet
from camnet_cli.weights import load_weights, save_weights


def main(src: str, dst: str) -> None:
    net, info = load_weights(src, "restore")
    if net.config.noise_map != "omega":
        sys.exit(f"{src}: already feeds {net.config.noise_map!r}")
    state = net.state_dict()
    state["unet.encoders.0.conv.weight"][:, 4] = 0
    new = RestoreNet(dataclasses.replace(net.config, noise_map="log"))
    new.load_state_dict(state)
    save_weights(dst, new, training_data=info.training_data, noise_range=info.noise_range)


if __name__ == "__main__":
    main(*sys.argv[1:3])
