"""Shared fixtures: synthetic scenes and DNGs made by the tests, and the real files in
../shared/data when they are present (tests that need them skip otherwise)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from camnet_cli.data.unprocess import SyntheticRaw, unprocess
from camnet_cli.dng import DngMetadata, to_dn, write_dng

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CAMNET_SHARED_DATA", REPO.parent / "shared" / "data"))
SONY_ARW = SHARED_DATA / "raw" / "sony_ILCE-7RM3_iso3200_DSC2164.ARW"  # Sony a7R III, ISO 3200
METADATA_ONLY = SHARED_DATA / "raw" / "metadata_only"  # real camera files with their pixels stripped
PHOTOS = SHARED_DATA / "photos"
EXAMPLE_DNG = REPO / "examples" / "sony_a7r3_iso3200_crop.dng"  # a crop of SONY_ARW, shipped

# The Sony a7R III's ColorMatrix (XYZ -> camera, D65) as LibRaw reports it for SONY_ARW.
SONY_XYZ_TO_CAM = np.array(
    [[0.6640, -0.1847, -0.0503], [-0.5238, 1.3010, 0.2474], [-0.0993, 0.1673, 0.6527]]
)


SYNTHETIC_CAMERA = DngMetadata(make="camnet", model="synthetic", iso=800, exposure_time=0.01)


@pytest.fixture
def sony_arw() -> Path:
    if not SONY_ARW.exists():
        pytest.skip(f"shared raw not present: {SONY_ARW}")
    return SONY_ARW


@pytest.fixture
def metadata_only() -> list[Path]:
    files = sorted(METADATA_ONLY.glob("*")) if METADATA_ONLY.is_dir() else []
    if not files:
        pytest.skip(f"shared metadata-only raws not present: {METADATA_ONLY}")
    return files


def scene(height: int = 256, width: int = 384, seed: int = 0) -> torch.Tensor:
    """A test scene in sRGB, (3, H, W): smooth shading, hard-edged shapes and soft texture.

    Band-limited like an image through a lens, so that noise is the only pixel-level signal.
    """
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    img = torch.stack([0.2 + 0.6 * x, 0.15 + 0.5 * y, 0.7 - 0.5 * x * y])
    for _ in range(6):  # discs and boxes of flat colour
        cy, cx, r = torch.rand(3, generator=g) * torch.tensor([1.0, 1.0, 0.25])
        mask = ((y - cy) ** 2 + (x - cx) ** 2 < r**2) if torch.rand(1, generator=g) < 0.5 else ((y - cy).abs() < r) & ((x - cx).abs() < r)
        img = torch.where(mask, torch.rand(3, 1, 1, generator=g) * 0.9 + 0.05, img)
    low = torch.nn.functional.interpolate(torch.rand(1, 3, height // 16, width // 16, generator=g), size=(height, width), mode="bicubic")[0]
    return lens_blur((img + 0.1 * (low - 0.5)).clamp(0, 1))


def lens_blur(img: torch.Tensor, sigma: float = 0.8) -> torch.Tensor:
    """Gaussian blur of a (C, H, W) image, as a lens and anti-aliasing filter do to a raw."""
    r = int(3 * sigma + 0.5)
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, 1, -1)
    x = img[:, None]
    x = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (r, r, 0, 0), mode="reflect"), k)
    x = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 0, r, r), mode="reflect"), k.transpose(-1, -2))
    return x[:, 0]


def synthetic_raw(
    shot: float = 1e-3, read: float = 2e-3, seed: int = 0, height: int = 256, width: int = 384, wb=(2.2, 1.0, 1.6)
) -> SyntheticRaw:
    return unprocess(
        scene(height, width, seed),
        xyz_to_cam=SONY_XYZ_TO_CAM,
        wb=wb,
        shot=shot,
        read=read,
        generator=torch.Generator().manual_seed(seed),
    )


def write_synthetic_dng(
    path: Path,
    raw: SyntheticRaw,
    *,
    cfa_offset: tuple[int, int] = (0, 0),
    black: int | tuple[int, int, int, int] = 512,
    white: int = 16383,
    with_matrix: bool = True,
    with_wb: bool = True,
    with_noise_profile: bool = True,
    metadata: DngMetadata = SYNTHETIC_CAMERA,
) -> np.ndarray:
    """Write a synthetic raw as a DNG; starting the RGGB mosaic at ``cfa_offset`` gives the other phases.

    ``black`` is one level or four, per 2x2 site of the *written* file. Returns the DN mosaic as written.
    """
    dy, dx = cfa_offset
    pattern = np.array([["R", "G"], ["G", "B"]])
    cfa = "".join(pattern[(dy + i) % 2, (dx + j) % 2] for i in (0, 1) for j in (0, 1))
    mosaic = raw.mosaic[0].numpy()[dy:, dx:]
    dn = to_dn(mosaic, black, white)
    write_dng(
        path,
        dn,
        cfa_pattern=cfa,
        black_level=black,
        white_level=white,
        xyz_to_cam=raw.xyz_to_cam if with_matrix else None,
        as_shot_neutral=[1 / raw.wb[0], 1.0, 1 / raw.wb[2]] if with_wb else None,
        noise_profile=(raw.shot, raw.read**2) if with_noise_profile else None,
        metadata=metadata,
    )
    return dn


TINY_WIDTHS = (8, 16, 16, 16, 16)


@pytest.fixture
def tiny_weights(tmp_path_factory, monkeypatch) -> Path:
    """Random tiny networks installed as the default style and restoration weights."""
    from camnet_cli.model import EnhanceNet, EnhanceNetConfig, RestoreNet, RestoreNetConfig
    from camnet_cli.weights import save_weights

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    save_weights(folder / "restore-default.safetensors", RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)))
    save_weights(
        folder / "enhance-natural.safetensors",
        EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS)),
        style="natural",
        extra={"restore": "default"},
    )
    monkeypatch.setenv("CAMNET_WEIGHTS", str(folder))
    return folder
