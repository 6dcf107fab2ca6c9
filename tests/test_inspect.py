"""``camnet inspect``: what it reports of raw files, as JSON and as a table, and how it takes its inputs."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from camnet_cli import noise
from camnet_cli.cli import app
from camnet_cli.dng import DngMetadata
from tests.conftest import EXAMPLE_DNG, synthetic_raw, write_synthetic_dng

JSON_KEYS = [
    "path", "make", "model", "iso", "exposure_time", "f_number", "focal_length", "lens", "date", "cfa_pattern", "width", "height",
    "black_level", "white_level", "wb", "orientation", "noise",
]

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, list(map(str, args)))


@pytest.fixture
def good_dng(tmp_path):
    write_synthetic_dng(
        tmp_path / "good.dng",
        synthetic_raw(height=128, width=192),
        cfa_offset=(1, 0),
        black=(500, 510, 520, 530),
        metadata=DngMetadata(make="TESTCAM", model="T1", iso=800, exposure_time=1 / 125, f_number=2.8, focal_length=35, date="2024:05:06 07:08:09", orientation=8),
    )
    return tmp_path / "good.dng"


def test_inspect_help():
    result = _run("inspect", "--help")
    assert result.exit_code == 0
    for option in ("--json", "--recursive", "--iso", "--noise"):
        assert option in result.output


def test_inspect_json_has_exactly_the_documented_keys(good_dng):
    result = _run("inspect", good_dng, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert list(record) == JSON_KEYS
    assert record["path"] == str(good_dng)
    assert (record["make"], record["model"], record["iso"]) == ("TESTCAM", "T1", 800)
    assert record["exposure_time"] == pytest.approx(1 / 125)
    assert (record["f_number"], record["focal_length"], record["date"]) == (pytest.approx(2.8), pytest.approx(35), "2024-05-06T07:08:09")
    assert record["cfa_pattern"] == "GBRG"
    assert (record["width"], record["height"]) == (127, 192)  # rotated: the visible 127 rows become the width
    assert record["black_level"] == [500, 510, 520, 530]
    assert record["white_level"] == 16383
    assert record["wb"] == pytest.approx([2.2, 1.0, 1.6], rel=1e-5)
    assert record["orientation"] == 8
    assert list(record["noise"]) == ["shot", "read", "omega", "source"]
    assert record["noise"]["source"] == "dng"
    assert record["noise"]["omega"] == pytest.approx(1e-3 + 4e-6)


def test_inspect_table(good_dng):
    result = _run("inspect", good_dng)
    assert result.exit_code == 0
    for text in ("TESTCAM T1", "GBRG", "ISO 800", "1/125 s", "500 510 520 530 / 16383", "(dng)"):
        assert text in result.stdout


def test_inspect_real_arw(sony_arw):
    result = _run("inspect", sony_arw, "--json")
    assert result.exit_code == 0
    r = json.loads(result.stdout)
    assert (r["make"], r["model"], r["iso"], r["cfa_pattern"]) == ("SONY", "ILCE-7RM3", 3200, "RGGB")
    assert r["black_level"] == [512] * 4 and r["white_level"] == 16383
    assert (r["lens"], r["date"], r["f_number"], r["focal_length"]) == ("E 55-210mm F4.5-6.3 OSS", "2018-07-11T01:18:47", 6.3, 129)
    table = noise.from_table("SONY", "ILCE-7RM3", 3200)  # an ARW has no DNG NoiseProfile: the calibration table's
    assert r["noise"]["source"] == "table" and r["noise"]["omega"] == pytest.approx(table.omega)


def test_inspect_metadata_only_files(metadata_only):
    result = _run("inspect", *metadata_only)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(metadata_only)
    for path, line in zip(metadata_only, lines):
        assert line.startswith(f"error: {path}: ")
    assert "Traceback" not in result.output and result.stdout == ""


def test_bad_files_do_not_stop_the_others(good_dng, tmp_path):
    (tmp_path / "broken.ARW").write_bytes(b"not a raw")
    result = _run("inspect", tmp_path / "broken.ARW", good_dng, tmp_path / "missing.NEF", "--json")
    assert result.exit_code == 1
    assert [json.loads(line)["path"] for line in result.stdout.splitlines()] == [str(good_dng)]
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and "broken.ARW" in errors[0] and "no such file" in errors[1]


def test_folders_and_quoted_globs(good_dng, tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(good_dng, sub / "deeper.DNG")
    (tmp_path / "notes.txt").write_text("not a raw")

    flat = _run("inspect", tmp_path, "--json")
    assert [json.loads(line)["path"] for line in flat.stdout.splitlines()] == [str(good_dng)]
    deep = _run("inspect", tmp_path, "-r", "--json")
    assert len(deep.stdout.splitlines()) == 2
    quoted = _run("inspect", str(tmp_path / "*.dng"), "--json")  # the shell did not expand it
    assert quoted.exit_code == 0 and len(quoted.stdout.splitlines()) == 1


def test_a_pattern_that_matches_nothing_fails_as_a_missing_file_does(tmp_path):
    """Exit code 1 for both, one line each (a missing file exited 1, an unmatched pattern 2)."""
    result = _run("inspect", str(tmp_path / "*.ARW"), str(tmp_path / "gone.ARW"))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / '*.ARW'}: no such file (nothing matches this pattern)",
        f"error: {tmp_path / 'gone.ARW'}: no such file",
    ]


def test_noise_and_iso_overrides():
    user = json.loads(_run("inspect", EXAMPLE_DNG, "--json", "--noise", "0.002,0.01").stdout)
    assert user["noise"] == {"shot": 0.002, "read": 0.01, "omega": pytest.approx(0.0021), "source": "user"}
    base = json.loads(_run("inspect", EXAMPLE_DNG, "--json").stdout)
    high = json.loads(_run("inspect", EXAMPLE_DNG, "--json", "--iso", "12800").stdout)
    assert base["noise"]["source"] == high["noise"]["source"] == "table"
    assert high["noise"]["shot"] == pytest.approx(4 * base["noise"]["shot"], rel=0.05)


def test_bad_noise_option_is_a_usage_error():
    result = _run("inspect", EXAMPLE_DNG, "--noise", "loud")
    assert result.exit_code == 2 and "--noise" in result.stderr
