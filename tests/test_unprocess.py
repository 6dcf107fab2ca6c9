import numpy as np
import pytest
import torch

from camnet_cli import color
from camnet_cli.data.unprocess import unprocess
from tests.conftest import SONY_XYZ_TO_CAM, scene


def test_shapes_and_ground_truth_space():
    srgb = scene(64, 96)
    raw = unprocess(srgb, xyz_to_cam=SONY_XYZ_TO_CAM, wb=(2.0, 1.0, 1.5), shot=1e-3, read=1e-3)
    assert raw.mosaic.shape == raw.clean.shape == (1, 64, 96)
    assert raw.xyz.shape == (3, 64, 96)
    expected = color.apply_matrix(color.srgb_to_linear(srgb), color.SRGB_TO_XYZ)
    assert torch.allclose(raw.xyz, expected)


def test_white_becomes_d65_and_camera_neutral_after_white_balance():
    white = torch.ones(3, 8, 8)
    raw = unprocess(white * 0.5, xyz_to_cam=SONY_XYZ_TO_CAM, wb=(2.0, 1.0, 1.5), shot=0, read=0)
    # sRGB 0.5 is linear 0.214; in XYZ it is 0.214 x D65 white.
    assert raw.xyz[:, 0, 0].numpy() == pytest.approx(0.21404 * np.array([0.95047, 1.0, 1.08883]), rel=1e-3)
    r, g, b = raw.clean[0, 0, 0], raw.clean[0, 0, 1], raw.clean[0, 1, 1]
    assert (r * 2.0).item() == pytest.approx(g.item(), rel=1e-4) == pytest.approx((b * 1.5).item(), rel=1e-4)


def test_noise_follows_the_model():
    flat = torch.full((3, 256, 256), 0.6)
    shot, read = 4e-3, 0.01
    raw = unprocess(flat, xyz_to_cam=SONY_XYZ_TO_CAM, wb=(2.0, 1.0, 1.5), shot=shot, read=read,
                    generator=torch.Generator().manual_seed(0))
    noise = (raw.mosaic - raw.clean)[0, 0::2, 1::2]  # green sites, all the same level
    level = raw.clean[0, 0, 1].item()
    assert noise.var().item() == pytest.approx(shot * level + read**2, rel=0.05)
    assert abs(noise.mean().item()) < 1e-3


def test_seeded_noise_repeats():
    srgb = scene(32, 32)
    a, b = (
        unprocess(srgb, xyz_to_cam=SONY_XYZ_TO_CAM, wb=(2.0, 1.0, 1.5), shot=1e-3, read=1e-3,
                  generator=torch.Generator().manual_seed(7)).mosaic
        for _ in range(2)
    )
    assert torch.equal(a, b)


@pytest.mark.parametrize("shape", [(3, 5, 8), (1, 8, 8), (8, 8)])
def test_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="sRGB image"):
        unprocess(torch.rand(shape), xyz_to_cam=SONY_XYZ_TO_CAM, wb=(2.0, 1.0, 1.5), shot=0, read=0)


def test_rejects_unnormalised_white_balance():
    with pytest.raises(ValueError, match="G = 1"):
        unprocess(torch.rand(3, 8, 8), xyz_to_cam=SONY_XYZ_TO_CAM, wb=(2.0, 2.0, 1.5), shot=0, read=0)
