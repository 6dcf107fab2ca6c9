"""The raw's metadata in every output, checked with ExifTool itself (skipped where it is not installed)."""

import json
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from camnet_cli.cli import app
from tests.conftest import EXAMPLE_DNG

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")


def _exiftool(*args):
    return subprocess.run(["exiftool", *map(str, args)], capture_output=True, text=True, timeout=60).stdout


def _tags(path):
    return json.loads(_exiftool("-j", "-a", "-G1", "-n", path))[0]


def _develop(*args):
    result = CliRunner().invoke(app, ["develop", *map(str, args), "-q"])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def with_arw_metadata(sony_arw, tmp_path):
    """The small example raw carrying the real ARW's metadata (ExifTool copies it over): the
    other formats' checks without developing 18 megapixels each time."""
    raw = tmp_path / "transplant.dng"
    shutil.copy(EXAMPLE_DNG, raw)
    _exiftool("-overwrite_original", "-TagsFromFile", sony_arw, "-ExifIFD:all", "-MakerNotes", "-IFD0:Make", "-IFD0:Model", raw)
    return raw


def _check_carried(out):
    """What darktable-cli carries over and camnet 0.2 lost: exposure program and compensation,
    metering, flash, lens info, the 35 mm focal length, time offsets, the maker notes; and
    ``exiftool -validate`` finds nothing to warn about."""
    assert _exiftool("-validate", "-warning", "-a", out).split() == ["Validate", ":", "OK"]
    tags = _tags(out)
    expected = {
        "ExifIFD:LensModel": "E 55-210mm F4.5-6.3 OSS", "ExifIFD:ExposureCompensation": -1, "ExifIFD:FocalLengthIn35mmFormat": 193,
        "ExifIFD:ExposureProgram": 3, "ExifIFD:MeteringMode": 5, "ExifIFD:Flash": 16, "ExifIFD:ISO": 3200, "IFD0:Orientation": 1,
    }
    assert {k: tags.get(k) for k in expected} == expected
    assert tags["ExifIFD:LensInfo"] and tags["ExifIFD:OffsetTime"] == "+00:00" and tags["Sony:SonyModelID"]
    assert len(tags) > 200  # camnet 0.2 wrote 19
    assert tags["XMP-camnet:Style"] == "enhance-natural.safetensors"  # camnet's own record is kept
    return tags


@pytest.mark.parametrize("fmt, bits", [("jpeg", 8), ("tiff", 16), ("png", 16), ("dng", 16)])
def test_every_format_carries_and_validates(tiny_weights, with_arw_metadata, tmp_path, fmt, bits):
    """The real ARW's metadata on a small raw (developing the 18 MP ARW itself costs 20 s a format;
    README and the issue notes give that check by hand)."""
    _develop(with_arw_metadata, "-o", tmp_path / "out", "--format", fmt, "--bits", bits, "--save-linear", "--max-size", 800)
    for out in (tmp_path / "out").iterdir():  # the linear TIFF too
        tags = _check_carried(out)
        if out.suffix == ".jpg":
            width, height = (int(v) for v in _exiftool("-s3", "-Composite:ImageSize", out).split("x"))
            assert width == 800 and (tags["ExifIFD:ExifImageWidth"], tags["ExifIFD:ExifImageHeight"]) == (width, height)


def test_gps_and_xmp_rating_are_carried_but_not_the_raws_own_structure(tiny_weights, tmp_path):
    raw = tmp_path / "geo.dng"
    shutil.copy(EXAMPLE_DNG, raw)
    _exiftool("-overwrite_original", "-GPSLatitude=48.8584", "-GPSLatitudeRef=N", "-GPSLongitude=2.2945", "-GPSLongitudeRef=E", "-XMP-xmp:Rating=4", raw)
    _develop(raw, "-o", tmp_path / "out", "--format", "tiff")
    tags = _tags(tmp_path / "out" / "geo.tif")
    assert tags["GPS:GPSLatitude"] == pytest.approx(48.8584) and tags["XMP-xmp:Rating"] == 4
    # The DNG's mosaic and colour tags describe its own pixels: a TIFF that carried them would pass for a raw.
    assert not {k for k in tags if k.split(":")[-1] in ("DNGVersion", "ColorMatrix1", "AsShotNeutral", "CFAPattern2", "BlackLevel")}
    # exiftool -validate asks a TIFF with GPS for a GPSProcessingMethod, which this raw lacks and camnet
    # does not invent; a JPEG has no such rule.
    _develop(raw, "-o", tmp_path / "out")
    assert _exiftool("-validate", "-warning", "-a", tmp_path / "out" / "geo.jpg").split() == ["Validate", ":", "OK"]
    assert _tags(tmp_path / "out" / "geo.jpg")["GPS:GPSLongitude"] == pytest.approx(2.2945)


def test_without_exiftool_camnets_own_exif_still_validates_for_png(tiny_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("CAMNET_EXIFTOOL", "off")
    _develop(EXAMPLE_DNG, "-o", tmp_path, "--format", "png")
    out = tmp_path / "sony_a7r3_iso3200_crop.png"
    assert _exiftool("-validate", "-warning", "-a", out).split() == ["Validate", ":", "OK"]
    tags = _tags(out)
    assert tags["IFD0:Model"] == "ILCE-7RM3" and "ExifIFD:ExposureProgram" not in tags  # only what camnet reads itself


def test_the_warm_up_runs_after_its_signal_and_leaves_exiftool_ready(tmp_path, monkeypatch):
    """The entry point warms ExifTool up with one throwaway copy once the first raw has decoded:
    the copy is made (the raw's camera lands in the throwaway JPEG), nothing of it is left behind,
    and the process it started serves the next copy."""
    import tempfile
    import threading

    from camnet_cli import metadata

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(metadata, "_shared", None)
    go, seen = threading.Event(), []
    real = metadata.copy_from_raw

    def copy(raw, target, **options):
        done = real(raw, target, **options)
        seen.append((done, _tags(target).get("IFD0:Model")))
        return done

    monkeypatch.setattr(metadata, "copy_from_raw", copy)
    thread = metadata.warm_up(EXAMPLE_DNG, after=go.wait)
    assert thread is not None
    thread.join(0.3)
    assert thread.is_alive() and seen == []
    go.set()
    thread.join(60)
    assert seen == [(True, "ILCE-7RM3")] and list(tmp_path.iterdir()) == []
    assert metadata._shared is not None and metadata._shared._process.poll() is None


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="util-linux's setpriv is not installed")
def test_exiftool_does_not_outlive_a_killed_camnet():
    """ExifTool -stay_open polls its input for ever once camnet is gone: killed with -9 (or by the OOM
    killer), camnet must not leave it behind."""
    import os
    import signal
    import sys
    import time
    from pathlib import Path

    code = "import time; from camnet_cli import metadata; metadata.start(); print(metadata._shared._process.pid, flush=True); time.sleep(60)"
    camnet = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    tool = int(camnet.stdout.readline())
    status = Path(f"/proc/{tool}/status")
    deadline = time.monotonic() + 10
    while "Name:\tsetpriv" in status.read_text() and time.monotonic() < deadline:  # until it is ExifTool
        time.sleep(0.01)
    assert "exiftool" in Path(f"/proc/{tool}/cmdline").read_bytes().decode(errors="replace")
    os.kill(camnet.pid, signal.SIGKILL)
    camnet.wait(10)
    deadline = time.monotonic() + 10
    while status.exists() and "\nState:\tZ" not in status.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not status.exists() or "\nState:\tZ" in status.read_text()
