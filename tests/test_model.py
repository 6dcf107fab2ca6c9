import dataclasses
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from camnet_cli.model import (
    MODEL_SIZES,
    CameraNet,
    EnhanceNet,
    EnhanceNetConfig,
    RestoreNet,
    RestoreNetConfig,
    build,
    config_from_dict,
    config_to_dict,
    enhance_config,
    networks,
    onestage_config,
    restore_config,
)
from tests.conftest import TINY_WIDTHS


def _params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_paper_parameter_count_is_the_papers():
    restore = RestoreNet(dataclasses.replace(restore_config("paper"), skip="none"))
    enhance = EnhanceNet(enhance_config("paper"))
    # 26.53 M in the paper; exactly this with the global block in both nets and bias-free
    # transposed convolutions (TF conv2d_transpose has no bias).
    assert _params(restore) == 13_262_956
    assert _params(enhance) == 13_264_972
    assert _params(restore) + _params(enhance) == 26_527_928
    # camnet's linear path adds two 3x3 kernels from 4 planes to 12.
    assert _params(RestoreNet(restore_config("paper"))) == 13_262_956 + 2 * 12 * 4 * 9


def test_lite_parameter_count():
    total = _params(RestoreNet(restore_config("lite"))) + _params(EnhanceNet(enhance_config("lite")))
    assert total == 6_637_656  # documented in weights/README.md


def _gflops_at_12mp(size: str) -> float:
    """Both nets' cost per pixel, each on a frame its UNet needs not pad (Restore-Net adds a
    border of one packed pixel), times 12 MP."""
    restore, enhance = RestoreNet(restore_config(size)), EnhanceNet(enhance_config(size))
    total = 0.0
    for net, x, pixels in ((restore, (torch.rand(1, 4, 190, 254), 1e-3), 380 * 508), (enhance, (torch.rand(1, 3, 384, 512),), 384 * 512)):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(*x)
        total += counter.get_total_flops() * (4032 * 3024) / pixels
    return total / 1e9


def test_paper_gflops_at_4032x3024():
    assert _gflops_at_12mp("paper") == pytest.approx(3282, rel=0.03)  # paper: 3306.69


def test_lite_gflops_are_a_quarter():
    assert _gflops_at_12mp("lite") == pytest.approx(829, rel=0.03)


@pytest.mark.parametrize("size", MODEL_SIZES)
def test_every_preset_runs_without_nans(size):
    restore, enhance = RestoreNet(restore_config(size)), EnhanceNet(enhance_config(size))
    with torch.no_grad():
        rgb = restore(torch.rand(2, 4, 48, 64), torch.tensor([1e-4, 1e-2]))
        srgb = enhance(rgb.abs())
    assert rgb.shape == srgb.shape == (2, 3, 96, 128)
    assert torch.isfinite(rgb).all() and torch.isfinite(srgb).all()


@pytest.mark.parametrize("hw", [(37, 53), (16, 16), (5, 7), (1, 1), (145, 33)])
def test_any_size_is_padded_and_cropped_back(hw):
    restore = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS))
    enhance = EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS))
    with torch.no_grad():
        rgb = restore(torch.rand(1, 4, *hw), 1e-3)
        srgb = enhance(rgb.clamp(0, 1))
    assert rgb.shape == srgb.shape == (1, 3, 2 * hw[0], 2 * hw[1])


def test_shape_errors_quote_the_shape():
    with pytest.raises(ValueError, match=r"\(1, 3, 8, 8\)"):
        RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS))(torch.rand(1, 3, 8, 8), 1e-3)
    with pytest.raises(ValueError, match=r"\(1, 3, 9, 8\)"):
        EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS))(torch.rand(1, 3, 9, 8))


def test_noise_level_reaches_the_network():
    restore = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)).eval()
    x = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(restore(x, 1e-4), restore(x, 1e-1))


def test_noise_plane_is_on_a_log_scale():
    """The noise plane spans about -1.2..1.7 over ISO 100..25600 (omega 6e-6..5e-3), not 1e-5..1e-2."""
    x = torch.rand(2, 4, 8, 8)
    plane = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)).prepare(x, torch.tensor([6.1e-6, 5.1e-3]))[:, 4]
    assert plane[0].unique().item() == pytest.approx(-1.21, abs=0.01) and plane[1].unique().item() == pytest.approx(1.71, abs=0.01)
    assert torch.equal(RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)).prepare(x, 0.0)[:, :4, 1:-1, 1:-1], x)  # omega 0 is finite


