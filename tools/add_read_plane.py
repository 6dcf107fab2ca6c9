"""Give trained Restore-Net weights the read plane (``in_channels`` 5 -> 6), keeping what they compute.

Usage: python tools/add_read_plane.py SRC.safetensors DST.safetensors

The first convolution gets a sixth input, the read noise's share of the noise level
(``networks.read_plane``), with zero weights: the new network restores exactly as the old one
until training (``camnet train-restore --init DST --read-range LO,HI``) teaches it the plane.
"""

from __future__ import annotations

import dataclasses
import sys

import torch

from camnet_cli.model.networks import build
from camnet_cli.weights import load_weights, save_weights


def add_read_plane(src: str, dst: str) -> None:
    old, info = load_weights(src, "restore")
    if old.config.in_channels != 5:
        raise SystemExit(f"{src}: has {old.config.in_channels} input planes, not 5")
    new = build(dataclasses.replace(old.config, in_channels=6))
    state = old.state_dict()
    for name, tensor in new.state_dict().items():
        kept = state[name]
        if kept.shape != tensor.shape:  # the first convolution: (out, 5, k, k) -> (out, 6, k, k)
            kept = torch.cat([kept, torch.zeros_like(kept[:, :1])], dim=1)
        tensor.copy_(kept)
    save_weights(dst, new, training_data=info.training_data, noise_range=info.noise_range, extra=info.extra)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    add_read_plane(sys.argv[1], sys.argv[2])
