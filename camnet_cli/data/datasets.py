"""Which dataset a training run or an evaluation uses: by name, from a folder."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from camnet_cli.data import VALIDATION_SEED, DataConfig, DatasetError, real, synthetic


def make_datasets(data: DataConfig) -> tuple[Dataset, Dataset, str]:
    """(training set, validation set, a description for weight headers)."""
    root = Path(data.root)
    if data.dataset != "synthetic":
        return real.make_datasets(data)
    photos = synthetic.find_photos(root)
    if len(photos) < 2:
        raise DatasetError(f"{root}: synthetic training needs a folder of at least 2 photographs (jpg, png, tif)")
    train_photos, val_photos = synthetic.split(photos, "train"), synthetic.split(photos, "val")
    exposure = tuple(data.exposure) if data.exposure else synthetic.EXPOSURE_RANGE
    scale = tuple(data.scale) if data.scale else synthetic.SCALE_RANGE
    isos = tuple(data.iso_range) if data.iso_range else synthetic.ISO_RANGE
    reads = tuple(data.read_range) if data.read_range else synthetic.READ_RANGE
    options = dict(exposure=exposure, scale=scale, iso_range=isos, read_range=reads)
    train = synthetic.SyntheticDataset(train_photos, data.patch_size, seed=data.seed, **options)
    val = synthetic.SyntheticDataset(val_photos or train_photos, data.patch_size, seed=VALIDATION_SEED, **options)
    note = f"synthetic raws from {len(train_photos)} photographs in {root.name} ({len(val_photos)} held out)"
    return train, val, note


def make_eval_set(dataset: str, root: Path, **options) -> Dataset:
    """The held-out images of a dataset, whole, for ``camnet eval``."""
    if dataset != "synthetic":
        return real.make_eval_set(dataset, root, **options)
    photos = synthetic.split(synthetic.find_photos(root), "val")
    if not photos:
        raise DatasetError(f"{root}: no held-out photographs")
    return synthetic.SyntheticEvalSet(photos, **options)


def noise_range(data: DataConfig) -> tuple[float, float] | None:
    """The noise levels the networks saw in training, if the dataset defines them."""
    if data.dataset != "synthetic":
        return None
    isos = tuple(data.iso_range) if data.iso_range else synthetic.ISO_RANGE
    return synthetic.noise_range(isos, tuple(data.read_range) if data.read_range else synthetic.READ_RANGE)
