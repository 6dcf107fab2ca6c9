import numpy as np
import pytest
import torch
from PIL import Image

from camnet_cli import color
from camnet_cli.data import StepSampler, real, synthetic
from camnet_cli.data.datasets import DatasetError, make_datasets
from camnet_cli.dng import DngMetadata, to_dn, write_dng
from camnet_cli.train import TrainConfig
from tests.conftest import SONY_XYZ_TO_CAM, scene


def test_step_sampler_ranks_are_disjoint_and_resumable():
    full = list(StepSampler(0, 6, batch=2, rank=0, world=1))
    assert full == list(range(12))
    ranks = [list(StepSampler(0, 3, batch=2, rank=r, world=2)) for r in range(2)]
    assert set(ranks[0]).isdisjoint(ranks[1]) and sorted(ranks[0] + ranks[1]) == list(range(12))
    assert list(StepSampler(3, 6, batch=2)) == full[6:]  # a resumed run draws the same samples


def test_synthetic_samples_are_deterministic_and_shaped(photo_dir):
    ds = synthetic.SyntheticDataset(synthetic.find_photos(photo_dir), patch=64, seed=3)
    a, b, c = ds[5], ds[5], ds[6]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["packed"], c["packed"])
    assert a["packed"].shape == (4, 32, 32) and a["xyz"].shape == a["srgb"].shape == (3, 64, 64)
    assert 0 <= a["packed"].min() and a["packed"].max() <= 1 and a["wb"][1] == 1
    lo, hi = synthetic.noise_range()
    assert lo <= a["omega"].item() <= hi


def test_synthetic_raw_and_ground_truth_agree():
    """Noise-free, the raw's planes white-balanced through the matrix are the XYZ ground truth."""
    rng = np.random.default_rng(0)
    srgb = scene(64, 64)
    sample = synthetic.synthesize(srgb, rng, profile=synthetic.noise.NoiseProfile(0.0, 0.0, "user"))
    r, g1, g2, b = sample["packed"]
    camera = torch.stack([r, (g1 + g2) / 2, b])
    xyz = color.camera_to_xyz(camera, sample["wb"], sample["cam_to_xyz"])
    truth = torch.nn.functional.avg_pool2d(sample["xyz"][None], 2)[0]  # the same 2x2 cells
    unclipped = (sample["packed"] < 0.999).all(dim=0)
    assert (xyz - truth).abs()[:, unclipped].mean() < 0.01


def test_random_cameras_are_plausible():
    rng = np.random.default_rng(1)
    for _ in range(20):
        xyz_to_cam, wb = synthetic.random_camera(rng)
        cam_to_xyz, _ = color.cam_to_xyz_from_xyz_to_cam(xyz_to_cam)
        assert np.allclose(cam_to_xyz @ np.ones(3), [0.95047, 1.0, 1.08883], atol=1e-3)
        assert wb[1] == 1.0 and 0.8 < wb[0] < 5 and 0.8 < wb[2] < 5


def test_synthetic_split_holds_out_photos(tmp_path):
    photos = [tmp_path / f"{i:02d}.jpg" for i in range(21)]
    val, train = synthetic.split(photos, "val"), synthetic.split(photos, "train")
    assert len(val) == 3 and set(val).isdisjoint(train) and len(train) == 18
    # photographs added in a subfolder (sorting among the others) have their own split
    more = [tmp_path / "e" / f"{i}.jpg" for i in range(8)]
    val_more = synthetic.split(sorted(photos + more), "val")
    assert set(val) < set(val_more) and set(val_more) - set(val) == {more[3]}


# --- real datasets ------------------------------------------------------------------------------


