"""Weight files: safetensors with the network's config in the header, and where to find them.

A weight file holds one network (Restore-Net or an Enhance-Net style) and, in its
safetensors header, everything needed to rebuild it: the config and the facts of its
training. Loading never unpickles: a pickled PyTorch checkpoint is refused.

Styles are found by name in, first, the user's folder (``$CAMNET_WEIGHTS``, default
``~/.local/share/camnet/weights`` or the platform's equivalent) and then the ``weights/``
folder of the camnet source tree; or given as a path.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from camnet_cli import __version__
from camnet_cli.files import atomic_write
from camnet_cli.model import EnhanceNet, OneStageNet, RestoreNet, build, config_from_dict, config_to_dict

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "weights"
STAGES = ("restore", "enhance", "onestage")
_FORMAT = "camnet-weights/2"  # /1: camnet 0.1, whose configs kept fields for older files


class WeightsError(Exception):
    """A weight file or style camnet cannot use; the message is one line for the user."""


@dataclass(frozen=True)
class WeightsInfo:
    """What a weight file says about itself.

    Attributes:
        stage: "restore" or "enhance".
        style: the style name of an Enhance-Net (empty for Restore-Net).
        training_data: what it was trained on, for people.
        noise_range: (lowest, highest) noise level omega seen in training, if known.
        camnet_version: the camnet that wrote it.
        extra: any other header fields.
    """

    stage: str
    style: str = ""
    training_data: str = ""
    noise_range: tuple[float, float] | None = None
    camnet_version: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def user_dir() -> Path:
    """The user's own weights folder: ``$CAMNET_WEIGHTS``, else the platform's data folder."""
    if os.environ.get("CAMNET_WEIGHTS"):
        return Path(os.environ["CAMNET_WEIGHTS"]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "camnet" / "weights"


def save_weights(
    path: Path | str,
    net: RestoreNet | EnhanceNet | OneStageNet,
    *,
    style: str = "",
    training_data: str = "",
    noise_range: tuple[float, float] | None = None,
    dtype: torch.dtype | None = None,
    extra: dict[str, str] | None = None,
) -> None:
    """Write a network to a safetensors file, atomically (temporary file, then rename).

    Args:
        dtype: store tensors in this type (torch.float16 for shipped weights); default as is.
    """
    stage = config_to_dict(net.config)["net"]
    header = {
        "format": _FORMAT,
        "stage": stage,
        "config": json.dumps(config_to_dict(net.config)),
        "style": style,
        "training_data": training_data,
        "noise_range": json.dumps(list(noise_range)) if noise_range else "",
        "camnet_version": __version__,
        **(extra or {}),
    }
    tensors = {k: (v.to(dtype) if dtype is not None else v).detach().cpu().contiguous() for k, v in net.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def save_named(out_dir: Path | str, net: RestoreNet | EnhanceNet | OneStageNet, name: str, *, extra: dict[str, str] | None = None, **kwargs) -> Path:
    """Write ``net`` as ``OUT_DIR/<stage>-<name>.safetensors`` with the style conventions.

    A style (an enhance or one-stage file) carries ``name`` as its style, and an enhance file
    names ``restore-<name>`` as the restoration it was trained with (``companion_restore``).
    Other keyword arguments go to ``save_weights``.
    """
    stage = config_to_dict(net.config)["net"]
    extra = dict(extra or {})
    if stage == "enhance":
        extra["restore"] = name
    path = Path(out_dir) / f"{stage}-{name}.safetensors"
    save_weights(path, net, style=name if stage != "restore" else "", extra=extra, **kwargs)
    return path


def read_info(path: Path | str) -> WeightsInfo:
    """Read a weight file's header without loading its tensors.

    Raises:
        WeightsError: not a camnet safetensors file (a pickle, another format, broken).
    """
    header = _read_header(Path(path))
    known = {"format", "stage", "config", "style", "training_data", "noise_range", "camnet_version"}
    noise_range = json.loads(header["noise_range"]) if header.get("noise_range") else None
    return WeightsInfo(
        stage=header["stage"],
        style=header.get("style", ""),
        training_data=header.get("training_data", ""),
        noise_range=tuple(noise_range) if noise_range else None,  # type: ignore[arg-type]
        camnet_version=header.get("camnet_version", ""),
        extra={k: v for k, v in header.items() if k not in known},
    )


def load_weights(path: Path | str, stage: str | None = None) -> tuple[RestoreNet | EnhanceNet | OneStageNet, WeightsInfo]:
    """Rebuild a network from its weight file, on the CPU, in float32, in eval mode.

    Args:
        stage: if given, the file must hold this stage ("restore" or "enhance").

    Raises:
        WeightsError: the file is not a usable camnet weight file, or holds the other stage.
    """
    path = Path(path)
    info = read_info(path)
    if stage is not None and info.stage != stage:
        raise WeightsError(f"{path}: holds {info.stage} weights, but {stage} weights are needed here")
    header = _read_header(path)
    try:
        net = build(config_from_dict(json.loads(header["config"])))
    except (ValueError, TypeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{path}: bad network config in the header ({e})") from None
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k).to(torch.float32) for k in f.keys()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise WeightsError(f"{path}: tensors do not match the config ({first})") from None
    return net.eval(), info


def stored_dtype(path: Path | str) -> torch.dtype:
    """The dtype a weight file's tensors are stored in (``load_weights`` gives float32), for a
    script that rewrites a file and keeps its precision."""
    with safe_open(str(path), "pt") as f:
        return f.get_tensor(next(iter(f.keys()))).dtype


def _read_header(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, checked to be camnet's."""
    try:
        with open(path, "rb") as f:
            start = f.read(8)
            (size,) = struct.unpack("<Q", start) if len(start) == 8 else (0,)
            # A safetensors file: an 8-byte header length, then the JSON header. Checked first,
            # as the length's first byte may be anything, 0x80 (pickle's first byte) included.
            raw = f.read(size) if 0 < size <= min(100_000_000, path.stat().st_size - 8) else b""
            if not raw.startswith(b"{"):
                if start[:2] == b"PK" or start[:1] == b"\x80":
                    raise WeightsError(
                        f"{path}: a pickled PyTorch checkpoint; camnet loads only .safetensors weights, "
                        "because unpickling a file can run any code"
                    )
                raise WeightsError(f"{path}: not a safetensors file" + (" (too short)" if len(start) < 8 else ""))
    except OSError as e:
        raise WeightsError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise WeightsError(f"{path}: not a safetensors file") from None
    meta = header.get("__metadata__") or {}
    found = meta.get("format", "")
    if found != _FORMAT and found.startswith("camnet-weights/"):
        raise WeightsError(
            f"{path}: weight format {found} (camnet {meta.get('camnet_version', '?')}); this camnet reads {_FORMAT}: "
            "retrain the network, or use the camnet that wrote it"
        )
    if found != _FORMAT or meta.get("stage") not in STAGES or "config" not in meta:
        raise WeightsError(f"{path}: a safetensors file, but not camnet weights (no camnet header)")
    return meta


