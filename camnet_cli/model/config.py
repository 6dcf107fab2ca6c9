"""One config dataclass per network; a model is built only from its config.

Facts from the paper (Liang et al., CameraNet, IEEE TIP 2021, §III-C and Fig. 4) and the
authors' TensorFlow code (zhetongliang/CameraNet_official, ``my_model_pool.U_net2`` as
called by ``Train_sid.py``): two 5-level UNets with 32-512 channels, a global transform
block, sub-pixel output; Enhance-Net adds dilations and residual blocks. The ``paper``
presets reproduce the paper's 26.53 M parameters exactly (26,527,928) without Restore-Net's
linear path (camnet's; 864 parameters more).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class RestoreNetConfig:
    """Restore-Net: packed raw + noise level -> linear camera RGB at full resolution."""

    # Channels per UNet level, finest first (paper Fig. 4: 32, 64, 128, 256, 512).
    channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    # Packed RGGB planes plus one noise-level plane (paper Eq. 2: omega = shot + read^2).
    in_channels: int = 5
    # How omega fills the noise plane. "log": log10(omega) + 4, about -1.2 at ISO 100 and +1.7 at
    # ISO 25600 on a modern full-frame sensor. "omega": the value itself, as the paper writes it;
    # omega spans 6e-6 to 5e-3 there, so small beside the pixels that a network trained for
    # 20,000 steps ignored it (its output at ISO 400 did not change when told ISO 100 or 25600),
    # and could not adapt its denoising to the noise. Files without the field used "omega".
    noise_map: str = "log"
    # A linear path beside the UNet (not in the paper): a 3x3 convolution from the packed
    # planes straight to the 12 output planes, its kernel W0 + level * W1 for the noise plane's
    # value, so that it can pass fine detail where the noise is low and step back where it is
    # high. Without it the UNet must carry every sample through a score of nonlinear layers
    # and 16 (lite) or 32 channels at its finest level, and it smoothed texture: 4000 steps
    # from the v3 weights with the path gained 1.3 dB at ISO 400 on held-out photographs, without
    # it 0.05 dB. "adaptive": with it (24 kernels of 4x3x3, zero at the start); "none": the
    # paper's net. Files without the field have none.
    skip: str = "adaptive"
    # Dilation of the first conv of each level's block; Restore-Net uses none.
    dilations: tuple[int, ...] = (1, 1, 1, 1, 1)
    # Blocks add their input back; only Enhance-Net's do (paper Fig. 4 caption).
    residual: bool = False
    # The global transform block on the coarsest level (paper Eq. 4). In the paper both nets
    # have it; the authors' SID script turns it off in Restore-Net. With it the parameter
    # count is the paper's 26.53 M.
    global_block: bool = True


@dataclass(frozen=True)
class EnhanceNetConfig:
    """Enhance-Net: linear XYZ -> sRGB, the rendering style."""

    channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    # Three colour channels, pixel-unshuffled by 2 to the packed resolution: 12 planes.
    in_channels: int = 12
    # Paper §III-C: dilations 1, 2, 2, 4, 8 from level 1 to 5, a wider context against halos.
    dilations: tuple[int, ...] = (1, 2, 2, 4, 8)
    # Paper §III-C: residual blocks help detail boosting.
    residual: bool = True
    global_block: bool = True
    # The fixed curve applied to the clipped XYZ input. The paper says the sRGB curve; the
    # authors' code uses max(x, 1e-4) ** (1 / 2.2). camnet uses the sRGB curve: its linear toe
    # bounds the slope near black at 12.92 (x ** (1/2.2) reaches slope 68 at 1e-4), so
    # residual shadow noise is not blown up and gradients stay finite without a floor.
    gamma: str = "srgb"
    # A notch at the Nyquist frequencies after the sub-pixel output (not in the paper; see
    # networks.remove_grid): the 1x1 conv gives each pixel of a 2x2 block its own weights, and
    # the offsets they leave in common over a region are a checkerboard or stripes of period 2,
    # up to several 8-bit levels in flat saturated or dark areas. The notch takes out what is
    # periodic with period 2 over a Gaussian of this sigma (pixels); 0: off, the paper's net.
    # With sigma 2 the grid fell from 1.52 (v4.2) to 0.01 (v4.3) 8-bit levels RMS on flat colour
    # fields and from 3.70 to 0.05 on the shared ARW's flat areas, and it changes the held-out
    # photographs themselves by 55 dB PSNR (43 dB on the sharpest). Files without the field
    # have none.
    notch: float = 2.0
    # A plain rendering under the UNet (not in the paper): the clipped XYZ input to linear sRGB,
    # times this gain, clipped, through the sRGB curve; the UNet's output is added to it, so the
    # network learns only the style's difference from a colorimetric rendering. Without it the
    # UNet must rebuild every pixel's value through its layers: v4.3 scored 32.43 dB final PSNR
    # at ISO 400 on the held-out photographs where this rendering of the same restoration
    # scores 36.08 (the "natural" ground truth is exactly this rendering of the clean XYZ, so
    # a network that adds nothing scores the restoration's quality). 2 is the synthetic data's
    # convention (a raw exposed at half the photograph's light renders as the photograph; see
    # data/synthetic.py, RENDER_EXPOSURE). A new network's output layer starts at zero, so it
    # starts as this rendering. 0: off, the paper's net. Files without the field have none.
    base: float = 2.0


@dataclass(frozen=True)
class OneStageNetConfig:
    """The one-stage baseline (paper §IV-C): one UNet from packed raw + noise level to sRGB.

    Widths chosen so that it has the two-stage budget: 26,223,267 parameters against the
    paper preset's 26,527,928 (the nearest level-1 width, 45, gives 1.2% fewer).
    """

    channels: tuple[int, ...] = (45, 90, 180, 360, 720)
    in_channels: int = 5
    noise_map: str = "log"
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
    """The Restore-Net preset ``size`` ("paper" or "lite")."""
    return RestoreNetConfig(channels=_CHANNELS[size])


def enhance_config(size: str = "paper") -> EnhanceNetConfig:
    """The Enhance-Net preset ``size`` ("paper" or "lite")."""
    return EnhanceNetConfig(channels=_CHANNELS[size])


def onestage_config(size: str = "paper") -> OneStageNetConfig:
    """The one-stage baseline with the two-stage budget of preset ``size``."""
    return OneStageNetConfig(channels=_ONESTAGE_CHANNELS[size])


def config_to_dict(config: Config) -> dict:
    """A JSON-ready dict with the net's name, for weight-file headers."""
    return {"net": _NAMES[type(config)], **dataclasses.asdict(config)}


def config_from_dict(data: dict) -> Config:
    """Inverse of ``config_to_dict``; unknown keys are an error, not silently dropped.

    Raises:
        ValueError: the dict does not describe a known network.
    """
    data = dict(data)
    net = data.pop("net", None)
    cls = {name: kind for kind, name in _NAMES.items()}.get(net)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown network {net!r} in config")
    names = {f.name for f in dataclasses.fields(cls)}
    if set(data) - names:
        raise ValueError(f"unknown config fields for {net}: {sorted(set(data) - names)}")
    for key, value in data.items():
        if isinstance(value, list):
            data[key] = tuple(value)
    if "noise_map" in names and "noise_map" not in data:
        data["noise_map"] = "omega"  # written before the field existed
    if "skip" in names and "skip" not in data:
        data["skip"] = "none"  # likewise
    if "notch" in names and "notch" not in data:
        data["notch"] = 0.0  # likewise
    if "base" in names and "base" not in data:
        data["base"] = 0.0  # likewise
    return cls(**data)
