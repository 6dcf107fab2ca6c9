"""Double every width of trained Restore-Net or Enhance-Net weights (e.g. ``lite`` -> ``paper``),
keeping what the network computes.

Usage: python tools/widen.py SRC.safetensors DST.safetensors [SEED]

Function-preserving widening (Net2WiderNet: Chen, Goodfellow, Shlens, ICLR 2016): every
feature channel is repeated, so the wider network holds two copies of each; a layer reading
a repeated channel splits each of its weights w into w(1/2 + d) and w(1/2 - d), with d drawn
uniformly from [-0.2, 0.2] per weight. The two parts add up to w, so the output is the same,
while the copies' differing outgoing weights give them different gradients and they grow
apart in training (equal halves would keep them equal forever). Concatenated inputs (a
decoder's upsampled features and its skip) and the global block's scale and bias are widened
part by part. Inputs (raw planes, noise plane, Enhance-Net's 12 planes), outputs and
Restore-Net's linear path keep their sizes. ``camnet train-restore --model paper --init DST``
then trains the wider network from where the narrow one stopped.
"""

from __future__ import annotations

import dataclasses
import sys

import torch

from camnet_cli.model.networks import build
from camnet_cli.weights import load_weights, save_weights

_SPREAD = 0.2


def _widen(t: torch.Tensor, dim: int, groups: list[int] | None, split: bool, gen: torch.Generator) -> torch.Tensor:
    """Each group of ``t``'s channels along ``dim`` repeated once; weights reading them split in two."""
    if groups is None:
        return t
    parts = []
    for g in t.split(groups, dim):
        if split:
            d = (torch.rand(g.shape, generator=gen, dtype=torch.float64) * 2 - 1) * _SPREAD
            parts += [g * (0.5 + d).to(g.dtype), g * (0.5 - d).to(g.dtype)]
        else:
            parts += [g, g]
    return torch.cat(parts, dim)


def _groups(name: str, channels: tuple[int, ...]) -> tuple[list[int] | None, list[int] | None]:
    """(output groups, input groups) of a parameter of the narrow UNet; None: not widened."""
    c, parts = channels, name.split(".")
    if parts[0] != "unet":
        return None, None  # Restore-Net's linear path: raw planes in, output planes out
    kind = parts[1]
    if kind == "encoders":
        k = int(parts[2])
        out = [c[k]]
        inputs = None if k == 0 and parts[3] == "conv" else [c[k - 1] if parts[3] == "conv" else c[k]]
        return out, inputs
    if kind == "middle":
        return [c[-1]], [c[-2] if parts[2] == "conv" else c[-1]]
    if kind == "global_fc":  # Linear(c5, 2 c5) -> LeakyReLU -> Linear(2 c5, scale (c5) + bias (c5))
        return ([2 * c[-1]], [c[-1]]) if parts[2] == "0" else ([c[-1], c[-1]], [2 * c[-1]])
    if kind == "out":
        return None, [c[0]]
    level = len(c) - 2 - int(parts[2])  # ups and decoders run from the coarsest level up
    if kind == "ups":  # ConvTranspose2d(c[level + 1] -> c[level]); its weight is (in, out, kh, kw)
        return [c[level]], [c[level + 1]]
    if kind == "decoders":
        return [c[level]], ([c[level], c[level]] if parts[3] == "conv" else [c[level]])
    raise ValueError(f"unexpected parameter {name}")


def widen(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A network twice as wide at every level that computes what ``net`` computes."""
    channels = net.config.channels
    wide = build(dataclasses.replace(net.config, channels=tuple(2 * n for n in channels)))
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, t in net.state_dict().items():
        out, inputs = _groups(name, channels)
        transposed = ".ups." in name
        out_dim, in_dim = (1, 0) if transposed else (0, 1)
        t = _widen(t, out_dim if t.dim() > 1 else 0, out, False, gen)
        if t.dim() > 1:
            t = _widen(t, in_dim, inputs, True, gen)
        state[name] = t
    wide.load_state_dict(state)
    return wide


def main(src: str, dst: str, seed: str = "0") -> None:
    net, info = load_weights(src)
    net = net.float()
    save_weights(dst, widen(net, int(seed)), style=info.style, training_data=info.training_data, noise_range=info.noise_range)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.split("\n\n")[1])
    main(*sys.argv[1:])
