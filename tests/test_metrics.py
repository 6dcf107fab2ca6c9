import math

import numpy as np
import pytest
import torch

from camnet_cli import metrics
from tests.conftest import with_grid

# Sharma, Wu and Dalal, "The CIEDE2000 color-difference formula: implementation notes,
# supplementary test data, and mathematical observations", Color Res. Appl. 30(1), 2005, Table 1.
SHARMA = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -1.1848, -84.8006), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -0.9009, -85.5211), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, -1.0000, 2.0000), (50.0000, 0.0000, 0.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0010), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0012), 7.2195),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0009, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0010, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0011, -2.4900), 4.7461),
    ((50.0000, 2.5000, 0.0000), (50.0000, 0.0000, -2.5000), 4.3065),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (61.0000, -5.0000, 29.0000), 22.8977),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((50.0000, 2.5000, 0.0000), (58.0000, 24.0000, 15.0000), 19.4535),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.1736, 0.5854), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2972, 0.0000), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 1.8634, 0.5757), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2592, 0.3350), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((61.2901, 3.7196, -5.3901), (61.4292, 2.2480, -4.9620), 1.8731),
    ((35.0831, -44.1164, 3.7933), (35.0232, -40.0716, 1.5901), 1.8645),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((36.4612, 47.8580, 18.3852), (36.2715, 50.5065, 21.2231), 1.4146),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((90.9257, -0.5406, -0.9208), (88.6381, -0.8985, -0.7239), 1.5381),
    ((6.7747, -0.2908, -2.4247), (5.8714, -0.0985, -2.2286), 0.6377),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def _pair():
    """A deterministic image pair: smooth content and its noisy copy, (3, 48, 64)."""
    y, x = np.mgrid[0:48, 0:64] / 64.0
    a = np.stack([0.5 + 0.3 * np.sin(6 * x + 2 * y), 0.4 + 0.2 * np.cos(5 * y), 0.3 + 0.25 * x * y])
    b = np.clip(a + np.random.default_rng(0).normal(0, 0.05, (48, 64, 3)).transpose(2, 0, 1), 0, 1)
    return torch.from_numpy(np.clip(a, 0, 1)), torch.from_numpy(b)


def test_ciede2000_matches_sharma_table():
    lab1 = torch.tensor([p[0] for p in SHARMA])
    lab2 = torch.tensor([p[1] for p in SHARMA])
    expected = torch.tensor([p[2] for p in SHARMA], dtype=torch.float64)
    torch.testing.assert_close(metrics.ciede2000(lab1, lab2, dim=-1), expected, atol=5e-5, rtol=0)
    torch.testing.assert_close(metrics.ciede2000(lab2, lab1, dim=-1), expected, atol=5e-5, rtol=0)  # symmetric


def test_psnr_and_ssim_match_scikit_image():
    """Reference values from scikit-image 0.26 (peak_signal_noise_ratio; structural_similarity with
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1), on _pair()."""
    a, b = _pair()
    assert metrics.psnr(a, b).item() == pytest.approx(26.0096568339, abs=1e-8)
    assert metrics.ssim(a, b).item() == pytest.approx(0.3881757179, abs=1e-8)
    assert metrics.ssim(a, a).item() == pytest.approx(1.0)
    assert math.isinf(metrics.psnr(a, a).item())


def test_lab_and_delta_e_match_scikit_image():
    """scikit-image 0.26: rgb2lab of sRGB red, and the mean deltaE_ciede2000 over _pair()."""
    red = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).view(3, 1, 1)
    torch.testing.assert_close(metrics.srgb_to_lab(red).flatten(), torch.tensor([53.2408, 80.0925, 67.2032], dtype=torch.float64), atol=5e-3, rtol=0)
    a, b = _pair()
    assert metrics.delta_e2000(a, b).item() == pytest.approx(6.6362004149, abs=1e-4)


def test_batched_shapes():
    a, b = _pair()
    x, y = torch.stack([a, a]), torch.stack([b, a])
    for f in (metrics.psnr, metrics.ssim, metrics.delta_e2000, metrics.scielab, metrics.scielab_xyz):
        out = f(x, y)
        assert out.shape == (2,)


def test_scielab_of_uniform_fields_is_cielab():
    """The filters keep a uniform field unchanged, so S-CIELAB is plain Delta E*ab there.
    Reference: scikit-image 0.26 deltaE_cie76(rgb2lab(c1), rgb2lab(c2)) for these two sRGB colours."""
    c1, c2 = (0.8, 0.3, 0.2), (0.7, 0.4, 0.3)
    x = torch.tensor(c1, dtype=torch.float64).view(3, 1, 1).expand(3, 40, 40)
    y = torch.tensor(c2, dtype=torch.float64).view(3, 1, 1).expand(3, 40, 40)
    assert metrics.scielab(x, y).item() == pytest.approx(24.9749, abs=5e-3)
    assert metrics.scielab(x, x).item() == 0.0