def search_dirs() -> list[Path]:
    """Where styles are looked up by name, in order."""
    return [user_dir(), SHIPPED_DIR]


def installed(stage: str) -> dict[str, Path]:
    """Weight files of a stage found by name: {name: path}; the user's folder wins a tie."""
    found: dict[str, Path] = {}
    for folder in reversed(search_dirs()):
        for path in sorted(folder.glob(f"{stage}-*.safetensors")) if folder.is_dir() else []:
            found[path.name[len(stage) + 1 : -len(".safetensors")]] = path
    return dict(sorted(found.items()))


def find_weights(name_or_path: str, stage: str) -> Path:
    """Resolve a style (or restoration weights) given by name or path.

    Raises:
        WeightsError: nothing by that name; the message lists what is installed and how to train more.
    """
    path = Path(name_or_path).expanduser()
    if path.suffix == ".safetensors" or path.exists() or os.sep in name_or_path:
        if not path.is_file():
            raise WeightsError(f"{path}: no such weight file")
        return path
    found = installed(stage)
    if name_or_path in found:
        return found[name_or_path]
    have = ", ".join(found) or "none"
    what = "style" if stage == "enhance" else "restoration weights"
    train = "camnet train-enhance" if stage == "enhance" else "camnet train-restore"
    raise WeightsError(
        f"unknown {what} {name_or_path!r}; installed: {have} "
        f"(looked in {', '.join(str(d) for d in search_dirs())}); train one with `{train} --output DIR` "
        f"and pass the file it writes, or copy it into {user_dir()}"
    )


def companion_restore(style_path: Path) -> Path:
    """The restoration weights a style was trained with: named in its header (``restore``),
    looked for beside the style file first, then by name.

    Raises:
        WeightsError: they cannot be found.
    """
    name = read_info(style_path).extra.get("restore", "default")
    beside = style_path.parent / f"restore-{name}.safetensors"
    return beside if beside.is_file() else find_weights(name, "restore")
