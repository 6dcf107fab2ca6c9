"""Shared fixtures and helpers: scenes, DNGs, photographs and tiny networks made by the tests,
and the real files in ../shared/data when they are present (tests that need them skip otherwise)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from camnet_cli import metrics
from camnet_cli.data.unprocess import SyntheticRaw, unprocess
from camnet_cli.dng import DngMetadata, to_dn, write_dng
from camnet_cli.engine import Engine
from camnet_cli.losses import _VGG19
from camnet_cli.model import EnhanceNet, EnhanceNetConfig, OneStageNet, OneStageNetConfig, RestoreNet, RestoreNetConfig
from camnet_cli.pipeline import develop
from camnet_cli.weights import save_weights

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

OMEGAS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]  # noise levels (omega = shot + read**2) the noise tests run at

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


def write_photos(folder: Path, count: int, height: int, width: int) -> Path:
    """``count`` test scenes saved as 8-bit PNGs p0.png, p1.png, ... in ``folder``: photographs to train and evaluate on."""
    for i in range(count):
        img = (scene(height, width, seed=i).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(img).save(folder / f"p{i}.png")
    return folder


@pytest.fixture
def photo_dir(tmp_path) -> Path:
    return write_photos(tmp_path, 3, 160, 224)


def smooth_packed(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A (4, height, width) packed raw: smooth structure plus noise (a random field would be all texture)."""
    y, x = np.mgrid[0:height, 0:width] / 512.0
    base = 0.25 + 0.15 * np.sin(6 * x + 3 * y) * np.cos(4 * y)
    noise = np.random.default_rng(seed).normal(0, 0.01, (4, height, width)).astype(np.float32)
    return np.stack([base * g for g in (0.5, 1.0, 1.0, 0.7)]).astype(np.float32) + noise


def with_grid(image: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``image`` plus a fixed offset per position of every 2x2 block: offsets (C, 2, 2)."""
    h, w = image.shape[-2:]
    return image + offsets.repeat(1, h // 2, w // 2)


def write_vgg19(path: Path) -> Path:
    """A VGG-19 feature stack with random weights, as the safetensors file ``--perceptual`` takes."""
    g = torch.Generator().manual_seed(0)
    state, cin, index = {}, 3, 0
    for spec in _VGG19:
        if spec == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(int(spec), cin, 3, 3, generator=g) * 0.05
        state[f"features.{index}.bias"] = torch.zeros(int(spec))
        cin, index = int(spec), index + 2
    save_file(state, path)
    return path


def develop_tensors(engine: Engine, packed: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(XYZ, sRGB), each (3, H, W), of a packed raw through the development path: the a7R III's
    white balance, an identity camera matrix, no chroma filter."""
    out = develop(engine, packed, 1e-3, (2.47, 1.0, 1.53), np.eye(3), chroma=0)
    return out.xyz_image(), torch.from_numpy(out.srgb).permute(2, 0, 1)


def relative_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR with the reference's range as peak: random networks do not output [0, 1]."""
    span = float(b.max() - b.min())
    return metrics.psnr(a / span, b / span).item()


TINY_WIDTHS = (8, 16, 16, 16, 16)  # channel widths for fast model tests


def save_tiny_weights(folder: Path, seed: int = 0) -> dict[str, Path]:
    """Random tiny networks as weight files in ``folder``, by stage: restore-default, enhance-natural
    (the style "natural", naming that restoration) and onestage-default."""
    torch.manual_seed(seed)
    files = {stage: folder / f"{stage}-{name}.safetensors" for stage, name in (("restore", "default"), ("enhance", "natural"), ("onestage", "default"))}
    save_weights(files["restore"], RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)))
    save_weights(files["enhance"], EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS)), style="natural", extra={"restore": "default"})
    save_weights(files["onestage"], OneStageNet(OneStageNetConfig(channels=TINY_WIDTHS)))
    return files


@pytest.fixture(scope="session")
def tiny_weight_files(tmp_path_factory) -> dict[str, Path]:
    """``save_tiny_weights`` once for the session: the files to start training from (``--init``, ``finetune``)."""
    return save_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def tiny_engine():
    """An engine with random tiny networks, on the CPU in fp32, untiled."""
    return Engine(RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)), EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS)), device="cpu", precision="fp32", tile=0)


@pytest.fixture
def tiny_weights(tiny_weight_files, monkeypatch) -> Path:
    """Random tiny networks installed as the default style and restoration weights."""
    folder = tiny_weight_files["restore"].parent
    monkeypatch.setenv("CAMNET_WEIGHTS", str(folder))
    return folder
