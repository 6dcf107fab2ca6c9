import math

import numpy as np
import pytest
import torch

from camnet_cli import color, metrics
from tests.conftest import SONY_XYZ_TO_CAM, with_grid

D65_WHITE = np.array([0.95047, 1.0, 1.08883])  # XYZ of D65, Y = 1 (CIE 15:2004)


def test_srgb_curve_known_values():
    x = torch.tensor([0.0, 0.04045, 0.5, 1.0], dtype=torch.float64)
    lin = color.srgb_to_linear(x)
    assert lin[1].item() == pytest.approx(0.04045 / 12.92)
    assert lin[2].item() == pytest.approx(0.214041, abs=1e-6)  # tabulated sRGB value for 128/255 ~ 0.5
    assert color.linear_to_srgb(torch.tensor(0.18, dtype=torch.float64)).item() == pytest.approx(0.461356, abs=1e-6)
    assert lin[0].item() == 0.0 and lin[3].item() == pytest.approx(1.0)


def test_srgb_round_trip():
    x = torch.rand(3, 16, 16, dtype=torch.float64)
    assert torch.allclose(color.linear_to_srgb(color.srgb_to_linear(x)), x, atol=1e-12)


def test_srgb_curves_gradcheck():
    x = (torch.rand(2, 3, 4, 4, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    assert torch.autograd.gradcheck(color.srgb_to_linear, (x,))
    assert torch.autograd.gradcheck(color.linear_to_srgb, (x,))


def test_srgb_matrix_maps_white_to_d65():
    assert np.allclose(color.SRGB_TO_XYZ @ np.ones(3), D65_WHITE, atol=1e-4)
    assert np.allclose(color.XYZ_TO_SRGB @ color.SRGB_TO_XYZ, np.eye(3))


def test_camera_matrix_keeps_neutral_neutral():
    cam_to_xyz, d65_gains = color.cam_to_xyz_from_xyz_to_cam(SONY_XYZ_TO_CAM)
    # White-balanced neutral (1, 1, 1) is D65 white in XYZ.
    assert np.allclose(cam_to_xyz @ np.ones(3), D65_WHITE, atol=1e-4)
    # The D65 gains make the camera's response to D65 white neutral.
    raw_white = SONY_XYZ_TO_CAM @ D65_WHITE
    assert np.allclose(raw_white * d65_gains / (raw_white[1] * d65_gains[1]), 1.0, atol=1e-3)
    assert d65_gains[1] == 1.0 and d65_gains[0] > 1 and d65_gains[2] > 1  # a typical sensor: weak R and B


def test_both_matrix_sources_agree():
    cam_to_xyz, _ = color.cam_to_xyz_from_xyz_to_cam(SONY_XYZ_TO_CAM)
    cam_to_srgb = color.XYZ_TO_SRGB @ cam_to_xyz  # what LibRaw puts in color_matrix for a DNG
    assert np.allclose(color.cam_to_xyz_from_cam_to_srgb(cam_to_srgb), cam_to_xyz)
    assert np.allclose(cam_to_srgb.sum(axis=1), 1.0)


@pytest.mark.parametrize("shape", [(3, 3, 3), (4, 3)])
def test_matrix_helpers_check_shape(shape):
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        color.cam_to_xyz_from_xyz_to_cam(np.ones(shape))


def test_apply_matrix_batches_and_checks_shape():
    x = torch.rand(2, 3, 5, 7)
    m = torch.rand(3, 3)
    out = color.apply_matrix(x, m)
    assert out.shape == x.shape
    assert torch.allclose(out[1, :, 2, 3], m @ x[1, :, 2, 3], atol=1e-6)
    with pytest.raises(ValueError, match=r"\(2, 4, 5, 7\)"):
        color.apply_matrix(torch.rand(2, 4, 5, 7), m)


def test_colour_on_phase_planes_is_colour_on_the_image():
    """Between the networks the image is held as its 2x2 phase planes (F.pixel_unshuffle's layout):
    the colour steps give there what they give on the laid-out image (the gains folded into the
    matrix round differently, by a float32 ulp or so)."""
    torch.manual_seed(0)
    rgb, wb, m = torch.rand(2, 3, 6, 10), torch.tensor([2.2, 1.0, 1.6]), torch.rand(3, 3)
    phases = torch.nn.functional.pixel_unshuffle(rgb, 2)
    for laid_out, planes in (
        (color.apply_matrix(rgb, m), color.apply_matrix(phases, m, phases=True)),
        (color.camera_to_xyz(rgb, wb, m), color.camera_to_xyz(phases, wb, m, phases=True)),
        (color.render_plain(rgb, 2.0), color.render_plain(phases, 2.0, phases=True)),
    ):
        torch.testing.assert_close(planes, torch.nn.functional.pixel_unshuffle(laid_out, 2), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(color.camera_to_xyz(rgb, wb, m), color.apply_matrix(rgb * wb[:, None, None], m), rtol=1e-6, atol=1e-6)
    # in place, a band of rows at a time, on a view (the engine's output is a crop of a larger image)
    big = torch.rand(12, 2 * color._MATRIX_BAND + 9, 40)
    view, before = big[:, 1:-1, 1:-1], big.clone()
    expected = color.camera_to_xyz(view, wb, m, phases=True)
    assert color.camera_to_xyz(view, wb, m, phases=True, inplace=True).data_ptr() == view.data_ptr()
    assert torch.equal(view, expected)
    view.copy_(before[:, 1:-1, 1:-1])
    assert torch.equal(big, before)  # nothing outside the view was written
    with pytest.raises(ValueError, match=r"\(2, 3, 6, 10\)"):
        color.apply_matrix(rgb, m, phases=True)


def test_mosaic_samples_rggb():
    rgb = torch.rand(3, 4, 6)
    m = color.mosaic(rgb)
    assert m.shape == (1, 4, 6)
    assert torch.equal(m[0, 0::2, 0::2], rgb[0, 0::2, 0::2])
    assert torch.equal(m[0, 0::2, 1::2], rgb[1, 0::2, 1::2])
    assert torch.equal(m[0, 1::2, 0::2], rgb[1, 1::2, 0::2])
    assert torch.equal(m[0, 1::2, 1::2], rgb[2, 1::2, 1::2])
    with pytest.raises(ValueError, match="even"):
        color.mosaic(torch.rand(3, 5, 6))


def test_pack_order_and_round_trip():
    m = torch.arange(2 * 1 * 4 * 6, dtype=torch.float32).reshape(2, 1, 4, 6)
    packed = color.pack_bayer(m)
    assert packed.shape == (2, 4, 2, 3)
    for k, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):  # R, G1, G2, B
        assert torch.equal(packed[:, k], m[:, 0, dy::2, dx::2])
    assert torch.equal(color.unpack_bayer(packed), m)
    with pytest.raises(ValueError):
        color.unpack_bayer(torch.rand(3, 2, 2))


def test_pad_bayer_is_the_mosaic_of_the_mirrored_image():
    """Padding the planes mirrors the sensor: the result is the mosaic of the image mirrored
    about its edge pixels, each colour's neighbours where the sensor's would be; mirroring
    the planes themselves is not (its odd rows and columns are a pixel off)."""
    rgb = torch.rand(2, 3, 12, 16)
    packed = color.pack_bayer(color.mosaic(rgb))
    mirrored = torch.nn.functional.pad(rgb, (2, 2, 2, 2), mode="reflect")
    expected = color.pack_bayer(color.mosaic(mirrored))
    assert torch.equal(color.pad_bayer(packed), expected)
    assert not torch.equal(torch.nn.functional.pad(packed, (1, 1, 1, 1), mode="reflect"), expected)
    assert color.pad_bayer(torch.rand(1, 4, 1, 5)).shape == (1, 4, 3, 7)  # too small to mirror: edges repeated
    # any size and width of border, with or without a batch
    for shape, n in (((1, 3, 10, 14), 2), ((3, 6, 4), 1), ((2, 3, 6, 22), 2)):
        rgb = torch.rand(*shape)
        mirrored = torch.nn.functional.pad(rgb[None] if rgb.dim() == 3 else rgb, (2 * n,) * 4, mode="reflect")
        expected = color.pack_bayer(color.mosaic(mirrored))
        got = color.pad_bayer(color.pack_bayer(color.mosaic(rgb)), n)
        assert torch.equal(got, expected[0] if rgb.dim() == 3 else expected)


def _colour_tagged(packed: torch.Tensor) -> torch.Tensor:
    """A stand-in for Restore-Net: channel c holds the raw value where the RGGB pattern has colour c."""
    m = color.unpack_bayer(packed)[:, 0]
    out = torch.zeros(m.shape[0], 3, *m.shape[-2:])
    for c, (dy, dx) in ((0, (0, 0)), (1, (0, 1)), (1, (1, 0)), (2, (1, 1))):
        out[:, c, dy::2, dx::2] = m[:, dy::2, dx::2]
    return out


def test_every_symmetric_view_keeps_the_bayer_pattern_and_maps_back():
    """Each of the eight views is still RGGB, so a network reads every colour where it was
    trained to, and its result maps back onto the original pixels: a wrong phase would put a
    red sample in the green channel, a wrong offset would shift the image."""
    packed = color.pack_bayer(color.mosaic(torch.rand(2, 3, 12, 16)))
    want = _colour_tagged(packed)
    assert len(set(color.SYMMETRIES)) == 8
    for symmetry in color.SYMMETRIES:
        view = color.bayer_view(packed, symmetry)
        assert view.shape == ((2, 4, 9, 7) if symmetry[0] else (2, 4, 7, 9))
        assert torch.equal(color.bayer_unview(_colour_tagged(view), symmetry), want), symmetry


def _noisy_flat_and_edge(seed=0):
    """A (1, 3, 64, 96) sRGB image: a bright orange left half, a dark blue right half, chroma noise on both."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.empty(1, 3, 64, 96)
    clean[..., :48] = torch.tensor([0.8, 0.5, 0.2]).view(1, 3, 1, 1)
    clean[..., 48:] = torch.tensor([0.1, 0.15, 0.4]).view(1, 3, 1, 1)
    noise = 0.05 * torch.randn(1, 3, 64, 96, generator=g)
    return clean, clean + noise - noise.mean(1, keepdim=True)  # colour noise only: the RGB mean is clean


def test_smooth_chroma_keeps_the_mean_and_removes_colour_noise():
    clean, noisy = _noisy_flat_and_edge()
    out = color.smooth_chroma(noisy, 2.0)
    torch.testing.assert_close(out.mean(1), noisy.mean(1), rtol=0, atol=1e-6)  # the RGB mean is kept exactly
    err_in, err_out = (noisy - clean).pow(2).mean(), (out - clean).pow(2).mean()
    assert err_out < err_in / 5, (err_in, err_out)
    assert torch.equal(color.smooth_chroma(noisy, 0.0), noisy)


def test_smooth_chroma_keeps_colour_edges_the_luma_shows():
    """Where the luma has an edge the colours do not bleed across it, as a plain blur of the colour differences would."""
    clean, noisy = _noisy_flat_and_edge(1)
    guided = color.smooth_chroma(noisy, 3.0)
    luma = noisy.mean(1, keepdim=True)
    blurred = color.gaussian_blur(noisy - luma, 3.0) + luma
    band = slice(44, 52)  # the columns next to the edge
    guided_err = (guided - clean)[..., band].abs().mean()
    blurred_err = (blurred - clean)[..., band].abs().mean()
    assert guided_err < blurred_err / 3, (guided_err, blurred_err)


def _encode(x: torch.Tensor) -> torch.Tensor:
    """The sRGB curve, its formula continued beyond [0, 1]."""
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


def test_smooth_chroma_linear_filters_after_the_curve_and_in_srgb_primaries():
    """A linear image is filtered as its plain rendering would be (times the gain, after the curve,
    in sRGB primaries), and the result is brought back to its own light and primaries."""
    clean, noisy = _noisy_flat_and_edge(2)
    srgb = color.srgb_to_linear(noisy.clamp(0.01, 0.99)) / 2  # a linear image that the gain 2 renders as ``noisy``
    out = color.smooth_chroma_linear(srgb, 2.0, gain=2.0)
    torch.testing.assert_close(_encode(2 * out), color.smooth_chroma(_encode(2 * srgb), 2.0), rtol=0, atol=2e-5)
    to_srgb = torch.tensor([[1.6, -0.4, -0.2], [-0.3, 1.5, -0.2], [0.0, -0.5, 1.5]])
    camera = color.apply_matrix(srgb, torch.linalg.inv(to_srgb))
    in_camera = color.smooth_chroma_linear(camera, 2.0, gain=2.0, to_srgb=to_srgb)
    torch.testing.assert_close(color.apply_matrix(in_camera, to_srgb), out, rtol=0, atol=2e-5)
    assert color.smooth_chroma_linear(srgb, 0.0) is srgb


def test_smooth_chroma_linear_keeps_what_it_does_not_filter_beyond_one():
    """A scene-referred grey with highlights far above 1 and values below 0: no colour to filter,
    so nothing moves (nothing is clipped)."""
    grey = torch.linspace(-0.01, 6.0, 64 * 96).reshape(1, 1, 64, 96).expand(1, 3, 64, 96).contiguous()
    out = color.smooth_chroma_linear(grey, 3.0, gain=2.0)
    torch.testing.assert_close(out, grey, rtol=1e-5, atol=1e-6)
    assert out.max() > 5.9 and out.min() < 0


def test_chroma_sigma_grows_with_the_noise_level():
    widths = [color.chroma_sigma(omega) for omega in (0.0, 1e-5, 8e-5, 6e-4, 5e-3)]
    assert widths[0] == 0.0 and widths == sorted(widths)
    assert 0.5 < widths[2] < 1.5 and 3.5 < widths[4] < 5.5  # about 1 pixel at ISO 400 to about 4 at 25600 (a7R III)


def test_chroma_sigma_is_bounded():
    """A garbled noise level once made the filter gigabytes wide (it pads to a multiple of its width)."""
    assert [color.chroma_sigma(omega) for omega in (1e9, 1e300, float("inf"))] == [color.MAX_CHROMA] * 3
    assert color.chroma_sigma(float("nan")) == color.chroma_sigma(-1.0) == 0.0


def test_gaussian_blur_keeps_constants_and_the_mean():
    x = torch.full((1, 2, 20, 30), 0.25)
    torch.testing.assert_close(color.gaussian_blur(x, 1.5), x)
    y = torch.rand(1, 1, 40, 40, dtype=torch.float64)
    assert abs(color.gaussian_blur(y, 2.0).mean() - y.mean()) < 0.01


@pytest.mark.parametrize("side", [2, 3, 4, 7])
def test_smooth_chroma_on_tiny_images(side):
    x = torch.rand(1, 3, side, side + 1)
    out = color.smooth_chroma(x, 4.0)
    assert out.shape == x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out.mean(1), x.mean(1), rtol=0, atol=1e-6)


def test_convolve_separable_equals_the_depthwise_convolution():
    import torch.nn.functional as F

    x = torch.rand(2, 3, 17, 23, dtype=torch.float64)
    taps = [0.1, 0.25, 0.3, 0.25, 0.1]
    k = torch.tensor(taps, dtype=torch.float64)
    want = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), (k[:, None] * k[None, :]).expand(3, 1, 5, 5), groups=3)
    torch.testing.assert_close(color.convolve_separable(x, taps), want)


def test_remove_grid_takes_out_a_fixed_two_pixel_pattern_and_little_else():
    """The notch removes a per-position offset whole (borders included: reflection keeps period 2)
    and leaves smooth content, and a photograph-like image, nearly as they were."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 96, dtype=torch.float64), torch.linspace(0, 1, 128, dtype=torch.float64), indexing="ij")
    smooth = torch.stack([0.3 + 0.2 * torch.sin(5 * x + 2 * y), 0.4 + 0.1 * torch.cos(7 * y), 0.2 + 0.3 * x * y])[None]
    # a fixed offset per position of each 2x2 block, as a sub-pixel layer's biases leave it
    offsets = torch.tensor([[0.02, -0.02], [0.01, -0.01]], dtype=torch.float64) * torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64).view(3, 1, 1)
    pattern = with_grid(torch.zeros(1, 3, 96, 128, dtype=torch.float64), offsets)
    assert (color.remove_grid(smooth + pattern, 2.0) - smooth).abs().max().item() < 2e-3  # the pattern's peak: 0.04
    assert color.remove_grid(pattern, 2.0).abs().max().item() < 1e-4  # of 0.08 (the Gaussian, cut at 3 sigma, leaks a little at pi)
    assert metrics.psnr(color.remove_grid(smooth, 2.0), smooth).item() > 55
    # Texture at every frequency (noise low-passed by a 3x3 box, with far more energy near the
    # Nyquist frequencies than photographs: they changed by 53 dB) loses a little; a wider notch takes more.
    texture = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 100, 130, generator=torch.Generator().manual_seed(0), dtype=torch.float64), 3, 1)
    kept = metrics.psnr(color.remove_grid(texture, 2.0), texture).item()
    assert kept > 33, kept
    assert metrics.psnr(color.remove_grid(texture, 0.7), texture).item() < kept  # a wider notch takes more
    assert color.remove_grid(smooth, 0.0) is smooth
    tiny = torch.rand(1, 3, 4, 6, dtype=torch.float64)  # smaller than the Gaussian: its radius shrinks
    assert color.remove_grid(tiny, 2.0).shape == tiny.shape


