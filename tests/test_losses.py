import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from camnet_cli import color, losses, metrics
from tests.conftest import with_grid, write_vgg19


def test_restore_and_joint_losses():
    x = torch.full((1, 3, 4, 4), 0.5)
    assert losses.restore_loss(x, x).item() == 0.0
    # L1 0.25 plus |log(0.75+1e-4) - log(0.5+1e-4)|
    expected = 0.25 + abs(np.log(0.7501) - np.log(0.5001))
    assert losses.restore_loss(x + 0.25, x).item() == pytest.approx(expected, rel=1e-5)
    assert losses.restore_loss(x + 0.25, x, log_weight=0.1).item() == pytest.approx(0.25 + 0.1 * (expected - 0.25), rel=1e-5)
    assert losses.joint_loss(torch.tensor(2.0), torch.tensor(4.0), 0.9).item() == pytest.approx(2.2)


def test_perceptual_loss_from_a_local_file(tmp_path):
    loss = losses.PerceptualLoss(write_vgg19(tmp_path / "vgg19.safetensors"))
    x = torch.rand(1, 3, 32, 32)
    assert loss(x, x).item() == 0.0 and loss(x, 1 - x).item() > 0
    save_file({"x": torch.zeros(1)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="VGG-19"):
        losses.PerceptualLoss(tmp_path / "other.safetensors")


def test_grid_loss_pulls_a_pattern_out():
    """Gradient steps on the grid term alone remove a per-position offset and leave the rest."""
    y = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    offsets = torch.tensor([0.02, -0.02, 0.01, -0.01]).view(1, 2, 2).expand(3, 2, 2)
    pred = with_grid(y[0], offsets)[None].clone().requires_grad_(True)
    assert losses.grid_loss(y, y).item() == 0.0
    start = losses.grid_loss(pred, y).item()
    assert start == pytest.approx(0.015, rel=1e-4)  # mean |offset - mean offset|
    opt = torch.optim.SGD([pred], lr=2.0)
    for _ in range(50):
        opt.zero_grad()
        losses.grid_loss(pred, y).backward()
        opt.step()
    assert losses.grid_loss(pred, y).item() < 0.05 * start
    assert (pred.detach() - y).mean().abs().item() < 1e-3  # the mean level is left alone



def test_curve_loss_weighs_the_shadows_as_a_viewer_sees_them():
    """The same linear error costs far more after the tone curve in the shadows than in the
    highlights; the gain brightens before the curve (one per image or a number)."""
    truth = torch.cat([torch.full((1, 3, 8, 8), 0.01), torch.full((1, 3, 8, 8), 0.3)])
    error = torch.full((1, 3, 8, 8), 0.002)
    dark = truth + torch.cat([error, torch.zeros_like(error)])
    bright = truth + torch.cat([torch.zeros_like(error), error])
    assert losses.curve_loss(dark, truth) > 4 * losses.curve_loss(bright, truth)
    per_image = losses.curve_loss(dark, truth, torch.tensor([2.0, 2.0]))
    assert per_image == pytest.approx(losses.curve_loss(dark, truth, 2.0).item())
    assert per_image != pytest.approx(losses.curve_loss(dark, truth).item())



def test_curve_loss_psnr_norm_is_the_mean_psnr_and_weighs_quiet_images_more():
    """The "psnr" norm moves with the mean PSNR after the curve (lower loss, higher PSNR), and of two
    images in a batch the one with the smaller error gets the larger gradient, where L1 gives both
    the same; an unknown norm is refused."""
    torch.manual_seed(0)
    truth = torch.rand(2, 3, 32, 32) * 0.3
    noise = torch.randn_like(truth) * torch.tensor([0.002, 0.02]).reshape(2, 1, 1, 1)
    grads = {}
    for norm in ("l1", "psnr"):
        pred = (truth + noise).requires_grad_()
        (grad,) = torch.autograd.grad(losses.curve_loss(pred, truth, 1.0, norm), pred)
        grads[norm] = grad.abs().flatten(1).mean(1)
    assert grads["l1"][0] == pytest.approx(grads["l1"][1].item(), rel=0.15)  # not exact: pixels clipped at 0
    assert grads["psnr"][0] > 4 * grads["psnr"][1]
    rendered = [color.render_plain(x, 1.0) for x in (truth + noise, truth + noise / 2, truth)]
    psnrs = [metrics.psnr(rendered[k], rendered[2]).mean().item() for k in (0, 1)]
    loss = [losses.curve_loss(x, truth, 1.0, "psnr").item() for x in (truth + noise, truth + noise / 2)]
    assert psnrs[1] > psnrs[0] and loss[1] < loss[0]
    with pytest.raises(ValueError, match="l2"):
        losses.curve_loss(truth, truth, 1.0, "l2")
