"""One config dataclass per network; a model is built only from its config.

Facts from the paper (Liang et al., CameraNet, IEEE TIP 2021, §III-C and Fig. 4) and the
authors' TensorFlow code (zhetongliang/CameraNet_official, ``my_model_pool.U_net2`` as
called by ``Train_sid.py``): two 5-level UNets with 32-512 channels, a global transform
block, sub-pixel output; Enhance-Net adds dilations and residual blocks. The ``paper``
presets have the paper's 26,527,928 parameters, plus Restore-Net's linear path (864).
"""

from __future__ import annotations

import dataclasses
import reprlib
from dataclasses import dataclass


@dataclass(frozen=True)
class RestoreNetConfig:
    """Restore-Net: packed raw + noise level -> linear camera RGB at full resolution.

    The noise plane holds log10(omega) + 4 (``networks.noise_plane``), not omega itself: omega is
    so small beside the pixels that a network fed it ignored it.
    """

    # Channels per UNet level, finest first (paper Fig. 4: 32, 64, 128, 256, 512).
    channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    # Packed RGGB planes plus one noise-level plane (paper Eq. 2: omega = shot + read^2); 6: camnet's
    # second plane, the read noise's share of omega (``networks.read_plane``), which omega alone
    # does not tell: the noise in the shadows.
    in_channels: int = 5
    # camnet's linear path beside the UNet, a 3x3 kernel that varies with the noise level: it
    # carries the fine detail a narrow UNet smooths. "adaptive": with it; "none": the paper's net.
    skip: str = "adaptive"
    # Dilation of the first conv of each level's block; Restore-Net uses none.
    dilations: tuple[int, ...] = (1, 1, 1, 1, 1)
    # Blocks add their input back; only Enhance-Net's do (paper Fig. 4 caption).
    residual: bool = False
    # The global transform block on the coarsest level (paper Eq. 4).
    global_block: bool = True


@dataclass(frozen=True)
class EnhanceNetConfig:
    """Enhance-Net: linear XYZ -> sRGB, the rendering style.

    Its input goes through the sRGB curve (the paper's choice; the authors' code uses x ** (1/2.2)),
    whose linear toe keeps shadow noise from being blown up.
    """

    channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    # Three colour channels, pixel-unshuffled by 2 to the packed resolution: 12 planes.
    in_channels: int = 12
    # Paper §III-C: dilations 1, 2, 2, 4, 8 from level 1 to 5, a wider context against halos.
    dilations: tuple[int, ...] = (1, 2, 2, 4, 8)
    # Paper §III-C: residual blocks help detail boosting.
    residual: bool = True
    global_block: bool = True
    # camnet's notch at the Nyquist frequencies after the sub-pixel output (``color.remove_grid``):
    # the sigma in pixels of what it takes out, the 2-pixel grid that layer leaves; 0: off.
    notch: float = 2.0
    # camnet's plain rendering under the UNet (``color.render_plain``) with this gain, so that the
    # UNet learns only the style's difference from it; 0: off. 2: the synthetic data's convention.
    base: float = 2.0


@dataclass(frozen=True)
class OneStageNetConfig:
    """The one-stage baseline (paper §IV-C): one UNet from packed raw + noise level to sRGB.

    Widths chosen so that it has the two-stage budget: 26,223,267 parameters against the
    paper preset's 26,527,928 (the nearest level-1 width, 45, gives 1.2% fewer).
    """

    channels: tuple[int, ...] = (45, 90, 180, 360, 720)
    in_channels: int = 5
    skip: str = "none"  # its output is white-balanced sRGB, which no linear path from the raw gives
    dilations: tuple[int, ...] = (1, 1, 1, 1, 1)
    residual: bool = False
    global_block: bool = True


Config = RestoreNetConfig | EnhanceNetConfig | OneStageNetConfig
_NAMES = {RestoreNetConfig: "restore", EnhanceNetConfig: "enhance", OneStageNetConfig: "onestage"}

# Channel counts of the presets; "lite" has a quarter of the parameters and FLOPs, for CPUs and
# small GPUs.
_CHANNELS = {"paper": (32, 64, 128, 256, 512), "lite": (16, 32, 64, 128, 256)}
_ONESTAGE_CHANNELS = {"paper": (45, 90, 180, 360, 720), "lite": (23, 46, 92, 184, 368)}  # 6,853,345 for lite
MODEL_SIZES = tuple(_CHANNELS)


def restore_config(size: str = "paper") -> RestoreNetConfig:
    """The Restore-Net preset ``size`` ("paper" or "lite"). The paper's takes the noise level alone;
    camnet's lite one the read noise's share of it as well (``RestoreNetConfig.in_channels``)."""
    return RestoreNetConfig(channels=_CHANNELS[size], in_channels=RESTORE_IN_CHANNELS[size == "lite"])