def test_levels_below_the_least_noise_count_as_it():
    """A raw told less noise than any the weights were trained on (the shipped ones start at ISO 100 on an
    a7S II, 6e-6) restores as at that level: told 1e-8, the shipped lite weights shifted colours."""
    restore = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)).eval()
    x = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        at_floor = restore(x, networks.MIN_OMEGA)
        assert torch.equal(restore(x, 1e-9), at_floor) and torch.equal(restore(x, 0.0), at_floor)
        assert not torch.allclose(restore(x, 10 * networks.MIN_OMEGA), at_floor)


def test_read_plane_tells_the_read_noise_share():
    """A 6-plane Restore-Net (the lite preset) sees log10(read² / omega) + 2.5 in its sixth plane: the
    same omega with more read noise is a different input; without a read noise given, the one that
    usually goes with omega (noise.split_omega); a 5-plane net ignores it."""
    assert restore_config("lite").in_channels == 6 and restore_config("paper").in_channels == 5
    torch.manual_seed(0)
    net = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS, in_channels=6)).eval()
    x = torch.rand(4, 4, 16, 16)
    omega, read = torch.full((4,), 1e-3), torch.tensor([1e-3, 2e-3, 1e-2, 1e-6])
    planes = net.prepare(x, omega, read)
    assert planes.shape == (4, 6, 18, 18)
    # the last two beyond the range the weights were trained on: held at its ends
    want = [-0.5, math.log10(4e-3) + 2.5, networks.READ_PLANE_RANGE[1], networks.READ_PLANE_RANGE[0]]
    assert [planes[i, 5].unique().item() for i in range(4)] == pytest.approx(want, abs=1e-5)
    from camnet_cli import noise

    usual = noise.split_omega(1e-3).read
    torch.testing.assert_close(net.prepare(x, omega), net.prepare(x, omega, torch.full((4,), usual)))
    x, omega, read = x[:1].expand(2, -1, -1, -1), omega[:2], read[:2]  # one raw, told two read noises
    with torch.no_grad():
        for p in net.parameters():  # as if trained: the sixth plane's weights are not zero
            p.add_(0.05 * torch.randn_like(p))
        both = net(x, omega, read=read)
        assert not torch.allclose(both[0], both[1])
    five = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)).eval()
    with torch.no_grad():
        assert torch.equal(five(x, omega, read=read), five(x, omega))
    with pytest.raises(ValueError, match="in_channels"):
        RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS, in_channels=7))


def test_global_vector_is_used_and_replaceable():
    """A tile given the whole image's pooled features differs from the tile on its own."""
    net = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)).eval()
    x = net.prepare(torch.rand(1, 4, 64, 64), 1e-3)
    with torch.no_grad():
        sums, count = net.unet.pooled(x)
        own = net.unet(x)
        assert torch.allclose(net.unet(x, sums / count), own, atol=1e-5)  # the same mean -> the same output
        assert not torch.allclose(net.unet(x, sums / count + 1.0), own, atol=1e-3)


def test_no_global_block_option():
    net = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS, global_block=False))
    assert net.unet.global_fc is None
    assert net(torch.rand(1, 4, 16, 16), 1e-3).shape == (1, 3, 32, 32)


def test_training_backward_through_both_stages():
    """In-place activations must not break autograd; every parameter gets a gradient.

    Two updates first: Enhance-Net's output layer starts at zero (under the plain rendering,
    EnhanceNetConfig.base), so its body gets no gradient before one update, and a residual
    block's first conv gets none while the block's last conv is still at zero.
    """
    torch.manual_seed(0)  # a random init can leave a tiny layer dead (LeakyReLU's slope aside): one that is known not to
    model = CameraNet(RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)), EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS)))
    packed = torch.rand(2, 4, 32, 32)
    args = (packed, torch.tensor([1e-3, 1e-2]), torch.tensor([[2.0, 1.0, 1.5]] * 2), torch.eye(3).expand(2, 3, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        xyz, srgb = model(*args)
        (xyz.abs().mean() + srgb.abs().mean()).backward()
        opt.step()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_enhance_net_input_goes_through_the_srgb_curve():
    xyz = torch.full((1, 3, 4, 4), 0.18)
    assert EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS)).prepare(xyz)[0, 0, 0, 0].item() == pytest.approx(0.4614, abs=1e-4)


