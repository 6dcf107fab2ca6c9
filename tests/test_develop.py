"""``camnet develop`` as users run it: CliRunner in-process, and real processes for signals."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import exifread
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms
from typer.testing import CliRunner

from camnet_cli import metrics
from camnet_cli.batch import source_id
from camnet_cli.cli import app
from camnet_cli.color import camera_to_xyz
from camnet_cli.dng import DngMetadata
from camnet_cli.export import read_provenance as export_read
from camnet_cli.model import EnhanceNet, EnhanceNetConfig, RestoreNet, RestoreNetConfig
from camnet_cli.raw import load_frame
from camnet_cli.weights import save_weights
from tests.conftest import EXAMPLE_DNG, METADATA_ONLY, REPO, TINY_WIDTHS, synthetic_raw, write_synthetic_dng

runner = CliRunner()


def _psnr(a, b):
    return metrics.psnr(a, b).item()


def _run(*args):
    return runner.invoke(app, ["develop", *map(str, args)])


@pytest.fixture
def dng(tmp_path):
    path = tmp_path / "in" / "shot.dng"
    path.parent.mkdir()
    write_synthetic_dng(
        path, synthetic_raw(height=96, width=128),
        metadata=DngMetadata(make="TESTCAM", model="T1", iso=1600, exposure_time=1 / 250, f_number=2.8, orientation=6),
    )
    return path


def _exif(path):
    with open(path, "rb") as f:
        return {k: str(v) for k, v in exifread.process_file(f, details=False).items()}


def test_help():
    result = runner.invoke(app, ["develop", "--help"])
    assert result.exit_code == 0 and "--device" in result.output


def test_develops_an_upright_jpeg_with_exif_and_icc(tiny_weights, dng, tmp_path):
    result = _run(dng, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "shot.jpg"
    img = Image.open(out)
    assert img.size == (96, 128)  # orientation 6: the 128x96 frame stands up
    tags = _exif(out)
    assert (tags["Image Make"], tags["Image Model"], tags["EXIF ISOSpeedRatings"]) == ("TESTCAM", "T1", "1600")
    assert tags["Image Orientation"] == "Horizontal (normal)" and tags["Image Software"].startswith("camnet")
    assert "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(img.info["icc_profile"])))
    assert "developed 1, skipped 0, failed 0" in result.stderr


def test_formats_bits_and_linear(tiny_weights, dng, tmp_path):
    result = _run(dng, "-o", tmp_path, "--format", "tiff", "--bits", "16", "--save-linear")
    assert result.exit_code == 0, result.output
    assert tifffile.imread(tmp_path / "shot.tif").dtype == np.uint16
    linear = tifffile.TiffFile(tmp_path / "shot.linear.tif")
    assert linear.pages[0].dtype == np.uint16
    profile = ImageCms.ImageCmsProfile(io.BytesIO(bytes(linear.pages[0].tags[34675].value)))
    assert "linear" in ImageCms.getProfileDescription(profile)
    assert _run(dng, "-o", tmp_path, "--format", "png", "--bits", "16").exit_code == 0
    assert (tmp_path / "shot.png").read_bytes()[24] == 16  # IHDR bit depth


def test_real_sony_arw(tiny_weights, sony_arw, tmp_path):
    result = _run(sony_arw, "-o", tmp_path)
    assert result.exit_code == 0, result.output
    out = tmp_path / "sony_ILCE-7RM3_iso3200_DSC2164.jpg"
    tags = _exif(out)
    assert (tags["Image Make"], tags["Image Model"], tags["EXIF ISOSpeedRatings"]) == ("SONY", "ILCE-7RM3", "3200")
    img = Image.open(out)
    assert img.size == (5184, 3464) and img.info.get("icc_profile")


def test_bad_files_fail_one_line_each_and_the_batch_goes_on(tiny_weights, dng, tmp_path):
    (tmp_path / "notes.NEF").write_text("this is not a raw file")
    cut = tmp_path / "cut.dng"
    cut.write_bytes(dng.read_bytes()[: len(dng.read_bytes()) // 2])
    bad = [tmp_path / "notes.NEF", cut]
    if METADATA_ONLY.is_dir():
        bad.append(METADATA_ONLY / "exiftool_Nikon.nef")
    result = _run(dng, *bad, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert (tmp_path / "out" / "shot.jpg").exists()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(bad)
    for path, line in zip(bad, errors):
        assert str(path) in line
    assert "Traceback" not in result.output


def test_second_run_skips_and_overwrite_replaces(tiny_weights, dng, tmp_path):
    assert _run(dng, "-o", tmp_path).exit_code == 0
    out = tmp_path / "shot.jpg"
    first = out.stat().st_mtime_ns
    again = _run(dng, "-o", tmp_path)
    assert again.exit_code == 0 and "skipped" in again.stderr and out.stat().st_mtime_ns == first
    time.sleep(0.01)
    replaced = _run(dng, "-o", tmp_path, "--overwrite")
    assert replaced.exit_code == 0 and out.stat().st_mtime_ns > first


def test_json_lines(tiny_weights, dng, tmp_path):
    (tmp_path / "bad.ARW").write_bytes(b"nope")
    result = _run(dng, tmp_path / "bad.ARW", "-o", tmp_path / "out", "--json")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in records] == ["ok", "failed"]
    assert all(list(r) == ["input", "output", "seconds", "status", "error"] for r in records)
    assert records[0]["output"].endswith("shot.jpg") and records[1]["error"]


def _calibrate(net, x):
    """Scale a random net's 1x1 output layer so its images sit mid-range (mean 0.45, spread 0.15).

    A random network's output lies far outside [0, 1] and clips to 0/1 everywhere, where
    any difference flips whole pixels; calibrated, its output is an image with structure.
    """
    with torch.no_grad():
        y = net.unet(x)
        mean, std = y.mean(dim=(0, 2, 3)), y.std(dim=(0, 2, 3))
        net.unet.out.weight /= (std / 0.15)[:, None, None, None]
        net.unet.out.bias.copy_(0.45 - (mean - net.unet.out.bias) * 0.15 / std)
    return net


def test_tiled_and_whole_agree(tmp_path, monkeypatch):
    """--tile 128 vs --tile 0 on a 512x768 raw (3x4 tiles), through random (calibrated) tiny networks."""
    torch.manual_seed(0)
    raw = synthetic_raw(height=512, width=768)
    write_synthetic_dng(tmp_path / "big.dng", raw)
    packed = torch.nn.functional.pixel_unshuffle(raw.mosaic.clamp(0, 1)[None], 2)
    net = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS))
    restore = _calibrate(net, net.prepare(packed, 1e-3))
    frame = load_frame(tmp_path / "big.dng")
    with torch.no_grad():  # what Enhance-Net will see: the restoration, white-balanced, in XYZ
        xyz = camera_to_xyz(restore(torch.from_numpy(frame.packed)[None], frame.noise.omega), frame.wb, frame.cam_to_xyz)
    enhance = EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS, base=0.0))  # the UNet alone: a random image to compare
    enhance = _calibrate(enhance, enhance.prepare(xyz))
    save_weights(tmp_path / "restore-default.safetensors", restore)
    save_weights(tmp_path / "enhance-natural.safetensors", enhance, extra={"restore": "default"})
    monkeypatch.setenv("CAMNET_WEIGHTS", str(tmp_path))
    for tile in (0, 128):
        args = (tmp_path / "big.dng", "-o", tmp_path / f"t{tile}", "--tile", tile, "--format", "tiff", "--bits", "16", "--precision", "fp32")
        assert _run(*args).exit_code == 0
    whole = tifffile.imread(tmp_path / "t0" / "big.tif").astype(np.float64) / 65535
    tiled = tifffile.imread(tmp_path / "t128" / "big.tif").astype(np.float64) / 65535
    assert 0.05 < whole.std() and 0.01 < whole.mean() < 0.99 and (whole == 0).mean() < 0.1  # a real image, not clipped
    assert _psnr(torch.from_numpy(tiled), torch.from_numpy(whole)) >= 45


def test_name_collisions_do_not_overwrite(tiny_weights, dng, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(dng, other / "shot.dng")
    result = _run(dng, other / "shot.dng", "-o", tmp_path / "out")
    assert result.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(["shot.jpg", f"shot-{source_id(other / 'shot.dng')[:8]}.jpg"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["{empty}"], "no input files"),
        (["{dng}", "-o", "{file}/sub"], "not writable"),
        (["{dng}", "--format", "jpeg", "--bits", "16"], "--bits"),
        (["{dng}", "--format", "gif"], "--format"),
        (["{dng}", "--wb", "warm"], "--wb"),
        (["{dng}", "--chroma-nr", "strong"], "--chroma-nr"),
        (["{dng}", "--style", "expertC"], "unknown style 'expertC'"),
        (["{dng}", "--ensemble", "9"], "--ensemble"),
        (["{dng}", "--device", "cuda:7" if not torch.cuda.is_available() else "tpu"], "--device"),
    ],
)
def test_usage_errors_exit_2(tiny_weights, dng, tmp_path, args, message):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    fill = {"empty": tmp_path / "empty", "dng": dng, "file": tmp_path / "afile"}
    result = _run(*[a.format(**fill) for a in args], *(["-o", tmp_path / "o"] if "-o" not in args else []))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (tmp_path / "o").exists()  # a usage error creates no output folder


def test_output_may_name_the_file_and_formats_have_their_short_names(tiny_weights, dng, tmp_path):
    """-o result.jpg writes that file (it made a folder result.jpg/); -o's extension sets the format;
    --format jpg and tif are taken."""
    assert _run(dng, "-o", tmp_path / "result.jpg").exit_code == 0
    assert (tmp_path / "result.jpg").is_file() and Image.open(tmp_path / "result.jpg").format == "JPEG"
    assert _run(dng, "-o", tmp_path / "sub" / "result.tif", "--bits", "16").exit_code == 0
    assert tifffile.imread(tmp_path / "sub" / "result.tif").dtype == np.uint16
    for alias, kind in (("jpg", "JPEG"), ("tif", "TIFF")):
        assert _run(dng, "-o", tmp_path / alias, "--format", alias).exit_code == 0
        assert [Image.open(p).format for p in (tmp_path / alias).iterdir()] == [kind]
    two = _run(dng, dng.with_name("other.dng"), "-o", tmp_path / "both.jpg")
    assert two.exit_code == 2 and "names one file, but there are 2 inputs" in two.stderr
    clash = _run(dng, "-o", tmp_path / "x.png", "--format", "jpeg")
    assert clash.exit_code == 2 and "a png name, but --format jpeg" in clash.stderr


def test_a_missing_file_and_an_unmatched_pattern_both_exit_1(tiny_weights, dng, tmp_path):
    result = _run(dng, tmp_path / "gone.ARW", tmp_path / "*.NEF", "-o", tmp_path / "out", "-q")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'gone.ARW'}: no such file",
        f"error: {tmp_path / '*.NEF'}: no such file (nothing matches this pattern)",
    ]
    assert (tmp_path / "out" / "shot.jpg").exists()


@pytest.fixture
def batch(tmp_path):
    """Four small raws: where a run is stopped is set by tests/kill_after.py, not by timing."""
    paths = []
    base = synthetic_raw(height=96, width=128)
    for i in range(4):
        paths.append(tmp_path / f"r{i}.dng")
        write_synthetic_dng(paths[-1], base)
    return paths


def _stopped_at(point, n, args, env):
    """``camnet develop ARGS`` in a real process, SIGKILLed or interrupted at its n-th file write."""
    return subprocess.run([sys.executable, "-m", "tests.kill_after", point, str(n), "develop", *map(str, args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _all_complete(folder):
    for path in folder.glob("*.png"):
        with Image.open(path) as img:
            img.load()  # raises on a truncated file


def test_sigkill_mid_batch_leaves_no_partial_file(tiny_weights, batch, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "CAMNET_WEIGHTS": str(tiny_weights)}
    killed = _stopped_at("write", 3, [*batch, "-o", out, "--format", "png", "--bits", "16", "-j", "1"], env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert list(out.glob(".*.tmp"))  # the half-written temporary is there, under its own name
    _all_complete(out)
    finished = {p.name for p in out.glob("*.png")}
    assert len(finished) == 2 < len(batch)
    # A new run finishes the batch, skipping what is done and clearing stale temporaries.
    rerun = _run(*batch, "-o", out, "--format", "png", "--bits", "16")
    assert rerun.exit_code == 0, rerun.output
    assert len(list(out.glob("*.png"))) == len(batch) and not list(out.glob(".*.tmp"))
    _all_complete(out)


def test_ctrl_c_stops_after_the_current_file(tiny_weights, batch, tmp_path):
    """A Ctrl-C as the first file is written: that file and at most the one being developed are finished, no more."""
    out = tmp_path / "out"
    proc = _stopped_at("interrupt", 1, [*batch, "-o", out, "--format", "png", "-j", "1"], {**os.environ, "CAMNET_WEIGHTS": str(tiny_weights)})
    assert proc.returncode == 130, proc.stderr
    done = len(list(out.glob("*.png")))
    assert f"interrupted: {done} of {len(batch)} files developed" in proc.stderr and 1 <= done <= 2
    assert "stopping after the files in progress (Ctrl-C again to abort)" in proc.stderr  # said at once, not after the wait
    _all_complete(out)


def test_chroma_noise_reduction_option(tmp_path, monkeypatch):
    """--chroma-nr off develops the shipped example without it: more colour noise in the same picture."""
    monkeypatch.setenv("CAMNET_WEIGHTS", str(tmp_path / "nothing"))
    images = {}
    for setting in ("auto", "off"):
        result = _run(EXAMPLE_DNG, "-o", tmp_path / setting, "--format", "png", "--chroma-nr", setting)
        assert result.exit_code == 0, result.output
        images[setting] = np.asarray(Image.open(tmp_path / setting / "sony_a7r3_iso3200_crop.png")).astype(np.float32)

    def colour_noise(img):  # the colour differences' pixel-to-pixel variation
        diff = img - img.mean(2, keepdims=True)
        return np.abs(np.diff(diff, axis=1)).mean()

    assert colour_noise(images["auto"]) < 0.7 * colour_noise(images["off"])
    assert np.abs(images["auto"].mean(2) - images["off"].mean(2)).mean() < 1.0  # the brightness stays


def test_new_user_default_develop_of_the_shipped_example(tmp_path, monkeypatch):
    """No weights installed by the user: the shipped default style develops the shipped raw."""
    monkeypatch.setenv("CAMNET_WEIGHTS", str(tmp_path / "nothing"))
    result = _run(EXAMPLE_DNG, "-o", tmp_path)
    assert result.exit_code == 0, result.output
    img = np.asarray(Image.open(tmp_path / "sony_a7r3_iso3200_crop.jpg")).astype(np.float32)
    assert img.shape == (640, 960, 3)
    assert 10 < img.mean() < 200 and img.std() > 5  # a picture, not black, white or flat
    assert img[..., 2].mean() > img[..., 0].mean()  # the stage light is blue


def test_a_bug_on_one_file_is_one_line_and_exit_code_3(tiny_weights, dng, tmp_path, monkeypatch):
    """An internal error is that file's one line, naming it; the batch goes on; exit code 3 tells a
    script a bug happened; ``--debug`` (before or after the command) adds the traceback."""
    from camnet_cli import batch, commands

    other = tmp_path / "other.dng"
    other.write_bytes(dng.read_bytes())
    real = batch.develop_frame

    def develop_frame(engine, frame, *args, **kwargs):
        if frame.path.name == "shot.dng":
            raise OverflowError("int too large to convert")
        return real(engine, frame, *args, **kwargs)

    monkeypatch.setattr(batch, "develop_frame", develop_frame)
    monkeypatch.setattr(commands, "DEBUG", False)
    result = _run(dng, other, "-o", tmp_path / "out")
    assert result.exit_code == 3, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {dng}: internal error (OverflowError: int too large to convert) (a bug: run with --debug for the traceback, and report it)"]
    assert "Traceback" not in result.output and (tmp_path / "out" / "other.jpg").exists()
    debug = runner.invoke(app, ["--debug", "develop", str(dng), "-o", str(tmp_path / "dbg")])
    assert debug.exit_code == 3 and "Traceback" in debug.stderr and "raise OverflowError" in debug.stderr


def test_a_file_name_with_a_newline_stays_on_one_line(tiny_weights, tmp_path):
    odd = tmp_path / "two\nlines.dng"
    odd.write_bytes(b"not a raw file")
    result = _run(odd, "-o", tmp_path / "out", "--quiet")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {tmp_path}/two\\nlines.dng: not a raw file LibRaw can read"]


def test_two_runs_into_one_folder_develop_each_file_once(tiny_weights, batch, tmp_path):
    """The same command started twice at once (or a second time while the first runs): every raw is
    developed exactly once between them, neither run fails, and nothing is left half-done (fails on
    879fa04: both developed every file, and one could delete the other's temporaries)."""
    out = tmp_path / "out"
    out.mkdir()
    args = [sys.executable, "-m", "camnet_cli", "develop", *map(str, batch), "-o", str(out), "--format", "tiff", "--bits", "16", "--json", "-j", "1"]
    env = {**os.environ, "CAMNET_WEIGHTS": str(tiny_weights)}
    runs = [subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    records = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
        records += [json.loads(line) for line in stdout.splitlines()]
    developed = sorted(r["input"] for r in records if r["status"] == "ok")
    assert developed == sorted(map(str, batch))  # each once, by one run or the other
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{p.stem}.tif" for p in batch)
    for path in out.iterdir():
        assert tifffile.imread(path).shape[-1] == 3


def test_shards_run_at_once_develop_every_file_exactly_once(tiny_weights, tmp_path):
    """--shard 1/3, 2/3 and 3/3 started together on one folder: each file by one of them, none twice."""
    folder = tmp_path / "in"
    folder.mkdir()
    base = synthetic_raw(height=64, width=96)
    for i in range(7):
        write_synthetic_dng(folder / f"f{i}.dng", base)
    env = {**os.environ, "CAMNET_WEIGHTS": str(tiny_weights)}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "camnet_cli", "develop", str(folder), "-o", str(tmp_path / "out"), "--json", "-j", "1", "--shard", f"{i}/3"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in (1, 2, 3)
    ]
    parts = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
        parts.append([json.loads(line)["input"] for line in stdout.splitlines()])
    assert sorted(sum(parts, [])) == sorted(str(p) for p in folder.iterdir())  # all, each once
    assert [len(p) for p in parts] == [3, 2, 2]
    assert len(list((tmp_path / "out").glob("*.jpg"))) == 7
    for bad in ("0/3", "4/3", "1/0", "a/b", "2"):
        assert _run(folder, "--shard", bad, "-o", tmp_path / "x").exit_code == 2


def test_max_size_limits_the_long_side_after_orientation(tiny_weights, dng, tmp_path):
    """The dng is 128 wide and 96 high as stored, and turned (orientation 6): upright 96 x 128."""
    result = _run(dng, "-o", tmp_path, "--max-size", "64", "--save-linear")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "shot.jpg") as img:
        assert img.size == (48, 64) and img.info.get("icc_profile")
    exif = _exif(tmp_path / "shot.jpg")
    assert (exif["EXIF ExifImageWidth"], exif["EXIF ExifImageLength"], exif["Image Orientation"]) == ("48", "64", "Horizontal (normal)")
    assert tifffile.imread(tmp_path / "shot.linear.tif").shape == (64, 48, 3)
    assert _run(dng, "-o", tmp_path / "big", "--max-size", "4000").exit_code == 0  # never enlarged
    assert Image.open(tmp_path / "big" / "shot.jpg").size == (96, 128)


