import numpy as np
import pytest
from PIL import Image, ImageOps

from camnet_cli import color
from camnet_cli.color import auto_white_balance
from camnet_cli.commands import parse_chroma, parse_wb
from camnet_cli.dng import DngMetadata
from camnet_cli.engine import Engine
from camnet_cli.model import EnhanceNet, EnhanceNetConfig, RestoreNet, RestoreNetConfig
from camnet_cli.pipeline import develop_frame
from camnet_cli.raw import Crop, load_frame, uncrop, upright
from tests.conftest import synthetic_raw, write_synthetic_dng

TINY = (8, 16, 16, 16, 16)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_matches_pillows_exif_transpose(orientation):
    img = np.random.default_rng(orientation).integers(0, 255, (6, 10, 3), dtype=np.uint8)
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = orientation
    pil.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(pil))
    np.testing.assert_array_equal(upright(img, orientation), expected)


def test_uncrop_restores_the_visible_size():
    img = np.arange(4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    out = uncrop(img, Crop(top=1, left=0, bottom=1, right=1))
    assert out.shape == (6, 7, 3)
    np.testing.assert_array_equal(out[1:5, :6], img)
    np.testing.assert_array_equal(out[0, :6], img[0])  # edge repeated


@pytest.mark.parametrize("text, expected", [("camera", "camera"), ("auto", "auto"), ("2,1,1.5", (2.0, 1.0, 1.5)), ("4,2,3", (2.0, 1.0, 1.5))])
def test_parse_wb(text, expected):
    assert parse_wb(text) == expected


@pytest.mark.parametrize("text", ["daylight", "1,2", "1,0,1", "a,b,c"])
def test_parse_wb_rejects(text):
    with pytest.raises(ValueError, match="--wb"):
        parse_wb(text)


@pytest.mark.parametrize("text, expected", [("auto", None), ("off", 0.0), ("0", 0.0), ("2.5", 2.5)])
def test_parse_chroma(text, expected):
    assert parse_chroma(text) == expected


@pytest.mark.parametrize("text", ["strong", "-1", "100", "nan"])
def test_parse_chroma_rejects(text):
    with pytest.raises(ValueError, match="--chroma-nr"):
        parse_chroma(text)


def test_auto_white_balance_neutralises_a_grey_scene():
    rng = np.random.default_rng(0)
    grey = rng.uniform(0.1, 0.6, (64, 64)).astype(np.float32)
    packed = np.stack([grey / 2.2, grey, grey, grey / 1.6])  # a grey world seen by a sensor with weak R and B
    assert auto_white_balance(packed) == pytest.approx((2.2, 1.0, 1.6), rel=1e-4)


@pytest.fixture
def tiny_engine():
    return Engine(RestoreNet(RestoreNetConfig(channels=TINY)), EnhanceNet(EnhanceNetConfig(channels=TINY)), device="cpu", precision="fp32", tile=0)


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
    assert set(out.seconds) == {"restore", "enhance"}


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
    monkeypatch.setattr(color, "smooth_chroma", lambda rgb, sigma: seen.append(sigma) or real(rgb, sigma))
    outs = [develop_frame(tiny_engine, frame, chroma=c).srgb for c in (None, 0.0, 3.0)]
    assert seen == [pytest.approx(color.chroma_sigma(frame.noise.omega)), 0.0, 3.0] and seen[0] > 0
    assert not np.allclose(outs[0], outs[1]) and not np.allclose(outs[1], outs[2])
