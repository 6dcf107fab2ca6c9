"""Training on any folder of photographs: each patch is unprocessed into a raw on the fly.

A patch of a photo is unprocessed (``unprocess``) through a random camera: a colour matrix
mixed from real cameras', white-balance gains around that camera's daylight neutral, an
exposure, and the noise of a real sensor at a random ISO. Restoration ground truth is the
patch's linear XYZ at that exposure; enhancement ground truth is the photo itself.
"""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from camnet_cli import color, noise
from camnet_cli.data import sample_rng, to_tensor_image
from camnet_cli.data.unprocess import unprocess

PHOTO_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff"})

# XYZ -> camera matrices (D65) that synthetic cameras are mixed from. The first four are those of
# Brooks et al., "Unprocessing Images for Learned Raw Denoising" (google-research, unprocessing/
# unprocess.py, random_ccm); the fifth is the Sony a7R III's, as LibRaw reports it for the shared ARW.
CAMERA_MATRICES = np.array(
    [
        [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
        [[0.4913, -0.0541, -0.0202], [-0.6130, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
        [[0.8380, -0.2630, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
        [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.0970, 0.1581, 0.5181]],
        [[0.6640, -0.1847, -0.0503], [-0.5238, 1.3010, 0.2474], [-0.0993, 0.1673, 0.6527]],
    ]
)
# The exposure of a synthetic raw relative to the photo's (log-uniform): half, give or take half a
# stop, as cameras keep about a stop of headroom below their JPEG. A wide range would make dark
# scenes and underexposed bright ones indistinguishable to Enhance-Net.
EXPOSURE_RANGE = (0.35, 0.71)
# The final ground truth follows the raw's exposure, as a camera's JPEG does: the photo's linear
# light times exposure / RENDER_EXPOSURE (clipped), so the photo itself at exposure 0.5. A developer's
# brightness should be a function of the raw, not a guess from the content.
RENDER_EXPOSURE = 0.5
# The held-out raws' exposure by default: the one whose final ground truth is the photo itself.
EVAL_EXPOSURE = RENDER_EXPOSURE
# How much a photograph is downscaled before a patch is cut (log-uniform). Photographs are
# softer per pixel than a raw (lens, the camera's demosaicking, JPEG); downscaling restores
# the per-pixel detail a sensor records, which Restore-Net has to learn to keep.
SCALE_RANGE = (0.35, 1.0)
# Cameras whose calibrated noise the synthetic raws take (noise.CALIBRATIONS keys), and the ISO range.
NOISE_CAMERAS = (("SONY", "ILCE-7SM2"), ("SONY", "ILCE-7RM3"))
ISO_RANGE = (100.0, 25600.0)
# How much the calibrated read noise (its standard deviation) is multiplied by (log-uniform): 1, 1
# keeps the two Sony sensors'. Other sensors (phones, older or smaller ones) and the shadows of
# pushed exposures have several times more read noise for the same omega; a network with a read
# plane learns them from a range (``train-restore --read-range``). A boost stops at READ_CAP.
READ_RANGE = (1.0, 1.0)
READ_CAP = 0.025


def noise_range(iso_range: tuple[float, float] = ISO_RANGE, read_range: tuple[float, float] = READ_RANGE) -> tuple[float, float]:
    """The lowest and highest noise level omega the synthetic raws can have (for weight headers)."""
    profiles = [sensor_noise(make, model, iso) for make, model in NOISE_CAMERAS for iso in iso_range]
    omegas = [boost_read(p, f).omega for p in profiles for f in read_range]
    return min(omegas), max(omegas)


def boost_read(profile: noise.NoiseProfile, factor: float) -> noise.NoiseProfile:
    """``profile`` with its read noise times ``factor``; a boost stops at ``READ_CAP`` (or the read noise
    as it was, if that is higher)."""
    read = profile.read * factor
    if factor > 1:
        read = min(read, max(profile.read, READ_CAP))
    return noise.NoiseProfile(profile.shot, read, profile.source)


def sensor_noise(make: str, model: str, iso: float) -> noise.NoiseProfile:
    """A calibrated camera's noise at ``iso``; above its highest calibrated ISO, that setting's noise
    pushed in software (shot and read noise both times iso / top), as SID's amplified raws are."""
    profile = noise.from_table(make, model, iso)
    if profile is not None:
        return profile
    top = noise.CALIBRATIONS[(make, model)].isos[-1]
    if iso < top:
        raise ValueError(f"ISO {iso:g} is below the {make} {model} calibration")
    base = noise.from_table(make, model, top)
    return noise.NoiseProfile(base.shot * iso / top, base.read * iso / top, "table")  # type: ignore[union-attr]


def find_photos(root: Path) -> list[Path]:
    """The photographs in a folder (and its subfolders), sorted."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in PHOTO_EXTENSIONS and p.is_file())


def split(photos: list[Path], part: str, every: int = 7) -> list[Path]:
    """A fixed split: every ``every``-th photo (from the fourth) of each folder is held out for validation.

    Counting within each folder lets photographs be added in a new subfolder without moving
    the held-out set of the others."""
    folders: dict[Path, list[Path]] = {}
    for photo in photos:
        folders.setdefault(photo.parent, []).append(photo)
    held_set = {p for group in folders.values() for i, p in enumerate(group) if i % every == 3}
    held = [p for p in photos if p in held_set]
    if part == "val":
        return held
    return [p for p in photos if p not in held] if held and len(held) < len(photos) else photos


class SyntheticDataset(Dataset):
    """Random patches of photographs, unprocessed into raws (see module docstring).

    Args:
        photos: the photographs to draw from.
        patch: patch side in pixels (even).
        seed: makes sample k the same on every run.
        exposure: range of the scale applied to the linear photo (log-uniform).
        scale: range of the photo's downscaling before cropping (log-uniform); below 1 it
            also removes JPEG artefacts.
        length: the nominal length (samples are drawn by index; any index is valid).
    """

    def __init__(
        self,
        photos: list[Path],
        patch: int,
        seed: int = 0,
        exposure: tuple[float, float] = EXPOSURE_RANGE,
        scale: tuple[float, float] = SCALE_RANGE,
        length: int = 2**31 - 1,
        iso_range: tuple[float, float] = ISO_RANGE,
        read_range: tuple[float, float] = READ_RANGE,
    ) -> None:
        if not photos:
            raise ValueError("no photographs to train on")
        if patch % 2 or patch < 16:
            raise ValueError(f"patch size must be even and at least 16, got {patch}")
        self.photos, self.patch, self.seed = list(photos), patch, seed
        self.exposure, self.scale, self.length, self.iso_range, self.read_range = exposure, scale, length, iso_range, read_range
        self._cache: dict[Path, np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def _photo(self, path: Path) -> np.ndarray:
        if path not in self._cache:
            img = iio.imread(path)
            if img.ndim == 2:
                img = np.stack([img] * 3, axis=-1)
            self._cache[path] = img[..., :3]
        return self._cache[path]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = sample_rng(self.seed, index)
        img = self._photo(self.photos[rng.integers(len(self.photos))])
        srgb = _random_patch(img, self.patch, rng, self.scale)
        return synthesize(srgb, rng, self.exposure, iso_range=self.iso_range, read_range=self.read_range)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _random_patch(img: np.ndarray, patch: int, rng: np.random.Generator, scale: tuple[float, float]) -> torch.Tensor:
    """A random (3, patch, patch) sRGB crop: downscaled, flipped and rotated at random."""
    h, w = img.shape[:2]
    s = min(_log_uniform(rng, *scale), h / patch, w / patch) if min(h, w) >= patch else min(h, w) / patch
    side = max(1, int(round(patch / s)))
    side = min(side, h, w)
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = to_tensor_image(img[y : y + side, x : x + side])
    if side != patch:
        crop = F.interpolate(crop[None], size=(patch, patch), mode="bilinear", antialias=True, align_corners=False)[0]
    if rng.random() < 0.5:
        crop = crop.flip(-1)
    if rng.random() < 0.5:
        crop = crop.flip(-2)
    return torch.rot90(crop, int(rng.integers(4)), dims=(-2, -1)).clamp(0, 1).contiguous()


def random_camera(rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A synthetic camera: an XYZ -> camera matrix (a random convex mix of real ones) and
    as-shot white-balance gains (the matrix's daylight gains, R and B varied by up to a third)."""
    weights = rng.uniform(1e-3, 1.0, len(CAMERA_MATRICES))
    xyz_to_cam = np.tensordot(weights / weights.sum(), CAMERA_MATRICES, axes=1)
    _, d65 = color.cam_to_xyz_from_xyz_to_cam(xyz_to_cam)
    r = float(d65[0]) * _log_uniform(rng, 0.75, 1.33)
    b = float(d65[2]) * _log_uniform(rng, 0.75, 1.33)
    return xyz_to_cam, (r, 1.0, b)


def random_noise(rng: np.random.Generator, iso_range: tuple[float, float] = ISO_RANGE, read_range: tuple[float, float] = READ_RANGE) -> noise.NoiseProfile:
    """The calibrated noise of a real sensor at a random ISO (log-uniform over ``iso_range``; ``sensor_noise``),
    its read noise times a factor log-uniform over ``read_range`` (``boost_read``; not drawn for 1, 1)."""
    make, model = NOISE_CAMERAS[rng.integers(len(NOISE_CAMERAS))]
    profile = sensor_noise(make, model, _log_uniform(rng, *iso_range))
    return profile if read_range == (1.0, 1.0) else boost_read(profile, _log_uniform(rng, *read_range))


def _rendered(srgb: torch.Tensor, ratio: float) -> torch.Tensor:
    """The final ground truth: the photo's linear light times ``ratio``, clipped (the photo itself at 1)."""
    if abs(ratio - 1) < 1e-9:
        return srgb
    return color.linear_to_srgb((color.srgb_to_linear(srgb) * ratio).clamp(0, 1))


def synthesize(
    srgb: torch.Tensor, rng: np.random.Generator, exposure: tuple[float, float] = EXPOSURE_RANGE, profile: noise.NoiseProfile | None = None,
    iso_range: tuple[float, float] = ISO_RANGE, read_range: tuple[float, float] = READ_RANGE,
) -> dict[str, torch.Tensor]:
    """One training sample from an sRGB patch: a random camera, exposure and noise."""
    xyz_to_cam, wb = random_camera(rng)
    profile = profile or random_noise(rng, iso_range, read_range)
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    gain = _log_uniform(rng, *exposure)
    raw = unprocess(srgb, xyz_to_cam=xyz_to_cam, wb=wb, shot=profile.shot, read=profile.read, exposure=gain, generator=generator)
    cam_to_xyz, _ = color.cam_to_xyz_from_xyz_to_cam(xyz_to_cam)
    return {
        "packed": color.pack_bayer(raw.mosaic.clamp(0.0, 1.0)),
        "omega": torch.tensor(profile.omega, dtype=torch.float32),
        "read": torch.tensor(profile.read, dtype=torch.float32),
        "wb": torch.tensor(wb, dtype=torch.float32),
        "cam_to_xyz": torch.from_numpy(cam_to_xyz).float(),
        "xyz": raw.xyz,
        "srgb": _rendered(srgb, gain / RENDER_EXPOSURE),
        "render_gain": torch.tensor(1.0 / RENDER_EXPOSURE, dtype=torch.float32),
    }


class SyntheticEvalSet(Dataset):
    """Whole held-out photographs (downscaled to ``max_side``) at fixed noise levels and exposures, for ``eval``.

    The noise levels are a7R III ISO settings (``isos``; above ISO 25600 pushed, ``sensor_noise``) or,
    when given, ``noises`` (shot, read) pairs. Items run over the photographs, then the exposures,
    then the noise levels. An item's camera and noise draw depend on its photograph and level only,
    so a photograph at the default exposure is the same raw whatever other exposures the set holds.
    Names are ``photo@ISO400`` (or ``photo@noise0.0002``), with the exposure between
    (``photo@exposure0.35@ISO400``) unless it is the default alone.
    """

    def __init__(
        self,
        photos: list[Path],
        isos: tuple[float, ...] = (400, 3200, 12800, 25600),
        max_side: int = 768,
        seed: int = 0,
        exposures: tuple[float, ...] = (EVAL_EXPOSURE,),
        noises: tuple[tuple[float, float], ...] = (),
    ) -> None:
        if not exposures or not all(0 < e <= 1 for e in exposures):
            raise ValueError(f"exposures must lie in (0, 1], got {exposures}")
        self.photos, self.max_side, self.seed, self.exposures = list(photos), max_side, seed, tuple(exposures)
        if noises:
            self.levels = [(f"noise{shot + read**2:.2g}", noise.NoiseProfile(shot, read, "user")) for shot, read in noises]
        else:
            self.levels = [(f"ISO{iso:g}", sensor_noise("SONY", "ILCE-7RM3", iso)) for iso in isos]

    def __len__(self) -> int:
        return len(self.photos) * len(self.exposures) * len(self.levels)

    def _item(self, index: int) -> tuple[int, float, int]:
        """Item ``index`` as (photograph index, exposure, level index)."""
        per_photo = len(self.exposures) * len(self.levels)
        rest = index % per_photo
        return index // per_photo, self.exposures[rest // len(self.levels)], rest % len(self.levels)

    def name(self, index: int) -> str:
        p, exposure, i = self._item(index)
        shown = "" if self.exposures == (EVAL_EXPOSURE,) else f"@exposure{exposure:g}"
        return f"{self.photos[p].stem}{shown}@{self.levels[i][0]}"

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        p, exposure, i = self._item(index)
        img = to_tensor_image(iio.imread(self.photos[p])[..., :3])
        h, w = img.shape[-2:]
        f = min(1.0, self.max_side / max(h, w))
        nh, nw = int(h * f) // 2 * 2, int(w * f) // 2 * 2
        img = F.interpolate(img[None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)
        rng = sample_rng(self.seed, p * len(self.levels) + i)
        return synthesize(img, rng, exposure=(exposure, exposure), profile=self.levels[i][1])
