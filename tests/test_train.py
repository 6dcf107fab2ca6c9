"""Training as users run it: the CLI in-process, real processes for kill/resume and torchrun."""

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from camnet_cli import checkpoint, losses
from camnet_cli.checkpoint import CheckpointError
from camnet_cli.cli import app, with_optional_values
from camnet_cli.model import EnhanceNet, RestoreNet, RestoreNetConfig, enhance_config, restore_config
from camnet_cli.train import TrainConfig, ema_decay, lr_at, update_ema
from camnet_cli.weights import read_info, save_weights
from tests.conftest import EXAMPLE_DNG, PHOTOS, REPO, scene

runner = CliRunner()
FAST = ["--model", "lite", "--patch-size", "64", "--batch-size", "2", "--workers", "0", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The shared photographs when present, else a few made here."""
    if PHOTOS.is_dir() and any(PHOTOS.glob("*.jpg")):
        return PHOTOS
    folder = tmp_path_factory.mktemp("photos")
    for i in range(8):
        img = (scene(192, 256, seed=i).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(img).save(folder / f"p{i}.png")
    return folder


def _cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_schedule_and_losses():
    assert lr_at(0, 100, 1e-4) == 1e-4 and lr_at(74, 100, 1e-4) == 1e-4 and lr_at(75, 100, 1e-4) == pytest.approx(1e-5)
    x = torch.full((1, 3, 4, 4), 0.5)
    assert losses.restore_loss(x, x).item() == 0.0
    # L1 0.25 plus |log(0.75+1e-4) - log(0.5+1e-4)|
    expected = 0.25 + abs(np.log(0.7501) - np.log(0.5001))
    assert losses.restore_loss(x + 0.25, x).item() == pytest.approx(expected, rel=1e-5)
    assert losses.restore_loss(x + 0.25, x, log_weight=0.1).item() == pytest.approx(0.25 + 0.1 * (expected - 0.25), rel=1e-5)
    assert losses.joint_loss(torch.tensor(2.0), torch.tensor(4.0), 0.9).item() == pytest.approx(2.2)
    assert TrainConfig(stage="joint").base_lr == 1e-5 and TrainConfig(stage="restore").base_lr == 1e-4
    assert TrainConfig(stage="joint", dataset="sid").weight_lambda == 0.9


def test_bare_resume_means_last():
    assert with_optional_values(["train-restore", "--resume"]) == ["train-restore", "--resume", "last"]
    assert with_optional_values(["train-restore", "--resume", "--steps", "3"]) == ["train-restore", "--resume", "last", "--steps", "3"]
    assert with_optional_values(["train-restore", "--resume", "x.safetensors"]) == ["train-restore", "--resume", "x.safetensors"]


def test_checkpoint_round_trip_and_never_unpickles(tmp_path, monkeypatch):
    net = RestoreNet(RestoreNetConfig(channels=(8, 16, 16, 16, 16)))
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.99))
    net(torch.rand(1, 4, 16, 16), 1e-3).mean().backward()
    opt.step()
    checkpoint.save(tmp_path / "c.safetensors", dataclasses.asdict(TrainConfig(stage="restore")), {"restore": net}, opt, 7, 31.5)
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]
    monkeypatch.setattr(torch, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("unpickled")))
    header, tensors = checkpoint.load(tmp_path / "c.safetensors")
    assert header["step"] == "7" and float(header["best"]) == 31.5
    assert torch.equal(tensors["net.restore.unet.out.weight"], net.unet.out.weight.detach())
    torch.save({"x": 1}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="not a camnet checkpoint"):
        checkpoint.load(tmp_path / "bad.pt")


def test_whole_path_through_the_cli(photos, tmp_path, monkeypatch):
    """train-restore, train-enhance, finetune, eval, then develop with what was produced.

    Its wall time (the training issue asks for under 2 minutes on a CPU; about 16 s here) is
    measured and reported, not asserted: these machines are shared.
    """
    common = ["--data-root", photos, "--steps", "24", "--checkpoint-every", "12", "--validate-every", "12", *FAST]
    _cli("train-restore", "-o", tmp_path / "r", *common)
    _cli("train-enhance", "-o", tmp_path / "e", *common)
    _cli("finetune", "--restore", tmp_path / "r" / "restore-default.safetensors", "--enhance", tmp_path / "e" / "enhance-natural.safetensors",
         "-o", tmp_path / "f", *[a for a in common if a not in ("--model", "lite")])
    style = tmp_path / "f" / "enhance-natural.safetensors"
    info = read_info(style)
    assert info.stage == "enhance" and info.style == "natural" and info.extra["restore"] == "natural"
    assert info.noise_range is not None and info.extra["trained_steps"] == "24" and "photographs" in info.training_data
    rows = list(csv.DictReader(open(tmp_path / "f" / "metrics.csv")))
    assert len(rows) == 24 and rows[-1]["val_psnr"] and float(rows[-1]["lr"]) == pytest.approx(1e-6)  # 1e-5 / 10 after 3/4

    # --chroma-nr off: the networks alone, to compare with the plain rendering of the same restoration.
    result = _cli("eval", "--data-root", photos, "--enhance", style, "--limit", "2", "--json", "--device", "cpu", "--baseline", "bilinear,plain",
                  "--exposure", "0.35,0.71", "--chroma-nr", "off")
    scores = json.loads(result.stdout)
    assert [image["name"].split("@", 1)[1] for image in scores["images"]] == ["exposure0.35@ISO400", "exposure0.35@ISO3200"]
    for method in ("camnet", "bilinear", "plain"):
        assert set(scores["mean"][method]["final"]) == {"psnr", "ssim", "scielab", "de2000", "grid"}
        assert set(scores["mean"][method]["restore"]) == {"psnr", "ssim", "scielab"}
    # Same Enhance-Net, different restoration: the two whole-pipeline scores differ.
    assert scores["mean"]["camnet"]["final"]["psnr"] != scores["mean"]["bilinear"]["final"]["psnr"]
    # "plain" renders camnet's own restoration; a natural style (the plain rendering under its UNet,
    # whose output layer starts at zero) adds little to it after a few steps.
    assert scores["mean"]["plain"]["restore"] == scores["mean"]["camnet"]["restore"]
    assert scores["mean"]["plain"]["final"]["psnr"] == pytest.approx(scores["mean"]["camnet"]["final"]["psnr"], abs=0.5)

    _cli("develop", EXAMPLE_DNG, "--style", style, "-o", tmp_path / "out", "--device", "cpu")
    assert (tmp_path / "out" / "sony_a7r3_iso3200_crop.jpg").exists()


def test_training_learns(photos, tmp_path):
    """A few hundred steps of the lite Restore-Net lower its loss clearly (training really trains)."""
    _cli("train-restore", "--data-root", photos, "-o", tmp_path, "--steps", "120", "--checkpoint-every", "120", "--validate-every", "120", "--lr", "3e-4", *FAST)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    first, last = np.mean([float(r["loss"]) for r in rows[:15]]), np.mean([float(r["loss"]) for r in rows[-15:]])
    assert last < 0.7 * first


def _train_process(args, env=None):
    return subprocess.Popen([sys.executable, "-m", "camnet_cli", *map(str, args)], cwd=REPO, env=env or os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _losses(path):
    by_step = {}
    for row in csv.DictReader(open(path)):
        by_step[int(row["step"])] = float(row["loss"])  # a resumed run rewrites steps after its checkpoint
    return by_step


def test_killed_and_resumed_training_continues_the_same_curve(photos, tmp_path):
    args = ["train-restore", "--data-root", photos, "--steps", "30", "--checkpoint-every", "10", "--validate-every", "100", *FAST]
    whole = _train_process([*args, "-o", tmp_path / "whole"])
    assert whole.wait(300) == 0, whole.stderr.read()

    killed = subprocess.run([sys.executable, "-m", "tests.kill_after", "step", "15", *map(str, args), "-o", str(tmp_path / "run")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    step = int(checkpoint.load(tmp_path / "run" / "checkpoints" / "last.safetensors")[0]["step"])
    assert step == 10  # the last checkpoint before the kill
    resumed = _train_process([*args, "-o", tmp_path / "run", "--resume"])  # bare --resume: the last checkpoint
    assert resumed.wait(300) == 0, resumed.stderr.read()

    a, b = _losses(tmp_path / "whole" / "metrics.csv"), _losses(tmp_path / "run" / "metrics.csv")
    assert sorted(b) == list(range(1, 31))
    for s in range(step + 1, 31):
        assert b[s] == pytest.approx(a[s], rel=1e-5), s


def test_torchrun_two_processes_on_cpu(photos, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "camnet_cli", "train-restore",
         "--data-root", str(photos), "-o", str(tmp_path), "--steps", "3", "--checkpoint-every", "3", "--validate-every", "3",
         "--model", "lite", "--patch-size", "32", "--batch-size", "1", "--workers", "0", "--device", "cpu", "-q"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    checkpoints = list((tmp_path / "checkpoints").glob("*.safetensors"))
    assert {p.name for p in checkpoints} == {"last.safetensors", "best.safetensors"}
    assert checkpoint.load(tmp_path / "checkpoints" / "last.safetensors")[0]["step"] == "3"
    assert (tmp_path / "restore-default.safetensors").exists()


def test_one_stage_baseline_trains_and_evaluates(photos, tmp_path):
    _cli("train-restore", "--one-stage", "--data-root", photos, "-o", tmp_path, "--steps", "4", "--checkpoint-every", "4", "--validate-every", "4", *FAST)
    weights = tmp_path / "onestage-default.safetensors"
    assert read_info(weights).stage == "onestage"
    scores = json.loads(_cli("eval", "--data-root", photos, "--one-stage", weights, "--limit", "1", "--json", "--device", "cpu").stdout)
    assert "restore" not in scores["mean"]["camnet"] and "psnr" in scores["mean"]["camnet"]["final"]


def test_perceptual_loss_from_a_local_file(photos, tmp_path):
    from camnet_cli.losses import _VGG19

    torch.manual_seed(0)
    state, cin, index = {}, 3, 0
    for spec in _VGG19:
        if spec == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(int(spec), cin, 3, 3) * 0.05
        state[f"features.{index}.bias"] = torch.zeros(int(spec))
        cin, index = int(spec), index + 2
    save_file(state, tmp_path / "vgg19.safetensors")
    loss = losses.PerceptualLoss(tmp_path / "vgg19.safetensors")
    x = torch.rand(1, 3, 32, 32)
    assert loss(x, x).item() == 0.0 and loss(x, 1 - x).item() > 0
    _cli("train-enhance", "--data-root", photos, "-o", tmp_path / "e", "--steps", "3", "--checkpoint-every", "3", "--validate-every", "3",
         "--perceptual", tmp_path / "vgg19.safetensors", *FAST)
    assert "perceptual" in open(tmp_path / "e" / "metrics.csv").readline()
    save_file({"x": torch.zeros(1)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="VGG-19"):
        losses.PerceptualLoss(tmp_path / "other.safetensors")


@pytest.mark.parametrize(
    "args, message",
    [
        (["train-restore", "--dataset", "imagenet"], "--dataset"),
        (["train-restore", "--model", "huge"], "--model"),
        (["train-restore", "--data-root", "{empty}"], "photographs"),
        (["train-restore", "--resume", "{empty}/nothing.safetensors"], "no such checkpoint"),
        (["train-restore", "--patch-size", "48"], "multiple of 32"),
        (["train-enhance", "--exposure", "1,0.5"], "--exposure"),
        (["train-restore", "--scale", "0.5,2"], "--scale"),
        (["train-restore", "--scale", "half"], "--scale"),
        (["train-restore", "--log-weight", "-1"], "--log-weight"),
        (["train-restore", "--init", "{empty}/nothing.safetensors"], "--init"),
        (["finetune", "--restore", "{empty}/r.safetensors", "--enhance", "{empty}/e.safetensors"], "No such file"),
        (["eval", "--data-root", "{empty}"], "--enhance"),
        (["eval", "--data-root", "{empty}", "--enhance", "{empty}/e.safetensors", "--baseline", "libraw,dcraw"], "--baseline dcraw"),
        (["eval", "--data-root", "{empty}", "--one-stage", "{empty}/o.safetensors", "--baseline", "bilinear"], "needs the two-stage networks"),
        (["eval", "--data-root", "{empty}", "--one-stage", "{empty}/o.safetensors", "--baseline", "plain"], "--baseline plain needs"),
        (["eval", "--data-root", "{empty}", "--enhance", "{empty}/e.safetensors", "--exposure", "0.5,2"], "--exposure 0.5,2: each must lie in (0, 1]"),
        (["eval", "--data-root", "{empty}", "--enhance", "{empty}/e.safetensors", "--exposure", "half"], "not numbers"),
        (["eval", "--dataset", "sid", "--data-root", "{empty}", "--enhance", "{empty}/e.safetensors", "--exposure", "0.5"], "only for --dataset synthetic"),
    ],
)
def test_usage_errors(tmp_path, args, message):
    result = runner.invoke(app, [a.format(empty=tmp_path) for a in args] + ["-o", str(tmp_path / "o")] * (args[0] != "eval"))
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_resume_refuses_another_stage(photos, tmp_path):
    _cli("train-restore", "--data-root", photos, "-o", tmp_path, "--steps", "2", "--checkpoint-every", "2", "--validate-every", "2", *FAST)
    result = runner.invoke(app, ["train-enhance", "--data-root", str(photos), "-o", str(tmp_path), "--steps", "4",
                                 "--resume", str(tmp_path / "checkpoints" / "last.safetensors"), *FAST])
    assert result.exit_code == 2 and "restore checkpoint" in result.stderr


def test_help_of_every_command():
    for command in ("train-restore", "train-enhance", "finetune", "eval"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "--data-root" in result.output


def test_exported_weights_develop_with_the_engine(photos, tmp_path):
    _cli("train-restore", "--data-root", photos, "-o", tmp_path, "--steps", "2", "--checkpoint-every", "2", "--validate-every", "2", "--export-dtype", "fp16", *FAST)
    from camnet_cli.weights import load_weights

    net, info = load_weights(tmp_path / "restore-default.safetensors", "restore")
    assert net.config == restore_config("lite") and info.extra["trained_steps"] == "2"
    assert EnhanceNet  # the enhance side is covered by the whole-path test


def test_init_starts_from_given_weights(photos, tmp_path):
    """--init: training starts from a weight file's networks, with a fresh optimiser and schedule."""
    from safetensors.torch import load_file

    _cli("train-restore", "--data-root", photos, "-o", tmp_path / "a", "--steps", "3", "--checkpoint-every", "3", "--validate-every", "3", "--lr", "1e-3", "--seed", "1", *FAST)
    start = tmp_path / "a" / "restore-default.safetensors"
    for run, extra in (("b", ["--init", start]), ("c", [])):  # a learning rate so small that the weights stay where they start
        _cli("train-restore", "--data-root", photos, "-o", tmp_path / run, "--steps", "1", "--checkpoint-every", "1", "--validate-every", "1", "--lr", "1e-12", *extra, *FAST)
    a, b, c = (load_file(tmp_path / r / "restore-default.safetensors") for r in "abc")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not all(torch.allclose(a[k], c[k], atol=1e-6) for k in a)
    assert checkpoint.load(tmp_path / "b" / "checkpoints" / "last.safetensors")[0]["step"] == "1"
    # a training checkpoint works as well: its network, not its optimiser or step
    saved = tmp_path / "a" / "checkpoints" / "last.safetensors"
    _cli("train-restore", "--data-root", photos, "-o", tmp_path / "d", "--steps", "1", "--checkpoint-every", "1", "--validate-every", "1", "--lr", "1e-12", "--init", saved, *FAST)
    d = load_file(tmp_path / "d" / "restore-default.safetensors")
    assert all(torch.allclose(a[k], d[k], atol=1e-6) for k in a)
    result = runner.invoke(app, ["train-enhance", "--data-root", str(photos), "-o", str(tmp_path / "e"), "--steps", "1", "--init", str(saved), *FAST])
    assert result.exit_code == 2 and "without an enhance network" in result.stderr


def test_scale_sets_the_synthetic_patches_sharpness(tmp_path):
    """--scale reaches the synthetic dataset: strong downscaling gives patches with more fine detail."""
    from camnet_cli.data import synthetic

    img = (scene(512, 512, seed=3).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(img[::-1]).save(tmp_path / "b.png")

    def detail(scale):
        data = synthetic.SyntheticDataset([tmp_path / "a.png"], 64, seed=0, scale=scale)
        x = torch.stack([data[i]["srgb"] for i in range(8)])
        return (x[..., 1:] - x[..., :-1]).abs().mean().item()

    assert detail((0.125, 0.125)) > 1.5 * detail((1.0, 1.0))
    from camnet_cli.data.datasets import make_datasets

    train_set, _, _ = make_datasets(TrainConfig(stage="restore", data_root=str(tmp_path), patch_size=64, scale=(0.2, 0.3)).data)
    assert train_set.scale == (0.2, 0.3)


def test_skip_lr_moves_the_linear_path_at_its_own_rate(photos, tmp_path):
    """--skip-lr: Restore-Net's linear path learns at its own rate (each Adam step moves a weight
    by about the rate); resuming with a different optimiser layout is a one-line error."""
    common = ["--data-root", photos, "--steps", "2", "--checkpoint-every", "2", "--validate-every", "2", "--lr", "1e-6", *FAST]

    def path_after(out, *extra):
        _cli("train-restore", "-o", out, *common, *extra)
        _, tensors = checkpoint.load(out / "checkpoints" / "last.safetensors")
        return tensors["net.restore.skip.weight"].abs().max().item()

    assert path_after(tmp_path / "own", "--skip-lr", "1e-2") > 5e-3
    assert path_after(tmp_path / "same") < 1e-5
    result = runner.invoke(app, ["train-restore", "-o", str(tmp_path / "own"), *map(str, common), "--steps", "4", "--resume", "last"])
    assert result.exit_code == 2 and "parameter groups" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_restore_lr_sets_restore_nets_rate_in_finetuning(photos, tmp_path):
    """finetune --restore-lr: Restore-Net learns at its own rate, Enhance-Net at --lr; at 0 Restore-Net
    is held exactly as it was while Enhance-Net still learns (on Restore-Net's output)."""
    torch.manual_seed(0)
    save_weights(tmp_path / "r.safetensors", RestoreNet(restore_config("lite")), training_data="tests")
    save_weights(tmp_path / "e.safetensors", EnhanceNet(enhance_config("lite")), training_data="tests")
    start_r, start_e = (load_file(tmp_path / f"{x}.safetensors") for x in "re")

    def moved(out, *extra):
        _cli("finetune", "--restore", tmp_path / "r.safetensors", "--enhance", tmp_path / "e.safetensors", "--data-root", photos, "-o", out,
             "--steps", "2", "--checkpoint-every", "2", "--validate-every", "2", "--lr", "1e-3", *extra, *FAST[2:])
        _, tensors = checkpoint.load(out / "checkpoints" / "last.safetensors")
        r = max((tensors[f"net.restore.{k}"] - v).abs().max().item() for k, v in start_r.items())
        e = max((tensors[f"net.enhance.{k}"] - v).abs().max().item() for k, v in start_e.items())
        return r, e

    r, e = moved(tmp_path / "held", "--restore-lr", "0")
    assert r == 0 and e > 5e-4
    r_slow, e_slow = moved(tmp_path / "slow", "--restore-lr", "1e-6")
    r_same, _ = moved(tmp_path / "same")
    assert 0 < r_slow < 1e-5 < 5e-4 < r_same and e_slow > 5e-4


def test_validation_is_the_same_whatever_the_seed(photos, tmp_path):
    """--val-samples sets how many patches validate; they are the same patches for every --seed,
    so that runs compare: the same networks score the same, different networks differently."""

    _cli("train-restore", "--data-root", photos, "-o", tmp_path / "a", "--steps", "1", "--checkpoint-every", "1", "--validate-every", "1", *FAST)
    start = tmp_path / "a" / "restore-default.safetensors"

    def val_psnr(run, *extra):
        _cli("train-restore", "--data-root", photos, "-o", tmp_path / run, "--steps", "1", "--checkpoint-every", "1", "--validate-every", "1",
             "--val-samples", "3", "--lr", "1e-12", *extra, *FAST)
        assert json.loads(checkpoint.load(tmp_path / run / "checkpoints" / "last.safetensors")[0]["config"])["val_samples"] == 3
        with open(tmp_path / run / "metrics.csv") as f:
            return float(list(csv.DictReader(f))[-1]["val_psnr"])

    same = [val_psnr(f"s{seed}", "--init", start, "--seed", str(seed)) for seed in (1, 2)]
    assert same[0] == pytest.approx(same[1], abs=1e-4)
    assert val_psnr("fresh", "--seed", "1") != pytest.approx(same[0], abs=1e-2)


def test_moving_average_of_the_weights():
    """update_ema: each parameter moves 1 - decay of the way to the net's; buffers are copied;
    the decay starts low so a fresh average follows the weights at first."""
    net, average = torch.nn.BatchNorm2d(2), torch.nn.BatchNorm2d(2)
    with torch.no_grad():
        net.weight.fill_(1.0)
        average.weight.fill_(0.0)
        net.running_mean.fill_(3.0)
    update_ema(average, net, 0.9)
    assert torch.allclose(average.weight, torch.full((2,), 0.1)) and torch.equal(average.running_mean, net.running_mean)
    for _ in range(200):
        update_ema(average, net, 0.9)
    assert torch.allclose(average.weight, net.weight, atol=1e-6)
    assert ema_decay(0, 0.999) == pytest.approx(0.1) and ema_decay(100, 0.999) == pytest.approx(101 / 110) and ema_decay(10**6, 0.999) == 0.999


def test_ema_is_validated_exported_and_resumed(photos, tmp_path):
    """--ema: checkpoints hold the average beside the weights, the exported file is the average
    (not the last step's weights), and a resumed run continues the average exactly."""
    from safetensors.torch import load_file

    common = ["train-restore", "--data-root", photos, "--checkpoint-every", "2", "--validate-every", "4", "--lr", "1e-3", "--ema", "0.5", *FAST]
    _cli(*common, "--steps", "4", "-o", tmp_path / "whole")
    _, tensors = checkpoint.load(tmp_path / "whole" / "checkpoints" / "last.safetensors")
    exported = load_file(tmp_path / "whole" / "restore-default.safetensors")
    key = "unet.out.weight"
    assert torch.equal(exported[key], tensors[f"ema.restore.{key}"].float())
    assert not torch.allclose(tensors[f"ema.restore.{key}"], tensors[f"net.restore.{key}"])
    _cli(*common, "--steps", "2", "-o", tmp_path / "run")
    _cli(*common, "--steps", "4", "-o", tmp_path / "run", "--resume", "last")
    _, resumed = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.safetensors")
    for name in (f"ema.restore.{key}", f"net.restore.{key}"):
        assert torch.allclose(resumed[name], tensors[name], atol=1e-6), name
    result = runner.invoke(app, [str(a) for a in [*common, "--steps", "1", "-o", tmp_path / "bad", "--ema", "1.5"]])
    assert result.exit_code == 2


def test_grid_weight_adds_its_term(photos, tmp_path):
    """--grid-weight adds W times the grid term to the paper's loss, logged in metrics.csv; without it there is none."""
    args = ["--data-root", photos, "--steps", "2", "--checkpoint-every", "2", "--validate-every", "2", *FAST]
    _cli("train-enhance", "-o", tmp_path / "g", "--grid-weight", "3", *args)
    _cli("train-restore", "-o", tmp_path / "p", *args)
    for row in csv.DictReader(open(tmp_path / "g" / "metrics.csv")):
        assert float(row["grid"]) > 0
        assert float(row["loss"]) == pytest.approx(float(row["enhance"]) + 3 * float(row["grid"]), rel=1e-4)
    assert all(row["grid"] == "" for row in csv.DictReader(open(tmp_path / "p" / "metrics.csv")))