def test_format_dng_is_the_restoration_as_a_linear_dng_libraw_reads(dng, tmp_path, monkeypatch):
    """--format dng: LibRaw renders it with the camera white balance as camnet's own linear output
    (--save-linear, from the same run); the orientation is the tag's, the XMP says what made it.
    The shipped weights: a random network's camera RGB is far outside what a DNG holds."""
    import rawpy

    monkeypatch.setenv("CAMNET_WEIGHTS", str(tmp_path / "none"))
    assert _run(EXAMPLE_DNG, dng, "--format", "dng", "--save-linear", "-o", tmp_path).exit_code == 0
    linear = tifffile.imread(tmp_path / "sony_a7r3_iso3200_crop.linear.tif").astype(np.float32) / 65535
    with rawpy.imread(str(tmp_path / "sony_a7r3_iso3200_crop.dng")) as raw:
        assert raw.raw_type == rawpy.RawType.Stack
        gains = max(raw.camera_whitebalance[:3]) / min(raw.camera_whitebalance[:3])
        # As tests/test_dng.py explains: LibRaw clips each channel after white balance unless told not to.
        out = raw.postprocess(
            use_camera_wb=True, output_color=rawpy.ColorSpace.sRGB, gamma=(1, 1), no_auto_bright=True, output_bps=16,
            highlight_mode=rawpy.HighlightMode.Ignore, bright=gains, adjust_maximum_thr=0.0,
        )
    libraw = out.astype(np.float32) / 65535
    assert libraw.shape == linear.shape
    assert _psnr(torch.from_numpy(libraw), torch.from_numpy(linear)) >= 40  # 73 dB measured
    with rawpy.imread(str(tmp_path / "shot.dng")) as raw:  # stored 128 x 96, orientation 6 in the tag
        assert raw.raw_image.shape[:2] == (96, 128) and raw.sizes.flip == 6
    assert export_read(tmp_path / "shot.dng")["Source"]
    assert not (tmp_path / "shot.jpg").exists()


