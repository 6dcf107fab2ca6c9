"""Colour and Bayer maths as pure functions.

Image functions on torch tensors shaped ``(*, C, H, W)`` (the networks, training and
synthesis use them), and, from ``camnet_cli.colorimetry``, the 3x3 matrix helpers on NumPy
float64 arrays (the front end derives a camera's colour transform once per file).

Colour spaces:
- *camera RGB*: the sensor's own primaries, black-subtracted and normalised to [0, 1].
- *white-balanced camera RGB*: camera RGB times the white-balance gains, so a neutral
  surface under the scene light reads (1, 1, 1).
- *XYZ*: CIE 1931 XYZ, D65-relative: white-balanced neutral (1, 1, 1) maps to the
  D65 white point (``D65``). This is Restore-Net's output space (paper §III-C).
- *linear sRGB* / *sRGB*: IEC 61966-2-1 primaries, D65 white, without / with the
  sRGB transfer curve.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# The colour science on NumPy matrices lives apart, so that decoding (a child process) needs no torch.
from camnet_cli.colorimetry import (  # noqa: F401 (part of this module's interface)
    BRADFORD_D65_TO_D50,
    D65,
    PACKED_CHANNELS,
    RGB_SPACES,
    SRGB_TO_XYZ,
    XYZ_TO_SRGB,
    cam_to_xyz_from_cam_to_srgb,
    cam_to_xyz_from_xyz_to_cam,
    rgb_to_xyz_matrix,
)


def srgb_to_space(rgb: torch.Tensor, space: str) -> torch.Tensor:
    """(3, H, W) sRGB-encoded values in [0, 1] -> the same colours encoded in ``space``
    (``RGB_SPACES``), clipped to [0, 1]. sRGB is returned as it is."""
    if space == "srgb":
        return rgb
    matrix, gamma = RGB_SPACES[space]
    linear = apply_matrix(apply_matrix(srgb_to_linear(rgb), SRGB_TO_XYZ), np.linalg.inv(matrix)).clamp(0.0, 1.0)
    return linear ** (1 / gamma) if gamma else linear_to_srgb(linear)


def srgb_to_linear(x: torch.Tensor, *, clip: bool = True) -> torch.Tensor:
    """Inverse sRGB transfer curve (IEC 61966-2-1).

    Args:
        x: sRGB-encoded values, any shape; clipped to [0, 1] first unless ``clip`` is False, when
            the curve goes on beyond [0, 1] as its formula does (linear below, the power above).

    Returns:
        Linear values, same shape.
    """
    if clip:
        x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor, *, clip: bool = True) -> torch.Tensor:
    """sRGB transfer curve (IEC 61966-2-1).

    Args:
        x: linear values, any shape; clipped to [0, 1] first unless ``clip`` is False, when the
            curve goes on beyond [0, 1] as its formula does (linear below, the power above).

    Returns:
        sRGB-encoded values, same shape.
    """
    if x.requires_grad and torch.is_grad_enabled():
        x = x.clamp(0.0, 1.0) if clip else x
        # The clamp inside the power keeps its gradient finite at 0.
        return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)
    # Without a graph to keep, the same arithmetic in place: a third of the time on a whole frame,
    # most of which went to allocating and first touching each intermediate image.
    x = x.clamp(0.0, 1.0) if clip else x.clone()
    curved = x.clamp(min=0.0031308).pow_(1 / 2.4).mul_(1.055).sub_(0.055)
    return torch.where(x <= 0.0031308, x.mul_(12.92), curved, out=curved)


def srgb_slope(x: torch.Tensor) -> torch.Tensor:
    """The slope of ``linear_to_srgb`` at linear values ``x`` in (0, 1]: how much it amplifies noise there."""
    return torch.where(x <= 0.0031308, 12.92, 1.055 / 2.4 * x.clamp(min=0.0031308) ** (1 / 2.4 - 1))


# Rows apply_matrix writes into ``out`` at once.
_MATRIX_BAND = 64


def apply_matrix(x: torch.Tensor, matrix: torch.Tensor | np.ndarray, *, phases: bool = False, out: torch.Tensor | None = None) -> torch.Tensor:
    """Apply a 3x3 colour matrix per pixel.

    Args:
        x: (*, 3, H, W) image; with ``phases``, (*, 12, H/2, W/2): the image as its 2x2 phase
            planes, colour c of phase p in plane 4c + p (``F.pixel_unshuffle``'s layout).
        matrix: (3, 3) or (*, 3, 3) matrix mapping input channels to output channels.
        out: a tensor shaped as ``x`` (``x`` itself too) to write the image into, a band of rows
            at a time: no image-sized temporary (no graph is kept).

    Returns:
        the image, shaped as ``x``.
    """
    channels = 12 if phases else 3
    if x.dim() < 3 or x.shape[-3] != channels:
        raise ValueError(f"expected an image shaped (*, {channels}, H, W), got {tuple(x.shape)}")
    if out is not None:
        with torch.no_grad():
            for top in range(0, x.shape[-2], _MATRIX_BAND):
                out[..., top : top + _MATRIX_BAND, :] = apply_matrix(x[..., top : top + _MATRIX_BAND, :], matrix, phases=phases)
        return out
    m = torch.as_tensor(matrix, dtype=x.dtype, device=x.device)
    if phases:
        return torch.einsum("...ij,...jphw->...iphw", m, x.unflatten(-3, (3, 4))).flatten(-4, -3)
    return torch.einsum("...ij,...jhw->...ihw", m, x)


def render_plain(xyz: torch.Tensor, gain: float | torch.Tensor = 1.0, *, phases: bool = False) -> torch.Tensor:
    """A plain colorimetric rendering: XYZ clipped to [0, 1], to linear sRGB, times ``gain``, clipped,
    through the sRGB curve. Enhance-Net develops on top of it (EnhanceNetConfig.base).

    Args:
        xyz: (*, 3, H, W) linear XYZ; with ``phases``, its phase planes (``apply_matrix``).
        gain: the exposure applied in linear light (2: the synthetic data's rendering, a raw
            exposed at half the photograph's light renders as the photograph).
    """
    return linear_to_srgb(apply_matrix(xyz.clamp(0.0, 1.0), XYZ_TO_SRGB, phases=phases) * gain)


# Chroma noise reduction after Enhance-Net (camnet's): the noise Restore-Net leaves is mostly in the
# colour differences once rendered. The best width measured grew as about 25 * omega ** (1/3).
CHROMA_SCALE = 25.0
CHROMA_EPS = 1e-3
# The widest chroma filter (``--chroma-nr``'s maximum): the filter pads the image to a multiple of
# its width, so an unbounded width (from a garbled noise level) would be an unbounded allocation.
MAX_CHROMA = 64.0


def chroma_sigma(omega: float) -> float:
    """The chroma filter's width in pixels for a noise level ``omega`` (normalised raw units),
    at most ``MAX_CHROMA``; 0 for a level that is not positive."""
    omega = float(omega)
    return min(CHROMA_SCALE * omega ** (1 / 3), MAX_CHROMA) if omega > 0 else 0.0


def convolve_separable(x: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """(B, C, H, W) convolved with a 1-D kernel of odd length along W, then along H, reflecting at
    the borders (the kernel must be shorter than twice either side).

    As weighted sums of shifted views: on a CPU three to four times faster than the same
    depthwise convolution, and the same to float rounding. Without a graph, a channel at a time:
    each pass's temporaries then stay below malloc's mmap threshold (engine.keep_freed_memory) and
    reuse memory instead of faulting in fresh pages (the chroma filter's six planes of a 12 MP
    image: 0.11 -> 0.08 s).
    """
    if x.shape[-3] > 1 and not (x.requires_grad and torch.is_grad_enabled()):
        out = torch.empty_like(x)
        for c in range(x.shape[-3]):
            out[..., c : c + 1, :, :] = convolve_separable(x[..., c : c + 1, :, :], taps)
        return out
    for dim in (-1, -2):
        x = _shifted_sum(_reflected(x, dim, len(taps) // 2), dim, taps, x.shape[dim])
    return x


def _reflected(x: torch.Tensor, dim: int, r: int) -> torch.Tensor:
    """``x`` padded by ``r`` either side along ``dim`` (-1 or -2), reflecting about its edge pixels."""
    return F.pad(x, (r, r, 0, 0) if dim == -1 else (0, 0, r, r), mode="reflect")


def _shifted_sum(padded: torch.Tensor, dim: int, taps: list[float], n: int, parity: int | None = None) -> torch.Tensor:
    """The sum of ``padded``'s ``n``-long views along ``dim``, each shifted by its tap's offset and
    weighted by it (``padded``: ``_reflected`` by half the kernel): the whole kernel, or with
    ``parity`` 0 or 1 its taps at even or odd offsets from the centre alone. Zero taps cost nothing."""
    r, out = len(taps) // 2, None
    for i, tap in enumerate(taps):
        if tap != 0 and (parity is None or (i - r) % 2 == parity):
            view = padded.narrow(dim, i, n)
            out = view * tap if out is None else out.add_(view, alpha=tap)
    return out  # type: ignore[return-value]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, C, H, W) blurred by a Gaussian of ``sigma`` pixels, separably, reflecting at the borders
    (an image one pixel high or wide is returned as it is)."""
    h, w = x.shape[-2:]
    if min(h, w) < 2:
        return x
    radius = max(1, min(int(np.ceil(3 * sigma)), h - 1, w - 1))
    g = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2))
    return convolve_separable(x, (g / g.sum()).tolist())


