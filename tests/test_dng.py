import os
import re
import shutil
import subprocess
from pathlib import Path

import exifread
import numpy as np
import pytest
import rawpy
import tifffile
import torch
import torch.nn.functional as F
from PIL import Image

from camnet_cli import color, metrics
from camnet_cli.dng import DngMetadata, to_dn, write_dng, write_linear_dng
from camnet_cli.engine import Engine
from camnet_cli.raw import Frame, load_frame
from camnet_cli.weights import SHIPPED_DIR, load_weights
from tests.conftest import EXAMPLE_DNG, SONY_XYZ_TO_CAM


def test_to_dn_per_site_black_and_clipping():
    x = np.array([[0.0, 0.5], [1.0, -1.0]])
    dn = to_dn(x, [100, 200, 300, 400], 1100)
    assert dn.dtype == np.uint16
    assert dn.tolist() == [[100, 650], [1100, 0]]  # -1.0 would be below 0 DN: clipped


def test_written_file_reads_in_libraw_and_exifread(tmp_path):
    dn = np.random.default_rng(0).integers(600, 15000, (32, 48), dtype=np.uint16)
    meta = DngMetadata(make="ACME", model="Cam 2", iso=400, exposure_time=0.004, f_number=4.0, date="2020:01:02 03:04:05")
    write_dng(tmp_path / "f.dng", dn, cfa_pattern="GRBG", noise_profile=(1e-4, 1e-6), metadata=meta)
    with rawpy.imread(str(tmp_path / "f.dng")) as raw:
        np.testing.assert_array_equal(raw.raw_image_visible, dn)
        assert raw.raw_colors_visible[0, 0] == 1  # green first
    with open(tmp_path / "f.dng", "rb") as f:
        tags = exifread.process_file(f, details=False)
    assert str(tags["Image Make"]) == "ACME" and str(tags["Image ISOSpeedRatings"]) == "400"
    assert str(tags["Image Software"]).startswith("camnet")


def test_write_is_atomic_and_readable(tmp_path):
    write_dng(tmp_path / "f.dng", np.full((8, 8), 1000, np.uint16))
    assert [p.name for p in tmp_path.iterdir()] == ["f.dng"]  # no temporary left behind
    assert os.stat(tmp_path / "f.dng").st_mode & 0o044  # not the 0600 of a temporary file


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        write_dng(tmp_path / "f.dng", np.full((8, 8), 1.0))  # float, not uint16
    with pytest.raises(ValueError, match="CFA"):
        write_dng(tmp_path / "f.dng", np.full((8, 8), 1000, np.uint16), cfa_pattern="RGB")
    assert list(tmp_path.iterdir()) == []


# --- LinearRaw DNG ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_restoration() -> tuple[Frame, np.ndarray, np.ndarray]:
    """The shipped example raw (a Sony a7R III at ISO 3200) restored by the shipped Restore-Net:
    the frame, the camera's ColorMatrix and the (H, W, 3) camera RGB."""
    frame = load_frame(EXAMPLE_DNG)
    with rawpy.imread(str(EXAMPLE_DNG)) as raw:
        xyz_to_cam = np.asarray(raw.rgb_xyz_matrix[:3], dtype=np.float64)
    net, _ = load_weights(SHIPPED_DIR / "restore-natural.safetensors", "restore")
    camera = Engine(net, device="cpu", precision="fp32", tile=0).restore(frame.packed, frame.noise.omega)
    return frame, xyz_to_cam, camera.permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def linear_dng(example_restoration, tmp_path_factory) -> Path:
    frame, xyz_to_cam, camera = example_restoration
    path = tmp_path_factory.mktemp("linear") / "restored.dng"
    write_linear_dng(path, camera, xyz_to_cam=xyz_to_cam, as_shot_neutral=[1 / g for g in frame.wb], metadata=DngMetadata.from_shot(frame.metadata, frame.orientation))
    return path


def _small_linear_dng(path: Path, **options) -> np.ndarray:
    """A 48x64 LinearRaw DNG of random camera RGB (some of it outside [0, 1]); returns the pixels."""
    camera = np.random.default_rng(0).uniform(-0.1, 1.1, (48, 64, 3))
    meta = DngMetadata(make="ACME", model="Cam 2", iso=400, exposure_time=1 / 250, f_number=2.8, focal_length=35.0,
                       date="2024-05-06T07:08:09", orientation=6, lens="ACME 35mm F2.8")
    write_linear_dng(path, camera, xyz_to_cam=SONY_XYZ_TO_CAM, as_shot_neutral=(0.4, 1.0, 0.65), metadata=meta, **options)
    return camera


