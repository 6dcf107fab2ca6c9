import json
import shutil

import torch
from typer.testing import CliRunner

from camnet_cli.cli import app
from camnet_cli.engine import pick_precision
from tests.conftest import EXAMPLE_DNG

runner = CliRunner()
KEYS = ["params", "gflops", "ms_median", "ms_min", "ms_max", "mpix_per_s", "peak_mem_mb", "device", "precision", "resolution"]


def _bench(*args):
    return runner.invoke(app, ["bench", *map(str, args)])


def test_help():
    result = _bench("--help")
    assert result.exit_code == 0 and "--device" in result.output


def test_json_has_the_documented_keys():
    result = _bench("--resolution", "256x192", "--model", "lite", "--device", "cpu", "--iters", "2", "--warmup", "0", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert list(record) == KEYS
    assert record["params"] == 6_637_656 and record["resolution"] == "256x192"
    assert record["mpix_per_s"] > 0
    # In proportion to the 12 MP count, plus Enhance-Net's padding of small frames to 144 packed pixels
    # (and its notch, 0.03 GFLOPs here).
    proportional = 829 * 256 * 192 / (4032 * 3024)
    assert proportional <= record["gflops"] <= 1.6 * proportional
    auto = pick_precision("auto", torch.device("cpu"))  # --precision auto, resolved as the engine does on this CPU
    assert record["peak_mem_mb"] > 0 and record["precision"] == {torch.bfloat16: "bf16", torch.float32: "fp32"}[auto]


def test_table_output_and_tiling():
    result = _bench("--resolution", "640x480", "--model", "lite", "--device", "cpu", "--iters", "1", "--warmup", "0", "--tile", "160", "--precision", "fp32")
    assert result.exit_code == 0, result.output
    for text in ("parameters", "6,637,656", "latency", "peak memory", "restore 160 px", "fp32", "torch"):
        assert text in result.stdout


def test_end_to_end_stages(tiny_weights, tmp_path):
    (tmp_path / "bad.ARW").write_bytes(b"not a raw")
    result = _bench("--e2e", EXAMPLE_DNG, tmp_path / "bad.ARW", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    good, bad = record["files"]
    assert good["status"] == "ok" and all(good[s] > 0 for s in ("decode", "restore", "enhance", "networks", "encode"))
    assert good["networks"] < good["restore"] + good["enhance"]  # the networks' passes are part of both stages
    assert bad["status"] == "failed"
    assert record["files_per_s"] > 0
    # the share of the files' time outside the networks' passes, and of the steps around them
    assert 0 < record["around_networks_share"] < record["outside_networks_share"] < 1
    assert record["weights"] == "style natural"


def test_whole_process_comparison(tiny_weights, tmp_path):
    """camnet and the baselines each run as a process per file; a tool not installed is left out,
    a file one cannot develop is reported and the ratio is of the files both developed."""
    (tmp_path / "bad.ARW").write_bytes(b"not a raw")
    result = _bench("--e2e", EXAMPLE_DNG, tmp_path / "bad.ARW", "--baseline", "libraw,darktable", "--iters", "1", "--warmup", "0", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    has_darktable = shutil.which("darktable-cli") is not None
    assert list(record["tools"]) == ["camnet", "libraw"] + ["darktable"] * has_darktable
    assert has_darktable or "darktable-cli" in record["skipped"]["darktable"]
    for name, tool in record["tools"].items():
        assert len(tool["wall_s"]) == 1 and tool["wall_s"][0] > 0 and tool["cpu_s"][0] > 0 and tool["peak_rss_mb"] > 10, name
        assert len(tool["errors"]) == 1 and tool["errors"][0].startswith("exit status"), name
    assert "bad.ARW" in record["tools"]["camnet"]["errors"][0]
    # camnet's process imports torch and runs two networks: it costs more than LibRaw's
    libraw = record["tools"]["libraw"]
    assert libraw["camnet_wall_ratio"] > 1 and libraw["camnet_cpu_ratio"] > 1
    assert record["tools"]["camnet"]["peak_rss_mb"] > libraw["peak_rss_mb"]


def test_end_to_end_without_weights_times_random_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMNET_WEIGHTS", str(tmp_path))
    monkeypatch.setattr("camnet_cli.weights.SHIPPED_DIR", tmp_path)
    result = _bench("--e2e", EXAMPLE_DNG, "--model", "lite", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "random lite weights" in result.stdout and "files/s" in result.stdout


def test_usage_errors():
    for args in (["--resolution", "big"], ["--model", "huge"], ["--e2e"], ["--e2e", EXAMPLE_DNG, "--baseline", "dcraw"], ["--baseline", "libraw"], ["--e2e", EXAMPLE_DNG, "--baseline", ","]):
        result = _bench(*args)
        assert result.exit_code == 2, args


def test_a_command_is_measured_apart_from_camnet():
    """A child's peak RSS starts from its parent's at exec: the launcher keeps this process's
    (torch's) memory out of the command's figure; a command that is not there is an error."""
    import os
    import resource
    import sys

    from camnet_cli.benchmark import time_process

    mine = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert mine > 200  # pytest with torch imported
    run = time_process([sys.executable, "-c", "print('out')"], dict(os.environ))
    assert not run.error and 0 < run.wall and run.cpu > 0 and 3 < run.peak_rss_mb < 60, run
    failed = time_process([sys.executable, "-c", "import sys; sys.exit('error: no such file x.ARW')"], dict(os.environ))
    assert failed.error == "exit status 1: error: no such file x.ARW"
    killed = time_process([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], dict(os.environ))
    assert killed.error == "exit status -9"
    missing = time_process(["camnet-no-such-tool"], dict(os.environ))
    assert missing.error.startswith("camnet-no-such-tool: ") and missing.wall == 0