def _raw_with_marker(path, cfa_offset=(0, 0), orientation=1, size=(96, 128), marker=(40, 60)):
    """A DNG whose scene is dark grey with one bright 6x6 square at ``marker`` (in raw coordinates)."""
    h, w = size
    rng = np.random.default_rng(0)
    mosaic = np.full((h + 2, w + 2), 0.1, np.float32) + rng.normal(0, 0.002, (h + 2, w + 2)).astype(np.float32)
    y, x = marker
    mosaic[y : y + 6, x : x + 6] = 0.8
    dy, dx = cfa_offset
    cfa = "".join("RGGB"[((dy + i) % 2) * 2 + (dx + j) % 2] for i in (0, 1) for j in (0, 1))
    write_dng(path, to_dn(mosaic[dy : dy + h, dx : dx + w], 512, 16383), cfa_pattern=cfa, xyz_to_cam=SONY_XYZ_TO_CAM,
              as_shot_neutral=[0.5, 1, 0.7], metadata=DngMetadata(make="SONY", model="ILCE-7RM3", iso=800, orientation=orientation))


def _bright(image: np.ndarray) -> tuple[float, float]:
    """Centroid (row, column) of the brightest pixels of an (H, W) map."""
    ys, xs = np.nonzero(image > image.max() * 0.6)
    return float(ys.mean()), float(xs.mean())


@pytest.mark.parametrize("offset, orientation", [((0, 0), 1), ((1, 1), 6), ((0, 1), 8), ((1, 0), 3)])
def test_ground_truths_stay_aligned_through_phase_crop_orientation_and_augmentation(tmp_path, offset, orientation):
    burst = tmp_path / "burst0"
    burst.mkdir()
    _raw_with_marker(burst / "merged.dng", cfa_offset=offset, orientation=orientation)
    # The final rendition is stored upright, as a camera or editor exports it: its own picture of the scene.
    xyz = real.libraw_xyz(burst / "merged.dng").astype(np.float32) / 65535
    from camnet_cli.raw import upright

    final = upright(np.repeat(xyz[..., 1:2], 3, axis=2), orientation)
    Image.fromarray((final / final.max() * 255).astype(np.uint8)).save(burst / "final.jpg", quality=98)
    pairs = real.hdrplus_pairs(tmp_path)
    ds = real.PairDataset(pairs, tmp_path / "cache", patch=64, seed=0)
    checked = 0
    for k in range(24):  # random crops, flips and transpositions
        s = ds[k]
        planes = s["packed"].numpy()
        if planes.max() < 0.5:
            continue  # this crop missed the marker
        checked += 1
        raw_c = _bright(planes[1] + planes[2])  # greens, in packed coordinates
        xyz_c = _bright(s["xyz"][1].numpy())
        srgb_c = _bright(s["srgb"][1].numpy())
        assert np.allclose([2 * raw_c[0] + 0.5, 2 * raw_c[1] + 0.5], xyz_c, atol=0.35), k
        assert np.allclose(xyz_c, srgb_c, atol=0.35), k
    assert checked >= 8


def test_sid_layout_ratio_and_noise(tmp_path):
    for sub in ("short", "long"):
        (tmp_path / "Sony" / sub).mkdir(parents=True)
    _raw_with_marker(tmp_path / "Sony" / "short" / "00001_00_0.1s.ARW")
    _raw_with_marker(tmp_path / "Sony" / "long" / "00001_00_10s.ARW")
    for part in ("train", "val", "test"):
        (tmp_path / f"Sony_{part}_list.txt").write_text("./Sony/short/00001_00_0.1s.ARW ./Sony/long/00001_00_10s.ARW ISO800 F8\n")
    pairs = real.sid_pairs(tmp_path, "train")
    assert pairs[0].ratio == 100  # 10 s / 0.1 s
    ds = real.PairDataset(pairs, tmp_path / ".cache", patch=32)
    s = ds[0]
    base = real.PreparedPair(pairs[0], tmp_path / ".cache").meta
    from camnet_cli import noise

    table = noise.from_table("SONY", "ILCE-7RM3", 800)
    assert base["omega"] == pytest.approx(table.shot * 100 + (table.read * 100) ** 2)
    assert s["packed"].max() == 1.0  # 0.1 x 100: amplified and clipped
    assert 0 <= s["srgb"].min() and s["srgb"].max() <= 1  # the built-in auto-enhancement


