"""Image-quality metrics of the paper's evaluation (§IV): PSNR, SSIM, S-CIELAB, and CIEDE2000;
and camnet's grid measure (a sub-pixel output layer's 2-pixel pattern).

Pure functions on torch tensors shaped (*, 3, H, W) holding sRGB values in [0, 1]
(or Lab triplets for the colour-difference functions). Computed in float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from camnet_cli import color


def psnr(x: torch.Tensor, y: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB over the last three dimensions: (*, C, H, W) -> (*)."""
    mse = ((x.double() - y.double()) ** 2).mean(dim=(-3, -2, -1))
    return 10 * torch.log10(peak**2 / mse)


def ssim(x: torch.Tensor, y: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """Structural similarity (Wang, Bovik, Sheikh, Simoncelli, IEEE TIP 2004), mean over channels.

    An 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, statistics over the window
    (not the sample covariance), averaged over the pixels whose window lies inside the image,
    as the authors' MATLAB code and ``tf.image.ssim`` (used by CameraNet's code) compute it.

    Args:
        x, y: (*, C, H, W) images, H and W at least 11.

    Returns:
        (*) SSIM values.
    """
    if x.shape != y.shape or x.shape[-1] < 11 or x.shape[-2] < 11:
        raise ValueError(f"expected equal shapes of at least 11x11, got {tuple(x.shape)} and {tuple(y.shape)}")
    lead, (c, h, w) = x.shape[:-3], x.shape[-3:]
    x = x.double().reshape(-1, 1, h, w)
    y = y.double().reshape(-1, 1, h, w)
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    g = (g / g.sum()).to(x.device)
    # The Gaussian window is separable: two 11-tap passes, all five maps at once, 'valid'
    # (only windows inside the image).
    maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    blurred = F.conv2d(F.conv2d(maps, g.view(1, 1, 11, 1).expand(5, 1, 11, 1), groups=5), g.view(1, 1, 1, 11).expand(5, 1, 1, 11), groups=5)
    mx, my, xx, yy, xy = blurred.unbind(dim=1)
    vx, vy, cov = xx - mx**2, yy - my**2, xy - mx * my
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean(dim=(-2, -1)).reshape(*lead, c).mean(dim=-1)  # s: (N, h', w')


def xyz_to_lab(xyz: torch.Tensor) -> torch.Tensor:
    """CIE XYZ (D65, Y = 1 for white) -> CIELAB (CIE 15:2004). (*, 3, H, W) -> (*, 3, H, W)."""
    white = torch.tensor(color.D65, dtype=xyz.dtype, device=xyz.device).view(3, 1, 1)
    t = xyz / white
    d = 6 / 29
    f = torch.where(t > d**3, t.clamp(min=d**3) ** (1 / 3), t / (3 * d**2) + 4 / 29)
    fx, fy, fz = f.unbind(dim=-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def srgb_to_xyz(srgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> linear CIE XYZ (D65, Y = 1 for white), in float64. (*, 3, H, W) -> (*, 3, H, W)."""
    return color.apply_matrix(color.srgb_to_linear(srgb.double()), color.SRGB_TO_XYZ)


def srgb_to_lab(srgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> CIELAB (D65). (*, 3, H, W) -> (*, 3, H, W)."""
    return xyz_to_lab(srgb_to_xyz(srgb))


def ciede2000(lab1: torch.Tensor, lab2: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """CIEDE2000 colour difference (CIE 142-2001), k_L = k_C = k_H = 1.

    Following the implementation notes of Sharma, Wu and Dalal, "The CIEDE2000 color-difference
    formula", Color Research & Application 30(1), 2005 (the hue-angle and mean-hue rules there).

    Args:
        lab1, lab2: Lab triplets along ``dim``.

    Returns:
        The differences, ``dim`` removed.
    """
    L1, a1, b1 = lab1.double().unbind(dim)
    L2, a2, b2 = lab2.double().unbind(dim)
    c_mean = (torch.hypot(a1, b1) + torch.hypot(a2, b2)) / 2
    g = 0.5 * (1 - torch.sqrt(c_mean**7 / (c_mean**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = torch.hypot(a1p, b1), torch.hypot(a2p, b2)
    h1p = torch.rad2deg(torch.atan2(b1, a1p)) % 360
    h2p = torch.rad2deg(torch.atan2(b2, a2p)) % 360
    h1p = torch.where((a1p == 0) & (b1 == 0), torch.zeros_like(h1p), h1p)
    h2p = torch.where((a2p == 0) & (b2 == 0), torch.zeros_like(h2p), h2p)

    dL = L2 - L1
    dC = c2p - c1p
    dh = h2p - h1p
    dh = torch.where(dh > 180, dh - 360, torch.where(dh < -180, dh + 360, dh))
    dh = torch.where(c1p * c2p == 0, torch.zeros_like(dh), dh)
    dH = 2 * torch.sqrt(c1p * c2p) * torch.sin(torch.deg2rad(dh / 2))

    L_mean = (L1 + L2) / 2
    cp_mean = (c1p + c2p) / 2
    h_sum = h1p + h2p
    hp_mean = torch.where(
        c1p * c2p == 0,
        h_sum,
        torch.where((h1p - h2p).abs() <= 180, h_sum / 2, torch.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2)),
    )
    t = (
        1
        - 0.17 * torch.cos(torch.deg2rad(hp_mean - 30))
        + 0.24 * torch.cos(torch.deg2rad(2 * hp_mean))
        + 0.32 * torch.cos(torch.deg2rad(3 * hp_mean + 6))
        - 0.20 * torch.cos(torch.deg2rad(4 * hp_mean - 63))
    )
    d_theta = 30 * torch.exp(-(((hp_mean - 275) / 25) ** 2))
    rc = 2 * torch.sqrt(cp_mean**7 / (cp_mean**7 + 25.0**7))
    sl = 1 + 0.015 * (L_mean - 50) ** 2 / torch.sqrt(20 + (L_mean - 50) ** 2)
    sc = 1 + 0.045 * cp_mean
    sh = 1 + 0.015 * cp_mean * t
    rt = -torch.sin(torch.deg2rad(2 * d_theta)) * rc
    return torch.sqrt((dL / sl) ** 2 + (dC / sc) ** 2 + (dH / sh) ** 2 + rt * (dC / sc) * (dH / sh))


def delta_e2000(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean CIEDE2000 between two sRGB images: (*, 3, H, W) -> (*)."""
    return ciede2000(srgb_to_lab(x), srgb_to_lab(y)).mean(dim=(-2, -1))


# --- S-CIELAB ---------------------------------------------------------------------------------

# Zhang & Wandell, "A spatial extension of CIELAB for digital color-image reproduction", SID Journal
# 5(1), 1997, and their S-CIELAB code (separableFilters.m, cmatrix 'xyz2opp'): XYZ -> opponent
# channels (luminance, red-green, blue-yellow) of Poirson & Wandell, ...
_XYZ_TO_OPP = torch.tensor(
    [[278.7336, 721.8031, -106.5520], [-448.7736, 289.8056, 77.1569], [85.9513, -589.9859, 501.1089]],
    dtype=torch.float64,
) / 1000
# ... and each channel's spatial filter, a sum of Gaussians: (half-width in degrees of visual angle, weight).
SCIELAB_FILTERS = (
    ((0.05, 1.00327), (0.225, 0.114416), (7.0, -0.117686)),  # luminance
    ((0.0685, 0.616725), (0.826, 0.383275)),  # red-green
    ((0.0920, 0.567885), (0.6451, 0.432115)),  # blue-yellow
)
# The viewing condition: image samples per degree of visual angle. S-CIELAB depends on it; camnet
# fixes it at 23, a 72-dpi print or screen seen from about 46 cm (72 dpi * tan(1 deg) * 18 in).
SAMPLES_PER_DEGREE = 23.0


def _scielab_kernel(terms: tuple[tuple[float, float], ...], samples_per_degree: float) -> torch.Tensor:
    """A channel's 1-D separable filter: a weighted sum of unit-area Gaussians, one degree wide.

    As Zhang & Wandell's separableFilters.m: each Gaussian is exp(-(2 sqrt(ln 2) x / halfwidth)^2),
    built at no fewer than 224 samples per degree (the narrow luminance term is about one image
    pixel wide at 23) and then summed into the image's pixels.
    """
    up = max(1, math.ceil(224 / samples_per_degree))
    fine_rate = samples_per_degree * up
    width = math.ceil(fine_rate / 2) * 2 - 1  # one degree, odd
    x = torch.arange(width, dtype=torch.float64) - width // 2  # fine samples
    fine = torch.zeros(width, dtype=torch.float64)
    for half_width, weight in terms:
        g = torch.exp(-((2 * math.sqrt(math.log(2)) * x / (half_width * fine_rate)) ** 2))
        fine += weight * g / g.sum()
    taps = torch.round(x / up).long()  # the image pixel each fine sample falls in
    kernel = torch.zeros(int(taps.max()) * 2 + 1, dtype=torch.float64)
    kernel.index_add_(0, taps + taps.max(), fine)
    return kernel


def scielab(x: torch.Tensor, y: torch.Tensor, samples_per_degree: float = SAMPLES_PER_DEGREE) -> torch.Tensor:
    """Mean S-CIELAB difference (Zhang & Wandell 1997) between two sRGB images; lower is better.

    Args:
        x, y: (*, 3, H, W) sRGB images in [0, 1].

    Returns:
        (*) mean differences.
    """
    return scielab_xyz(srgb_to_xyz(x), srgb_to_xyz(y), samples_per_degree)


def scielab_xyz(x: torch.Tensor, y: torch.Tensor, samples_per_degree: float = SAMPLES_PER_DEGREE) -> torch.Tensor:
    """Mean S-CIELAB difference between two linear CIE XYZ images (D65, Y = 1 for white).

    S-CIELAB's own input: both images go to opponent channels, each channel is blurred by its
    contrast-sensitivity filter (reflecting at the borders), back to XYZ and CIELAB, and the
    CIELAB difference (Delta E*ab 1976, as in the original) is averaged over the pixels. This
    scores the restoration stage, whose output is linear XYZ.

    Args:
        x, y: (*, 3, H, W) linear XYZ images.

    Returns:
        (*) mean differences.
    """

    def filtered_lab(xyz: torch.Tensor) -> torch.Tensor:
        xyz = xyz.double()
        opp = color.apply_matrix(xyz, _XYZ_TO_OPP.to(xyz.device))
        lead, (_, h, w) = opp.shape[:-3], opp.shape[-3:]
        channels = []
        for c, terms in enumerate(SCIELAB_FILTERS):
            k = _scielab_kernel(terms, samples_per_degree).to(opp.device)
            r = k.numel() // 2
            ch = opp[..., c, :, :].reshape(-1, 1, h, w)
            ch = F.conv2d(F.pad(ch, (r, r, 0, 0), mode="reflect" if r < w else "replicate"), k.view(1, 1, 1, -1))
            ch = F.conv2d(F.pad(ch, (0, 0, r, r), mode="reflect" if r < h else "replicate"), k.view(1, 1, -1, 1))
            channels.append(ch.reshape(*lead, h, w))
        back = color.apply_matrix(torch.stack(channels, dim=-3), torch.linalg.inv(_XYZ_TO_OPP).to(opp.device))
        return xyz_to_lab(back)

    return torch.linalg.vector_norm(filtered_lab(x) - filtered_lab(y), dim=-3).mean(dim=(-2, -1))


# Side of the windows over which the grid measure averages the error, in pixels: wide enough
# that texture's random share of each 2x2 phase mostly cancels, narrow enough to follow a
# pattern that changes with the content.
GRID_WINDOW = 16


def binomial_blur(image: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) image blurred by the 3x3 binomial kernel ([1, 2, 1] / 4 each way), reflecting at
    the borders: it keeps constants and ramps and removes the three patterns of period 2 whole
    (reflection keeps period 2)."""
    taps = torch.tensor([0.25, 0.5, 0.25], dtype=image.dtype, device=image.device)
    c = image.shape[1]
    return F.conv2d(F.pad(image, (1, 1, 1, 1), mode="reflect"), (taps[:, None] * taps[None]).expand(c, 1, 3, 3), groups=c)


def phase_pattern(error: torch.Tensor, window: int = GRID_WINDOW) -> torch.Tensor:
    """The 2-pixel-periodic part of an error image, window by window.

    A network whose last layer is a sub-pixel convolution (paper §III-C: 1x1 conv to 12 planes,
    PixelShuffle) gives each of the four pixels of a 2x2 block its own weights and bias, and can
    leave a fixed offset per position: a faint grid, most visible in flat, dark areas. The error
    less its 3x3 binomial blur keeps the three patterns of period 2 (columns, rows, checkerboard)
    whole and drops constants and ramps; this is that residual's mean at each position of the
    2x2 blocks, over ``window``-pixel windows (stride half a window), less the mean of the four.

    Args:
        error: (B, C, H, W) difference of two images; H and W even, at least 2.

    Returns:
        (B, C, 4, h, w) per-position offsets, one set per window.
    """
    c = error.shape[1]
    residual = error - binomial_blur(error)
    planes = F.pixel_unshuffle(residual, 2)  # (B, C*4, H/2, W/2): channel c*4 + position
    side = max(1, min(window // 2, *planes.shape[-2:]))
    local = F.avg_pool2d(planes, side, stride=max(1, side // 2)).unflatten(1, (c, 4))
    return local - local.mean(dim=2, keepdim=True)


def grid(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """RMS of the 2-pixel grid in ``x`` against ``y`` (see ``phase_pattern``), in their units; 0 without one.

    Args:
        x, y: (*, C, H, W) images; an odd last row or column is left out.

    Returns:
        (*) values.
    """
    lead, (c, h, w) = x.shape[:-3], x.shape[-3:]
    error = (x.double() - y.double()).reshape(-1, c, h, w)[..., : h // 2 * 2, : w // 2 * 2]
    return phase_pattern(error).pow(2).mean(dim=(1, 2, 3, 4)).sqrt().reshape(lead)