def test_a_dng_developed_to_dng_in_its_own_folder_is_never_overwritten(tiny_weights, dng, tmp_path):
    original = dng.read_bytes()
    for extra in ([], ["--overwrite"]):
        assert _run(dng, "--format", "dng", "-o", dng.parent, *extra).exit_code == 0
        assert dng.read_bytes() == original
    assert sorted(p.name for p in dng.parent.iterdir()) == sorted([dng.name, f"shot-{source_id(dng)[:8]}.dng"])


def test_recursive_keeps_the_tree_and_names_follow_the_template(tiny_weights, tmp_path):
    base = synthetic_raw(height=64, width=96)
    meta = DngMetadata(make="TESTCAM", model="T1/II", iso=1600, date="2024:05:06 07:08:09")
    for sub in ("a", "b/c"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        write_synthetic_dng(tmp_path / "in" / sub / "x.dng", base, metadata=meta)
    assert _run(tmp_path / "in", "-r", "-o", tmp_path / "out").exit_code == 0
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.jpg")) == ["a/x.jpg", "b/c/x.jpg"]
    result = _run(tmp_path / "in" / "a" / "x.dng", "--name", "{date}_{time}-{model}-{iso}-{stem}-{style}", "-o", tmp_path / "named")
    assert result.exit_code == 0
    assert [p.name for p in (tmp_path / "named").iterdir()] == ["20240506_070809-T1_II-1600-x-natural.jpg"]
    for bad in ("{nope}", "plain", "{stem"):
        refused = _run(tmp_path / "in", "--name", bad, "-o", tmp_path / "x")
        assert refused.exit_code == 2 and "--name" in refused.stderr


def test_colour_space_option_writes_the_profile_and_exif_that_say_it(tiny_weights, dng, tmp_path):
    assert _run(dng, "--color-space", "adobe", "--format", "tiff", "--bits", "16", "-o", tmp_path).exit_code == 0
    with Image.open(tmp_path / "shot.tif") as img:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(img.info["icc_profile"]))
    assert "Adobe RGB" in ImageCms.getProfileDescription(profile)
    assert _run(dng, "--color-space", "p3", "-o", tmp_path / "p3").exit_code == 0
    assert _exif(tmp_path / "p3" / "shot.jpg")["EXIF ColorSpace"] == "Uncalibrated"
    refused = _run(dng, "--color-space", "rec2020", "-o", tmp_path / "x")
    assert refused.exit_code == 2 and "--color-space" in refused.stderr


