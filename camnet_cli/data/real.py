"""The paper's datasets: SID (Sony subset), HDR+ and MIT-Adobe FiveK, from their folders.

Layouts (``--data-root``):

- **sid**: SID's ``Sony/short/*.ARW``, ``Sony/long/*.ARW`` and its lists ``Sony_train_list.txt``,
  ``Sony_val_list.txt``, ``Sony_test_list.txt`` (lines ``./Sony/short/X.ARW ./Sony/long/Y.ARW
  ISO F``). The input is the short exposure amplified by the exposure ratio, capped at 300, as
  SID does. SID's enhancement ground truths were made in Photoshop: give a folder of them
  (``--enhance-gt``, ``<long stem>.png|jpg``), or get the built-in auto-enhancement.
- **hdrplus**: one folder per burst holding ``merged.dng`` (the input) and ``final.jpg``.
- **fivek**: ``raw/<name>.dng`` (or any raw) and ``expert<A-E>/<name>.tif|jpg|png``.

Restoration ground truth, as the paper (which used dcraw): LibRaw develops the clean frame
with AHD demosaicking and camera white balance into linear 16-bit CIE XYZ, without
auto-brightening or rotation. Every pair is prepared once and cached under
``<data-root>/.camnet-cache``: the input planes, the restoration ground truth and the final
ground truth, all in the raw's own orientation and cropped to its RGGB phase.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from camnet_cli import color
from camnet_cli.data import VALIDATION_SEED, DataConfig, DatasetError, sample_rng, to_tensor_image
from camnet_cli.raw import RAW_EXTENSIONS, RawError, load_frame, upright

_SID_MAX_RATIO = 300  # SID (Chen et al. 2018) caps the amplification at 300
_INVERSE_ORIENTATION = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass(frozen=True)
class Pair:
    """One training image: input raw, the raw for the restoration ground truth, the final ground truth."""

    name: str
    raw: Path
    clean: Path
    final: Path | None = None  # None: the built-in auto-enhancement
    ratio: float = 1.0


# --- layouts --------------------------------------------------------------------------------


def _exposure(path: str) -> float:
    m = re.search(r"_([0-9.]+)s\.[A-Za-z0-9]+$", path)
    if not m:
        raise DatasetError(f"{path}: SID file names end in _<exposure>s.ARW")
    return float(m[1])


def sid_pairs(root: Path, part: str, enhance_gt: Path | None = None) -> list[Pair]:
    lists = {"train": "Sony_train_list.txt", "val": "Sony_val_list.txt", "test": "Sony_test_list.txt"}
    listing = root / lists[part]
    if not listing.is_file():
        raise DatasetError(f"{root}: no {lists[part]} (the SID Sony layout: Sony/short, Sony/long and the lists)")
    pairs = []
    for line in listing.read_text().splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        short, long = root / fields[0], root / fields[1]
        ratio = min(_exposure(fields[1]) / _exposure(fields[0]), _SID_MAX_RATIO)
        final = _find_image(enhance_gt, long.stem) if enhance_gt else None
        if enhance_gt and final is None:
            raise DatasetError(f"{enhance_gt}: no enhancement ground truth for {long.stem}")
        pairs.append(Pair(short.stem, short, long, final, ratio))
    return pairs


def hdrplus_pairs(root: Path) -> list[Pair]:
    bursts = sorted(p.parent for p in root.glob("*/merged.dng"))
    pairs = [Pair(b.name, b / "merged.dng", b / "merged.dng", b / "final.jpg") for b in bursts if (b / "final.jpg").is_file()]
    if not pairs:
        raise DatasetError(f"{root}: no HDR+ bursts (folders holding merged.dng and final.jpg)")
    return pairs


def fivek_pairs(root: Path, expert: str) -> list[Pair]:
    if expert.upper() not in "ABCDE" or len(expert) != 1:
        raise DatasetError(f"expert {expert!r}: FiveK's experts are A-E")
    raws = sorted(p for p in (root / "raw").glob("*") if p.suffix.lower() in RAW_EXTENSIONS)
    pairs = []
    for raw in raws:
        final = _find_image(root / f"expert{expert.upper()}", raw.stem)
        if final is not None:
            pairs.append(Pair(raw.stem, raw, raw, final))
    if not pairs:
        raise DatasetError(f"{root}: no FiveK pairs (raw/<name>.dng with expert{expert.upper()}/<name>.tif|jpg|png)")
    return pairs


def _find_image(folder: Path | None, stem: str) -> Path | None:
    for ext in _IMAGE_EXTENSIONS:
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}") if folder else ():
            if candidate.is_file():
                return candidate
    return None


def pairs_for(dataset: str, root: Path, part: str, enhance_gt: Path | None = None, expert: str = "C") -> list[Pair]:
    """The pairs of a dataset's split; HDR+ and FiveK hold out every tenth pair."""
    if dataset == "sid":
        return sid_pairs(root, part, enhance_gt)
    pairs = hdrplus_pairs(root) if dataset == "hdrplus" else fivek_pairs(root, expert)
    held = [p for i, p in enumerate(pairs) if i % 10 == 5]
    if part == "train":
        return [p for p in pairs if p not in held] or pairs
    return held or pairs[-1:]