@pytest.mark.parametrize("config", [restore_config("lite"), enhance_config("paper"), RestoreNetConfig(channels=TINY_WIDTHS, global_block=False)])
def test_config_round_trip(config):
    data = config_to_dict(config)
    assert config_from_dict(data) == config
    assert type(build(config_from_dict(data))) is (RestoreNet if isinstance(config, RestoreNetConfig) else EnhanceNet)


@pytest.mark.parametrize("size", MODEL_SIZES)
def test_config_bounds_admit_every_preset(size):
    """config_from_dict's bounds (widths 1 to 1024, 2 to 6 levels) take every preset, the one-stage 720 included."""
    for config in (restore_config(size), enhance_config(size), onestage_config(size), RestoreNetConfig(channels=(8, 16), dilations=(1, 1))):
        assert config_from_dict(config_to_dict(config)) == config


def test_config_in_channels_bounds():
    """A weight file's Restore-Net takes 5 or 6 input planes; Enhance-Net and the one-stage net their one number."""
    assert config_from_dict(config_to_dict(RestoreNetConfig(in_channels=6))).in_channels == 6
    for config in (RestoreNetConfig(in_channels=7), onestage_config("lite"), enhance_config("lite")):
        data = config_to_dict(config)
        data["in_channels"] = 7 if data["net"] == "restore" else data["in_channels"] + 1
        with pytest.raises(ValueError, match="in_channels"):
            config_from_dict(data)


def test_config_rejects_unknown():
    with pytest.raises(ValueError, match="unknown network"):
        config_from_dict({"net": "denoise"})
    with pytest.raises(ValueError, match="unknown config fields"):
        config_from_dict({**config_to_dict(restore_config()), "dropout": 0.1})


def test_residual_branches_start_as_identity():
    """Enhance-Net's residual blocks start as the identity; plain blocks are He-initialised."""
    from camnet_cli.model.networks import Block

    enhance, restore = EnhanceNet(enhance_config("lite")), RestoreNet(restore_config("lite"))
    residual = [m for m in enhance.modules() if isinstance(m, Block)]
    plain = [m for m in restore.modules() if isinstance(m, Block)]
    assert residual and all(b.residual and torch.count_nonzero(b.conv2.weight) == 0 for b in residual)
    assert all(not b.residual and b.conv2.weight.std() > 0.01 for b in plain)
    with torch.no_grad():  # so a random Enhance-Net keeps a sane output scale
        out = enhance(torch.rand(1, 3, 64, 64))
    assert out.abs().max() < 50


def test_linear_path_starts_at_zero_and_follows_the_noise_level():
    """Restore-Net's linear path: zero at the start (the net is its UNet alone); then each
    image's kernel is W0 + level * W1 for its own noise level; at the edges it sees the mosaic
    mirrored (color.pad_bayer), and the output is cropped back to the input's size."""
    net = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)).eval()
    assert net.config.skip == "adaptive" and torch.count_nonzero(net.skip.weight) == 0
    packed, omega = torch.rand(2, 4, 16, 16), torch.tensor([1e-5, 1e-2])  # levels -1 and 2
    x = net.prepare(packed, omega)
    with torch.no_grad():
        unet_only = torch.nn.functional.pixel_shuffle(net.unet(x), 2)[..., 2:-2, 2:-2]
        assert unet_only.shape == (2, 3, 32, 32)
        assert torch.equal(net(packed, omega), unet_only)
        net.skip.weight[0, 0, 1, 1] = 1.0  # W0: plane 0 (red at the red site) += R
        net.skip.weight[12, 0, 1, 1] = 0.5  # W1: += 0.5 * level * R
        net.skip.weight[1, 0, 1, 2] = 1.0  # W0: plane 1 (red right of the red site) += R of the next site
        added = net(packed, omega) - unet_only
    red = packed[:, 0]
    torch.testing.assert_close(added[0, 0, ::2, ::2], red[0] * (1 + 0.5 * -1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(added[1, 0, ::2, ::2], red[1] * (1 + 0.5 * 2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(added[:, 0, ::2, 1::2][..., :-1], red[..., 1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(added[:, 0, ::2, -1], red[..., -1], rtol=1e-5, atol=1e-5)  # mirrored: the red two pixels left
    assert torch.count_nonzero(added[:, 1:]) == 0  # green and blue untouched


def test_linear_path_config():
    assert RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS, skip="none")).skip is None
    partial = config_to_dict(RestoreNetConfig(channels=TINY_WIDTHS))
    del partial["skip"]
    with pytest.raises(ValueError, match="missing config fields.*skip"):
        config_from_dict(partial)
    with pytest.raises(ValueError, match="skip"):
        RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS, skip="bilinear"))


def test_enhance_net_notch_config():
    """New Enhance-Nets have the notch (sigma 2); its output is the notched sub-pixel output."""
    assert EnhanceNetConfig().notch == 2.0
    torch.manual_seed(0)
    plain = EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS, notch=0.0, base=0.0)).eval()
    notched = EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS, base=0.0)).eval()
    notched.load_state_dict(plain.state_dict())
    with torch.no_grad():
        plain.unet.out.bias.add_(torch.tensor([0.05, -0.05, 0.0, 0.0]).repeat(3))
        notched.unet.out.bias.add_(torch.tensor([0.05, -0.05, 0.0, 0.0]).repeat(3))
        xyz = torch.rand(1, 3, 64, 64)
        a, b = plain(xyz), notched(xyz)
    from camnet_cli import metrics

    assert metrics.grid(a, b).item() > 0.02 and metrics.grid(b, torch.zeros_like(b)).item() < 0.1 * metrics.grid(a, torch.zeros_like(a)).item()


