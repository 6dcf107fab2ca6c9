import json
import math
import pickle
import shutil
import struct
import subprocess
import sys

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from typer.testing import CliRunner

from camnet_cli import weights
from camnet_cli.cli import app
from camnet_cli.model import EnhanceNet, EnhanceNetConfig, RestoreNet, RestoreNetConfig
from camnet_cli.weights import SHIPPED_DIR, WeightsError, find_weights, installed, load_weights, read_info, save_weights
from tests.conftest import EXAMPLE_DNG, REPO, TINY_WIDTHS, save_tiny_weights


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




# Broken and hostile weight files: each is refused in one line that starts with its path.


def rewrite_header(path, edit):
    """Rewrite the JSON header of safetensors file ``path`` in place, its 8-byte little-endian length
    kept right: ``edit`` takes the header as a dict and returns the new one, as a dict or as bytes."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = edit(json.loads(data[8 : 8 + size]))
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + size :])
    return path


def edit_meta(path, **changes):
    """Change fields of a weight file's ``__metadata__``."""
    return rewrite_header(path, lambda header: {**header, "__metadata__": {**header["__metadata__"], **changes}})


def edit_config(path, **changes):
    """Change fields of the network config in a weight file's header."""

    def edit(header):
        meta = header["__metadata__"]
        meta["config"] = json.dumps({**json.loads(meta["config"]), **changes})
        return header

    return rewrite_header(path, edit)


def edit_tensor(path, **changes):
    """Change fields of the first tensor entry in a weight file's header (all of it, given ``entry``)."""

    def edit(header):
        name = next(k for k in header if k != "__metadata__")
        header[name] = changes["entry"] if "entry" in changes else {**header[name], **changes}
        return header

    return rewrite_header(path, edit)


def refusal(path, read=load_weights):
    """The message ``read`` refuses weight file ``path`` with, checked to be one line starting with the path."""
    with pytest.raises(WeightsError) as refused:
        read(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    return message


@pytest.fixture
def tiny(tmp_path):
    """Tiny weight files by stage, for a test to break."""
    return save_tiny_weights(tmp_path)


@pytest.mark.parametrize(
    "stage, changes, field",
    [
        ("enhance", {"in_channels": 1_000_000_000}, "in_channels"),  # torch tried to allocate 576 GB
        ("restore", {"in_channels": -5}, "in_channels"),
        ("onestage", {"in_channels": 12}, "in_channels"),
        ("restore", {"channels": [-8, 16, 16, 16, 16]}, "channels"),
        ("enhance", {"channels": [2048, 16, 16, 16, 16]}, "channels"),
        ("restore", {"channels": [8] * 7, "dilations": [1] * 7}, "channels"),
        ("restore", {"channels": [8.0, 16, 16, 16, 16]}, "channels"),
        ("restore", {"dilations": [1, 1]}, "dilations"),
        ("enhance", {"dilations": [1, 2, 2, 4, 1000]}, "dilations"),
        ("enhance", {"notch": math.nan}, "notch"),
        ("enhance", {"notch": 1e9}, "notch"),
        ("enhance", {"base": math.inf}, "base"),
        ("enhance", {"base": -1.0}, "base"),
        ("restore", {"skip": "bilinear"}, "skip"),
        ("enhance", {"residual": "yes"}, "residual"),
        ("restore", {"global_block": 1}, "global_block"),
    ],
)
def test_configs_out_of_bounds_are_refused(tiny, stage, changes, field):
    message = refusal(edit_config(tiny[stage], **changes))
    assert "bad network config" in message and field in message


def test_configs_that_are_not_json_objects_are_refused(tiny):
    for config in ("[1, 2]", "[" * 100_000 + "]" * 100_000, '"restore"'):
        assert "bad network config" in refusal(edit_meta(tiny["restore"], config=config))


def test_metadata_must_be_a_table_of_strings(tiny):
    header_list = rewrite_header(tiny["restore"], lambda h: {**h, "__metadata__": [1, 2]})
    for read in (read_info, load_weights):
        assert "not camnet weights" in refusal(header_list, read)
    assert "not camnet weights" in refusal(edit_meta(tiny["enhance"], style=5), read_info)
    assert "noise range" in refusal(edit_meta(tiny["onestage"], noise_range='{"low": 1}'), read_info)


def test_deep_nesting_is_refused_before_parsing(tiny):
    """200,000 nested lists made json.loads raise RecursionError; brackets and escaped quotes in strings do not count."""
    deep = rewrite_header(tiny["restore"], lambda h: b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")
    for read in (read_info, load_weights):
        assert "nested 200001 deep" in refusal(deep, read)
    save_weights(tiny["restore"], RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)), training_data='\\"[{' * 100)
    assert load_weights(tiny["restore"])[1].training_data == '\\"[{' * 100


