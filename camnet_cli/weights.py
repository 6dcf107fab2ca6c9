"""Weight files: safetensors with the network's config in the header, and where to find them.

A weight file holds one network (Restore-Net or an Enhance-Net style) and, in its
safetensors header, everything needed to rebuild it: the config and the facts of its
training. Loading never unpickles: a pickled PyTorch checkpoint is refused.

Styles are found by name in, first, the user's folder (``$CAMNET_WEIGHTS``, default
``~/.local/share/camnet/weights`` or the platform's equivalent) and then the weights that ship
with camnet (``weights/`` in the source tree, inside the package once installed); or given as a path.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import sys
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from camnet_cli import __version__
from camnet_cli.files import atomic_write
from camnet_cli.model import EnhanceNet, OneStageNet, RestoreNet, build, config_from_dict, config_to_dict
from camnet_cli.model.config import Config


def shipped(in_package: str, in_tree: str) -> Path:
    """Where files that ship with camnet are: ``camnet_cli/<in_package>`` in an installed package
    (pyproject.toml puts them there), ``<in_tree>`` beside the package in a source checkout."""
    here = Path(__file__).resolve().parent
    installed = here / in_package
    return installed if installed.is_dir() else here.parent / in_tree


SHIPPED_DIR = shipped("shipped", "weights")
STAGES = ("restore", "enhance", "onestage")
_FORMAT = "camnet-weights/2"  # /1: camnet 0.1, whose configs kept fields for older files
# The shipped weights' headers are 7 KB (64 tensors); a 6-level net's would be under 10 KB.
_MAX_HEADER = 1 << 20
# camnet's headers nest 3 deep (file, tensor, shape) and its configs 2; deeper JSON would only
# make the parser recurse until it fails.
_MAX_NESTING = 8
# Bytes per element of the float dtypes safetensors names: the only ones camnet writes.
# Trained weights lie within about +-1 (the shipped ones within 0.9); values far beyond are
# damage (flipped exponent bits), and would overflow the networks to NaN on every file.
_MAX_WEIGHT = 1e4
_ITEMSIZE = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


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
    path = Path(path)
    return _info(path, _read_header(path)[0])


def load_weights(path: Path | str, stage: str | None = None) -> tuple[RestoreNet | EnhanceNet | OneStageNet, WeightsInfo]:
    """Rebuild a network from its weight file, on the CPU, in float32, in eval mode.

    Args:
        stage: if given, the file must hold this stage ("restore" or "enhance").

    Raises:
        WeightsError: the file is not a usable camnet weight file, or holds the other stage.
    """
    path = Path(path)
    meta, shapes = _read_header(path)
    info = _info(path, meta)
    if stage is not None and info.stage != stage:
        raise WeightsError(f"{path}: holds {info.stage} weights, but {stage} weights are needed here")
    try:
        config = config_from_dict(_json(meta["config"]))  # type: ignore[arg-type]
    except ValueError as e:
        raise WeightsError(f"{path}: bad network config in the header ({e})") from None
    # A config that disagrees with the file's tensors is refused before its network is built.
    wanted = _shapes(config)
    if wanted != shapes:
        name = next(k for k in [*wanted, *shapes] if wanted.get(k) != shapes.get(k))
        raise WeightsError(
            f"{path}: tensors do not match the config (first difference: {name!r} is "
            f"{wanted.get(name, 'absent')} in the config, {shapes.get(name, 'absent')} in the file)"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k).to(torch.float32) for k in f.keys()}
    except (SafetensorError, OSError) as e:  # the file changed since, or safetensors is stricter than _read_header
        raise WeightsError(f"{path}: tensors cannot be read ({' '.join(str(e).split())})") from None
    broken = next((k for k, v in state.items() if not torch.isfinite(v).all()), None)
    if broken is not None:
        raise WeightsError(f"{path}: tensor {broken!r} holds NaN or infinite values (from a diverged training run?)")
    huge = next((k for k, v in state.items() if v.abs().max() > _MAX_WEIGHT), None)
    if huge is not None:
        top = state[huge].abs().max().item()
        raise WeightsError(f"{path}: tensor {huge!r} holds {top:.3g}, implausible for trained weights (at most {_MAX_WEIGHT:g}): a damaged file?")
    net = build(config)
    net.load_state_dict(state, strict=True)
    return net.eval(), info


def stored_dtype(path: Path | str) -> torch.dtype:
    """The dtype a weight file's tensors are stored in (``load_weights`` gives float32), for a
    script that rewrites a file and keeps its precision."""
    with safe_open(str(path), "pt") as f:
        return f.get_tensor(next(iter(f.keys()))).dtype


def _shapes(config: Config) -> dict[str, list[int]]:
    """The shapes of the tensors of the network ``config`` describes, by name, allocating none:
    the network is built on the meta device."""
    with torch.device("meta"):
        return {k: list(v.shape) for k, v in build(config).state_dict().items()}


def _info(path: Path, meta: dict[str, str]) -> WeightsInfo:
    """What a checked camnet header says about its file."""
    known = {"format", "stage", "config", "style", "training_data", "noise_range", "camnet_version"}
    try:
        noise_range = _json(meta["noise_range"]) if meta.get("noise_range") else None
        if noise_range is not None and not (
            isinstance(noise_range, list) and len(noise_range) == 2 and all(type(v) in (int, float) and -math.inf < v < math.inf for v in noise_range)
        ):
            raise ValueError("not two numbers")
    except ValueError:
        raise WeightsError(f"{path}: bad noise range {meta['noise_range'][:40]!r} in the header") from None
    return WeightsInfo(
        stage=meta["stage"],
        style=meta.get("style", ""),
        training_data=meta.get("training_data", ""),
        noise_range=tuple(noise_range) if noise_range else None,  # type: ignore[arg-type]
        camnet_version=meta.get("camnet_version", ""),
        extra={k: v for k, v in meta.items() if k not in known},
    )


def _read_header(path: Path) -> tuple[dict[str, str], dict[str, list[int]]]:
    """The ``__metadata__`` of a safetensors file, checked to be camnet's, and its tensors' shapes
    by name, checked against the file: nothing it says reads past the file or misreads it."""
    try:
        file_size = path.stat().st_size
        with open(path, "rb") as f:
            start = f.read(8)
            (size,) = struct.unpack("<Q", start) if len(start) == 8 else (0,)
            # A safetensors file: an 8-byte header length, then the JSON header. Checked first,
            # as the length's first byte may be anything, 0x80 (pickle's first byte) included.
            raw = f.read(size) if 0 < size <= min(_MAX_HEADER, file_size - 8) else b""
            if not raw.startswith(b"{"):
                if start[:2] == b"PK" or start[:1] == b"\x80":
                    raise WeightsError(
                        f"{path}: a pickled PyTorch checkpoint; camnet loads only .safetensors weights, "
                        "because unpickling a file can run any code"
                    )
                too_long = _MAX_HEADER < size <= file_size - 8
                why = " (too short)" if len(start) < 8 else f" (or one with a header over {_MAX_HEADER} bytes)" if too_long else ""
                raise WeightsError(f"{path}: not a safetensors file{why}")
    except OSError as e:
        raise WeightsError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        header = _json(raw)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise WeightsError(f"{path}: not a safetensors file ({e})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: not a safetensors file (its header is not a JSON object)")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise WeightsError(f"{path}: a safetensors file, but not camnet weights (its metadata is not a table of strings)")
    found = meta.get("format", "")
    if found != _FORMAT and found.startswith("camnet-weights/"):
        raise WeightsError(
            f"{path}: weight format {found!r} (camnet {meta.get('camnet_version', '?')!r}); this camnet reads {_FORMAT}: "
            "retrain the network, or use the camnet that wrote it"
        )
    if found != _FORMAT or meta.get("stage") not in STAGES or "config" not in meta:
        raise WeightsError(f"{path}: a safetensors file, but not camnet weights (no camnet header)")
    shapes, spans = {}, []
    for name, entry in header.items():
        problem = _entry_problem(entry)
        if problem:
            raise WeightsError(f"{path}: tensor {name!r} in the header: {problem}")
        shapes[name] = entry["shape"]
        spans.append(entry["data_offsets"])
    # safetensors lays the tensors end to end after the header, to the end of the file.
    spans.sort()
    if any(begin != end for (_, end), (begin, _) in zip([[0, 0], *spans], spans)):
        raise WeightsError(f"{path}: tensor data offsets out of range (they overlap or leave gaps)")
    need, have = (spans[-1][1] if spans else 0), file_size - 8 - size
    if need != have:
        cut = " (truncated)" if have < need else ""
        raise WeightsError(f"{path}: tensor data out of range: the header's tensors take {need} bytes, the file has {have}{cut}")
    return meta, shapes


def _entry_problem(entry: object) -> str:
    """What is wrong with a tensor's entry in a safetensors header on its own; "" if nothing."""

    def naturals(value: object) -> bool:
        return isinstance(value, list) and all(type(v) is int and v >= 0 for v in value)

    if not (isinstance(entry, dict) and set(entry) == {"dtype", "shape", "data_offsets"}):
        return "not a dtype, shape and data offsets"
    if not isinstance(entry["dtype"], str) or entry["dtype"] not in _ITEMSIZE:
        return f"dtype {str(entry['dtype'])[:20]!r}, not one of {', '.join(_ITEMSIZE)}"
    if not naturals(entry["shape"]):
        return "its shape is not a list of non-negative integers"
    offsets = entry["data_offsets"]
    if not (naturals(offsets) and len(offsets) == 2 and offsets[1] - offsets[0] == math.prod(entry["shape"]) * _ITEMSIZE[entry["dtype"]]):
        return "data offsets out of range for its shape and dtype"
    return ""


def _json(text: str | bytes) -> object:
    """``json.loads``, refusing JSON nested deeper than ``_MAX_NESTING`` before the parser recurses into it.

    The depth is counted with escapes, then strings, taken out: linear time, whatever the text.

    Raises:
        ValueError: not JSON, or nested too deep.
    """
    raw = text.encode() if isinstance(text, str) else text
    bare = re.sub(rb'"[^"]*"', b"", re.sub(rb"\\.", b"", raw, flags=re.S))
    depth = max(accumulate(1 if c in b"[{" else -1 for c in bare.translate(None, _NOT_BRACKETS)), default=0)
    if depth > _MAX_NESTING:
        raise ValueError(f"JSON nested {depth} deep, more than the {_MAX_NESTING} camnet allows")
    return json.loads(text)


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