def _plain_rendering(xyz: torch.Tensor, gain: float) -> torch.Tensor:
    """What the plain rendering should be, from the colour module's own parts."""
    from camnet_cli import color

    linear = color.apply_matrix(xyz.clamp(0, 1), color.XYZ_TO_SRGB) * gain
    return color.linear_to_srgb(linear.clamp(0, 1))


def test_enhance_net_plain_rendering_under_the_unet():
    """New Enhance-Nets develop as the plain rendering (XYZ to sRGB, times 2, clipped, sRGB curve)
    until trained: the UNet's output layer starts at zero and is added to it. With the layer
    trained, the output is the rendering plus the notched UNet output; a negative gain is refused."""
    from camnet_cli.color import remove_grid

    assert EnhanceNetConfig().base == 2.0
    torch.manual_seed(0)
    xyz = torch.rand(1, 3, 64, 64) * 0.7  # some pixels clip after the gain, as highlights do
    xyz[..., :8, :] = 0.0  # and black
    fresh = EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS)).eval()
    with torch.no_grad():
        assert torch.allclose(fresh(xyz), _plain_rendering(xyz, 2.0), atol=1e-5)
        assert torch.allclose(EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS, base=1.0))(xyz), _plain_rendering(xyz, 1.0), atol=1e-5)
        torch.nn.init.normal_(fresh.unet.out.weight, std=0.1)
        torch.nn.init.normal_(fresh.unet.out.bias, std=0.1)
        alone = EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS, base=0.0)).eval()
        alone.load_state_dict(fresh.state_dict())
        residual = alone(xyz)
        assert residual.abs().mean() > 0.01
        assert torch.allclose(fresh(xyz), residual + _plain_rendering(xyz, 2.0), atol=1e-5)
        # the notch acts on the UNet's part only: the rendering keeps its own finest detail
        net = EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS, notch=2.0)).eval()
        assert not torch.allclose(remove_grid(_plain_rendering(xyz, 2.0), 2.0), _plain_rendering(xyz, 2.0), atol=1e-3)
        assert torch.allclose(net(xyz), _plain_rendering(xyz, 2.0), atol=1e-5)
    with pytest.raises(ValueError, match="base"):
        EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS, base=-1.0))