def enhance_config(size: str = "paper") -> EnhanceNetConfig:
    """The Enhance-Net preset ``size`` ("paper" or "lite")."""
    return EnhanceNetConfig(channels=_CHANNELS[size])


def onestage_config(size: str = "paper") -> OneStageNetConfig:
    """The one-stage baseline with the two-stage budget of preset ``size``."""
    return OneStageNetConfig(channels=_ONESTAGE_CHANNELS[size])


def config_to_dict(config: Config) -> dict:
    """A JSON-ready dict with the net's name, for weight-file headers."""
    return {"net": _NAMES[type(config)], **dataclasses.asdict(config)}


# Bounds on what a config may ask for: a weight file's config is read before its tensors, and
# without them a file of a few bytes could ask for any network. Widths: the presets use 16 to 720
# per level (lite Restore-Net 16, paper one-stage 720); 1024 leaves room for wider nets, and the
# largest net these bounds admit (6 levels of 1024) has 377 M parameters, 1.5 GB in float32.
MAX_CHANNELS = 1024
# Levels: the presets have 5; a UNet needs 2 (the coarsest and one above it); 6 allows one more.
LEVELS = (2, 6)
# The paper's largest dilation is 8; the least input a net pads to grows with it (UNet.min_size).
MAX_DILATION = 16
# Floats, inclusive. notch: a sigma in pixels (default 2) and remove_grid's kernel grows with it,
# up to the whole image; base: a gain in linear light (default 2), 16 is four stops more.
_RANGES = {"notch": (0.0, 8.0), "base": (0.0, 16.0)}
# Restore-Net's linear path beside the UNet (RestoreNetConfig.skip).
SKIPS = ("none", "adaptive")
# Restore-Net's input planes: the 4 packed planes + the noise level, or + the read noise's share too.
RESTORE_IN_CHANNELS = (5, 6)
# What the networks' inputs may have, (least, most): RestoreNet.prepare's; EnhanceNet.prepare's 3 x 4.
_IN_CHANNELS = {"restore": RESTORE_IN_CHANNELS, "enhance": (12, 12), "onestage": (5, 5)}


def config_from_dict(data: dict) -> Config:
    """Inverse of ``config_to_dict``; every field must be there, and no other, of its type and
    within the bounds above.

    Raises:
        ValueError: the dict does not describe a known network, or one within the bounds.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a config is a JSON object, got {reprlib.repr(data)}")
    data = dict(data)
    net = data.pop("net", None)
    cls = {name: kind for kind, name in _NAMES.items()}.get(net) if isinstance(net, str) else None
    if cls is None:
        raise ValueError(f"unknown network {reprlib.repr(net)} in config")
    names = {f.name for f in dataclasses.fields(cls)}
    if set(data) != names:
        extra, missing = sorted(set(data) - names), sorted(names - set(data))
        problems = (extra and f"unknown config fields {extra}", missing and f"missing config fields {missing}")
        raise ValueError(f"{net}: " + "; ".join(p for p in problems if p))
    _check(net, data)
    for key, value in data.items():
        if isinstance(value, list):
            data[key] = tuple(value)
    return cls(**data)


def _check(net: str, data: dict) -> None:
    """Raise ValueError unless the fields of a ``net`` config, as JSON or ``config_to_dict`` give
    them, are of their types and within the bounds (the comparisons also refuse NaN and infinities)."""
    def whole(value: object, low: int, high: int) -> bool:
        return type(value) is int and low <= value <= high  # type: ignore[operator]

    def bad(key: str, want: str) -> ValueError:
        return ValueError(f"{net}: {key} {reprlib.repr(data[key])} in config, expected {want}")

    channels, dilations = data["channels"], data["dilations"]
    if not (isinstance(channels, (list, tuple)) and LEVELS[0] <= len(channels) <= LEVELS[1] and all(whole(c, 1, MAX_CHANNELS) for c in channels)):
        raise bad("channels", f"{LEVELS[0]} to {LEVELS[1]} levels of 1 to {MAX_CHANNELS}")
    if not (isinstance(dilations, (list, tuple)) and len(dilations) == len(channels) and all(whole(d, 1, MAX_DILATION) for d in dilations)):
        raise bad("dilations", f"one per level, each 1 to {MAX_DILATION}")
    low, high = _IN_CHANNELS[net]
    if not whole(data["in_channels"], low, high):
        raise bad("in_channels", f"{low}, what this network's input has" if low == high else f"{low} or {high}, what this network's input may have")
    for key in ("residual", "global_block"):
        if type(data[key]) is not bool:
            raise bad(key, "true or false")
    if "skip" in data and data["skip"] not in SKIPS:
        raise bad("skip", " or ".join(SKIPS))
    for key, (low, high) in _RANGES.items():
        if key in data and not (type(data[key]) in (int, float) and low <= data[key] <= high):
            raise bad(key, f"a number from {low:g} to {high:g}")