def test_fivek_layout_and_missing_data(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "expertC").mkdir()
    for i in range(3):
        _raw_with_marker(tmp_path / "raw" / f"a{i}.dng")
        Image.new("RGB", (128, 96), (90, 90, 90)).save(tmp_path / "expertC" / f"a{i}.jpg")
    assert len(real.fivek_pairs(tmp_path, "C")) == 3
    with pytest.raises(DatasetError, match="expertA"):
        real.fivek_pairs(tmp_path, "A")
    with pytest.raises(DatasetError, match="SID"):
        real.sid_pairs(tmp_path, "train")
    with pytest.raises(DatasetError, match="HDR"):
        real.hdrplus_pairs(tmp_path)


def test_auto_enhance_brightens_a_dark_frame():
    xyz = torch.rand(3, 32, 32) * 0.02
    out = real.auto_enhance(xyz)
    assert out.shape == (3, 32, 32) and 0.2 < out.mean() < 0.8


def test_exposure_range_is_respected():
    srgb = scene(64, 64)
    for lo, hi in ((0.5, 0.5), (0.1, 0.2)):
        s = synthetic.synthesize(srgb, np.random.default_rng(0), exposure=(lo, hi), profile=synthetic.noise.NoiseProfile(0.0, 0.0, "user"))
        ratio = (s["xyz"][1].mean() / color.apply_matrix(color.srgb_to_linear(srgb), color.SRGB_TO_XYZ)[1].mean()).item()
        assert lo - 1e-4 <= ratio <= hi + 1e-4


