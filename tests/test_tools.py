"""The research and release tools in tools/, run as their users run them (as ``__main__``, with
their command line), in this process: none of them is about being a separate process."""

import contextlib
import dataclasses
import io
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from camnet_cli import weights
from camnet_cli.model import EnhanceNet, EnhanceNetConfig, RestoreNet, RestoreNetConfig
from camnet_cli.weights import load_weights, read_info, save_weights
from tests.conftest import TINY_WIDTHS

SCRIPTS = Path(__file__).parents[1] / "tools"


def _script(name: str, *args) -> subprocess.CompletedProcess:
    """Run one of tools/' scripts as ``python tools/NAME ARGS`` would: its exit status, stdout and stderr."""
    argv = [str(SCRIPTS / name), *map(str, args)]
    out, err, code = io.StringIO(), io.StringIO(), 0
    saved = sys.argv
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as e:
        if isinstance(e.code, str):  # sys.exit(message): Python prints it and exits with 1
            err.write(e.code)
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        sys.argv = saved
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def test_pair_script_ships_separate_nets_as_one_style(tmp_path):
    """tools/pair.py: two separately trained files become restore-NAME and enhance-NAME, fp16,
    the style naming its restoration so that develop finds the pair."""
    restore, enhance = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)), EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS))
    save_weights(tmp_path / "r.safetensors", restore, training_data="tests", noise_range=(1e-4, 1e-2), extra={"trained_steps": "7", "x": "y"})
    save_weights(tmp_path / "e.safetensors", enhance, style="draft", training_data="tests", extra={"trained_steps": "9"})
    done = _script("pair.py", tmp_path / "r.safetensors", tmp_path / "e.safetensors", "crisp", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    style = tmp_path / "out" / "enhance-crisp.safetensors"
    info = read_info(style)
    assert info.style == "crisp" and info.extra == {"trained_steps": "9", "restore": "crisp"}
    assert weights.companion_restore(style) == tmp_path / "out" / "restore-crisp.safetensors"
    loaded, rinfo = load_weights(tmp_path / "out" / "restore-crisp.safetensors", "restore")
    assert rinfo.style == "" and rinfo.extra == {"trained_steps": "7"} and rinfo.noise_range == (1e-4, 1e-2)
    for key, value in restore.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.half().float()), key


@pytest.mark.parametrize("stage", ["restore", "enhance"])
def test_widen_script_doubles_the_widths_and_keeps_what_the_net_computes(tmp_path, stage):
    """tools/widen.py: every level twice as wide, the same
    outputs (global block, skips and, for Restore-Net, the linear path included), and the two
    copies of each channel read by different weights, so that training can pull them apart."""
    torch.manual_seed(0)
    old = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)) if stage == "restore" else EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS))
    with torch.no_grad():
        for p in old.parameters():  # as if trained: no zero biases, linear path or residual branches
            p.copy_(torch.randn_like(p) * p.std().clamp_min(0.05))
    old.eval()
    save_weights(tmp_path / "old.safetensors", old, training_data="tests", noise_range=(1e-4, 1e-2))
    done = _script("widen.py", tmp_path / "old.safetensors", tmp_path / "new.safetensors", 3)
    assert done.returncode == 0, done.stderr
    new, info = load_weights(tmp_path / "new.safetensors", stage)
    assert new.config == dataclasses.replace(old.config, channels=tuple(2 * c for c in TINY_WIDTHS))
    assert info.noise_range == (1e-4, 1e-2)
    with torch.no_grad():
        if stage == "restore":
            packed, omega = torch.rand(2, 4, 32, 48), torch.tensor([1e-5, 1e-2])
            want, got = old(packed, omega), new(packed, omega)
        else:
            xyz = torch.rand(1, 3, 64, 96)
            want, got = old(xyz), new(xyz)
    assert want.std() > 0.01
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    out = new.unet.out.weight
    halves = out[:, : TINY_WIDTHS[0]], out[:, TINY_WIDTHS[0] : 2 * TINY_WIDTHS[0]]
    assert not torch.allclose(*halves)
    torch.testing.assert_close(halves[0] + halves[1], old.unet.out.weight[:, : TINY_WIDTHS[0]])