def test_headers_over_a_mebibyte_are_refused(tiny):
    assert "header over 1048576 bytes" in refusal(edit_meta(tiny["restore"], training_data="x" * 2**20), read_info)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"data_offsets": [0, 10**12]}, "data offsets out of range"),
        ({"shape": [10**9, 10**9]}, "data offsets out of range"),
        ({"shape": [-1, 8]}, "shape"),
        ({"shape": [True]}, "shape"),
        ({"dtype": "F99"}, "dtype"),
        ({"dtype": ["F32"]}, "dtype"),
        ({"entry": "junk"}, "not a dtype, shape and data offsets"),
    ],
)
def test_tensor_entries_are_checked(tiny, changes, words):
    path = edit_tensor(tiny["restore"], **changes)
    for read in (read_info, load_weights):
        assert words in refusal(path, read)


def test_tensor_data_must_fill_the_file(tiny):
    """Truncated, lengthened, or a tensor's data moved over its neighbour's: refused before safetensors reads it."""
    path = tiny["restore"]
    assert load_weights(rewrite_header(path, lambda h: h))  # the helper keeps a file whole
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    assert "out of range" in refusal(path, read_info) and "(truncated)" in refusal(path)
    path.write_bytes(data + bytes(8))
    assert "out of range" in refusal(path)

    def shift(header):
        entry = header["unet.encoders.0.conv.bias"]
        entry["data_offsets"] = [offset + 4 for offset in entry["data_offsets"]]
        return header

    path.write_bytes(data)
    assert "overlap or leave gaps" in refusal(rewrite_header(path, shift))


def test_safetensors_errors_become_one_line(tiny, monkeypatch):
    """The last line of defence: whatever safetensors itself refuses."""

    def broken(*args, **kwargs):
        raise SafetensorError("Error while deserializing header:\n  InvalidOffset")

    monkeypatch.setattr(weights, "safe_open", broken)
    assert "tensors cannot be read (Error while deserializing header: InvalidOffset)" in refusal(tiny["restore"])


def test_tensors_are_checked_against_the_config_before_the_network_is_built(tiny):
    """A header asking for 1024 channels a level over a tiny net's tensors: the real network would take
    1.2 GB; the shapes are compared on the meta device first, so loading it allocates next to nothing."""
    path = edit_config(tiny["restore"], channels=[1024] * 5)
    message = refusal(path)
    assert "do not match the config (first difference: 'unet.encoders.0.conv.weight' is [1024, 5, 3, 3] in the config, [8, 5, 3, 3]" in message
    if not sys.platform.startswith("linux"):
        return  # the bound below reads ru_maxrss in KiB, as Linux gives it
    probe = (
        "import resource, sys\n"
        "from camnet_cli.weights import WeightsError, load_weights\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    load_weights(sys.argv[1])\nexcept WeightsError:\n    pass\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)"
    )
    grown = subprocess.run([sys.executable, "-c", probe, str(path)], cwd=REPO, capture_output=True, text=True, check=True)
    assert int(grown.stdout) < 200 * 1024, grown.stdout  # building it grows the peak by 1.1 GiB


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_weights_are_refused(tmp_path, value):
    """All-NaN weights used to load and develop an all-black image."""
    net = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS))
    with torch.no_grad():
        net.unet.out.bias[3] = value
    save_weights(tmp_path / "w.safetensors", net)
    assert "tensor 'unet.out.bias' holds NaN or infinite values" in refusal(tmp_path / "w.safetensors")


def test_huge_finite_weights_are_refused(tmp_path):
    """Flipped exponent bits (4e37 in one weight) loaded and overflowed to a NaN image on every file."""
    net = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS))
    with torch.no_grad():
        net.unet.out.weight.view(-1)[7] = 4.3e37
    save_weights(tmp_path / "w.safetensors", net)
    assert "tensor 'unet.out.weight' holds 4.3e+37, implausible for trained weights" in refusal(tmp_path / "w.safetensors")
    for shipped in SHIPPED_DIR.glob("*.safetensors"):
        load_weights(shipped)  # real weights are far within the bound


@pytest.mark.parametrize("damage", ["notch", "truncated"])
def test_develop_refuses_a_bad_style_in_one_line(tiny_weights, tmp_path, damage):
    bad = tmp_path / "bad.safetensors"
    shutil.copy(tiny_weights / "enhance-natural.safetensors", bad)
    if damage == "notch":
        edit_config(bad, notch=math.nan)
    else:
        bad.write_bytes(bad.read_bytes()[:-100])
    result = CliRunner().invoke(app, ["develop", str(EXAMPLE_DNG), "--style", str(bad), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0], result.stderr
    assert "Traceback" not in result.output
