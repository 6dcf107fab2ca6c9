import dataclasses
import weakref

import numpy as np
import pytest
import torch

from camnet_cli import color
from camnet_cli.dng import DngMetadata
from camnet_cli.engine import Engine
from camnet_cli.model import EnhanceNet, EnhanceNetConfig, RestoreNet, RestoreNetConfig
from camnet_cli.pipeline import develop_frame, to_upright_hwc
from camnet_cli.raw import Crop, load_frame, uncrop, upright
from tests.conftest import TINY_WIDTHS, synthetic_raw, write_synthetic_dng


@pytest.mark.parametrize("offset, orientation", [((0, 0), 1), ((1, 1), 6), ((0, 1), 8)])
def test_developed_image_has_the_upright_visible_size(tmp_path, tiny_engine, offset, orientation):
    raw = synthetic_raw(height=96, width=128)
    dn = write_synthetic_dng(tmp_path / "f.dng", raw, cfa_offset=offset, metadata=DngMetadata(orientation=orientation))
    frame = load_frame(tmp_path / "f.dng")
    out = develop_frame(tiny_engine, frame, linear=True)
    h, w = dn.shape
    expected = (w, h, 3) if orientation in (6, 8) else (h, w, 3)
    assert out.srgb.shape == out.linear.shape == expected
    assert out.srgb.dtype == np.float32 and 0 <= out.srgb.min() and out.srgb.max() <= 1
    assert set(out.seconds) == {"restore", "enhance", "networks"} and out.seconds["networks"] < out.seconds["restore"] + out.seconds["enhance"]


def test_white_balance_choice_changes_the_result(tmp_path, tiny_engine):
    write_synthetic_dng(tmp_path / "f.dng", synthetic_raw(height=64, width=64))
    frame = load_frame(tmp_path / "f.dng")
    camera = develop_frame(tiny_engine, frame, "camera", linear=True)
    manual = develop_frame(tiny_engine, frame, (1.0, 1.0, 1.0), linear=True)
    assert camera.wb == pytest.approx(frame.wb) and manual.wb == (1.0, 1.0, 1.0)
    assert not np.allclose(camera.linear, manual.linear)


def test_chroma_noise_reduction_follows_the_frames_noise_level(tmp_path, tiny_engine, monkeypatch):
    """develop_frame's default width is color.chroma_sigma of the frame's noise level; a number overrides it, 0 turns it off."""
    write_synthetic_dng(tmp_path / "f.dng", synthetic_raw(height=64, width=64))
    frame = load_frame(tmp_path / "f.dng")
    seen = []
    real = color.smooth_chroma
    monkeypatch.setattr(color, "smooth_chroma", lambda rgb, sigma, **kw: seen.append(sigma) or real(rgb, sigma, **kw))
    outs = [develop_frame(tiny_engine, frame, chroma=c).srgb for c in (None, 0.0, 3.0)]
    assert seen == [pytest.approx(color.chroma_sigma(frame.noise.omega)), 0.0, 3.0] and seen[0] > 0
    assert not np.allclose(outs[0], outs[1]) and not np.allclose(outs[1], outs[2])


