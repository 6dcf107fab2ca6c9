"""Which dataset a training run or an evaluation uses: by name, from a folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torch.utils.data import Dataset

from camnet_cli.data import VALIDATION_SEED, synthetic

if TYPE_CHECKING:
    from camnet_cli.train import TrainConfig

DATASETS = ("synthetic", "sid", "hdrplus", "fivek")


class DatasetError(Exception):
    """The data folder does not hold the dataset asked for; one line for the user."""


def make_datasets(cfg: TrainConfig) -> tuple[Dataset, Dataset, str]:
    """(training set, validation set, a description for weight headers)."""
    root = Path(cfg.data_root)
    if cfg.dataset == "synthetic":
        photos = synthetic.find_photos(root)
        if len(photos) < 2:
            raise DatasetError(f"{root}: synthetic training needs a folder of at least 2 photographs (jpg, png, tif)")
        train_photos, val_photos = synthetic.split(photos, "train"), synthetic.split(photos, "val")
        exposure = tuple(cfg.exposure) if cfg.exposure else synthetic.EXPOSURE_RANGE
        scale = tuple(cfg.scale) if cfg.scale else synthetic.SCALE_RANGE
        train = synthetic.SyntheticDataset(train_photos, cfg.patch_size, seed=cfg.seed, exposure=exposure, scale=scale)
        val = synthetic.SyntheticDataset(val_photos or train_photos, cfg.patch_size, seed=VALIDATION_SEED, exposure=exposure, scale=scale)
        note = f"synthetic raws from {len(train_photos)} photographs in {root.name} ({len(val_photos)} held out)"
        return train, val, note
    from camnet_cli.data import real

    return real.make_datasets(cfg)


def make_eval_set(dataset: str, root: Path, **options) -> Dataset:
    """The held-out images of a dataset, whole, for ``camnet eval``."""
    if dataset == "synthetic":
        photos = synthetic.split(synthetic.find_photos(root), "val")
        if not photos:
            raise DatasetError(f"{root}: no held-out photographs")
        return synthetic.SyntheticEvalSet(photos, **options)
    from camnet_cli.data import real

    return real.make_eval_set(dataset, root, **options)


def dataset_noise_range(cfg: TrainConfig) -> tuple[float, float] | None:
    """The noise levels the networks saw in training, if the dataset defines them."""
    return synthetic.noise_range() if cfg.dataset == "synthetic" else None