def test_linear_bits_32_is_a_float_tiff_with_the_highlights_kept(tiny_weights, dng, tmp_path):
    assert _run(dng, "--save-linear", "--linear-bits", "32", "-o", tmp_path / "f").exit_code == 0
    assert _run(dng, "--save-linear", "-o", tmp_path / "i").exit_code == 0
    floats = tifffile.imread(tmp_path / "f" / "shot.linear.tif")
    ints = tifffile.imread(tmp_path / "i" / "shot.linear.tif").astype(np.float32) / 65535
    assert floats.dtype == np.float32 and floats.shape == ints.shape
    inside = (floats > 0) & (floats < 1)
    assert np.abs(floats[inside] - ints[inside]).max() < 1e-4  # the same values where 16 bits can hold them
    assert (floats > 1).any() or (floats < 0).any()  # a random network's values beyond [0, 1] are kept
    assert _run(dng, "--save-linear", "--linear-bits", "8", "-o", tmp_path / "x").exit_code == 2


def test_the_shipped_example_develops_to_the_reference_pixels(tmp_path, monkeypatch):
    """Speed work must not change the picture: the shipped style on the shipped raw (fp32, so the
    CPU's bf16 support does not matter) within 50 dB PSNR of the reference made when the weights
    last changed. New weights make a new reference:
    camnet develop examples/sony_a7r3_iso3200_crop.dng --format png --precision fp32 -o OUT,
    its pixels saved as tests/data/example-natural.png."""
    monkeypatch.setenv("CAMNET_WEIGHTS", str(tmp_path / "nothing"))
    result = _run(EXAMPLE_DNG, "-o", tmp_path, "--format", "png", "--precision", "fp32")
    assert result.exit_code == 0, result.output
    ours = np.asarray(Image.open(tmp_path / "sony_a7r3_iso3200_crop.png")).astype(np.float64)
    reference = np.asarray(Image.open(REPO / "tests" / "data" / "example-natural.png")).astype(np.float64)
    mse = np.mean((ours - reference) ** 2)
    assert mse == 0 or 10 * np.log10(255**2 / mse) >= 50