# Rows of image a band of smooth_chroma's block means reads at once.
_CHROMA_BAND = 256


def smooth_chroma(rgb: torch.Tensor, sigma: float, eps: float = CHROMA_EPS, *, inplace: bool = False) -> torch.Tensor:
    """Chroma noise reduction: each channel's difference from the mean of the three, smoothed by a
    guided filter with that mean as the guide (He, Sun and Tang, "Guided Image Filtering", ECCV
    2010; Gaussian windows of ``sigma`` pixels instead of boxes); the mean itself is kept.

    Inside a window each difference becomes ``a * mean + b``, fitted by least squares with ``a``
    shrunk by ``eps``: where the luma is flat it is the windowed mean (noise averaged away), where the
    luma has an edge the colour follows it instead of bleeding across. The coefficients vary
    slowly, so they are fitted on the image averaged over blocks of ``max(3, sigma)`` pixels and
    interpolated back, as in He and Sun's "Fast Guided Filter" (arXiv:1505.00996): on the held-out
    photographs within 0.01 dB of the full-resolution filter, several times faster.

    Args:
        rgb: (B, 3, H, W) (gamma-encoded) RGB.
        sigma: the windows' width in pixels (``chroma_sigma``); 0 returns ``rgb``.
        inplace: write the result over ``rgb`` (the same pixels, an image's worth less memory).
    """
    if sigma <= 0:
        return rgb
    step = max(3, round(sigma))
    h, w = rgb.shape[-2:]
    # Block means of the image replicated out to whole blocks, a band of blocks at a time: the same
    # means, without a padded copy of the whole image.
    band = step * max(1, _CHROMA_BAND // step)
    small = torch.cat([F.avg_pool2d(F.pad(rgb[..., top : top + band, :], (0, -w % step, 0, -min(band, h - top) % step), mode="replicate"), step) for top in range(0, h, band)], -2)
    luma = small.mean(1, keepdim=True)
    diff = small[:, :2] - luma  # the third difference is minus the sum of these two
    stats = gaussian_blur(torch.cat([luma, luma * luma, diff, luma * diff], 1), sigma / step)
    mean_l, mean_ll, mean_d, mean_ld = stats[:, :1], stats[:, 1:2], stats[:, 2:4], stats[:, 4:6]
    a = (mean_ld - mean_l * mean_d) / (mean_ll - mean_l * mean_l + eps)
    b = mean_d - a * mean_l
    # Each channel is luma * (1 + a) + b, the three a and the three b each summing to zero.
    coef = torch.cat([a, -a.sum(1, keepdim=True), b, -b.sum(1, keepdim=True)], 1)
    coef = gaussian_blur(coef, sigma / step)
    # Upsampled and applied a band of rows at a time (full-size coefficients would be six more
    # image planes): each band's coefficient rows with one more either side, so that no output row
    # meets the slice's edge; a band's luma is taken before its rows are overwritten.
    out = rgb if inplace else torch.empty_like(rgb)
    for top in range(0, h, band):
        bottom = min(top + band, h)
        first, last = max(0, top // step - 1), min(coef.shape[-2], -(-bottom // step) + 1)
        up = F.interpolate(coef[..., first:last, :], scale_factor=step, mode="bilinear", align_corners=False)
        up = up[..., top - first * step : bottom - first * step, :w]
        luma = rgb[..., top:bottom, :].mean(1, keepdim=True)
        for c in range(3):
            torch.addcmul(up[:, c + 3 : c + 4], up[:, c : c + 1].add_(1.0), luma, out=out[:, c : c + 1, top:bottom])
    return out


def smooth_chroma_linear(
    rgb: torch.Tensor, sigma: float, gain: float = 1.0, to_srgb: torch.Tensor | np.ndarray | None = None, *, inplace: bool = False
) -> torch.Tensor:
    """``smooth_chroma`` for a linear image, applied where it is tuned: in sRGB primaries at the
    plain rendering's exposure, after the sRGB curve. Only the change it makes is brought back to
    the image's own light and primaries, so nothing else moves, and nothing is clipped: beyond
    [0, 1] (a scene-referred image) the curve goes on as its formula does.

    A band of rows at a time but for the filter itself: one image-sized buffer, the curved image.

    Args:
        rgb: (B, 3, H, W) linear RGB, float32.
        sigma: the filter's width in pixels (``chroma_sigma``); 0 returns ``rgb``.
        gain: the exposure it is filtered at (the plain rendering's, ``render_plain``).
        to_srgb: (3, 3) the matrix from ``rgb``'s primaries to linear sRGB's; None: they are sRGB's.
        inplace: write the result over ``rgb``.
    """
    if sigma <= 0:
        return rgb
    m = (torch.eye(3) if to_srgb is None else torch.as_tensor(to_srgb, dtype=torch.float32)).to(rgb.device) * gain
    back = torch.linalg.inv(m)
    h = rgb.shape[-2]
    encoded = torch.empty_like(rgb)
    for top in range(0, h, _CHROMA_BAND):
        encoded[..., top : top + _CHROMA_BAND, :] = linear_to_srgb(apply_matrix(rgb[..., top : top + _CHROMA_BAND, :], m), clip=False)
    smooth_chroma(encoded, sigma, inplace=True)
    out = rgb if inplace else rgb.clone()
    for top in range(0, h, _CHROMA_BAND):
        decoded = srgb_to_linear(encoded[..., top : top + _CHROMA_BAND, :], clip=False)
        change = decoded.sub_(apply_matrix(rgb[..., top : top + _CHROMA_BAND, :], m))
        out[..., top : top + _CHROMA_BAND, :] += apply_matrix(change, back)
    return out


def notch_reach(sigma: float) -> int:
    """How many pixels either side ``remove_grid(image, sigma)`` reads to make one (0 for no notch)."""
    return math.ceil(3 * sigma) + 1 if sigma > 0 else 0


def remove_grid(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """``image`` less what is periodic with period 2 over a Gaussian of ``sigma`` pixels.

    A narrow notch at the three Nyquist frequencies, (pi, 0), (0, pi) and (pi, pi): each is
    brought to zero frequency by multiplying with its +-1 pattern, low-passed by the Gaussian
    (reflecting at the borders, which keeps period 2), brought back and subtracted. A fixed
    offset per position of the 2x2 blocks, the grid a sub-pixel output layer leaves, is removed
    whole where it is constant over a few sigma; detail of the image itself is touched only
    where it repeats every 2 pixels over as wide an area.

    Args:
        image: (B, C, H, W).
        sigma: the Gaussian's sigma in pixels; 0 returns ``image``.
    """
    if sigma <= 0:
        return image
    h, w = image.shape[-2:]
    radius = max(1, min(notch_reach(sigma), h - 1, w - 1))
    g = np.exp(-(np.arange(-radius + 1, radius) ** 2) / (2 * sigma**2))
    # Convolved with [1, 2, 1] / 4 its response at pi is exactly 0, as the cut Gaussian's is not:
    # otherwise each notch would also take a little of the mean level away.
    g = np.convolve(g, [0.25, 0.5, 0.25])
    taps = (g / g.sum()).tolist()
    # Modulating by a +-1 pattern, filtering and modulating back is filtering with the taps at odd
    # offsets negated: with g = E + O (the taps at even and odd offsets), the three notches take
    # (E - O)(E + O) + (E + O)(E - O) + (E - O)(E - O) = 4 E.E - g.g of the image (W times H). So the
    # output is image + g.g - 4 E.E = image + E(v - 3u) + O(u + v), u and v being the image filtered
    # along W by E and by O: one pass over the taps along W and one along H, a third fewer passes
    # over the image than two separable filters, the same to float rounding. Reflecting at the
    # borders keeps period 2, so it commutes with the patterns.
    u, v = _by_parity(image, -1, taps)
    both = u + v
    out = _by_parity(v.sub_(u, alpha=3.0), -2, taps, only=0)[0]
    return out.add_(_by_parity(both, -2, taps, only=1)[1]).add_(image)


def _by_parity(x: torch.Tensor, dim: int, taps: list[float], only: int | None = None) -> list:
    """``x`` filtered along ``dim`` (-1 or -2, reflecting at the borders) by a kernel's taps at even
    offsets from its centre and by those at odd offsets, apart: [even, odd]; ``only`` 0 or 1: that
    one alone (the other None). The kernel has odd length, shorter than twice the side."""
    padded = _reflected(x, dim, len(taps) // 2)
    return [_shifted_sum(padded, dim, taps, x.shape[dim], k) if only in (None, k) else None for k in (0, 1)]


def mosaic(rgb: torch.Tensor) -> torch.Tensor:
    """Sample an RGB image through an RGGB colour filter array.

    Args:
        rgb: (*, 3, H, W) image with even H and W.

    Returns:
        (*, 1, H, W) mosaic: R at (0, 0), G at (0, 1) and (1, 0), B at (1, 1).
    """
    if rgb.dim() < 3 or rgb.shape[-3] != 3 or rgb.shape[-2] % 2 or rgb.shape[-1] % 2:
        raise ValueError(f"expected an image shaped (*, 3, H, W) with even H, W, got {tuple(rgb.shape)}")
    out = rgb[..., 1:2, :, :].clone()
    out[..., 0, 0::2, 0::2] = rgb[..., 0, 0::2, 0::2]
    out[..., 0, 1::2, 1::2] = rgb[..., 2, 1::2, 1::2]
    return out


def pack_bayer(mosaic_: torch.Tensor) -> torch.Tensor:
    """Pack an RGGB mosaic into four half-resolution planes.

    Args:
        mosaic_: (*, 1, H, W) RGGB mosaic with even H and W.

    Returns:
        (*, 4, H/2, W/2) planes in ``PACKED_CHANNELS`` order (R, G1, G2, B).
    """
    if mosaic_.dim() < 3 or mosaic_.shape[-3] != 1:
        raise ValueError(f"expected a mosaic shaped (*, 1, H, W), got {tuple(mosaic_.shape)}")
    lead = mosaic_.shape[:-3]
    flat = mosaic_.reshape(-1, *mosaic_.shape[-3:])
    return F.pixel_unshuffle(flat, 2).reshape(*lead, 4, mosaic_.shape[-2] // 2, mosaic_.shape[-1] // 2)


def unpack_bayer(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of ``pack_bayer``: (*, 4, H/2, W/2) -> (*, 1, H, W)."""
    if packed.dim() < 3 or packed.shape[-3] != 4:
        raise ValueError(f"expected packed planes shaped (*, 4, H, W), got {tuple(packed.shape)}")
    lead = packed.shape[:-3]
    flat = packed.reshape(-1, *packed.shape[-3:])
    return F.pixel_shuffle(flat, 2).reshape(*lead, 1, packed.shape[-2] * 2, packed.shape[-1] * 2)


def pad_bayer(packed: torch.Tensor, n: int = 1) -> torch.Tensor:
    """Pad packed RGGB planes by ``n`` on every side: the mosaic mirrored about its edge pixels.

    That is ``2n`` sensor pixels, so every colour's border neighbours lie where the sensor's
    would (the mosaic of a mirrored image). Mirroring the planes themselves would mirror the
    odd rows and columns about a point a sensor pixel off. Planes of one row or column
    (a mosaic too small to mirror) have their edges repeated instead.

    Args:
        packed: (B, 4, h, w) planes in ``PACKED_CHANNELS`` order.

    Returns:
        (B, 4, h + 2n, w + 2n) planes.
    """
    h, w = packed.shape[-2:]
    if n >= min(h, w):
        return F.pad(packed, (n, n, n, n), mode="replicate")
    # A mirror about an edge pixel by an even number of pixels keeps each pixel's phase in the 2x2
    # pattern, so each plane is padded from itself: plane row i (mosaic row 2i + phase) takes the
    # plane row of the mosaic row it mirrors. Built so, the mosaic is never laid out (three passes
    # over a whole frame, 0.1 s for 18 megapixels).
    out = packed.new_empty((*packed.shape[:-2], h + 2 * n, w + 2 * n))
    out[..., n : n + h, n : n + w] = packed

    def sources(length: int, phase: int) -> torch.Tensor:
        """The plane rows (or columns) of a plane with this phase that its n border rows either side mirror."""
        i = torch.cat([torch.arange(-n, 0), torch.arange(length, length + n)])
        m = 2 * i + phase  # mosaic rows
        m = torch.where(m < 0, -m, torch.where(m > 2 * length - 1, 2 * (2 * length - 1) - m, m))
        return ((m - phase) // 2).to(packed.device)

    def edges(length: int) -> list[int]:
        """The n border rows (or columns) either side, in ``out``."""
        return [*range(n), *range(n + length, 2 * n + length)]

    for plane, (row_phase, col_phase) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):  # R, G1, G2, B
        out[..., plane, edges(h), n : n + w] = packed[..., plane, :, :].index_select(-2, sources(h, row_phase))
        out[..., plane, :, edges(w)] = out[..., plane, :, :].index_select(-1, sources(w, col_phase) + n)
    return out


# The eight symmetries of the square as (transpose, flip rows, flip columns), in the order a
# self-ensemble of N views takes the first N: identity, transpose, half turn, anti-transpose, ...
SYMMETRIES = ((0, 0, 0), (1, 0, 0), (0, 1, 1), (1, 1, 1), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1))


def _apply(x: torch.Tensor, symmetry: tuple[int, int, int], inverse: bool = False) -> torch.Tensor:
    transpose, rows, cols = symmetry
    if transpose and not inverse:
        x = x.transpose(-1, -2)
    x = x.flip([d for d, on in ((-2, rows), (-1, cols)) if on]) if rows or cols else x
    return x.transpose(-1, -2) if transpose and inverse else x


def bayer_view(packed: torch.Tensor, symmetry: tuple[int, int, int]) -> torch.Tensor:
    """Packed planes of the mosaic transposed and/or flipped, still RGGB.

    A flip moves red to an odd row or column; the view is cut one sensor pixel in from the
    mirrored mosaic (``pad_bayer``) to put it back at (0, 0), so a network sees every view as
    the Bayer pattern it was trained on. ``bayer_unview`` maps its output back.

    Args:
        packed: (B, 4, h, w) planes.
        symmetry: one of ``SYMMETRIES``.

    Returns:
        (B, 4, h + 1, w + 1) planes, or (B, 4, w + 1, h + 1) transposed.
    """
    view = _apply(unpack_bayer(pad_bayer(packed, 1)), symmetry)
    _, rows, cols = symmetry
    return pack_bayer(view[..., rows : view.shape[-2] - 2 + rows, cols : view.shape[-1] - 2 + cols])


def bayer_unview(image: torch.Tensor, symmetry: tuple[int, int, int]) -> torch.Tensor:
    """A full-resolution (B, C, 2h + 2, 2w + 2) result for ``bayer_view``'s planes -> (B, C, 2h, 2w) for the original mosaic."""
    _, rows, cols = symmetry
    placed = F.pad(image, (cols, 2 - cols, rows, 2 - rows))  # the view's place in the mirrored mosaic
    return _apply(placed, symmetry, inverse=True)[..., 2:-2, 2:-2]


def camera_to_xyz(
    rgb: torch.Tensor, wb: torch.Tensor | np.ndarray | tuple, cam_to_xyz: torch.Tensor | np.ndarray, *, phases: bool = False, inplace: bool = False
) -> torch.Tensor:
    """Camera RGB -> XYZ with the file's metadata: white-balance gains, then the colour matrix.

    Args:
        rgb: (*, 3, H, W) linear camera RGB, not white-balanced; with ``phases``, its phase
            planes (``apply_matrix``).
        wb: (3,) or (*, 3) gains (R, G, B), G = 1.
        cam_to_xyz: (3, 3) or (*, 3, 3) white-balanced camera RGB -> XYZ (D65).
        inplace: write the XYZ over ``rgb`` (an image's worth less memory).

    Returns:
        linear CIE XYZ, shaped as ``rgb``.
    """
    # The gains in the matrix: one pass over the image.
    return apply_matrix(rgb, camera_matrix(wb, cam_to_xyz).to(rgb.device, rgb.dtype), phases=phases, out=rgb if inplace else None)


def camera_matrix(wb: torch.Tensor | np.ndarray | tuple, cam_to_xyz: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The matrix from camera RGB as stored (not white-balanced) to XYZ: ``cam_to_xyz`` with the
    white-balance gains ``wb`` folded in, float32 ((3, 3), or (*, 3, 3) for batches of either)."""
    gains = torch.as_tensor(wb, dtype=torch.float32)
    return torch.as_tensor(cam_to_xyz, dtype=torch.float32).to(gains.device) * gains[..., None, :]


def auto_white_balance(packed: np.ndarray) -> tuple[float, float, float]:
    """Grey-world gains (R, G, B), G = 1, from packed RGGB planes: the scene's average is taken to be neutral.

    After Buchsbaum, "A spatial processor model for object colour perception" (1980), leaving out
    clipped and near-black pixels, which carry no colour.
    """
    r, g1, g2, b = packed
    g = (g1 + g2) / 2
    usable = (np.maximum(np.maximum(r, g), b) < 0.95) & (g > 0.01)
    if usable.sum() < 100:
        usable = np.ones_like(usable)
    mr, mg, mb = (float(c[usable].mean()) for c in (r, g, b))
    if min(mr, mg, mb) <= 0:
        return (1.0, 1.0, 1.0)
    return (mg / mr, 1.0, mg / mb)


def fit_within(image: torch.Tensor, max_side: int, clip: bool = True) -> torch.Tensor:
    """(C, H, W) resampled so that its longer side is ``max_side`` (the aspect ratio kept, sides
    rounded), with an antialiased bicubic filter: Keys' cubic (a = -0.5) widened by the scale
    factor, as Pillow's BICUBIC reduction does. Clipped to [0, 1] with ``clip``. An image no larger is
    returned as is.
    """
    h, w = image.shape[-2:]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    out = F.interpolate(image[None].float(), size=size, mode="bicubic", antialias=True, align_corners=False)[0]
    return out.clamp(0.0, 1.0) if clip else out
