"""CameraNet's losses (paper §III-E) and the optional perceptual loss.

Restoration: L1 plus L1 of logs in linear XYZ (Eq. 5), and optionally camnet's term after the
tone curve (``curve_loss``: L1, or log MSE per image); enhancement: L1 in sRGB (Eq. 6);
joint fine-tuning: lambda * restoration + (1 - lambda) * enhancement (Eq. 7). camnet adds an
optional grid term (``grid_loss``) against the sub-pixel output layer's 2-pixel pattern.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from camnet_cli import color, metrics

# Per-dataset lambda of Eq. 7 (paper §IV-B): restoration matters most in low light.
LAMBDA = {"fivek": 0.1, "hdrplus": 0.5, "sid": 0.9, "synthetic": 0.5}
_LOG_EPS = 1e-4  # the authors' code: log(max(x, 0) + 1e-4)


def restore_loss(pred: torch.Tensor, target: torch.Tensor, log_weight: float = 1.0) -> torch.Tensor:
    """Eq. 5: ||I_r - G_r||_1 + w ||log max(I_r, eps) - log max(G_r, eps)||_1, both as means (w = 1 in the paper)."""
    log_pred = torch.log(pred.clamp(min=0) + _LOG_EPS)
    log_target = torch.log(target.clamp(min=0) + _LOG_EPS)
    return F.l1_loss(pred, target) + log_weight * F.l1_loss(log_pred, log_target)


# The curve term's norms. "psnr" is log MSE per image, scaled by CURVE_RMS so that its gradient at
# an error of that RMS equals L1's: the mean PSNR that `camnet eval` reports, which weighs each
# image by the inverse of its error, so a quiet image counts as much as a noisy one (L1 gives the
# noisy ones most of the weight, and its optimum is the median, not the mean). CURVE_EPS floors the
# MSE (66 dB) so that an all-clipped patch does not take the whole batch's weight.
CURVE_NORMS = ("l1", "psnr")
CURVE_RMS = 0.02
CURVE_EPS = 2.5e-7


def curve_loss(pred: torch.Tensor, target: torch.Tensor, gain: torch.Tensor | float = 1.0, norm: str = "l1") -> torch.Tensor:
    """The error of two XYZ images after the plain rendering (linear sRGB times ``gain``, clipped, the
    sRGB curve; ``color.render_plain``): the restoration's error as a viewer sees it once the image
    has a tone curve, where the shadows weigh up to 12.92 times what they weigh in linear light.

    ``gain``: a number, or one per image ((B,) or (B, 1, 1, 1)). ``norm``: "l1", or "psnr" (see
    CURVE_NORMS): CURVE_RMS / 2 times the mean over images of log(MSE).
    """
    if norm not in CURVE_NORMS:
        raise ValueError(f"curve norm {norm!r}: use one of {', '.join(CURVE_NORMS)}")
    gain = torch.as_tensor(gain, dtype=pred.dtype, device=pred.device)
    gain = gain.reshape(-1, 1, 1, 1) if gain.dim() else gain
    a, b = color.render_plain(pred, gain), color.render_plain(target, gain)
    if norm == "l1":
        return F.l1_loss(a, b)
    mse = (a - b).square().flatten(1).mean(1)
    return CURVE_RMS / 2 * torch.log(mse + CURVE_EPS).mean()


def enhance_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 6: ||I_o - G_o||_1 as a mean."""
    return F.l1_loss(pred, target)


def grid_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute 2-pixel-periodic error, window by window (``metrics.phase_pattern``).

    Each pixel of a 2x2 block comes from its own weights of the sub-pixel output layer; an
    offset they leave in common over a region is a grid that L1 weighs by its share of the
    error alone, however visible it is in a flat area. Texture's share of this term averages
    out over a window; a systematic offset does not.
    """
    return metrics.phase_pattern((pred - target).float()).abs().mean()


def joint_loss(restore: torch.Tensor, enhance: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 7."""
    return lam * restore + (1 - lam) * enhance


# VGG-19's convolution widths (Simonyan & Zisserman 2015, configuration E); "M" is a 2x2 max-pool.
_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)
# Indices in torchvision's ``vgg19().features`` of relu2_2 and relu5_4, the layers the paper's
# perceptual loss (Johnson et al. 2016) compares.
_LAYERS = (8, 35)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class PerceptualLoss(nn.Module):
    """Mean squared distance of VGG-19 relu2_2 and relu5_4 features of two sRGB images.

    The weights come from a local safetensors file with torchvision's key names
    (``features.<i>.weight``/``bias``); nothing is downloaded, nothing unpickled.
    """

    def __init__(self, weights: Path | str) -> None:
        super().__init__()
        from safetensors.torch import load_file

        layers: list[nn.Module] = []
        cin = 3
        for spec in _VGG19:
            if spec == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, int(spec), 3, padding=1), nn.ReLU(inplace=False)]
                cin = int(spec)
        self.features = nn.Sequential(*layers[: _LAYERS[-1] + 1])
        state = {k: v for k, v in load_file(str(weights)).items() if k.startswith("features.")}
        own = self.features.state_dict()
        missing = [k for k in own if f"features.{k}" not in state]
        if missing:
            raise ValueError(f"{weights}: not VGG-19 weights with torchvision names (missing features.{missing[0]})")
        self.features.load_state_dict({k: state[f"features.{k}"] for k in own})
        self.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def _feats(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (x - self.mean) / self.std
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in _LAYERS:
                out.append(h)
        return out

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum((F.mse_loss(a, b) for a, b in zip(self._feats(pred), self._feats(target))), torch.zeros((), device=pred.device))
