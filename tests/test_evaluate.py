"""The evaluation's baselines and scores (``camnet_cli.evaluate``); ``camnet eval`` itself runs in test_train.py's whole path."""

import pytest
import torch

from camnet_cli import color, evaluate, metrics
from camnet_cli.data import synthetic
from camnet_cli.evaluate import bilinear_demosaic, run_libraw, score


def test_bilinear_baseline_is_the_textbook_demosaic():
    """Exact inside on any linear ramp (each missing sample the mean of symmetric neighbours),
    samples kept where the mosaic has them, flat fields exact up to the borders."""
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(20.0), indexing="ij")
    rgb = torch.stack([0.01 * xx + 0.02 * yy, 0.03 * xx - 0.01 * yy + 0.5, 0.5 - 0.02 * xx + 0.005 * yy])
    packed = color.pack_bayer(color.mosaic(rgb))
    out = bilinear_demosaic(packed)
    assert out.shape == rgb.shape and (out - rgb)[:, 1:-1, 1:-1].abs().max() < 1e-6
    assert torch.equal(out[0, 0::2, 0::2], rgb[0, 0::2, 0::2]) and torch.equal(out[2, 1::2, 1::2], rgb[2, 1::2, 1::2])
    assert torch.equal(out[1, 0::2, 1::2], rgb[1, 0::2, 1::2])
    assert torch.allclose(bilinear_demosaic(torch.full((4, 5, 7), 0.3)), torch.tensor(0.3))
    checker = torch.zeros(4, 8, 8)
    checker[1] = checker[2] = 1.0  # green on, red and blue off: every green estimate is 1
    assert torch.equal(bilinear_demosaic(checker)[1], torch.ones(16, 16))


@pytest.mark.parametrize("exposure", [0.5, 0.25])
def test_libraw_baseline_is_fair_at_low_noise(photo_dir, exposure):
    """LibRaw's AHD pipeline, with the final ground truth's fixed gain, reproduces a held-out photo
    at ISO 100, at the render exposure and darker: the baseline compares like with like
    (alignment, colour matrix, white balance, brightness)."""
    ds = synthetic.SyntheticEvalSet(synthetic.find_photos(photo_dir)[:1], isos=(100,), max_side=256, exposures=(exposure,))
    sample = ds[0]
    xyz, srgb = run_libraw(sample)
    scores = score(xyz, srgb, sample["xyz"], sample["srgb"])
    assert scores["restore"]["psnr"] > 40 and scores["final"]["psnr"] > 30


def test_restoration_after_the_curve_weighs_the_shadows():
    """The same linear error scores the same in linear light in the shadows and the highlights, and
    far worse after the tone curve in the shadows: what RC-PSNR is for."""
    truth = torch.full((3, 32, 32), 0.02)
    truth[:, :, 16:] = 0.4
    error = 0.004 * (torch.rand(3, 32, 16, generator=torch.Generator().manual_seed(0)) - 0.5)
    dark, bright = truth.clone(), truth.clone()
    dark[:, :, :16] += error
    bright[:, :, 16:] += error
    srgb = color.render_plain(truth, 2.0)
    s_dark, s_bright = (score(x, srgb, truth, srgb, gain=2.0) for x in (dark, bright))
    assert s_dark["restore"]["psnr"] == pytest.approx(s_bright["restore"]["psnr"], abs=0.01)
    assert s_dark["restore_curve"]["psnr"] < s_bright["restore_curve"]["psnr"] - 6


def test_denoise_baseline_takes_the_noise_the_file_reports(photo_dir):
    """The classical chain (AHD, then non-local means) beats AHD alone by far at high noise, and its
    strength follows the file's noise level: told a level 100 times lower it barely denoises."""
    data = synthetic.SyntheticEvalSet(sorted(photo_dir.glob("*"))[:1], noises=((6.4e-3, 1.2e-2),), max_side=160)
    sample = data[0]
    assert data.name(0).endswith("@noise0.0065")
    truth = color.render_plain(sample["xyz"], 2.0)
    ahd = run_libraw(sample, srgb=False)[0]
    omega = float(sample["omega"])
    outputs = {"ahd": ahd, "nlm": evaluate.denoise_nlm(ahd, omega), "weak": evaluate.denoise_nlm(ahd, omega / 100)}
    scores = {name: metrics.psnr(color.render_plain(x, 2.0), truth).item() for name, x in outputs.items()}
    assert scores["nlm"] > scores["ahd"] + 3, scores
    assert scores["weak"] < scores["ahd"] + 1, scores


def test_eval_scores_the_denoise_baseline_through_the_same_rendering(tiny_engine, photo_dir):
    """Every method gets the after-the-curve scores; the denoise baseline's final image comes from the
    engine's Enhance-Net, so it differs from LibRaw's own rendering."""
    data = synthetic.SyntheticEvalSet(sorted(photo_dir.glob("*"))[:1], isos=(51200,), max_side=96)
    assert data.name(0).endswith("@ISO51200")
    (result,) = evaluate.evaluate(tiny_engine, data, baselines=("libraw", "denoise"))
    for method in ("camnet", "libraw", "denoise"):
        assert set(result.scores[method]) == {"restore", "restore_curve", "final"}
    assert result.scores["denoise"]["final"]["psnr"] != pytest.approx(result.scores["libraw"]["final"]["psnr"])

