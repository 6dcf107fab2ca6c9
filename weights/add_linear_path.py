"""Give trained Restore-Net weights the linear path (``skip="adaptive"``), at zero.

Usage: python weights/add_linear_path.py RESTORE.safetensors START.safetensors

The new network computes exactly what the old one did; training from START
(`camnet train-restore --init START.safetensors --skip-lr 1e-3`) then grows the path.
"""

import dataclasses
import sys

from camnet_cli.model import RestoreNet
from camnet_cli.weights import load_weights, save_weights


def main(src: str, dst: str) -> None:
    net, info = load_weights(src, "restore")
    if net.config.skip != "none":
        sys.exit(f"{src}: already has a linear path ({net.config.skip!r})")
    new = RestoreNet(dataclasses.replace(net.config, skip="adaptive"))
    missing, unexpected = new.load_state_dict(net.state_dict(), strict=False)
    assert missing == ["skip.weight"] and not unexpected, (missing, unexpected)
    save_weights(dst, new, training_data=info.training_data, noise_range=info.noise_range)


if __name__ == "__main__":
    main(*sys.argv[1:3])