def test_add_read_plane_script_keeps_what_the_net_computes(tmp_path):
    """tools/add_read_plane.py: a 5-plane Restore-Net becomes a 6-plane one that restores the same
    pixels whatever read noise it is told, until training gives the new plane weights."""
    torch.manual_seed(0)
    old = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS))
    with torch.no_grad():
        for p in old.parameters():
            p.copy_(torch.randn_like(p) * p.std().clamp_min(0.05))
    save_weights(tmp_path / "old.safetensors", old.eval(), training_data="tests", noise_range=(1e-4, 1e-2), extra={"trained_steps": "5"})
    done = _script("add_read_plane.py", tmp_path / "old.safetensors", tmp_path / "new.safetensors")
    assert done.returncode == 0, done.stderr
    new, info = load_weights(tmp_path / "new.safetensors", "restore")
    assert new.config == dataclasses.replace(old.config, in_channels=6)
    assert info.noise_range == (1e-4, 1e-2) and info.extra == {"trained_steps": "5"}
    packed, omega = torch.rand(2, 4, 32, 48), torch.tensor([1e-5, 1e-2])
    with torch.no_grad():
        want = old(packed, omega)
        for read in (None, torch.tensor([1e-4, 3e-2])):
            torch.testing.assert_close(new(packed, omega, read=read), want)
    again = _script("add_read_plane.py", tmp_path / "new.safetensors", tmp_path / "again.safetensors")
    assert again.returncode != 0 and "6 input planes" in again.stderr


def test_grid_check_script_measures_a_style_s_fixed_pattern(tmp_path):
    """tools/grid_check.py: a style whose output layer adds a fixed offset per position of each
    2x2 block shows that pattern's RMS on flat fields; with the offsets equal, or with the notch
    (EnhanceNetConfig.notch), it shows none; nor does a new style, the plain rendering alone
    (EnhanceNetConfig.base)."""
    save_weights(tmp_path / "base.safetensors", EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS)), training_data="tests", noise_range=(1e-4, 1e-2))
    net = EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS, notch=0.0, base=0.0))
    offsets = torch.tensor([0.01, -0.01, 0.0, 0.0])  # per position, as PixelShuffle lays out the 12 planes
    with torch.no_grad():
        net.unet.out.weight.zero_()
        net.unet.out.bias.copy_((0.5 + offsets).repeat(3))
    save_weights(tmp_path / "grid.safetensors", net, training_data="tests", noise_range=(1e-4, 1e-2))
    notched = EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS, notch=2.0, base=0.0))
    notched.load_state_dict(net.state_dict())
    save_weights(tmp_path / "notched.safetensors", notched, training_data="tests", noise_range=(1e-4, 1e-2))
    with torch.no_grad():
        net.unet.out.bias.fill_(0.5)
    save_weights(tmp_path / "flat.safetensors", net, training_data="tests", noise_range=(1e-4, 1e-2))
    for name, expected in (("grid", 255 * (offsets - offsets.mean()).pow(2).mean().sqrt().item()), ("flat", 0.0), ("notched", 0.0), ("base", 0.0)):
        done = _script("grid_check.py", "--style", tmp_path / f"{name}.safetensors")
        assert done.returncode == 0, done.stderr
        rms, largest = (float(done.stdout.split(word)[1].split()[0].rstrip(",")) for word in ("grid RMS", "largest"))
        assert rms == pytest.approx(expected, abs=0.01) and largest == pytest.approx(expected, abs=0.01)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the report runs the whole suite and the benchmarks")
def test_gpu_report_without_cuda_records_the_environment_and_says_so(tmp_path):
    script = SCRIPTS / "gpu_report.sh"
    done = subprocess.run(["bash", str(script)], env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path), "PYTHON": sys.executable}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "gpu_report.json").read_text())
    assert report["env"]["torch"] == torch.__version__ and report["errors"] == []
    assert any("no CUDA" in note for note in report["notes"]) and report["bench"] == {} and report["e2e"] is None