def test_linear_dng_reads_in_libraw_as_camnet_develops_it(example_restoration, linear_dng):
    frame, xyz_to_cam, camera = example_restoration
    rgb = torch.from_numpy(np.clip(camera, 0, 1)).permute(2, 0, 1)  # what the file can hold
    expected = color.apply_matrix(color.camera_to_xyz(rgb, frame.wb, frame.cam_to_xyz), color.XYZ_TO_SRGB).clamp(0, 1)
    with rawpy.imread(str(linear_dng)) as raw:
        assert raw.raw_type == rawpy.RawType.Stack  # three samples a pixel: nothing to demosaic
        np.testing.assert_allclose(raw.camera_whitebalance[:3], frame.wb, rtol=1e-4)
        np.testing.assert_allclose(raw.rgb_xyz_matrix[:3], xyz_to_cam, atol=1e-4)
        gains = max(frame.wb) / min(frame.wb)
        # LibRaw's defaults are not camnet's maths: with highlight clipping it scales the gains to
        # the smallest and clips each channel at the white level after white balance, before the
        # matrix (camnet clips only the final sRGB); HighlightMode.Ignore scales them to the largest
        # instead, so nothing clips there, and `bright` gives back the level that took. And
        # adjust_maximum_thr=0: otherwise LibRaw takes the data's own maximum for white when it is
        # above 75% of WhiteLevel, brightening the image.
        out = raw.postprocess(
            use_camera_wb=True, output_color=rawpy.ColorSpace.sRGB, gamma=(1, 1), no_auto_bright=True, output_bps=16,
            user_flip=0, highlight_mode=rawpy.HighlightMode.Ignore, bright=gains, adjust_maximum_thr=0.0,
        )
    libraw = torch.from_numpy(out.astype(np.float32) / 65535).permute(2, 0, 1)
    assert libraw.shape == expected.shape
    assert metrics.psnr(libraw, expected).item() >= 40  # 88 dB measured: 16-bit rounding


def test_linear_dng_layout_and_tags(tmp_path):
    camera = _small_linear_dng(tmp_path / "s.dng", crop=(1, 2, 3, 4))
    with tifffile.TiffFile(tmp_path / "s.dng") as tif:
        ifd0 = tif.pages[0]
        main = ifd0.pages[0]  # its SubIFD
        preview = ifd0.asarray()
        forward = np.reshape(ifd0.tags[50964].value, (9, 2))
        assert ifd0.subfiletype == 1 and preview.dtype == np.uint8 and preview.shape == (44, 58, 3)  # the crop's
        assert main.subfiletype == 0 and main.photometric == 34892 and main.dtype == np.uint16
        np.testing.assert_array_equal(main.asarray(), np.rint(np.clip(camera, 0, 1) * 65535))
        assert main.tags[50719].value == (2, 1) and main.tags[50720].value == (58, 44)  # DefaultCrop (x, y)
        assert main.tags[50717].value == (65535,) * 3 and main.tags[50714].value == (0, 0, 0)
        assert bytes(ifd0.tags[50706].value) == b"\x01\x04\x00\x00" and ifd0.tags[274].value == 6
        # ForwardMatrix1 takes white-balanced white to D50 (DNG 1.6, "Camera to XYZ (D50) Transform").
        np.testing.assert_allclose((forward[:, 0] / forward[:, 1]).reshape(3, 3).sum(1), (0.9642, 1.0, 0.8249), atol=2e-3)
    with rawpy.imread(str(tmp_path / "s.dng")) as raw:
        assert raw.sizes.flip == 6  # the orientation in the tag, the pixels as stored
        assert (raw.sizes.crop_top_margin, raw.sizes.crop_left_margin, raw.sizes.crop_height, raw.sizes.crop_width) == (1, 2, 44, 58)
    with open(tmp_path / "s.dng", "rb") as f:
        tags = exifread.process_file(f, details=False)
    assert str(tags["EXIF ExposureTime"]) == "1/250" and str(tags["EXIF FNumber"]) == "14/5"
    assert str(tags["EXIF ISOSpeedRatings"]) == "400" and str(tags["EXIF FocalLength"]) == "35"
    assert str(tags["EXIF DateTimeOriginal"]) == "2024:05:06 07:08:09" and str(tags["EXIF LensModel"]) == "ACME 35mm F2.8"
    assert str(tags["Image Make"]) == "ACME" and str(tags["Image Software"]).startswith("camnet")


