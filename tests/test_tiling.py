import pytest
import torch

from camnet_cli.engine import Engine
from camnet_cli.model import EnhanceNet, EnhanceNetConfig, RestoreNet, RestoreNetConfig
from camnet_cli.tiling import blend_weights, plan_tiles, run_tiled
from tests.conftest import TINY_WIDTHS, develop_tensors, relative_psnr, smooth_packed


@pytest.fixture(scope="module")
def tiny_nets():
    torch.manual_seed(0)
    return RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)), EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS))


@pytest.fixture(scope="module")
def packed():
    """A 512x768 raw, packed: 3x4 tiles of 128 packed pixels."""
    return smooth_packed(256, 384)


@pytest.mark.parametrize("h, w, tile, overlap", [(512, 768, 192, 64), (160, 160, 144, 16), (1024, 64, 256, 32), (64, 64, 256, 32)])
def test_tile_plan_covers_and_partitions(h, w, tile, overlap):
    tiles = plan_tiles(h, w, tile, overlap, 16)
    covered = torch.zeros(h, w, dtype=torch.int32)
    owned = torch.zeros(h, w, dtype=torch.int32)
    for t in tiles:
        assert t.y % 16 == 0 and t.x % 16 == 0 and t.size[0] <= tile and t.size[1] <= tile
        covered[t.y : t.y + t.size[0], t.x : t.x + t.size[1]] = 1
        top, bottom, left, right = t.own
        owned[t.y + top : t.y + bottom, t.x + left : t.x + right] += 1
        weights = blend_weights(t, (h, w), overlap)
        assert weights.shape == t.size and (weights > 0).all() and weights.max() == 1.0
    assert covered.all() and (owned == 1).all()


def test_tiled_equals_untiled(tiny_nets, packed):
    """512x768 through random tiny networks, whole and in tiles, both stages."""
    restore, enhance = tiny_nets
    whole = Engine(restore, enhance, device="cpu", precision="fp32", tile=0)
    tiled = Engine(restore, enhance, device="cpu", precision="fp32", tile=128, overlap=32, batch=2)
    xyz_w, srgb_w = develop_tensors(whole, packed)
    xyz_t, srgb_t = develop_tensors(tiled, packed)
    assert tiled.last["restore"].tile == 128 and whole.last["restore"].tile == 0
    assert xyz_t.shape == xyz_w.shape == srgb_t.shape == (3, 512, 768)
    assert relative_psnr(xyz_t, xyz_w) >= 45
    assert relative_psnr(srgb_t, srgb_w) >= 45

    # No seams: along no row or column (tile borders included) does the tiled image differ by
    # as much as one 8-bit level on average (the worst measured: about an eighth of one).
    for tiled_img, whole_img in ((xyz_t, xyz_w), (srgb_t, srgb_w)):
        diff = (tiled_img - whole_img).abs().mean(dim=0)
        span = float(whole_img.max() - whole_img.min())
        for profile in (diff.mean(dim=0), diff.mean(dim=1)):
            assert profile.max() < span / 255


def test_without_shared_global_vector_tiles_would_jump(tiny_nets, packed):
    """The same tiling with each tile's own global vector is visibly worse: the shared vector matters."""
    restore, _ = tiny_nets
    x = restore.prepare(torch.from_numpy(packed)[None], 1e-3)
    with torch.no_grad():
        whole = restore.unet(x)
        own = torch.zeros_like(whole)
        for ty in range(0, packed.shape[-2], 128):
            for tx in range(0, packed.shape[-1], 128):
                own[..., ty : ty + 128, tx : tx + 128] = restore.unet(x[..., ty : ty + 128, tx : tx + 128])
        shared = run_tiled(restore.unet, x, 128, 32)
    assert relative_psnr(shared, whole) > relative_psnr(own, whole) + 10


@pytest.mark.parametrize("h, w", [(100, 150), (37, 200), (64, 64), (12, 9)])
def test_a_padded_crop_is_the_crop_of_the_padded_input(tiny_nets, h, w):
    """Tiles read the padding an untiled run adds (reflected, or replicated on a small side) from
    the input itself, crop by crop: the same values as cropping the padded input."""
    unet = tiny_nets[0].unet
    x = torch.rand(1, 4, h, w).contiguous(memory_format=torch.channels_last)
    padded = unet._pad(x)
    ph, pw = padded.shape[-2:]
    assert (ph, pw) == unet.padded_size(h, w)
    tile = min(ph, pw, 64) // unet.multiple * unet.multiple
    for t in plan_tiles(ph, pw, tile, unet.multiple, unet.multiple):
        crop = unet.padded_crop(x, (t.y, t.x), t.size)
        assert torch.equal(crop, padded[..., t.y : t.y + t.size[0], t.x : t.x + t.size[1]]), (t.y, t.x)


def test_tiles_keep_their_contracting_path_between_the_passes(tiny_nets, packed, monkeypatch):
    """Pass 1 keeps the deeper levels of each tile's contracting path, as many as KEEP_BYTES
    holds, and pass 2 computes only the others again; what is kept changes no pixel. A network
    given its input's kept path computes the very same output."""
    from camnet_cli import tiling

    restore, _ = tiny_nets
    x = restore.prepare(torch.from_numpy(packed)[None], 1e-3)
    unet = restore.unet
    tiles = len(plan_tiles(*unet.padded_size(*x.shape[-2:]), 128, 32, unet.multiple))
    level = [128 * 128 * c * 4 * tiles >> 2 * k for k, c in enumerate(unet.config.channels[:-1])]  # fp32 bytes
    results = []
    for budget, runs in [(10 * sum(level), (1, 1)), (sum(level[1:]) * 1.1, (2, 1)), (0, (2, 2))]:
        monkeypatch.setattr(tiling, "KEEP_BYTES", budget)
        calls = [0, 0]
        hooks = [unet.encoders[k].register_forward_hook(lambda *_, k=k, calls=calls: calls.__setitem__(k, calls[k] + 1)) for k in (0, 1)]
        with torch.no_grad():
            results.append(run_tiled(unet, x, 128, 32))
        for hook in hooks:
            hook.remove()
        assert tiles > 4 and calls == [tiles * n for n in runs], budget
    assert all(torch.equal(r, results[0]) for r in results[1:])
    with torch.no_grad():
        crop = x[..., :128, :160]
        pooled = torch.rand(1, unet.global_fc[0].in_features)
        for first in (0, 2):
            assert torch.equal(unet(crop, pooled, unet.encode(crop, first)), unet(crop, pooled))
