import pickle

import pytest
import torch
from safetensors.torch import save_file

from camnet_cli import weights
from camnet_cli.model import EnhanceNet, EnhanceNetConfig, RestoreNet, RestoreNetConfig
from camnet_cli.weights import WeightsError, find_weights, installed, load_weights, read_info, save_weights
from tests.conftest import TINY_WIDTHS


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    folder = tmp_path / "user-weights"
    folder.mkdir()
    monkeypatch.setenv("CAMNET_WEIGHTS", str(folder))
    return folder


def test_round_trip_is_bit_exact(tmp_path):
    for net in (RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)), EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS))):
        save_weights(tmp_path / "w.safetensors", net, style="natural", training_data="tests", noise_range=(1e-4, 1e-2))
        loaded, info = load_weights(tmp_path / "w.safetensors")
        assert loaded.config == net.config and type(loaded) is type(net)
        for (k, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), k
        assert info.style == "natural" and info.training_data == "tests" and info.noise_range == (1e-4, 1e-2)
        assert info.stage == ("restore" if isinstance(net, RestoreNet) else "enhance")
        assert info.camnet_version


def test_fp16_storage_loads_as_float32(tmp_path):
    net = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS))
    save_weights(tmp_path / "w.safetensors", net, dtype=torch.float16)
    loaded, _ = load_weights(tmp_path / "w.safetensors")
    w = net.unet.out.weight
    assert loaded.unet.out.weight.dtype == torch.float32
    assert torch.equal(loaded.unet.out.weight, w.half().float())
    assert (tmp_path / "w.safetensors").stat().st_size < 0.6 * sum(p.numel() * 4 for p in net.parameters())


def test_loading_never_unpickles(tmp_path, monkeypatch):
    save_weights(tmp_path / "w.safetensors", RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)))

    def refuse(*args, **kwargs):
        raise AssertionError("unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    load_weights(tmp_path / "w.safetensors")


def test_pickles_are_refused(tmp_path):
    net = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS))
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
    save_weights(tmp_path / "r.safetensors", RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)))
    with pytest.raises(WeightsError, match="holds restore weights"):
        load_weights(tmp_path / "r.safetensors", stage="enhance")


def test_save_is_atomic(tmp_path):
    save_weights(tmp_path / "sub" / "w.safetensors", RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)))
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["w.safetensors"]


def test_styles_by_name_path_and_user_folder(tmp_path, user_dir, monkeypatch):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(weights, "SHIPPED_DIR", shipped)
    net = EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS))
    save_weights(shipped / "enhance-natural.safetensors", net, style="natural")
    save_weights(shipped / "enhance-vivid.safetensors", net, style="vivid")
    save_weights(user_dir / "enhance-vivid.safetensors", net, style="my vivid")
    assert set(installed("enhance")) == {"natural", "vivid"}
    assert find_weights("natural", "enhance") == shipped / "enhance-natural.safetensors"
    assert find_weights("vivid", "enhance") == user_dir / "enhance-vivid.safetensors"  # the user's wins
    assert find_weights(str(shipped / "enhance-vivid.safetensors"), "enhance") == shipped / "enhance-vivid.safetensors"


def test_unknown_style_lists_installed_and_how_to_train(tmp_path, user_dir, monkeypatch):
    monkeypatch.setattr(weights, "SHIPPED_DIR", tmp_path)
    save_weights(user_dir / "enhance-natural.safetensors", EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS)))
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


def test_files_of_the_old_weight_format_are_refused_in_one_line(tmp_path):
    """Files written by camnet 0.1 (camnet-weights/1) are refused, naming their format and the one this camnet reads."""
    import json

    from safetensors import safe_open

    save_weights(tmp_path / "new.safetensors", RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)))
    with safe_open(str(tmp_path / "new.safetensors"), framework="pt") as f:
        header, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    config = {**json.loads(header["config"]), "noise_map": "log"}
    old = {**header, "format": "camnet-weights/1", "camnet_version": "0.1.0", "config": json.dumps(config)}
    save_file(tensors, tmp_path / "old.safetensors", metadata=old)
    with pytest.raises(WeightsError) as refused:
        load_weights(tmp_path / "old.safetensors")
    message = str(refused.value)
    assert "\n" not in message and "camnet-weights/1" in message and "camnet-weights/2" in message and "0.1.0" in message
    # a config with a field this camnet does not know is refused too, not silently dropped
    save_file(tensors, tmp_path / "extra.safetensors", metadata={**header, "config": json.dumps(config)})
    with pytest.raises(WeightsError, match="noise_map"):
        load_weights(tmp_path / "extra.safetensors")


def test_a_header_length_that_starts_like_a_pickle_still_loads(tmp_path):
    """The safetensors header length is little-endian; its first byte may be 0x80, pickle's opcode."""
    net = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS))
    for pad in range(256):
        save_weights(tmp_path / "w.safetensors", net, training_data="x" * pad)
        if (tmp_path / "w.safetensors").read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length starting with 0x80")
    loaded, info = load_weights(tmp_path / "w.safetensors")
    assert loaded.config == net.config and info.training_data.startswith("x")