def test_eval_set_at_several_exposures(photo_dir):
    """Several exposures: each photograph and ISO is the same camera and noise draw at every
    exposure, the default exposure's item is the very raw of the one-exposure set, and the
    restoration ground truth and the final one (as a camera's JPEG) follow the exposure."""
    photos = synthetic.find_photos(photo_dir)[:2]
    one = synthetic.SyntheticEvalSet(photos, isos=(400, 6400), max_side=128)
    many = synthetic.SyntheticEvalSet(photos, isos=(400, 6400), max_side=128, exposures=(0.25, 0.5))
    assert len(one) == 4 and len(many) == 8
    assert [one.name(i) for i in range(4)] == ["p0@ISO400", "p0@ISO6400", "p1@ISO400", "p1@ISO6400"]
    assert [many.name(i) for i in range(4)] == ["p0@exposure0.25@ISO400", "p0@exposure0.25@ISO6400", "p0@exposure0.5@ISO400", "p0@exposure0.5@ISO6400"]
    for i, j in ((0, 2), (1, 3), (2, 6), (3, 7)):  # one's item i is many's item j (exposure 0.5)
        a, b = one[i], many[j]
        assert all(torch.equal(a[k], b[k]) for k in a), (i, j)
    dark, bright = many[4], many[6]  # p1 at ISO 400, exposures 0.25 and 0.5
    assert torch.equal(dark["wb"], bright["wb"])
    torch.testing.assert_close(dark["xyz"] * 2, bright["xyz"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(color.srgb_to_linear(dark["srgb"]) * 2, color.srgb_to_linear(bright["srgb"]), rtol=1e-4, atol=1e-5)
    assert dark["packed"].mean() < 0.6 * bright["packed"].mean()
    with pytest.raises(ValueError, match="exposures"):
        synthetic.SyntheticEvalSet(photos, exposures=(0.0,))


def test_final_ground_truth_follows_the_exposure_like_a_cameras_jpeg():
    """At the render exposure (0.5) the final ground truth is the photo itself; brighter raws
    get a brighter one, clipped, darker raws a darker one: a fixed function of the raw."""
    srgb = scene(64, 64)
    quiet = synthetic.noise.NoiseProfile(0.0, 0.0, "user")
    at = {e: synthetic.synthesize(srgb, np.random.default_rng(0), exposure=(e, e), profile=quiet) for e in (0.25, 0.5, 1.0)}
    assert torch.equal(at[0.5]["srgb"], srgb)
    torch.testing.assert_close(color.srgb_to_linear(at[0.25]["srgb"]), color.srgb_to_linear(srgb) / 2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(color.srgb_to_linear(at[1.0]["srgb"]), (color.srgb_to_linear(srgb) * 2).clamp(0, 1), rtol=1e-4, atol=1e-5)
    assert all(s["render_gain"].item() == pytest.approx(1 / synthetic.RENDER_EXPOSURE) for s in at.values())


def test_scale_sets_the_synthetic_patches_sharpness(tmp_path):
    """--scale reaches the synthetic dataset: strong downscaling gives patches with more fine detail."""
    img = (scene(512, 512, seed=3).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(img[::-1]).save(tmp_path / "b.png")

    def detail(scale):
        data = synthetic.SyntheticDataset([tmp_path / "a.png"], 64, seed=0, scale=scale)
        x = torch.stack([data[i]["srgb"] for i in range(8)])
        return (x[..., 1:] - x[..., :-1]).abs().mean().item()

    assert detail((0.125, 0.125)) > 1.5 * detail((1.0, 1.0))
    train_set, _, _ = make_datasets(TrainConfig(stage="restore", data_root=str(tmp_path), patch_size=64, scale=(0.2, 0.3)).data)
    assert train_set.scale == (0.2, 0.3)


def test_noise_above_the_top_iso_is_pushed():
    """Above a camera's highest calibrated ISO the noise is that setting's, amplified: shot and read
    both times the ISO ratio (SID's amplified raws); below its lowest there is none to take."""
    top = synthetic.sensor_noise("SONY", "ILCE-7RM3", 25600)
    pushed = synthetic.sensor_noise("SONY", "ILCE-7RM3", 102400)
    assert pushed.shot == pytest.approx(4 * top.shot) and pushed.read == pytest.approx(4 * top.read)
    assert synthetic.sensor_noise("SONY", "ILCE-7RM3", 3200) == synthetic.noise.from_table("SONY", "ILCE-7RM3", 3200)
    with pytest.raises(ValueError, match="below"):
        synthetic.sensor_noise("SONY", "ILCE-7RM3", 50)
    assert synthetic.noise_range((100, 102400))[1] == pytest.approx(pushed.omega)


def test_read_range_multiplies_the_calibrated_read_noise(photo_dir):
    """--read-range: each synthetic raw's read noise is the calibrated one times a factor from the
    range, up to READ_CAP; the samples say which (``read``), and omega follows. The default (1, 1)
    draws nothing more: the same samples as before the option."""
    photos = sorted(photo_dir.iterdir())
    plain = synthetic.SyntheticDataset(photos, 32, seed=3)
    same = synthetic.SyntheticDataset(photos, 32, seed=3, read_range=(1.0, 1.0))
    boosted = synthetic.SyntheticDataset(photos, 32, seed=3, read_range=(4.0, 4.0))
    for i in range(4):
        a, b, c = plain[i], same[i], boosted[i]
        assert all(torch.equal(a[k], b[k]) for k in a)
        shot = a["omega"] - a["read"] ** 2
        assert c["read"] == pytest.approx(min(4 * a["read"].item(), max(a["read"].item(), synthetic.READ_CAP)), rel=1e-5)
        assert c["omega"] == pytest.approx((shot + c["read"] ** 2).item(), rel=1e-4)
        assert c["read"] > a["read"]
    base = synthetic.sensor_noise("SONY", "ILCE-7RM3", 102400)
    assert synthetic.boost_read(base, 8).read == pytest.approx(max(base.read, synthetic.READ_CAP))
    assert synthetic.boost_read(base, 0.5).read == pytest.approx(base.read / 2)
    assert synthetic.noise_range((100, 25600), (1, 4))[1] > synthetic.noise_range((100, 25600))[1]

