"""Training checkpoints: safetensors files that a run resumes from exactly. Never unpickled.

A checkpoint holds the networks (and their moving averages, when the run keeps them), the
optimiser's state, the step, the best validation score and the random state; its header holds
the run's settings and the networks' configs. Written atomically (``files.atomic_write``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from camnet_cli import __version__
from camnet_cli.files import atomic_write
from camnet_cli.model import build, config_from_dict, config_to_dict

FORMAT = "camnet-checkpoint/2"


class CheckpointError(Exception):
    """A checkpoint camnet cannot use; the message is one line for the user."""


def save(
    path: Path, settings: dict, nets: dict[str, nn.Module], optimizer: torch.optim.Optimizer, step: int, best: float,
    averages: dict[str, nn.Module] | None = None,
) -> None:
    """Write a checkpoint: the nets (unwrapped) and their averages, the optimiser, the step and random state.

    ``settings``: the run's settings, kept in the header (JSON-ready).
    """
    tensors: dict[str, torch.Tensor] = {}
    for prefix, group in (("net", nets), ("ema", averages or {})):
        for name, net in group.items():
            for k, v in net.state_dict().items():
                tensors[f"{prefix}.{name}.{k}"] = v.detach().cpu().contiguous()
    state = optimizer.state_dict()
    for index, entries in state["state"].items():
        for k, v in entries.items():
            tensors[f"optim.{index}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    header = {
        "format": FORMAT,
        "config": json.dumps(settings),
        "nets": json.dumps({name: config_to_dict(net.config) for name, net in nets.items()}),
        "param_groups": json.dumps(state["param_groups"]),
        "step": str(step),
        "best": repr(best),
        "camnet_version": __version__,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def load(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """A checkpoint's header and tensors.

    Raises:
        CheckpointError: not a camnet checkpoint, or one of an older format.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safe_open handle is no dict)
    except Exception as e:  # safetensors raises its own error types for non-safetensors input
        raise CheckpointError(f"{path}: not a camnet checkpoint ({type(e).__name__})") from None
    found = header.get("format", "")
    if found != FORMAT:
        if found.startswith("camnet-checkpoint/"):
            raise CheckpointError(f"{path}: checkpoint format {found} (camnet {header.get('camnet_version', '?')}); this camnet reads {FORMAT}")
        raise CheckpointError(f"{path}: not a camnet checkpoint")
    return header, tensors


def net_state(tensors: dict[str, torch.Tensor], name: str, kind: str = "net") -> dict[str, torch.Tensor]:
    """The state dict of network ``name`` (``kind`` "net", or "ema" for its average) among a checkpoint's tensors."""
    prefix = f"{kind}.{name}."
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def average_state(tensors: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Network ``name``'s moving average where the run kept one (the weights it validated), else its weights."""
    return net_state(tensors, name, "ema") or net_state(tensors, name)


def network(header: dict[str, str], tensors: dict[str, torch.Tensor], name: str) -> nn.Module:
    """Network ``name`` of a checkpoint (its moving average, if kept), rebuilt from its config, in float32."""
    net = build(config_from_dict(json.loads(header["nets"])[name]))
    net.load_state_dict({k: v.float() for k, v in average_state(tensors, name).items()})
    return net


def restore(
    header: dict[str, str], tensors: dict[str, torch.Tensor], nets: dict[str, nn.Module], optimizer: torch.optim.Optimizer,
    averages: dict[str, nn.Module],
) -> tuple[int, float]:
    """Load a checkpoint into a run's networks, averages, optimiser and random state; returns (step, best).

    The optimiser's groups keep this run's ``lr_scale``.

    Raises:
        CheckpointError: the checkpoint's networks or optimiser groups are not this run's.
    """
    saved_nets = json.loads(header["nets"])
    for name, net in nets.items():
        if name not in saved_nets or config_from_dict(saved_nets[name]) != net.config:
            raise CheckpointError(f"the checkpoint's {name} network differs from this run's (another model size or stage?)")
        net.load_state_dict(net_state(tensors, name))
        if name in averages:  # a checkpoint without an average (one added on resume) starts it at the weights
            averages[name].load_state_dict(average_state(tensors, name))
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, index, key = k.split(".", 2)
            opt_state.setdefault(int(index), {})[key] = v
    scales, saved_groups = [g["lr_scale"] for g in optimizer.param_groups], json.loads(header["param_groups"])
    if len(saved_groups) != len(scales):
        raise CheckpointError(
            f"the checkpoint's optimiser has {len(saved_groups)} parameter groups, this run's {len(scales)} "
            "(a rate of its own for the linear path or Restore-Net in one run only?)"
        )
    optimizer.load_state_dict({"state": opt_state, "param_groups": saved_groups})
    for group, scale in zip(optimizer.param_groups, scales):
        group["lr_scale"] = scale
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    return int(header["step"]), float(header["best"])
