import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from camnet_cli import weights
from camnet_cli.model import EnhanceNet, EnhanceNetConfig, RestoreNet, RestoreNetConfig
from camnet_cli.weights import WeightsError, find_weights, installed, load_weights, read_info, save_weights

TINY = (8, 16, 16, 16, 16)
SCRIPTS = Path(__file__).parents[1] / "weights"


def _script(name: str, *args) -> subprocess.CompletedProcess:
    """Run one of weights/'s scripts as the model card does."""
    return subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)], capture_output=True, text=True, check=False)


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    folder = tmp_path / "user-weights"
    folder.mkdir()
    monkeypatch.setenv("CAMNET_WEIGHTS", str(folder))
    return folder


def test_round_trip_is_bit_exact(tmp_path):
    for net in (RestoreNet(RestoreNetConfig(channels=TINY)), EnhanceNet(EnhanceNetConfig(channels=TINY))):
        save_weights(tmp_path / "w.safetensors", net, style="natural", training_data="tests", noise_range=(1e-4, 1e-2))
        loaded, info = load_weights(tmp_path / "w.safetensors")
        assert loaded.config == net.config and type(loaded) is type(net)
        for (k, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), k
        assert info.style == "natural" and info.training_data == "tests" and info.noise_range == (1e-4, 1e-2)
        assert info.stage == ("restore" if isinstance(net, RestoreNet) else "enhance")
        assert info.camnet_version


def test_fp16_storage_loads_as_float32(tmp_path):
    net = RestoreNet(RestoreNetConfig(channels=TINY))
    save_weights(tmp_path / "w.safetensors", net, dtype=torch.float16)
    loaded, _ = load_weights(tmp_path / "w.safetensors")
    w = net.unet.out.weight
    assert loaded.unet.out.weight.dtype == torch.float32
    assert torch.equal(loaded.unet.out.weight, w.half().float())
    assert (tmp_path / "w.safetensors").stat().st_size < 0.6 * sum(p.numel() * 4 for p in net.parameters())