def test_scielab_xyz_of_uniform_fields_is_cielab():
    """In XYZ (the restoration stage's space): D65 white (L* 100) against an 18% grey of the same
    chromaticity (L* 49.496, CIE 15:2004's formula) differ by 50.504 in L* alone."""
    white = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64).view(3, 1, 1).expand(3, 40, 40)
    assert metrics.scielab_xyz(white, 0.18 * white).item() == pytest.approx(50.504, abs=2e-3)
    # The sRGB form is the XYZ form of the converted images.
    a, b = _pair()
    assert metrics.scielab(a, b).item() == pytest.approx(metrics.scielab_xyz(metrics.srgb_to_xyz(a), metrics.srgb_to_xyz(b)).item())


def test_scielab_forgives_fine_chroma_more_than_fine_luminance():
    """The point of S-CIELAB: the eye blurs high-frequency colour more than luminance, so a
    fine chromatic grating costs less than CIELAB says, and less than a luminance grating."""
    x = torch.arange(96, dtype=torch.float64)
    stripes = (torch.sin(2 * math.pi * x / 4) * 0.5 + 0.5).view(1, 1, -1).expand(1, 64, 96)  # 4-pixel period
    base = torch.full((3, 64, 96), 0.5, dtype=torch.float64)
    chroma = base + 0.08 * torch.cat([stripes, -stripes, torch.zeros_like(stripes)]) - 0.04 * torch.tensor([1.0, -1.0, 0.0]).view(3, 1, 1)
    luma = base + 0.08 * stripes.expand(3, 64, 96) - 0.04
    plain = lambda a, b: torch.linalg.vector_norm(metrics.srgb_to_lab(a) - metrics.srgb_to_lab(b), dim=0).mean().item()  # noqa: E731
    s_chroma, s_luma = metrics.scielab(chroma, base).item(), metrics.scielab(luma, base).item()
    assert s_chroma < 0.5 * plain(chroma, base)
    assert s_chroma / plain(chroma, base) < s_luma / plain(luma, base)


def test_scielab_filters_preserve_mean():
    for terms in metrics.SCIELAB_FILTERS:
        for spd in (10, 23, 60, 300):
            assert metrics._scielab_kernel(terms, spd).sum().item() == pytest.approx(1.0, abs=1e-4)


def test_ssim_checks_shapes():
    with pytest.raises(ValueError, match="11x11"):
        metrics.ssim(torch.rand(3, 8, 8), torch.rand(3, 8, 8))


def test_grid_measures_a_two_pixel_pattern_and_nothing_else():
    """A fixed per-position offset is measured as its RMS (after its mean, which is no grid, is taken
    out); the same offsets on every pixel, smooth changes and noise measure (near) zero."""
    g = torch.Generator().manual_seed(0)
    y = torch.rand(3, 64, 80, generator=g, dtype=torch.float64) * 0.2 + torch.linspace(0, 0.6, 80, dtype=torch.float64)
    offsets = torch.tensor([[[0.01, -0.01], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.004, 0.0], [0.0, 0.004]]], dtype=torch.float64)
    centred = offsets - offsets.mean(dim=(1, 2), keepdim=True)
    expected = centred.pow(2).mean().sqrt().item()
    assert metrics.grid(with_grid(y, offsets), y).item() == pytest.approx(expected, rel=1e-6)
    assert metrics.grid(with_grid(y, offsets + 0.3), y).item() == pytest.approx(expected, rel=1e-6)  # a shift of all four is not a grid
    assert metrics.grid(y, y).item() == 0.0
    assert metrics.grid(y + 0.02, y).item() < 1e-12
    ramp = torch.linspace(0, 0.05, 64, dtype=torch.float64)[:, None] + torch.linspace(0, 0.03, 80, dtype=torch.float64)  # a smooth error
    assert metrics.grid(y + ramp, y).item() < 0.01 * expected  # (only the borders, where the blur reflects, see it)
    noise = 0.01 * torch.randn(3, 64, 80, generator=g, dtype=torch.float64)  # 2.4 times the pattern's RMS, but random
    assert metrics.grid(y + noise, y).item() < 0.15 * 0.01  # averaged over 64 blocks a window
    # Batched, and an odd last row and column are left out.
    batch = torch.stack([with_grid(y, offsets), y])[..., :63, :79]
    assert metrics.grid(batch, torch.stack([y, y])[..., :63, :79]).tolist() == pytest.approx([expected, 0.0], abs=2e-3 * expected)