def test_linear_dng_preview_given(tmp_path):
    _small_linear_dng(tmp_path / "p.dng", preview=np.full((480, 640, 3), 0.4))
    with tifffile.TiffFile(tmp_path / "p.dng") as tif:
        preview = tif.pages[0].asarray()
    assert preview.shape == (192, 256, 3) and np.all(preview == 102)


def test_linear_dng_passes_exiftool_validation(linear_dng, tmp_path):
    if shutil.which("exiftool") is None:
        pytest.skip("exiftool not installed")
    _small_linear_dng(tmp_path / "s.dng", crop=(1, 2, 3, 4))
    for path in (linear_dng, tmp_path / "s.dng"):
        out = subprocess.run(["exiftool", "-validate", "-warning", "-a", str(path)], capture_output=True, text=True, check=True).stdout
        assert re.search(r"^Validate\s*: OK$", out, re.M) and "Warning" not in out, out


def test_darktable_renders_linear_dng_as_it_renders_the_raw(linear_dng, tmp_path):
    if shutil.which("darktable-cli") is None:
        pytest.skip("darktable-cli not installed")
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    shutil.copy(EXAMPLE_DNG, folder / "raw.dng")
    shutil.copy(linear_dng, folder / "camnet.dng")
    # darktable loads a LinearRaw DNG as "sraw", and in its default scene-referred workflow
    # (darktable 4.2, develop.c, _dev_auto_apply_presets) auto-applies filmic rgb only where
    # dt_image_is_raw, that is to Bayer raws, while the +0.7 EV exposure preset goes to both: the
    # DNG would come out without a tone mapper. The display-referred workflow gives both files the
    # same modules (a base curve for the tone), asserted below; one start for both files.
    run = subprocess.run(
        ["darktable-cli", str(folder), str(out), "--out-ext", "png", "--core", "--configdir", str(tmp_path / "config"),
         "--conf", "plugins/darkroom/workflow=display-referred"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr

    def history(path: Path) -> set[str]:
        return set(re.findall(rb'darktable:operation="(\w+)"', path.read_bytes()))

    assert history(out / "raw.png") - history(out / "camnet.png") == {b"demosaic"}
    raw, ours = (torch.from_numpy(np.asarray(Image.open(out / f"{name}.png").convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
                 for name in ("raw", "camnet"))
    assert raw.shape == ours.shape == (3, 640, 960)
    # Colour, not noise: the raw's rendering keeps its ISO 3200 noise, camnet's is denoised, and per
    # pixel that difference alone is 2.8; averaged over 4x4 blocks 1.4 is left.
    assert metrics.delta_e2000(F.avg_pool2d(raw[None], 4), F.avg_pool2d(ours[None], 4)).item() <= 3


def test_linear_dng_refuses_bad_input(tmp_path):
    good = {"xyz_to_cam": SONY_XYZ_TO_CAM, "as_shot_neutral": (0.4, 1.0, 0.65)}
    with pytest.raises(ValueError, match="float camera RGB"):
        write_linear_dng(tmp_path / "f.dng", np.zeros((8, 8, 3), np.uint16), **good)
    with pytest.raises(ValueError, match=r"\(8, 8\)"):
        write_linear_dng(tmp_path / "f.dng", np.zeros((8, 8)), **good)
    with pytest.raises(ValueError, match="crop"):
        write_linear_dng(tmp_path / "f.dng", np.zeros((8, 8, 3)), crop=(4, 0, 4, 0), **good)
    with pytest.raises(ValueError, match="neutral"):
        write_linear_dng(tmp_path / "f.dng", np.zeros((8, 8, 3)), xyz_to_cam=SONY_XYZ_TO_CAM, as_shot_neutral=(0, 1, 1))
    assert list(tmp_path.iterdir()) == []
