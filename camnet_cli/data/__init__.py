"""Datasets and synthetic raw data for training and evaluation.

Every dataset yields samples as dicts of tensors, one training patch each:

- ``packed``: (4, P/2, P/2) input raw, RGGB planes, normalised and clipped to [0, 1];
- ``omega``: () the input's noise level (shot + read^2);
- ``read`` (where the dataset knows it): () the read noise's standard deviation;
- ``wb``: (3,) the white-balance gains the file reports (G = 1);
- ``cam_to_xyz``: (3, 3) white-balanced camera RGB -> XYZ;
- ``xyz``: (3, P, P) restoration ground truth, linear CIE XYZ (D65);
- ``srgb``: (3, P, P) enhancement ground truth, sRGB in [0, 1];
- ``render_gain`` (synthetic only): () the gain the enhancement ground truth applies to the
  raw's light, as a camera's JPEG engine brightens its raw; baselines render with it.

Sample ``k`` is a pure function of (seed, k): the same index gives the same patch,
augmentation and noise in any worker, on any rank, before or after a resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Sampler

DATASETS = ("synthetic", "sid", "hdrplus", "fivek")


class DatasetError(Exception):
    """The data folder does not hold the dataset asked for; one line for the user."""


@dataclass(frozen=True)
class DataConfig:
    """Which data a training run reads, and how it cuts it into patches."""

    dataset: str = "synthetic"  # one of DATASETS
    root: str = "."
    patch_size: int = 512
    seed: int = 0
    enhance_gt: str | None = None  # SID: folder of enhancement ground truths
    expert: str = "C"  # FiveK: whose retouching
    exposure: tuple[float, float] | None = None  # synthetic: raw exposure range (default synthetic.EXPOSURE_RANGE)
    scale: tuple[float, float] | None = None  # synthetic: photo downscaling range (default synthetic.SCALE_RANGE)
    iso_range: tuple[float, float] | None = None  # synthetic: ISO range of the noise (default synthetic.ISO_RANGE)
    read_range: tuple[float, float] | None = None  # synthetic: factor range of the read noise (default synthetic.READ_RANGE)


# The validation patches' seed: the same whatever the training seed, so that runs with
# different seeds report comparable validation scores.
VALIDATION_SEED = 1_000_003


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The random source of one sample."""
    return np.random.default_rng([seed, index])


class StepSampler(Sampler[int]):
    """Indices of the samples of training steps ``start`` .. ``end - 1``, for one rank.

    Step s of rank r takes samples ``(s * world + r) * batch + b`` for b < batch: ranks never
    share a sample, and a resumed run continues exactly where the stopped one was.
    """

    def __init__(self, start: int, end: int, batch: int, rank: int = 0, world: int = 1) -> None:
        self.start, self.end, self.batch, self.rank, self.world = start, end, batch, rank, world

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start, self.end):
            first = (step * self.world + self.rank) * self.batch
            yield from range(first, first + self.batch)

    def __len__(self) -> int:
        return max(0, self.end - self.start) * self.batch


def to_tensor_image(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8/uint16/float -> (3, H, W) float32 in [0, 1]."""
    if array.dtype == np.uint8:
        scale = 255.0
    elif array.dtype == np.uint16:
        scale = 65535.0
    else:
        scale = 1.0
    return torch.from_numpy(np.ascontiguousarray(array[..., :3].transpose(2, 0, 1))).float() / scale