def test_loading_never_unpickles(tmp_path, monkeypatch):
    save_weights(tmp_path / "w.safetensors", RestoreNet(RestoreNetConfig(channels=TINY)))

    def refuse(*args, **kwargs):
        raise AssertionError("unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    load_weights(tmp_path / "w.safetensors")


def test_pickles_are_refused(tmp_path):
    net = RestoreNet(RestoreNetConfig(channels=TINY))
    torch.save(net.state_dict(), tmp_path / "model.pt")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    for name in ("model.pt", "plain.pkl"):
        with pytest.raises(WeightsError, match="pickle"):
            load_weights(tmp_path / name)


def test_other_files_are_refused(tmp_path):
    save_file({"x": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(WeightsError, match="not camnet weights"):
        read_info(tmp_path / "foreign.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(WeightsError, match="not a safetensors file"):
        read_info(tmp_path / "junk.safetensors")
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(WeightsError, match="too short"):
        read_info(tmp_path / "short.safetensors")


def test_wrong_stage_is_refused(tmp_path):
    save_weights(tmp_path / "r.safetensors", RestoreNet(RestoreNetConfig(channels=TINY)))
    with pytest.raises(WeightsError, match="holds restore weights"):
        load_weights(tmp_path / "r.safetensors", stage="enhance")


def test_save_is_atomic(tmp_path):
    save_weights(tmp_path / "sub" / "w.safetensors", RestoreNet(RestoreNetConfig(channels=TINY)))
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["w.safetensors"]


def test_styles_by_name_path_and_user_folder(tmp_path, user_dir, monkeypatch):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(weights, "SHIPPED_DIR", shipped)
    net = EnhanceNet(EnhanceNetConfig(channels=TINY))
    save_weights(shipped / "enhance-natural.safetensors", net, style="natural")
    save_weights(shipped / "enhance-vivid.safetensors", net, style="vivid")
    save_weights(user_dir / "enhance-vivid.safetensors", net, style="my vivid")
    assert set(installed("enhance")) == {"natural", "vivid"}
    assert find_weights("natural", "enhance") == shipped / "enhance-natural.safetensors"
    assert find_weights("vivid", "enhance") == user_dir / "enhance-vivid.safetensors"  # the user's wins
    assert find_weights(str(shipped / "enhance-vivid.safetensors"), "enhance") == shipped / "enhance-vivid.safetensors"


def test_unknown_style_lists_installed_and_how_to_train(tmp_path, user_dir, monkeypatch):
    monkeypatch.setattr(weights, "SHIPPED_DIR", tmp_path)
    save_weights(user_dir / "enhance-natural.safetensors", EnhanceNet(EnhanceNetConfig(channels=TINY)))
    with pytest.raises(WeightsError) as info:
        find_weights("expertC", "enhance")
    message = str(info.value)
    assert "'expertC'" in message and "natural" in message and "camnet train-enhance" in message
    assert "\n" not in message
    with pytest.raises(WeightsError, match="no such weight file"):
        find_weights(str(tmp_path / "missing.safetensors"), "enhance")


def test_shipped_weights_are_a_matched_default_style():
    """weights/ holds the default style and the restoration weights it was fine-tuned with."""
    from camnet_cli.commands.develop import DEFAULT_STYLE
    from camnet_cli.weights import SHIPPED_DIR, companion_restore

    style = SHIPPED_DIR / f"enhance-{DEFAULT_STYLE}.safetensors"
    info = read_info(style)
    assert info.stage == "enhance" and info.style == DEFAULT_STYLE and info.noise_range
    assert companion_restore(style) == SHIPPED_DIR / f"restore-{info.extra['restore']}.safetensors"
    restore, _ = load_weights(companion_restore(style), "restore")
    enhance, _ = load_weights(style, "enhance")
    assert restore.config.channels == enhance.config.channels


def test_files_from_before_the_noise_map_field_feed_omega_itself(tmp_path):
    """Weight files written before RestoreNetConfig.noise_map existed load with the plane they were trained on."""
    import json

    from safetensors import safe_open

    net = RestoreNet(RestoreNetConfig(channels=TINY))
    save_weights(tmp_path / "new.safetensors", net)
    assert load_weights(tmp_path / "new.safetensors")[0].config.noise_map == "log"
    with safe_open(str(tmp_path / "new.safetensors"), framework="pt") as f:
        header, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(header["config"])
    del config["noise_map"]
    save_file(tensors, tmp_path / "old.safetensors", metadata={**header, "config": json.dumps(config)})
    assert load_weights(tmp_path / "old.safetensors")[0].config.noise_map == "omega"
    config["noise_map"] = "sigma"
    save_file(tensors, tmp_path / "bad.safetensors", metadata={**header, "config": json.dumps(config)})
    with pytest.raises(WeightsError, match="noise_map"):
        load_weights(tmp_path / "bad.safetensors")


def test_a_header_length_that_starts_like_a_pickle_still_loads(tmp_path):
    """The safetensors header length is little-endian; its first byte may be 0x80, pickle's opcode."""
    net = RestoreNet(RestoreNetConfig(channels=TINY))
    for pad in range(256):
        save_weights(tmp_path / "w.safetensors", net, training_data="x" * pad)
        if (tmp_path / "w.safetensors").read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length starting with 0x80")
    loaded, info = load_weights(tmp_path / "w.safetensors")
    assert loaded.config == net.config and info.training_data.startswith("x")


def test_pair_script_ships_separate_nets_as_one_style(tmp_path):
    """weights/pair.py: two separately trained files become restore-NAME and enhance-NAME, fp16,
    the style naming its restoration so that develop finds the pair."""
    restore, enhance = RestoreNet(RestoreNetConfig(channels=TINY)), EnhanceNet(EnhanceNetConfig(channels=TINY))
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


def _converted(script: str, net: RestoreNet, folder: Path):
    """``net`` saved as old.safetensors and turned by ``script`` into new.safetensors, loaded."""
    save_weights(folder / "old.safetensors", net, training_data="tests", noise_range=(1e-4, 1e-2))
    done = _script(script, folder / "old.safetensors", folder / "new.safetensors")
    assert done.returncode == 0, done.stderr
    return load_weights(folder / "new.safetensors", "restore")


def test_zero_noise_plane_script_keeps_what_the_net_computes(tmp_path):
    """weights/zero_noise_plane.py (the v1 -> v2 start of the model card): the new file feeds
    log10(omega) + 4, yet computes what the old net did with omega = 0, whatever the noise level;
    a file that already feeds the log is refused with its name."""
    torch.manual_seed(0)
    old = RestoreNet(RestoreNetConfig(channels=TINY, noise_map="omega")).eval()
    new, info = _converted("zero_noise_plane.py", old, tmp_path)
    assert new.config.noise_map == "log" and info.noise_range == (1e-4, 1e-2)
    packed = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        want = old(packed, 0.0)
        assert not torch.allclose(old(packed, 0.5), want, atol=1e-4)  # the old net does use the plane
        for omega in (1e-5, 1e-3):
            torch.testing.assert_close(new(packed, omega), want, rtol=1e-5, atol=1e-6)
    again = _script("zero_noise_plane.py", tmp_path / "new.safetensors", tmp_path / "again.safetensors")
    assert again.returncode != 0 and "new.safetensors: already feeds 'log'" in again.stderr
    assert not (tmp_path / "again.safetensors").exists()


def test_add_linear_path_script_keeps_what_the_net_computes(tmp_path):
    """weights/add_linear_path.py: weights without the linear path get it at zero (same outputs),
    ready to train; weights that have it are refused by name."""
    torch.manual_seed(0)
    old = RestoreNet(RestoreNetConfig(channels=TINY, skip="none")).eval()
    new, info = _converted("add_linear_path.py", old, tmp_path)
    assert new.config == dataclasses.replace(old.config, skip="adaptive") and info.noise_range == (1e-4, 1e-2)
    assert torch.count_nonzero(new.skip.weight) == 0
    packed, omega = torch.rand(2, 4, 32, 32), torch.tensor([1e-5, 1e-2])
    with torch.no_grad():
        torch.testing.assert_close(new(packed, omega), old(packed, omega))
    again = _script("add_linear_path.py", tmp_path / "new.safetensors", tmp_path / "again.safetensors")
    assert again.returncode != 0 and "new.safetensors: already has a linear path" in again.stderr


@pytest.mark.parametrize("stage", ["restore", "enhance"])
def test_widen_script_doubles_the_widths_and_keeps_what_the_net_computes(tmp_path, stage):
    """weights/widen.py (lite -> paper in the model card): every level twice as wide, the same
    outputs (global block, skips and, for Restore-Net, the linear path included), and the two
    copies of each channel read by different weights, so that training can pull them apart."""
    torch.manual_seed(0)
    old = RestoreNet(RestoreNetConfig(channels=TINY)) if stage == "restore" else EnhanceNet(EnhanceNetConfig(channels=TINY))
    with torch.no_grad():
        for p in old.parameters():  # as if trained: no zero biases, linear path or residual branches
            p.copy_(torch.randn_like(p) * p.std().clamp_min(0.05))
    old.eval()
    save_weights(tmp_path / "old.safetensors", old, training_data="tests", noise_range=(1e-4, 1e-2))
    done = _script("widen.py", tmp_path / "old.safetensors", tmp_path / "new.safetensors", 3)
    assert done.returncode == 0, done.stderr
    new, info = load_weights(tmp_path / "new.safetensors", stage)
    assert new.config == dataclasses.replace(old.config, channels=tuple(2 * c for c in TINY))
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
    halves = out[:, : TINY[0]], out[:, TINY[0] : 2 * TINY[0]]
    assert not torch.allclose(*halves)
    torch.testing.assert_close(halves[0] + halves[1], old.unet.out.weight[:, : TINY[0]])


def test_grid_check_script_measures_a_style_s_fixed_pattern(tmp_path):
    """weights/grid_check.py: a style whose output layer adds a fixed offset per position of each
    2x2 block shows that pattern's RMS on flat fields; with the offsets equal, or with the notch
    (EnhanceNetConfig.notch), it shows none; nor does a new style, the plain rendering alone
    (EnhanceNetConfig.base)."""
    save_weights(tmp_path / "base.safetensors", EnhanceNet(EnhanceNetConfig(channels=TINY)), training_data="tests", noise_range=(1e-4, 1e-2))
    net = EnhanceNet(EnhanceNetConfig(channels=TINY, notch=0.0, base=0.0))
    offsets = torch.tensor([0.01, -0.01, 0.0, 0.0])  # per position, as PixelShuffle lays out the 12 planes
    with torch.no_grad():
        net.unet.out.weight.zero_()
        net.unet.out.bias.copy_((0.5 + offsets).repeat(3))
    save_weights(tmp_path / "grid.safetensors", net, training_data="tests", noise_range=(1e-4, 1e-2))
    notched = EnhanceNet(EnhanceNetConfig(channels=TINY, notch=2.0, base=0.0))
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


def test_add_notch_script_keeps_the_tensors_and_adds_the_notch(tmp_path):
    """weights/add_notch.py (v4.3 in the model card): the same tensors in the same dtype, the
    style's notes kept, ``notch`` in the config; the output loses its grid and nothing else much."""
    from camnet_cli import metrics
    from camnet_cli.model import EnhanceNetConfig

    torch.manual_seed(5)
    net = EnhanceNet(EnhanceNetConfig(channels=TINY, notch=0.0, base=0.0)).eval()
    with torch.no_grad():
        net.unet.out.weight.zero_()  # a uniform grey, plus an offset per position (remove_grid's own test has detail)
        net.unet.out.bias.copy_((0.5 + torch.tensor([0.03, -0.03, 0.0, 0.0])).repeat(3))
    weights.save_named(tmp_path, net, "mine", training_data="tests", noise_range=(1e-4, 1e-2), dtype=torch.float16, extra={"trained_steps": "7"})
    src, dst = tmp_path / "enhance-mine.safetensors", tmp_path / "out.safetensors"
    done = _script("add_notch.py", src, dst)
    assert done.returncode == 0, done.stderr
    old, old_info = load_weights(src, "enhance")
    new, new_info = load_weights(dst, "enhance")
    assert old.config.notch == 0.0 and new.config == dataclasses.replace(old.config, notch=2.0)
    assert new.config.base == 0.0  # the rendering is another script's (add_base.py)
    assert new_info.style == "mine" and new_info.extra["restore"] == "mine" and new_info.extra["trained_steps"] == "7"
    assert dst.stat().st_size == pytest.approx(src.stat().st_size, abs=64)  # still fp16
    for (k, a), b in zip(old.state_dict().items(), new.state_dict().values()):
        assert torch.equal(a, b), k
    xyz = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        before, after = old(xyz), new(xyz)
    assert metrics.grid(before, after).item() > 0.01 and metrics.grid(after, torch.zeros_like(after)).item() < 1e-3
    pattern = torch.tensor([0.03, -0.03, 0.0, 0.0]).view(1, 1, 2, 2).repeat(1, 3, 48, 48)
    torch.testing.assert_close(before - pattern, torch.full_like(before, 0.5), rtol=0, atol=5e-4)  # fp16 biases
    torch.testing.assert_close(after, torch.full_like(after, 0.5), rtol=0, atol=5e-4)  # the offsets are gone, the level kept


def test_add_base_script_puts_the_plain_rendering_under_a_trained_net(tmp_path):
    """weights/add_base.py (v5 in the model card): ``base`` in the config, the output layer at zero
    and every other tensor as it was, in the file's dtype, the style's notes kept: the network
    develops as the plain rendering until trained, and trains from the old body's features."""
    from camnet_cli import color
    from camnet_cli.model import EnhanceNetConfig

    torch.manual_seed(6)
    net = EnhanceNet(EnhanceNetConfig(channels=TINY, base=0.0)).eval()
    torch.nn.init.normal_(net.unet.out.weight, std=0.1)
    weights.save_named(tmp_path, net, "mine", training_data="tests", noise_range=(1e-4, 1e-2), dtype=torch.float16, extra={"trained_steps": "7"})
    src, dst = tmp_path / "enhance-mine.safetensors", tmp_path / "out.safetensors"
    done = _script("add_base.py", src, dst, "1.5")
    assert done.returncode == 0, done.stderr
    old, _ = load_weights(src, "enhance")
    new, info = load_weights(dst, "enhance")
    assert new.config == dataclasses.replace(old.config, base=1.5)
    assert info.style == "mine" and info.extra["restore"] == "mine" and info.extra["trained_steps"] == "7"
    assert dst.stat().st_size == pytest.approx(src.stat().st_size, abs=64)  # still fp16
    for (k, a), b in zip(old.state_dict().items(), new.state_dict().values()):
        assert torch.equal(b, torch.zeros_like(a)) if k.startswith("unet.out.") else torch.equal(a, b), k
    xyz = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before, after = old(xyz), new(xyz)
    plain = color.linear_to_srgb((color.apply_matrix(xyz, color.XYZ_TO_SRGB) * 1.5).clamp(0, 1))
    torch.testing.assert_close(after, plain, rtol=0, atol=1e-5)
    assert (before - plain).abs().mean() > 0.05