def test_enhance_finish_in_bands_is_the_whole_image_finish():
    """Inference finishes a tall image in bands of rows (memory); every band must read the rows
    its notch needs, so the result is the whole image's, to float rounding, whatever the height."""
    torch.manual_seed(0)
    net = EnhanceNet(EnhanceNetConfig(channels=(8, 8), dilations=(1, 1), notch=2.0, base=2.0))
    for height in (networks.FINISH_BAND * 3 + 46, networks.FINISH_BAND + 2):
        y, xyz = torch.randn(1, 12, height // 2, 40) * 0.1, torch.rand(1, 3, height, 80)
        phases = torch.nn.functional.pixel_unshuffle(xyz, 2)
        with torch.no_grad():
            assert torch.allclose(net.finish(y, xyz), net._finish(y, xyz), atol=1e-6)
            # the engine's path: the XYZ as its phase planes, as Restore-Net left it
            assert torch.allclose(net.finish(y, phases, phases=True), net._finish(y, xyz), atol=1e-6)
    y.requires_grad_()
    net.finish(y, xyz).sum().backward()  # training keeps the whole-image graph
    assert y.grad is not None
    assert torch.allclose(net.finish(y, phases, phases=True), net._finish(y, xyz), atol=1e-6)


def test_enhance_prepare_into_a_buffer_is_the_whole_image_prepare():
    """Inference prepares Enhance-Net's input in bands straight into the engine's buffer (its
    precision, channels last): the whole-image prepare's values, cast (to float rounding: the
    curve's vectorised power rounds the odd elements at a row's end by another path)."""
    torch.manual_seed(0)
    net = EnhanceNet(EnhanceNetConfig(channels=(8, 8), dilations=(1, 1)))
    xyz = torch.rand(1, 3, networks.FINISH_BAND * 2 + 10, 36) * 1.2 - 0.1
    whole = net.prepare(xyz)
    for dtype in (torch.float32, torch.bfloat16):
        out = torch.empty(whole.shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
        assert net.prepare(xyz, out=out) is out
        torch.testing.assert_close(out.float(), whole.to(dtype).float(), rtol=2**-7 if dtype == torch.bfloat16 else 1e-6, atol=1e-7)
        phases = torch.nn.functional.pixel_unshuffle(xyz, 2)
        assert net.prepare(phases, out=out, phases=True) is out
        torch.testing.assert_close(out.float(), whole.to(dtype).float(), rtol=2**-7 if dtype == torch.bfloat16 else 1e-6, atol=1e-7)
        assert torch.equal(phases, torch.nn.functional.pixel_unshuffle(xyz, 2))  # the XYZ is kept for finish
    with pytest.raises(ValueError, match="out must be shaped"):
        net.prepare(xyz, out=torch.empty(1, 12, 4, 4))


def test_restore_finish_without_a_graph_is_the_training_finish():
    """Without a graph Restore-Net's finish adds the linear path into the UNet's output in place:
    the same pixels as the training path, which keeps its input."""
    torch.manual_seed(0)
    net = RestoreNet(RestoreNetConfig(channels=(8, 8), dilations=(1, 1), in_channels=6))
    net.skip.weight.data.normal_(0, 0.1)
    x = net.prepare(torch.rand(1, 4, 20, 24), 1e-3)
    y = torch.randn(1, 12, 22, 26, requires_grad=True)
    graph = net.finish(y, x)
    assert graph.requires_grad and not torch.equal(graph.detach(), torch.nn.functional.pixel_shuffle(y.detach(), 2)[..., 2:-2, 2:-2])
    with torch.no_grad():
        inplace = net.finish(y.detach().clone(), x)
        phases = net.finish(y.detach().clone(), x, phases=True)
    assert torch.equal(inplace, graph.detach())
    assert torch.equal(phases, torch.nn.functional.pixel_unshuffle(inplace, 2))


@pytest.mark.parametrize("dtype, layout", [(torch.bfloat16, torch.channels_last), (torch.bfloat16, torch.contiguous_format), (torch.float32, torch.channels_last)])
def test_inference_writes_the_padding_as_training_does(dtype, layout):
    """Without a graph each activation (and the decoder's concatenation) writes straight into its
    convolution's reflected padding: the same values reach the same convolutions as the training
    path's F.pad gives them (bit-identical in bf16; in float32 only the alignment of the buffers,
    to which oneDNN's rounding is sensitive, differs)."""
    torch.manual_seed(2)
    for net, channels in ((RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)), 5), (EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS)), 12)):
        for p in net.parameters():  # nonzero residual branches, as a trained network has
            p.data.normal_(0, 0.05)
        unet = net.unet.to(dtype).to(memory_format=layout)
        x = torch.rand(1, channels, 70, 98, dtype=dtype).contiguous(memory_format=layout)
        with torch.inference_mode():
            fast = unet(x)
        with torch.enable_grad():
            graph = unet(x)
        assert graph.requires_grad and fast.dtype == graph.dtype
        if dtype == torch.bfloat16:
            assert torch.equal(fast, graph.detach())
        else:
            torch.testing.assert_close(fast, graph.detach(), rtol=1e-5, atol=1e-5)
