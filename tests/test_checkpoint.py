import dataclasses

import pytest
import torch

from camnet_cli import checkpoint
from camnet_cli.checkpoint import CheckpointError
from camnet_cli.model import RestoreNet, RestoreNetConfig
from camnet_cli.train import TrainConfig
from tests.conftest import TINY_WIDTHS


def test_checkpoint_round_trip_and_never_unpickles(tmp_path, monkeypatch):
    net = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS))
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