def test_the_restorations_outputs_have_the_chroma_noise_reduction(tmp_path, tiny_engine):
    """The linear sRGB (--save-linear) and the camera RGB of a linear DNG are the restoration with the
    styled image's chroma filter (the same filter in both, after the curve); --chroma-nr 0 leaves
    them as the restoration is, and the luma after the curve is the restoration's either way."""
    write_synthetic_dng(tmp_path / "f.dng", synthetic_raw(height=64, width=96))
    frame = load_frame(tmp_path / "f.dng")
    on = develop_frame(tiny_engine, frame, linear=True, linear_float=True)
    off = develop_frame(tiny_engine, frame, linear=True, linear_float=True, chroma=0.0)
    plain = color.apply_matrix(off.xyz_image(), color.XYZ_TO_SRGB).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(off.linear, plain, rtol=0, atol=1e-6)
    assert np.abs(on.linear - off.linear).max() > 1e-3
    gain = tiny_engine.enhance_net.config.base
    x = [torch.from_numpy(d.linear * gain) for d in (on, off)]
    luma = [torch.where(v <= 0.0031308, 12.92 * v, 1.055 * v.clamp(min=0.0031308) ** (1 / 2.4) - 0.055).mean(-1) for v in x]  # the curve, unclipped
    torch.testing.assert_close(luma[0], luma[1], rtol=1e-4, atol=1e-4)
    dng = develop_frame(tiny_engine, frame, dng=True)
    assert dng.xyz is None and dng.srgb is None  # a linear DNG alone makes no XYZ
    to_srgb = torch.as_tensor(color.XYZ_TO_SRGB, dtype=torch.float32) @ torch.as_tensor(frame.cam_to_xyz, dtype=torch.float32) @ torch.diag(torch.tensor(frame.wb))
    as_srgb = color.apply_matrix(torch.from_numpy(dng.camera).permute(2, 0, 1), to_srgb).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(as_srgb, on.linear, rtol=1e-3, atol=1e-4)  # a random network: values up to 35


def test_handed_over_planes_are_gone_before_enhance_net_runs(tmp_path, tiny_engine, monkeypatch):
    """``Frame.hand_over``: develop_frame empties the list, the planes are freed once Restore-Net is done
    with them (before Enhance-Net runs), and the image is the one the kept planes give, auto white
    balance included."""
    write_synthetic_dng(tmp_path / "f.dng", synthetic_raw(height=64, width=96))
    frame = load_frame(tmp_path / "f.dng")
    kept = develop_frame(tiny_engine, frame, "auto", linear=True)
    planes, bare = frame.hand_over()
    assert bare.packed is None and planes[0] is frame.packed
    del frame
    ref = weakref.ref(planes[0])
    alive = []
    real = tiny_engine.enhance
    monkeypatch.setattr(tiny_engine, "enhance", lambda *a, **kw: alive.append(ref() is not None) or real(*a, **kw))
    handed = develop_frame(tiny_engine, bare, "auto", linear=True, planes=planes)
    assert alive == [False] and planes == [] and ref() is None
    assert np.array_equal(handed.srgb, kept.srgb) and np.array_equal(handed.linear, kept.linear)


def test_the_frames_read_noise_reaches_a_restore_net_with_a_read_plane(tmp_path):
    """Two DNGs of the same pixels whose NoiseProfiles give the same omega, one with ten times the read
    noise: a Restore-Net with the read plane (the lite preset's) restores them differently, one
    without it alike."""
    raw = synthetic_raw(height=64, width=64)
    omega = raw.shot + raw.read**2
    frames = []
    for read in (1e-3, 1e-2):
        path = tmp_path / f"read{read:g}.dng"
        write_synthetic_dng(path, dataclasses.replace(raw, shot=omega - read**2, read=read))
        frames.append(load_frame(path))
    assert frames[0].noise.omega == pytest.approx(frames[1].noise.omega) and frames[1].noise.read == pytest.approx(10 * frames[0].noise.read)
    for planes in (5, 6):
        torch.manual_seed(0)
        restore = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS, in_channels=planes))
        engine = Engine(restore, EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS)), device="cpu", precision="fp32", tile=0)
        a, b = (develop_frame(engine, f, linear=True).linear for f in frames)
        assert np.array_equal(a, b) == (planes == 5)


@pytest.mark.parametrize("orientation", range(0, 10))
def test_upright_copy_in_torch_is_raw_uncrop_then_upright(orientation):
    img = torch.rand(3, 6, 9)
    for crop in (Crop(0, 0, 0, 0), Crop(1, 0, 1, 1), Crop(0, 1, 0, 0)):
        expected = upright(uncrop(img.permute(1, 2, 0).numpy(), crop), orientation)
        ours = to_upright_hwc(img, crop, orientation)
        assert ours.flags["C_CONTIGUOUS"] and np.array_equal(ours, expected), (orientation, crop)