# --- ground truths ---------------------------------------------------------------------------


def libraw_xyz(path: Path) -> np.ndarray:
    """LibRaw's development of a clean raw into linear XYZ (D65), (H, W, 3) uint16, sensor orientation."""
    import rawpy

    with rawpy.imread(str(path)) as raw:
        return raw.postprocess(
            output_color=rawpy.ColorSpace.XYZ, gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True,
            user_flip=0, demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD,
        )


def auto_enhance(xyz: torch.Tensor) -> torch.Tensor:
    """The built-in enhancement ground truth for SID: (3, H, W) XYZ -> sRGB in [0, 1].

    Exposure to a log-average luminance of 0.18, then the global operator of Reinhard et al.,
    "Photographic tone reproduction for digital images" (SIGGRAPH 2002), with the white point
    at the brightest 0.1% of pixels, then the sRGB curve.
    """
    rgb = color.apply_matrix(xyz, color.XYZ_TO_SRGB).clamp(min=0)
    lum = xyz[1].clamp(min=0)
    key = torch.exp(torch.log(lum + 1e-4).mean())
    scaled = lum * (0.18 / key)
    white = torch.quantile(scaled.flatten()[:: max(1, scaled.numel() // 100_000)], 0.999).clamp(min=1e-3)
    mapped = scaled * (1 + scaled / white**2) / (1 + scaled)
    return color.linear_to_srgb(rgb * (mapped / lum.clamp(min=1e-6))[None])


def _upright_inverse(image: np.ndarray, orientation: int) -> np.ndarray:
    return upright(image, _INVERSE_ORIENTATION.get(orientation, 1))


class PreparedPair:
    """A pair's cached arrays (memory-mapped): ``packed`` float16 (4, h, w), ``xyz`` uint16 (2h, 2w, 3),
    ``final`` uint8 or uint16 (2h, 2w, 3), and ``meta`` (omega, wb, cam_to_xyz)."""

    def __init__(self, pair: Pair, cache: Path) -> None:
        key = hashlib.sha1(json.dumps([str(pair.raw), str(pair.clean), str(pair.final), pair.ratio,
                                       *(p.stat().st_mtime_ns for p in (pair.raw, pair.clean) if p.exists())]).encode()).hexdigest()[:16]
        self.folder = cache / f"{pair.name}-{key}"
        if not (self.folder / "meta.json").is_file():
            _prepare(pair, self.folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())

    def array(self, name: str) -> np.ndarray:
        return np.load(self.folder / f"{name}.npy", mmap_mode="r")


def _prepare(pair: Pair, folder: Path) -> None:
    try:
        frame = load_frame(pair.raw)
    except RawError as e:
        raise DatasetError(str(e)) from None
    h, w = frame.packed.shape[1] * 2, frame.packed.shape[2] * 2
    c = frame.crop
    xyz = libraw_xyz(pair.clean)
    if xyz.shape[:2] != frame.visible_size:
        raise DatasetError(f"{pair.clean}: LibRaw develops {xyz.shape[1]}x{xyz.shape[0]} but the visible area is "
                           f"{frame.visible_size[1]}x{frame.visible_size[0]}")
    xyz = xyz[c.top : c.top + h, c.left : c.left + w]
    if pair.final is not None:
        final = iio.imread(pair.final)[..., :3]
        final = _upright_inverse(final, frame.orientation)  # the rendition is upright; the raw is not
        if final.shape[:2] != frame.visible_size:
            resized = F.interpolate(to_tensor_image(final)[None], size=frame.visible_size, mode="bilinear", antialias=True, align_corners=False)[0]
            final = np.round(resized.clamp(0, 1).permute(1, 2, 0).numpy() * 65535).astype(np.uint16)
        final = final[c.top : c.top + h, c.left : c.left + w]
    else:
        enhanced = auto_enhance(torch.from_numpy(xyz.astype(np.float32) / 65535).permute(2, 0, 1))
        final = np.round(enhanced.permute(1, 2, 0).numpy() * 65535).astype(np.uint16)
    r = pair.ratio  # amplification scales the noise: shot by r, read by r
    meta = {
        "omega": frame.noise.shot * r + (frame.noise.read * r) ** 2,
        "read": frame.noise.read * r,
        "ratio": r,
        "wb": list(frame.wb),
        "cam_to_xyz": frame.cam_to_xyz.tolist(),
        "orientation": frame.orientation,
    }
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "packed.npy", frame.packed.astype(np.float16))
    np.save(folder / "xyz.npy", np.ascontiguousarray(xyz))
    np.save(folder / "final.npy", np.ascontiguousarray(final))
    (folder / "meta.json").write_text(json.dumps(meta))  # last: marks the pair as prepared


# --- samples -----------------------------------------------------------------------------------


def augment(mosaic: np.ndarray, images: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """Random flips and transposition of an RGGB mosaic (H, W) and its (H, W, C) ground truths.

    A flip moves the red site; dropping the first row or column puts it back at (0, 0), so the
    mosaic stays RGGB and every ground truth pixel stays on its raw pixel. Transposing keeps RGGB
    (the greens trade places).
    """
    out = [mosaic, *images]
    if rng.random() < 0.5:  # horizontal flip, then drop a column
        out = [a[:, ::-1][:, 1:] for a in out]
    if rng.random() < 0.5:  # vertical flip, then drop a row
        out = [a[::-1][1:] for a in out]
    if rng.random() < 0.5:
        out = [a.swapaxes(0, 1) for a in out]
    h, w = out[0].shape[0] // 2 * 2, out[0].shape[1] // 2 * 2
    return out[0][:h, :w], [a[:h, :w] for a in out[1:]]


class PairDataset(Dataset):
    """Random patches of prepared pairs; sample k is a pure function of (seed, k)."""

    def __init__(self, pairs: list[Pair], cache: Path, patch: int | None, seed: int = 0) -> None:
        if not pairs:
            raise DatasetError("no image pairs")
        self.pairs, self.cache, self.patch, self.seed = pairs, cache, patch, seed
        self._prepared: dict[int, PreparedPair] = {}

    def __len__(self) -> int:
        return len(self.pairs) if self.patch is None else 2**31 - 1

    def name(self, index: int) -> str:
        return self.pairs[index % len(self.pairs)].name

    def prepared(self, i: int) -> PreparedPair:
        if i not in self._prepared:
            self._prepared[i] = PreparedPair(self.pairs[i], self.cache)
        return self._prepared[i]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = sample_rng(self.seed, index)
        epoch, i = divmod(index, len(self.pairs))
        if self.patch is not None:  # a new order of the pairs in every epoch
            i = int(np.random.default_rng([self.seed, epoch]).permutation(len(self.pairs))[i])
        p = self.prepared(i)
        packed, xyz, final = p.array("packed"), p.array("xyz"), p.array("final")
        mosaic = np.empty((packed.shape[1] * 2, packed.shape[2] * 2), np.float32)
        if self.patch is None:  # the whole frame, as is
            y0 = x0 = 0
            size = mosaic.shape
        else:
            margin = self.patch + 2  # room for augmentation's dropped row and column
            if min(mosaic.shape) < margin:
                raise DatasetError(f"{self.pairs[i].name}: smaller than the patch size {self.patch}")
            y0 = int(rng.integers(0, (mosaic.shape[0] - margin) // 2 + 1)) * 2
            x0 = int(rng.integers(0, (mosaic.shape[1] - margin) // 2 + 1)) * 2
            size = (margin, margin)
        region = (slice(y0, y0 + size[0]), slice(x0, x0 + size[1]))
        sub = packed[:, y0 // 2 : (y0 + size[0]) // 2, x0 // 2 : (x0 + size[1]) // 2].astype(np.float32)
        mos = np.empty(size, np.float32)
        mos[0::2, 0::2], mos[0::2, 1::2], mos[1::2, 0::2], mos[1::2, 1::2] = sub
        gts = [np.asarray(xyz[region]), np.asarray(final[region])]
        if self.patch is not None:
            mos, gts = augment(mos, gts, rng)
            mos, gts = mos[: self.patch, : self.patch], [g[: self.patch, : self.patch] for g in gts]
        planes = np.stack([mos[0::2, 0::2], mos[0::2, 1::2], mos[1::2, 0::2], mos[1::2, 1::2]])
        sample = {
            "packed": torch.from_numpy(np.clip(planes * p.meta["ratio"], 0, 1)).float(),
            "omega": torch.tensor(p.meta["omega"], dtype=torch.float32),
            "wb": torch.tensor(p.meta["wb"], dtype=torch.float32),
            "cam_to_xyz": torch.tensor(p.meta["cam_to_xyz"], dtype=torch.float32),
            "xyz": to_tensor_image(gts[0]),
            "srgb": to_tensor_image(gts[1]),
        }
        if "read" in p.meta:  # caches prepared before the read plane lack it: the plane then takes omega's usual split
            sample["read"] = torch.tensor(p.meta["read"], dtype=torch.float32)
        return sample


def make_datasets(data: DataConfig) -> tuple[Dataset, Dataset, str]:
    """Training and validation patches of a real dataset, and a description for weight headers."""
    root = Path(data.root)
    gt = Path(data.enhance_gt) if data.enhance_gt else None
    cache = root / ".camnet-cache"
    train_pairs = pairs_for(data.dataset, root, "train", gt, data.expert)
    val_pairs = pairs_for(data.dataset, root, "val", gt, data.expert)
    note = f"{data.dataset} ({len(train_pairs)} training pairs)"
    if data.dataset == "fivek":
        note += f", expert {data.expert.upper()}"
    train = PairDataset(train_pairs, cache, data.patch_size, data.seed)
    return train, PairDataset(val_pairs, cache, data.patch_size, VALIDATION_SEED), note


def make_eval_set(dataset: str, root: Path, enhance_gt: Path | None = None, expert: str = "C") -> Dataset:
    """Whole frames of the test split (SID) or the held-out pairs (HDR+, FiveK)."""
    part = "test" if dataset == "sid" else "val"
    return PairDataset(pairs_for(dataset, root, part, enhance_gt, expert), root / ".camnet-cache", None)
