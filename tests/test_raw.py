import os
import signal
import struct
import subprocess
import sys

import numpy as np
import pytest
import rawpy
import tifffile
from PIL import Image, ImageOps

from camnet_cli import color, noise, pipeline
from camnet_cli.dng import DngMetadata, write_dng
from camnet_cli.raw import Crop, RawError, load_frame, read_metadata, uncrop, upright
from tests.conftest import EXAMPLE_DNG, REPO, SONY_XYZ_TO_CAM, synthetic_raw, write_synthetic_dng

PHASES = {"RGGB": (0, 0), "GRBG": (0, 1), "GBRG": (1, 0), "BGGR": (1, 1)}


def _expected_packed(dn: np.ndarray, black_sites: np.ndarray, white: float, top: int, left: int) -> np.ndarray:
    """What the loader should produce from a written DN mosaic, computed independently."""
    h, w = (dn.shape[0] - top) // 2 * 2, (dn.shape[1] - left) // 2 * 2
    black = np.tile(black_sites, (dn.shape[0] // 2 + 1, dn.shape[1] // 2 + 1))[: dn.shape[0], : dn.shape[1]]
    norm = (dn.astype(np.float32) - black.astype(np.float32)) / (white - black).astype(np.float32)
    norm = np.clip(norm[top : top + h, left : left + w], 0, 1)
    return np.stack([norm[0::2, 0::2], norm[0::2, 1::2], norm[1::2, 0::2], norm[1::2, 1::2]])


@pytest.mark.parametrize("cfa", PHASES)
def test_all_bayer_phases_round_trip_exactly(tmp_path, cfa):
    raw = synthetic_raw(shot=1e-3, read=2e-3)
    blacks = (500, 510, 520, 530)  # a different black level at each site of the written file
    dn = write_synthetic_dng(tmp_path / "f.dng", raw, cfa_offset=PHASES[cfa], black=blacks)
    frame = load_frame(tmp_path / "f.dng", repair_bad_pixels=False)

    top, left = PHASES[cfa]
    assert frame.cfa_pattern == cfa
    assert (frame.crop.top, frame.crop.left) == (top, left)
    assert frame.visible_size == dn.shape
    assert frame.crop.top + frame.crop.bottom + 2 * frame.packed.shape[1] == dn.shape[0]
    assert frame.crop.left + frame.crop.right + 2 * frame.packed.shape[2] == dn.shape[1]
    assert frame.black_level == blacks
    assert frame.white_level == 16383
    expected = _expected_packed(dn, np.array(blacks, dtype=np.float64).reshape(2, 2), 16383.0, top, left)
    np.testing.assert_array_equal(frame.packed, expected)


def test_every_phase_packs_the_same_scene(tmp_path):
    """A file starting at row/column (dy, dx) of an RGGB mosaic is cropped back onto it:
    its planes are the RGGB file's planes from cell (dy, dx) on."""
    raw = synthetic_raw()
    write_synthetic_dng(tmp_path / "rggb.dng", raw)
    reference = load_frame(tmp_path / "rggb.dng", repair_bad_pixels=False).packed
    for cfa, (dy, dx) in PHASES.items():
        write_synthetic_dng(tmp_path / f"{cfa}.dng", raw, cfa_offset=(dy, dx))
        packed = load_frame(tmp_path / f"{cfa}.dng", repair_bad_pixels=False).packed
        _, h, w = packed.shape
        np.testing.assert_array_equal(packed, reference[:, dy : dy + h, dx : dx + w], err_msg=cfa)


def test_metadata_levels_and_noise_profile_read_back(tmp_path):
    raw = synthetic_raw(shot=2e-3, read=3e-3)
    write_synthetic_dng(
        tmp_path / "f.dng",
        raw,
        metadata=DngMetadata(
            make="TESTCAM", model="Model 1", iso=1600, exposure_time=1 / 250, f_number=2.8,
            focal_length=35, date="2024:05:06 07:08:09", orientation=6,
        ),
    )
    frame = load_frame(tmp_path / "f.dng")
    m = frame.metadata
    assert (m.make, m.model, m.iso, m.exposure_time, m.f_number, m.focal_length) == (
        "TESTCAM", "Model 1", 1600, pytest.approx(1 / 250), pytest.approx(2.8), pytest.approx(35),
    )
    assert m.date == "2024-05-06T07:08:09"
    assert frame.orientation == 6
    h, w = frame.visible_size
    assert frame.size == (h, w)  # rotated 90 degrees: width and height swap
    assert frame.noise.source == "dng"
    assert frame.noise.shot == pytest.approx(2e-3) and frame.noise.read == pytest.approx(3e-3)
    assert frame.wb == pytest.approx(raw.wb, rel=1e-5)
    assert frame.wb_source == "camera"
    cam_to_xyz, _ = color.cam_to_xyz_from_xyz_to_cam(SONY_XYZ_TO_CAM)
    assert frame.matrix_source == "color_matrix"  # LibRaw's route for DNGs
    np.testing.assert_allclose(frame.cam_to_xyz, cam_to_xyz, atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_colour_round_trip_through_file(tmp_path, seed):
    """Unprocess -> DNG -> loader -> white balance and matrix gives the scene's XYZ back."""
    import torch

    from camnet_cli.data.unprocess import unprocess

    rgb = torch.rand(3, generator=torch.Generator().manual_seed(seed)) * 0.8 + 0.1
    srgb = rgb.view(3, 1, 1).expand(3, 64, 64).contiguous()
    wb = (1.5 + seed * 0.3, 1.0, 2.1 - seed * 0.2)
    raw = unprocess(srgb, xyz_to_cam=SONY_XYZ_TO_CAM, wb=wb, shot=0.0, read=2e-4, generator=torch.Generator().manual_seed(seed))
    write_synthetic_dng(tmp_path / "f.dng", raw, with_noise_profile=False)
    frame = load_frame(tmp_path / "f.dng", repair_bad_pixels=False)
    r, g1, g2, b = frame.packed.reshape(4, -1).mean(axis=1)
    xyz = frame.cam_to_xyz @ np.array([r * frame.wb[0], (g1 + g2) / 2, b * frame.wb[2]])
    np.testing.assert_allclose(xyz, raw.xyz[:, 0, 0].numpy(), atol=2e-4)  # 14-bit quantisation


def _reference_bad_pixels(packed, profile, threshold):
    """The rule of raw._repair_bad_pixels written out plainly over the whole image: the 8
    same-colour neighbours of every pixel (reflected at the edges), the threshold and noise
    tests, the cell test and the spacing test."""
    packed = packed.copy()
    _, h, w = packed.shape
    padded = np.pad(packed, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    ring = np.stack([padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)])
    hi, lo = ring.max(0), ring.min(0)

    def sd(x):
        return np.sqrt(np.maximum(profile.variance(x), 1 / 65535**2 / 12))

    hot, dead = packed - hi > threshold, lo - packed > threshold
    level = np.where(hot, hi, lo)
    mean = ring.mean(0)
    lift = (packed - mean) / sd(mean)
    cs, ys, xs = np.nonzero((hot | dead) & (np.abs(packed - level) / sd(level) > 8.0))
    others = np.array([np.delete(lift[:, y, x] * (1 if hot[c, y, x] else -1), c).max() for c, y, x in zip(cs, ys, xs)]).reshape(-1)
    cs, ys, xs = cs[others < 3.0], ys[others < 3.0], xs[others < 3.0]
    near = np.array([np.sum((np.abs(ys - y) <= 4) & (np.abs(xs - x) <= 4) & ~((ys == y) & (xs == x) & (cs != c))) for c, y, x in zip(cs, ys, xs)])
    cs, ys, xs = cs[near == 1], ys[near == 1], xs[near == 1]
    packed[cs, ys, xs] = np.median(ring[:, cs, ys, xs], axis=0)
    return packed, len(cs)


@pytest.mark.parametrize("threshold", [0.0, 0.004])
def test_bad_pixel_repair_follows_its_rule_everywhere(threshold):
    """The repair (a fast first pass, then the full tests on its candidates) changes exactly the
    pixels the plain rule picks, to the same values: on noisy planes with defects planted in the
    middle, on the edges and in the corners, with a threshold that lets the noise test decide."""
    from camnet_cli.raw import _repair_bad_pixels

    rng = np.random.default_rng(3)
    profile = noise.NoiseProfile(shot=6e-4, read=7e-4, source="table")
    truth = rng.uniform(0.02, 0.4, (4, 1, 1)) * np.ones((4, 70, 90))
    packed = (truth + rng.normal(size=truth.shape) * np.sqrt(profile.variance(truth))).astype(np.float32)
    for c, y, x, v in [(0, 0, 0, 1.0), (1, 69, 89, 0.0), (2, 0, 45, 0.9), (3, 35, 0, 0.0), (0, 30, 40, 0.8), (3, 50, 70, 0.0), (1, 12, 12, 0.95)]:
        packed[c, y, x] = v
    packed[:, 60, 20] = 1.0  # a glint: every colour of the cell
    packed[0, 20:23:2, 60] = 1.0  # two outliers two cells apart: texture
    for y, x, sigmas in [(45, 30, 8.1), (25, 80, 7.9)]:  # just beyond the noise test and just within it
        hi = packed[2, y - 1 : y + 2, x - 1 : x + 2].max()
        packed[2, y - 1, x] = hi  # the highest neighbour one of the 4 nearest: the first pass's bound is tight
        packed[2, y, x] = hi + sigmas * np.sqrt(profile.variance(hi))
    expected, count = _reference_bad_pixels(packed, profile, threshold)
    repaired = packed.copy()
    assert _repair_bad_pixels(repaired, profile, threshold) == count == 8
    np.testing.assert_array_equal(repaired, expected)


def test_values_above_white_are_clipped(tmp_path):
    dn = np.random.default_rng(0).normal(1000, 20, (64, 64)).astype(np.uint16)
    dn[10:20, 10:20] = 16628  # real files overshoot the white level (the shared ARW does)
    write_dng(tmp_path / "f.dng", dn, xyz_to_cam=SONY_XYZ_TO_CAM, as_shot_neutral=[0.5, 1, 0.7])
    frame = load_frame(tmp_path / "f.dng")
    assert frame.packed.max() == 1.0 and frame.packed.min() >= 0.0


def test_hot_and_dead_pixels_are_repaired_and_texture_is_not(tmp_path):
    raw = synthetic_raw(shot=1e-3, read=2e-3, height=256, width=256)
    dn = write_synthetic_dng(tmp_path / "clean.dng", raw)
    clean = load_frame(tmp_path / "clean.dng")
    assert clean.bad_pixels == 0  # noise alone is never taken for defects

    bad = dn.copy()
    hot, dead = [(40, 60), (101, 151), (200, 30)], [(70, 200), (151, 91)]
    for y, x in hot:
        bad[y, x] = 16000
    for y, x in dead:
        bad[y, x] = 0
    bad[120:122, 120:122] = 16383  # a glint: every colour of one cell saturates, not a defect
    write_dng(tmp_path / "bad.dng", bad, xyz_to_cam=SONY_XYZ_TO_CAM, as_shot_neutral=[0.5, 1, 0.7])
    frame = load_frame(tmp_path / "bad.dng")
    assert frame.bad_pixels == len(hot) + len(dead)
    for y, x in hot + dead:
        c = (y % 2) * 2 + (x % 2)
        assert frame.packed[c, y // 2, x // 2] == pytest.approx(clean.packed[c, y // 2, x // 2], abs=0.03)
    assert frame.packed[:, 60, 60].min() == 1.0  # the glint is kept


def test_missing_white_balance_falls_back_to_matrix_neutral(tmp_path):
    write_synthetic_dng(tmp_path / "f.dng", synthetic_raw(), with_wb=False)
    frame = load_frame(tmp_path / "f.dng")
    assert frame.wb_source in ("daylight", "matrix")
    assert frame.wb[1] == 1.0 and all(g > 0 for g in frame.wb)


def test_missing_colour_matrix_warns_and_assumes_srgb(tmp_path):
    write_synthetic_dng(tmp_path / "f.dng", synthetic_raw(), with_matrix=False)
    frame = load_frame(tmp_path / "f.dng")
    if frame.matrix_source == "none":
        np.testing.assert_allclose(frame.cam_to_xyz, color.SRGB_TO_XYZ)
        assert any("colour matrix" in w for w in frame.warnings)
    else:  # LibRaw may put its own default in color_matrix; it must still be usable
        assert np.all(np.isfinite(frame.cam_to_xyz))


def test_noise_falls_back_to_estimate_then_user(tmp_path):
    from camnet_cli.noise import NoiseProfile

    write_synthetic_dng(tmp_path / "f.dng", synthetic_raw(shot=2e-3, read=4e-3, height=512, width=768), with_noise_profile=False)
    est = load_frame(tmp_path / "f.dng")
    assert est.noise.source == "estimated"
    assert est.noise.omega == pytest.approx(2e-3 + 1.6e-5, rel=0.25)
    user = load_frame(tmp_path / "f.dng", noise_override=NoiseProfile(1e-2, 0.0, "user"))
    assert user.noise.source == "user" and user.noise.shot == 1e-2


def test_table_noise_and_iso_override(tmp_path):
    sony = DngMetadata(make="SONY", model="ILCE-7RM3", iso=3200)
    write_synthetic_dng(tmp_path / "f.dng", synthetic_raw(), with_noise_profile=False, metadata=sony)
    frame = load_frame(tmp_path / "f.dng")
    assert frame.noise.source == "table"
    assert frame.noise.shot == pytest.approx(9.922 / 15871, rel=1e-3)
    higher = load_frame(tmp_path / "f.dng", iso_override=12800)
    assert higher.metadata.iso == 12800
    assert higher.noise.shot == pytest.approx(4 * frame.noise.shot, rel=0.05)


def test_iso_override_beats_the_dng_profile_and_warns_when_it_cannot(tmp_path):
    sony = DngMetadata(make="SONY", model="ILCE-7RM3", iso=3200)
    write_synthetic_dng(tmp_path / "sony.dng", synthetic_raw(), metadata=sony)  # with a NoiseProfile
    assert load_frame(tmp_path / "sony.dng").noise.source == "dng"
    assert load_frame(tmp_path / "sony.dng", iso_override=6400).noise.source == "table"
    write_synthetic_dng(tmp_path / "other.dng", synthetic_raw())
    other = load_frame(tmp_path / "other.dng", iso_override=6400)
    assert other.noise.source == "dng"
    assert any("the ISO given has no effect" in w for w in other.warnings)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_matches_pillows_exif_transpose(orientation):
    img = np.random.default_rng(orientation).integers(0, 255, (6, 10, 3), dtype=np.uint8)
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = orientation
    pil.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(pil))
    np.testing.assert_array_equal(upright(img, orientation), expected)


def test_uncrop_restores_the_visible_size():
    img = np.arange(4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    out = uncrop(img, Crop(top=1, left=0, bottom=1, right=1))
    assert out.shape == (6, 7, 3)
    np.testing.assert_array_equal(out[1:5, :6], img)
    np.testing.assert_array_equal(out[0, :6], img[0])  # edge repeated


# --- bad input -------------------------------------------------------------------------------


def _error(path) -> str:
    with pytest.raises(RawError) as info:
        load_frame(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return info.value.reason


def _dng_tags():
    return [(50706, "B", 4, (1, 4, 0, 0), True), (271, "s", 0, "X", True), (272, "s", 0, "Y", True), (50717, "H", 1, 16383, True)]


def test_refuses_monochrome_dng(tmp_path):
    tifffile.imwrite(tmp_path / "m.dng", np.full((64, 64), 900, np.uint16), photometric="minisblack", extratags=_dng_tags())
    assert "monochrome" in _error(tmp_path / "m.dng")


def test_refuses_linear_raw_dng(tmp_path):
    data = np.full((64, 64, 3), 900, np.uint16)
    tifffile.imwrite(tmp_path / "l.dng", data, photometric=34892, extratags=_dng_tags())
    assert "LinearRaw" in _error(tmp_path / "l.dng")


def test_refuses_jpeg_xl_dng(tmp_path):
    write_synthetic_dng(tmp_path / "j.dng", synthetic_raw(height=64, width=64))
    # Mark the image as JPEG XL-compressed (DNG 1.7, code 52546) in its Compression tag.
    with tifffile.TiffFile(tmp_path / "j.dng") as tif:
        offset = tif.pages[0].tags[259].offset
    data = bytearray((tmp_path / "j.dng").read_bytes())
    struct.pack_into("<H", data, offset + 8, 52546)
    (tmp_path / "j.dng").write_bytes(bytes(data))
    assert "JPEG XL" in _error(tmp_path / "j.dng")


def test_refuses_x_trans(tmp_path):
    xtrans = "GGRGGB" "GGBGGR" "BRGRBG" "GGBGGR" "GGRGGB" "RBGBRG"
    write_dng(tmp_path / "x.dng", np.full((96, 96), 2000, np.uint16) + np.arange(96, dtype=np.uint16), cfa_pattern=xtrans,
              xyz_to_cam=SONY_XYZ_TO_CAM)
    assert "X-Trans" in _error(tmp_path / "x.dng")


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty"),
        (b"plain text, not a photo\n" * 50, "not a raw file"),
        (os.urandom(4096), "not a raw file"),
    ],
)
def test_refuses_non_raw_files(tmp_path, content, reason):
    (tmp_path / "f.NEF").write_bytes(content)
    assert reason in _error(tmp_path / "f.NEF")


def test_refuses_jpeg(tmp_path):
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "photo.jpg", np.zeros((32, 32, 3), np.uint8))
    assert "not a raw file" in _error(tmp_path / "photo.jpg")


def test_refuses_truncated_dng(tmp_path):
    write_synthetic_dng(tmp_path / "t.dng", synthetic_raw())
    data = (tmp_path / "t.dng").read_bytes()
    (tmp_path / "t.dng").write_bytes(data[: len(data) // 2])
    assert "truncated" in _error(tmp_path / "t.dng")


def test_refuses_missing_file_and_directory(tmp_path):
    assert "no such file" in _error(tmp_path / "nope.ARW")
    assert "directory" in _error(tmp_path)


def test_refuses_blank_data(tmp_path):
    write_dng(tmp_path / "z.dng", np.zeros((64, 64), np.uint16), xyz_to_cam=SONY_XYZ_TO_CAM)
    assert "empty" in _error(tmp_path / "z.dng")


def test_fully_clipped_rows_are_not_taken_for_truncation(tmp_path):
    dn = np.random.default_rng(0).normal(3000, 30, (64, 64)).astype(np.uint16)
    dn[:40] = 16383  # the sun filling the top of the frame
    write_dng(tmp_path / "sun.dng", dn, xyz_to_cam=SONY_XYZ_TO_CAM, as_shot_neutral=[0.5, 1, 0.7])
    assert load_frame(tmp_path / "sun.dng").packed[:, :20].min() == 1.0


def test_refuses_black_level_above_white(tmp_path):
    write_dng(tmp_path / "b.dng", np.full((64, 64), 2000, np.uint16), black_level=20000, xyz_to_cam=SONY_XYZ_TO_CAM)
    assert "invalid levels" in _error(tmp_path / "b.dng")


def test_refuses_images_too_small_to_develop(tmp_path):
    write_dng(tmp_path / "s.dng", np.random.default_rng(0).normal(2000, 30, (24, 24)).astype(np.uint16), xyz_to_cam=SONY_XYZ_TO_CAM)
    assert "too small" in _error(tmp_path / "s.dng")


# --- damaged headers: each value is checked before use -----------------------------------------


def _plain_dng(path, **options) -> None:
    """A small DNG of noise around DN 2000, with a colour matrix and an as-shot neutral."""
    dn = np.random.default_rng(0).normal(2000, 30, (64, 96)).astype(np.uint16)
    write_dng(path, dn, **{"xyz_to_cam": SONY_XYZ_TO_CAM, "as_shot_neutral": [0.5, 1, 0.7], **options})


def _patch(path, code: int, fmt: str, *values, value: bool = False, at: int = 0) -> None:
    """Overwrite bytes of tag ``code``'s IFD entry (tag, type, count, value), or of the value it points to."""
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags[code]
        offset = tag.valueoffset if value else tag.offset
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset + at, *values)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("profile", [(1e300, 1e300), (1e9, 1e9), (1e8, 0.0), (float("inf"), 1e-6), (0.6, 0.6)])
def test_implausible_noise_profile_is_ignored_with_a_warning(tmp_path, profile):
    _plain_dng(tmp_path / "n.dng", noise_profile=profile)
    frame = load_frame(tmp_path / "n.dng")
    assert frame.noise.source == "estimated" and frame.noise.omega <= noise.MAX_OMEGA
    assert any("NoiseProfile" in w for w in frame.warnings)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak memory from Linux's /proc")
def test_developing_a_huge_noise_profile_stays_within_memory(tmp_path):
    """NoiseProfile (1e9, 1e9) once made the chroma filter gigabytes wide (21 GB on this mosaic): now
    the profile is ignored, and a noise level given straight to ``develop`` has its filter width clamped.
    In a child process, with a limit that fails fast instead of exhausting the machine."""
    assert pipeline.chroma_width(None, 1e300) == pipeline.chroma_width(1e6, 0.0) == color.MAX_CHROMA
    script = f"""
import resource
resource.setrlimit(resource.RLIMIT_DATA, (2 << 30, 2 << 30))
import numpy as np
from camnet_cli.dng import write_dng
from camnet_cli.engine import Engine
from camnet_cli.model import EnhanceNet, EnhanceNetConfig, RestoreNet, RestoreNetConfig
from camnet_cli.pipeline import develop, develop_frame
from camnet_cli.raw import load_frame
from tests.conftest import SONY_XYZ_TO_CAM, TINY_WIDTHS

dn = np.random.default_rng(0).normal(2000, 30, (128, 192)).astype(np.uint16)
write_dng({str(tmp_path / "n.dng")!r}, dn, xyz_to_cam=SONY_XYZ_TO_CAM, noise_profile=(1e9, 1e9))
frame = load_frame({str(tmp_path / "n.dng")!r})
engine = Engine(RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)), EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS)),
                device="cpu", precision="fp32", tile=0)
assert develop_frame(engine, frame).srgb.shape == (128, 192, 3)
assert develop(engine, frame.packed, 1e300, frame.wb, frame.cam_to_xyz).srgb.shape == (128, 192, 3)
# This process's own peak (ru_maxrss would count the forked test runner's memory too: Linux keeps it across exec).
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))  # KiB
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) * 1024 < 1.5 * 2**30


@pytest.mark.parametrize("iso", [1e300, 1e8, 0.0, float("nan")])
def test_iso_override_outside_the_plausible_range_is_refused(tmp_path, iso):
    _plain_dng(tmp_path / "f.dng")
    with pytest.raises(RawError, match="ISO"):
        load_frame(tmp_path / "f.dng", iso_override=iso)


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_invalid_orientation_leaves_the_image_as_stored(tmp_path, orientation):
    _plain_dng(tmp_path / "o.dng", metadata=DngMetadata(orientation=orientation))
    frame = load_frame(tmp_path / "o.dng")
    assert frame.orientation == 1  # not LibRaw's reading of the bad tag (0 gave 8, 65535 gave 7)
    assert any("orientation" in w for w in frame.warnings)


def test_implausible_exif_numbers_are_dropped(tmp_path):
    _plain_dng(tmp_path / "e.dng", metadata=DngMetadata(iso=800, exposure_time=0.01, f_number=2.8, focal_length=35))
    _patch(tmp_path / "e.dng", 34855, "<HII", 4, 1, 4_000_000_000, at=2)  # ISOSpeedRatings made a LONG of 4e9
    for code in (33434, 33437, 37386):  # ExposureTime, FNumber, FocalLength: 4e9 / 1
        _patch(tmp_path / "e.dng", code, "<II", 4_000_000_000, 1, value=True)
    frame = load_frame(tmp_path / "e.dng")
    m = frame.metadata
    assert (m.iso, m.exposure_time, m.f_number, m.focal_length) == (None, None, None, None)  # LibRaw's copies too
    assert sum("implausible EXIF" in w for w in frame.warnings) == 4


def test_header_text_is_made_one_line(tmp_path):
    _plain_dng(tmp_path / "t.dng", metadata=DngMetadata(make="Evil\nCam\x1b[2J", model="X" * 500))
    m = load_frame(tmp_path / "t.dng").metadata
    assert m.make == "Evil Cam [2J" and m.model == "X" * 100


@pytest.mark.parametrize("neutral", [[1 / 100, 1, 0.7], [0.5, 1, 1 / 100]])
def test_implausible_as_shot_white_balance_falls_back(tmp_path, neutral):
    _plain_dng(tmp_path / "w.dng", as_shot_neutral=neutral)  # a gain of 100 (LibRaw itself drops gains below ~1/50)
    frame = load_frame(tmp_path / "w.dng")
    assert frame.wb_source == "daylight" and all(1 / 64 <= g <= 64 for g in frame.wb)
    assert any("implausible as-shot white balance" in w for w in frame.warnings)


def test_implausible_colour_matrix_falls_back_to_srgb(tmp_path):
    matrix = SONY_XYZ_TO_CAM.copy()
    matrix[2, 0] = 85000  # a flipped high byte in ColorMatrix1
    _plain_dng(tmp_path / "m.dng", xyz_to_cam=matrix)
    frame = load_frame(tmp_path / "m.dng")
    assert frame.matrix_source == "none"
    np.testing.assert_allclose(frame.cam_to_xyz, color.SRGB_TO_XYZ)
    assert any("implausible colour matrix" in w for w in frame.warnings)


def test_date_out_of_range_is_ignored(tmp_path):
    _plain_dng(tmp_path / "d.dng", metadata=DngMetadata(date="9999:99:99 00:00:00"))
    _patch(tmp_path / "d.dng", 36867, "<H", 306)  # as DateTime, which LibRaw reads: year 10007 for datetime
    frame = load_frame(tmp_path / "d.dng")
    assert frame.metadata.date is None
    assert any("date" in w for w in frame.warnings)


def test_colour_filter_libraw_cannot_describe_is_a_one_line_error(tmp_path):
    """A 4x4 CFAPattern of mostly red, as flipped bytes make: LibRaw packs it into filters = 288,
    which rawpy's raw_pattern cannot turn into a pattern (NotImplementedError)."""
    _plain_dng(tmp_path / "c.dng", cfa_pattern="RRBRG" + "R" * 11)
    assert _error(tmp_path / "c.dng") == "corrupt file: LibRaw cannot describe its raw data (filters: 288)"


@pytest.mark.parametrize("width, height, reason", [(20000, 20000, "in a file of"), (60000, 60000, "at most 500 MP")])
def test_raw_area_the_file_cannot_hold_is_refused_before_unpacking(tmp_path, monkeypatch, width, height, reason):
    _plain_dng(tmp_path / "big.dng")
    _patch(tmp_path / "big.dng", 256, "<I", width, at=8)  # ImageWidth
    _patch(tmp_path / "big.dng", 257, "<I", height, at=8)  # ImageLength
    monkeypatch.setattr("camnet_cli.raw._read_tiff_info", lambda path: None)  # as for a raw format tifffile cannot parse
    assert reason in _error(tmp_path / "big.dng")


def test_refuses_special_files_without_opening_them(tmp_path):
    os.mkfifo(tmp_path / "f.dng")
    os.symlink(tmp_path / "nowhere.dng", tmp_path / "dangling.dng")
    os.symlink(tmp_path / "loop.dng", tmp_path / "loop.dng")
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("load_frame opened the FIFO"))
    signal.alarm(10)
    try:
        assert _error(tmp_path / "f.dng") == "not a regular file (a FIFO)"
    finally:
        signal.alarm(0)
    assert _error(tmp_path / "dangling.dng") == "broken symbolic link"
    assert _error(tmp_path / "loop.dng") == "symbolic link loop"


# --- the real files --------------------------------------------------------------------------


def test_real_sony_arw(sony_arw):
    frame = load_frame(sony_arw)
    m = frame.metadata
    assert (m.make, m.model, m.iso) == ("SONY", "ILCE-7RM3", 3200)
    assert m.exposure_time == pytest.approx(1 / 640) and m.f_number == pytest.approx(6.3)
    assert frame.cfa_pattern == "RGGB"
    assert frame.black_level == (512, 512, 512, 512) and frame.white_level == 16383
    assert frame.size == (5184, 3464) and frame.packed.shape == (4, 1732, 2592)
    assert frame.wb == pytest.approx((2528 / 1024, 1.0, 1564 / 1024))
    assert frame.matrix_source == "rgb_xyz_matrix"
    assert frame.noise.source == "table" and frame.noise.omega > 0
    assert frame.packed.max() == 1.0  # the file overshoots white (16628 > 16383): clipped
    # Defects are rare; a high-ISO concert shot must not lose its point lights.
    assert frame.bad_pixels < 1e-4 * frame.packed.size


def test_real_sony_arw_noise_estimate_matches_table(sony_arw):
    """The estimator, run on the real file, agrees with the calibration table for that camera."""
    from camnet_cli.noise import NoiseProfile

    frame = load_frame(sony_arw, repair_bad_pixels=False)
    with rawpy.imread(str(sony_arw)) as raw:
        dn = raw.raw_image_visible.astype(np.float32)
    planes = np.stack([dn[0::2, 0::2], dn[0::2, 1::2], dn[1::2, 0::2], dn[1::2, 1::2]])
    from camnet_cli.noise import estimate_noise

    est = estimate_noise((planes - 512) / (16383 - 512))
    assert isinstance(est, NoiseProfile)
    assert est.omega == pytest.approx(frame.noise.omega, rel=0.15)


def test_arw_crop_as_dng_is_a_real_noise_fixture(sony_arw, tmp_path):
    """A crop of the ARW's Bayer data written as DNG loads to exactly the same numbers."""
    with rawpy.imread(str(sony_arw)) as raw:
        crop = raw.raw_image_visible[1000:1256, 2000:2384].copy()
    write_dng(tmp_path / "crop.dng", crop, xyz_to_cam=SONY_XYZ_TO_CAM, as_shot_neutral=[1024 / 2528, 1, 1024 / 1564],
              metadata=DngMetadata(make="SONY", model="ILCE-7RM3", iso=3200))
    small = load_frame(tmp_path / "crop.dng", repair_bad_pixels=False)
    full = load_frame(sony_arw, repair_bad_pixels=False)
    np.testing.assert_array_equal(small.packed, full.packed[:, 500:628, 1000:1192])
    assert small.noise == full.noise


def test_truncated_real_arw(sony_arw, tmp_path):
    data = sony_arw.read_bytes()
    (tmp_path / "cut.ARW").write_bytes(data[: int(len(data) * 0.6)])
    assert "truncated" in _error(tmp_path / "cut.ARW")


def test_metadata_only_files_are_refused_one_line_each(metadata_only):
    for path in metadata_only:
        reason = _error(path)
        assert reason  # each says why


def test_metadata_only_files_still_have_readable_exif(metadata_only):
    by_name = {p.name: read_metadata(p) for p in metadata_only}
    canon = by_name["exiftool_CanonRaw.cr2"]
    assert canon.model == "Canon EOS 350D DIGITAL" and canon.iso == 400
    assert by_name["exiv2_iPhone12Pro_IMG_1361.dng"].orientation == 6


def test_shipped_example_loads():
    frame = load_frame(EXAMPLE_DNG)
    assert frame.metadata.camera == "SONY ILCE-7RM3" and frame.noise.source == "table"
    assert frame.size == (960, 640)


def test_stripped_data_in_a_batch_is_not_mistaken_for_the_previous_file(metadata_only, sony_arw):
    """LibRaw may hand back its previous buffer for a file without data; decode order must not matter."""
    load_frame(sony_arw)
    stripped = [p for p in metadata_only if p.name == "exiftool_DNG.dng"]
    for path in stripped:
        assert "missing" in _error(path)