def test_auto_white_balance_neutralises_a_grey_scene():
    rng = np.random.default_rng(0)
    grey = rng.uniform(0.1, 0.6, (64, 64)).astype(np.float32)
    packed = np.stack([grey / 2.2, grey, grey, grey / 1.6])  # a grey world seen by a sensor with weak R and B
    assert color.auto_white_balance(packed) == pytest.approx((2.2, 1.0, 1.6), rel=1e-4)


def test_srgb_slope_is_the_curves_derivative():
    x = torch.linspace(1e-4, 1, 2000, dtype=torch.float64, requires_grad=True)
    color.linear_to_srgb(x).sum().backward()
    torch.testing.assert_close(color.srgb_slope(x.detach()), x.grad)
    assert color.srgb_slope(torch.tensor(1e-4)).item() == pytest.approx(12.92)


def test_fit_within_keeps_the_aspect_and_filters():
    from camnet_cli.color import fit_within

    flat = torch.full((3, 300, 200), 0.25)
    small = fit_within(flat, 60)
    assert small.shape == (3, 60, 40) and torch.allclose(small, flat[:, :60, :40], atol=1e-6)
    assert fit_within(flat, 300) is flat  # never enlarged
    # A one-pixel checkerboard averages to grey when shrunk (no aliasing into a pattern).
    board = ((torch.arange(256)[:, None] + torch.arange(256)[None]) % 2).float().expand(3, 256, 256)
    grey = fit_within(board, 64)
    assert grey.shape == (3, 64, 64) and (grey - 0.5).abs().max() < 0.02


