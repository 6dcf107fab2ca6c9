"""Training as users run it: the CLI in-process, real processes for kill -9 and torchrun.

The runs start from tiny networks (``--init``, ``finetune --restore/--enhance``), which fixes
their widths: the tests are about the training loop and its options, not the networks' size.
"""

import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from camnet_cli import checkpoint
from camnet_cli.cli import app
from camnet_cli.model import restore_config
from camnet_cli.train import TrainConfig, ema_decay, lr_at, update_ema
from camnet_cli.weights import load_weights, read_info
from tests.conftest import EXAMPLE_DNG, REPO, save_tiny_weights, write_photos, write_vgg19

runner = CliRunner()
FAST = ["--patch-size", "64", "--batch-size", "2", "--workers", "0", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Photographs made here: small ones decode fast, and every machine trains on the same."""
    return write_photos(tmp_path_factory.mktemp("photos"), 8, 192, 256)


@pytest.fixture
def start(tiny_weight_files):
    """The options that start each stage's training from tiny networks."""
    return {stage: ["--init", path] for stage, path in tiny_weight_files.items()}


def _cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_schedule_and_stage_defaults():
    assert lr_at(0, 100, 1e-4) == 1e-4 and lr_at(74, 100, 1e-4) == 1e-4 and lr_at(75, 100, 1e-4) == pytest.approx(1e-5)
    assert TrainConfig(stage="joint").base_lr == 1e-5 and TrainConfig(stage="restore").base_lr == 1e-4
    assert TrainConfig(stage="joint", dataset="sid").weight_lambda == 0.9


def test_whole_path_through_the_cli(photos, start, tmp_path):
    """train-restore, train-enhance, finetune, eval, then develop with what was produced."""
    common = ["--data-root", photos, "--steps", "12", "--checkpoint-every", "6", "--validate-every", "6", *FAST]
    _cli("train-restore", "-o", tmp_path / "r", *start["restore"], *common)
    _cli("train-enhance", "-o", tmp_path / "e", *start["enhance"], *common)
    _cli("finetune", "--restore", tmp_path / "r" / "restore-default.safetensors", "--enhance", tmp_path / "e" / "enhance-natural.safetensors",
         "-o", tmp_path / "f", *common)
    style = tmp_path / "f" / "enhance-natural.safetensors"
    info = read_info(style)
    assert info.stage == "enhance" and info.style == "natural" and info.extra["restore"] == "natural"
    assert info.noise_range is not None and info.extra["trained_steps"] == "12" and "photographs" in info.training_data
    rows = list(csv.DictReader(open(tmp_path / "f" / "metrics.csv")))
    assert len(rows) == 12 and rows[-1]["val_psnr"] and float(rows[-1]["lr"]) == pytest.approx(1e-6)  # 1e-5 / 10 after 3/4

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


def test_training_learns(photos, start, tmp_path):
    """120 steps of a tiny Restore-Net lower its loss clearly (training really trains)."""
    _cli("train-restore", "--data-root", photos, "-o", tmp_path, "--steps", "120", "--checkpoint-every", "120", "--validate-every", "120", "--lr", "3e-4",
         *start["restore"], *FAST)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    first, last = np.mean([float(r["loss"]) for r in rows[:15]]), np.mean([float(r["loss"]) for r in rows[-15:]])
    assert last < 0.7 * first


def _losses(path):
    by_step = {}
    for row in csv.DictReader(open(path)):
        by_step[int(row["step"])] = float(row["loss"])  # a resumed run rewrites steps after its checkpoint
    return by_step


def test_killed_and_resumed_training_continues_the_same_curve(photos, start, tmp_path):
    """A run killed with -9 (a real process) resumes from its last checkpoint onto the curve of a run never stopped."""
    args = ["train-restore", "--data-root", photos, "--steps", "30", "--checkpoint-every", "10", "--validate-every", "100", *start["restore"], *FAST]
    _cli(*args, "-o", tmp_path / "whole")
    killed = subprocess.run([sys.executable, "-m", "tests.kill_after", "step", "15", *map(str, args), "-o", str(tmp_path / "run")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    step = int(checkpoint.load(tmp_path / "run" / "checkpoints" / "last.safetensors")[0]["step"])
    assert step == 10  # the last checkpoint before the kill
    _cli(*args, "-o", tmp_path / "run", "--resume", "last")

    a, b = _losses(tmp_path / "whole" / "metrics.csv"), _losses(tmp_path / "run" / "metrics.csv")
    assert sorted(b) == list(range(1, 31))
    for s in range(step + 1, 31):
        assert b[s] == pytest.approx(a[s], rel=1e-5), s


def test_torchrun_two_processes_on_cpu(photos, tiny_weight_files, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "camnet_cli", "train-restore",
         "--data-root", str(photos), "-o", str(tmp_path), "--steps", "3", "--checkpoint-every", "3", "--validate-every", "3",
         "--init", str(tiny_weight_files["restore"]), "--patch-size", "32", "--batch-size", "1", "--workers", "0", "--device", "cpu", "-q"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    checkpoints = list((tmp_path / "checkpoints").glob("*.safetensors"))
    assert {p.name for p in checkpoints} == {"last.safetensors", "best.safetensors"}
    assert checkpoint.load(tmp_path / "checkpoints" / "last.safetensors")[0]["step"] == "3"
    assert (tmp_path / "restore-default.safetensors").exists()


def test_one_stage_baseline_trains_and_evaluates(photos, start, tmp_path):
    _cli("train-restore", "--one-stage", "--data-root", photos, "-o", tmp_path, "--steps", "4", "--checkpoint-every", "4", "--validate-every", "4",
         *start["onestage"], *FAST)
    weights = tmp_path / "onestage-default.safetensors"
    assert read_info(weights).stage == "onestage"
    scores = json.loads(_cli("eval", "--data-root", photos, "--one-stage", weights, "--limit", "1", "--json", "--device", "cpu").stdout)
    assert "restore" not in scores["mean"]["camnet"] and "psnr" in scores["mean"]["camnet"]["final"]


def test_perceptual_loss_from_a_local_file(photos, start, tmp_path):
    write_vgg19(tmp_path / "vgg19.safetensors")
    _cli("train-enhance", "--data-root", photos, "-o", tmp_path / "e", "--steps", "3", "--checkpoint-every", "3", "--validate-every", "3",
         "--perceptual", tmp_path / "vgg19.safetensors", *start["enhance"], *FAST)
    assert "perceptual" in open(tmp_path / "e" / "metrics.csv").readline()


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
        (["train-restore", "--curve-weight", "-1"], "--curve-weight"),
        (["train-restore", "--curve-norm", "l2"], "--curve-norm l2: use one of l1, psnr"),
        (["train-restore", "--precision", "fp16"], "precision 'fp16'"),
        (["train-restore", "--iso-range", "400"], "--iso-range"),
        (["train-restore", "--iso-range", "50,400"], "starts at ISO 100"),
        (["train-restore", "--read-range", "0,4"], "--read-range"),
        (["train-restore", "--init", "{empty}/nothing.safetensors"], "--init"),
        (["finetune", "--restore", "{empty}/r.safetensors", "--enhance", "{empty}/e.safetensors"], "No such file"),
        (["eval", "--data-root", "{empty}"], "--enhance"),
        (["eval", "--data-root", "{empty}", "--enhance", "{empty}/e.safetensors", "--baseline", "libraw,dcraw"], "--baseline dcraw"),
        (["eval", "--data-root", "{empty}", "--one-stage", "{empty}/o.safetensors", "--baseline", "bilinear"], "needs the two-stage networks"),
        (["eval", "--data-root", "{empty}", "--one-stage", "{empty}/o.safetensors", "--baseline", "plain"], "--baseline plain needs"),
        (["eval", "--data-root", "{empty}", "--enhance", "{empty}/e.safetensors", "--exposure", "0.5,2"], "--exposure 0.5,2: each must lie in (0, 1]"),
        (["eval", "--data-root", "{empty}", "--enhance", "{empty}/e.safetensors", "--exposure", "half"], "not numbers"),
        (["eval", "--dataset", "sid", "--data-root", "{empty}", "--enhance", "{empty}/e.safetensors", "--exposure", "0.5"], "only for --dataset synthetic"),
        (["eval", "--data-root", "{empty}", "--enhance", "{empty}/e.safetensors", "--noise-levels", "2e-4"], "--noise-levels 2e-4: use SHOT:READ"),
        (["eval", "--data-root", "{empty}", "--enhance", "{empty}/e.safetensors", "--iso", "50"], "--iso 50: each from 100"),
        (["eval", "--dataset", "sid", "--data-root", "{empty}", "--enhance", "{empty}/e.safetensors", "--iso", "400"], "only for --dataset synthetic"),
    ],
)
def test_usage_errors(tmp_path, args, message):
    result = runner.invoke(app, [a.format(empty=tmp_path) for a in args] + ["-o", str(tmp_path / "o")] * (args[0] != "eval"))
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_resume_refuses_another_stage(photos, start, tmp_path):
    _cli("train-restore", "--data-root", photos, "-o", tmp_path, "--steps", "2", "--checkpoint-every", "2", "--validate-every", "2", *start["restore"], *FAST)
    result = runner.invoke(app, [str(a) for a in ["train-enhance", "--data-root", photos, "-o", tmp_path, "--steps", "4",
                                                  "--resume", tmp_path / "checkpoints" / "last.safetensors", *start["enhance"], *FAST]])
    assert result.exit_code == 2 and "restore checkpoint" in result.stderr


def test_help_of_every_command():
    for command in ("train-restore", "train-enhance", "finetune", "eval"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "--data-root" in result.output


def test_model_preset_and_export_dtype_reach_the_exported_weights(photos, tmp_path):
    """--model picks the preset the networks are built at (this run alone has no --init);
    --export-dtype the type of the exported tensors."""
    _cli("train-restore", "--data-root", photos, "-o", tmp_path, "--steps", "2", "--checkpoint-every", "2", "--validate-every", "2", "--export-dtype", "fp16",
         "--model", "lite", "--val-samples", "1", *FAST)
    net, info = load_weights(tmp_path / "restore-default.safetensors", "restore")
    assert net.config == restore_config("lite") and info.extra["trained_steps"] == "2"
    assert load_file(tmp_path / "restore-default.safetensors")["unet.out.weight"].dtype == torch.float16


def test_init_starts_from_given_weights(photos, start, tmp_path):
    """--init: training starts from a weight file's networks, with a fresh optimiser and schedule."""
    _cli("train-restore", "--data-root", photos, "-o", tmp_path / "a", "--steps", "3", "--checkpoint-every", "3", "--validate-every", "3", "--lr", "1e-3", "--seed", "1",
         *start["restore"], *FAST)
    trained = tmp_path / "a" / "restore-default.safetensors"
    for run, extra in (("b", ["--init", trained]), ("c", start["restore"])):  # a learning rate so small that the weights stay where they start
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


def test_skip_lr_moves_the_linear_path_at_its_own_rate(photos, start, tmp_path):
    """--skip-lr: Restore-Net's linear path learns at its own rate (each Adam step moves a weight
    by about the rate); resuming with a different optimiser layout is a one-line error."""
    common = ["--data-root", photos, "--steps", "2", "--checkpoint-every", "2", "--validate-every", "2", "--lr", "1e-6", *start["restore"], *FAST]

    def path_after(out, *extra):
        _cli("train-restore", "-o", out, *common, *extra)
        _, tensors = checkpoint.load(out / "checkpoints" / "last.safetensors")
        return tensors["net.restore.skip.weight"].abs().max().item()

    assert path_after(tmp_path / "own", "--skip-lr", "1e-2") > 5e-3
    assert path_after(tmp_path / "same") < 1e-5
    result = runner.invoke(app, ["train-restore", "-o", str(tmp_path / "own"), *map(str, common), "--steps", "4", "--resume", "last"])
    assert result.exit_code == 2 and "parameter groups" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_restore_lr_sets_restore_nets_rate_in_finetuning(photos, tiny_weight_files, tmp_path):
    """finetune --restore-lr: Restore-Net learns at its own rate, Enhance-Net at --lr; at 0 Restore-Net
    is held exactly as it was while Enhance-Net still learns (on Restore-Net's output)."""
    nets = {stage: tiny_weight_files[stage] for stage in ("restore", "enhance")}
    start_r, start_e = (load_file(path) for path in nets.values())

    def moved(out, *extra):
        _cli("finetune", "--restore", nets["restore"], "--enhance", nets["enhance"], "--data-root", photos, "-o", out,
             "--steps", "2", "--checkpoint-every", "2", "--validate-every", "2", "--lr", "1e-3", *extra, *FAST)
        _, tensors = checkpoint.load(out / "checkpoints" / "last.safetensors")
        r = max((tensors[f"net.restore.{k}"] - v).abs().max().item() for k, v in start_r.items())
        e = max((tensors[f"net.enhance.{k}"] - v).abs().max().item() for k, v in start_e.items())
        return r, e

    r, e = moved(tmp_path / "held", "--restore-lr", "0")
    assert r == 0 and e > 5e-4
    r_slow, e_slow = moved(tmp_path / "slow", "--restore-lr", "1e-6")
    r_same, _ = moved(tmp_path / "same")
    assert 0 < r_slow < 1e-5 and r_same > 5e-4 and e_slow > 5e-4


def test_validation_is_the_same_whatever_the_seed(photos, start, tmp_path):
    """--val-samples sets how many patches validate; they are the same patches for every --seed,
    so that runs compare: the same networks score the same, different networks differently."""
    other = save_tiny_weights(tmp_path, seed=1)["restore"]

    def val_psnr(run, *extra):
        _cli("train-restore", "--data-root", photos, "-o", tmp_path / run, "--steps", "1", "--checkpoint-every", "1", "--validate-every", "1",
             "--val-samples", "3", "--lr", "1e-12", *extra, *FAST)
        assert json.loads(checkpoint.load(tmp_path / run / "checkpoints" / "last.safetensors")[0]["config"])["val_samples"] == 3
        with open(tmp_path / run / "metrics.csv") as f:
            return float(list(csv.DictReader(f))[-1]["val_psnr"])

    same = [val_psnr(f"s{seed}", *start["restore"], "--seed", str(seed)) for seed in (1, 2)]
    assert same[0] == pytest.approx(same[1], abs=1e-4)
    assert val_psnr("other", "--init", other, "--seed", "1") != pytest.approx(same[0], abs=1e-2)


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


def test_ema_is_validated_exported_and_resumed(photos, start, tmp_path):
    """--ema: checkpoints hold the average beside the weights, the exported file is the average
    (not the last step's weights), and a resumed run continues the average exactly."""
    common = ["train-restore", "--data-root", photos, "--checkpoint-every", "2", "--validate-every", "4", "--lr", "1e-3", "--ema", "0.5", *start["restore"], *FAST]
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


def test_grid_weight_adds_its_term(photos, start, tmp_path):
    """--grid-weight adds W times the grid term to the paper's loss, logged in metrics.csv; without it there is none."""
    args = ["--data-root", photos, "--steps", "2", "--checkpoint-every", "2", "--validate-every", "2", *FAST]
    _cli("train-enhance", "-o", tmp_path / "g", "--grid-weight", "3", *start["enhance"], *args)
    _cli("train-restore", "-o", tmp_path / "p", *start["restore"], *args)
    for row in csv.DictReader(open(tmp_path / "g" / "metrics.csv")):
        assert float(row["grid"]) > 0
        assert float(row["loss"]) == pytest.approx(float(row["enhance"]) + 3 * float(row["grid"]), rel=1e-4)
    assert all(row["grid"] == "" for row in csv.DictReader(open(tmp_path / "p" / "metrics.csv")))


def test_curve_weight_and_iso_range_reach_the_restoration_loss(photos, start, tmp_path):
    """--curve-weight adds the after-the-curve term to the restoration loss of the very same first
    sample, in the norm --curve-norm names; --iso-range and --read-range reach the synthetic noise (pushed noise is worse to
    restore) and --iso-range the noise range the exported weights record."""
    def first_loss(run, *extra):
        _cli("train-restore", "--data-root", photos, "-o", tmp_path / run, "--steps", "1", "--validate-every", "1", *extra, *start["restore"], *FAST)
        return _losses(tmp_path / run / "metrics.csv")[1]

    plain, curved = first_loss("plain"), first_loss("curved", "--curve-weight", "2")
    assert curved - plain > 0.05  # the same sample, plus twice its error after the curve
    # log MSE: CURVE_RMS / 2 * log(MSE) is negative below 0 dB
    assert first_loss("psnr", "--curve-weight", "2", "--curve-norm", "psnr") < plain
    pushed = first_loss("pushed", "--iso-range", "51200,102400")
    assert pushed > plain
    assert first_loss("read", "--read-range", "6,6") > plain  # the same sample, more read noise
    low, high = read_info(tmp_path / "pushed" / "restore-default.safetensors").noise_range
    assert high > 1.5 * read_info(tmp_path / "plain" / "restore-default.safetensors").noise_range[1]