def test_linear_to_srgb_without_a_graph_is_the_same_arithmetic():
    x = torch.cat([torch.linspace(-0.5, 1.5, 4001), torch.tensor([0.0031308, 0.0031307, 0.0031309, 0.0, 1.0])])
    graph = color.linear_to_srgb(x.clone().requires_grad_())
    with torch.inference_mode():
        fast = color.linear_to_srgb(x)
    assert torch.equal(fast, graph.detach()) and torch.equal(x[:3], torch.linspace(-0.5, 1.5, 4001)[:3])  # input untouched


def test_remove_grid_is_the_three_modulated_notches():
    """The notch as its docstring defines it, each Nyquist frequency brought to zero, low-passed,
    brought back and subtracted, against the two filters it is computed with."""
    torch.manual_seed(0)
    for h, w, sigma in ((40, 54, 2.0), (9, 7, 0.8), (31, 64, 3.5)):
        image = torch.rand(2, 3, h, w)
        radius = max(1, min(math.ceil(3 * sigma) + 1, h - 1, w - 1))
        g = np.convolve(np.exp(-(np.arange(-radius + 1, radius) ** 2) / (2 * sigma**2)), [0.25, 0.5, 0.25])
        taps = (g / g.sum()).tolist()
        rows = 1 - 2 * (torch.arange(h) % 2).float()[:, None]
        cols = 1 - 2 * (torch.arange(w) % 2).float()[None, :]
        expected = image.clone()
        for pattern in (cols, rows, rows * cols):
            expected -= pattern * color.convolve_separable(pattern * image, taps)
        assert torch.allclose(color.remove_grid(image, sigma), expected, atol=1e-6)


@pytest.mark.parametrize("sigma", [3.0, 4.6])
def test_smooth_chroma_in_bands_and_in_place_is_the_whole_image_filter(sigma, monkeypatch):
    """The filter runs a band of rows at a time and may overwrite its input: the pixels of one
    pass over the whole image into a new tensor, up to the rounding of the interpolation weights
    (which a band computes from smaller coordinates)."""
    x = torch.rand(1, 3, 601, 83, generator=torch.Generator().manual_seed(3))  # neither side a multiple of the block
    banded = color.smooth_chroma(x, sigma)
    monkeypatch.setattr(color, "_CHROMA_BAND", 10**6)
    whole = color.smooth_chroma(x, sigma)
    assert not torch.equal(banded, x) and (banded - whole).abs().max() < 1e-5
    monkeypatch.undo()
    inplace = color.smooth_chroma(x, sigma, inplace=True)
    assert inplace.data_ptr() == x.data_ptr() and torch.equal(inplace, banded)
