"""Running a UNet over an image in tiles, without seams or tone jumps.

Tiles are cut from the UNet's input (packed resolution), on the UNet's own grid
(positions and sizes multiples of 2**(levels - 1), so every tile pools and upsamples
exactly as the whole image would), overlap, and are blended with weights that fall to
zero towards the tile borders shared with a neighbour.

The global transform block needs the mean of the coarsest features over the *whole*
image. A first pass over the tiles adds up those features over each tile's own region
(the tiles' regions partition the image); the second pass gives every tile that one
mean. The first pass keeps the deeper levels of each tile's contracting path for the second,
which computes only the finer levels again.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from camnet_cli.model import UNet
from camnet_cli.model.networks import Encoded


@dataclass(frozen=True)
class Tile:
    """One tile: where it is cut (``y``, ``x``, ``size``) and the region it owns for pooling."""

    y: int
    x: int
    size: tuple[int, int]
    own: tuple[int, int, int, int]  # (top, bottom, left, right) in the tile's coordinates


def plan_tiles(height: int, width: int, tile: int, overlap: int, multiple: int) -> list[Tile]:
    """Cover a (height, width) image, both multiples of ``multiple``, with tiles of at most ``tile``.

    Per axis: as few tiles as cover the image with ``overlap``, each then only as large as
    needed (so no tile mostly repeats its neighbour), starting on multiples of ``multiple``.
    All tiles have one size, so they batch. Each owns the part of the image nearest to it.
    """
    if height % multiple or width % multiple or tile % multiple or overlap % multiple:
        raise ValueError(f"sizes must be multiples of {multiple}: image {height}x{width}, tile {tile}, overlap {overlap}")
    (ys, th), (xs, tw) = _axis(height, tile, overlap, multiple), _axis(width, tile, overlap, multiple)
    y_own, x_own = _ownership(ys, th, height), _ownership(xs, tw, width)
    return [Tile(y, x, (th, tw), (*yo, *xo)) for y, yo in zip(ys, y_own) for x, xo in zip(xs, x_own)]


def _axis(length: int, tile: int, overlap: int, multiple: int) -> tuple[list[int], int]:
    """Tile starts and the tile size along one axis."""
    if tile >= length:
        return [0], length
    count = math.ceil((length - overlap) / (tile - overlap))
    size = min(tile, math.ceil((length + (count - 1) * overlap) / count / multiple) * multiple)
    step = (length - size) / (count - 1)
    starts = sorted({min(round(i * step / multiple) * multiple, length - size) for i in range(count)})
    return starts, size


def _ownership(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    """Split [0, length) at the middle of each overlap; return each tile's share in its own coordinates."""
    bounds = [0] + [(b + (a + tile)) // 2 for a, b in zip(starts, starts[1:])] + [length]
    return [(lo - s, hi - s) for s, lo, hi in zip(starts, bounds, bounds[1:])]


def blend_weights(tile: Tile, image: tuple[int, int], overlap: int) -> torch.Tensor:
    """(h, w) weights: 1 inside, a cosine ramp to ~0 across overlaps with neighbours, 1 at image edges.

    The outer quarter of an overlap gets no weight at all: its pixels saw reflected
    padding instead of the real neighbourhood.
    """

    def ramp(start: int, size: int, length: int) -> torch.Tensor:
        w = torch.ones(size)
        n = min(overlap, size // 2)
        if n == 0:
            return w
        dead = n // 4
        t = torch.clamp((torch.arange(n, dtype=torch.float32) - dead + 0.5) / (n - 2 * dead), 0.0, 1.0)
        rise = 0.5 - 0.5 * torch.cos(math.pi * t) + 1e-6
        if start > 0:
            w[:n] = torch.minimum(w[:n], rise)
        if start + size < length:
            w[-n:] = torch.minimum(w[-n:], rise.flip(0))
        return w

    h, w = tile.size
    return ramp(tile.y, h, image[0])[:, None] * ramp(tile.x, w, image[1])[None, :]


# How much of the tiles' contracting paths pass 1 keeps for pass 2: the deepest levels first, which
# cost as much to compute as the finer ones and take a quarter of the memory per level. On the
# 18 MP ARW, lite: all five levels, 344 MB (in bf16) for each network in turn, so pass 2 runs no
# encoder at all; measured against keeping levels 3-5 (73 MB), the whole develop 0.94x the wall
# time at a peak RSS of 1.40 GB against 1.33. Larger frames keep the deeper levels only.
KEEP_BYTES = 384 << 20


class _Kept:
    """The tiles' contracting paths, kept from pass 1 for pass 2 in the tiles' order: one block
    per level for all tiles, not a tensor per tile and level. Freed, a block of that size goes
    back to the system at once; a tensor per tile left the heap fragmented and the process
    150 MB larger for the rest of the frame (measured on the 18 MP ARW)."""

    def __init__(self, unet: UNet, crop: torch.Tensor, tiles: int) -> None:
        c, (h, w) = unet.config.channels, crop.shape[-2:]
        # Level k's skip: c[k] channels at 1 / 2**k of the tile's side; the coarsest input: the last one's, halved.
        sizes = [c[k] * (h >> k) * (w >> k) for k in range(len(c) - 1)] + [c[-2] * (h >> len(c) - 1) * (w >> len(c) - 1)]
        sizes = [n * crop.element_size() * tiles for n in sizes]
        self.first = len(c) - 1  # the coarsest input alone, at least
        while self.first > 0 and sum(sizes[self.first - 1 :]) <= KEEP_BYTES:
            self.first -= 1
        self.blocks: list[torch.Tensor] = []
        self.stored = self.taken = 0
        self.tiles = tiles

    def append(self, encoded: Encoded) -> None:
        kept = [*encoded.skips[self.first :], encoded.coarse]
        if not self.blocks:
            self.blocks = [_block(t, self.tiles) for t in kept]
        for block, t in zip(self.blocks, kept):
            block[self.stored].copy_(t[0])
        self.stored += 1

    def take(self, n: int) -> Encoded:
        """The next ``n`` tiles' paths, as one batch's."""
        part = slice(self.taken, self.taken + n)
        self.taken += n
        *skips, coarse = (block[part] for block in self.blocks)
        return Encoded([None] * self.first + skips, coarse)


def _block(like: torch.Tensor, n: int) -> torch.Tensor:
    """An empty (n, ...) tensor for n of ``like``'s first item, in its memory format."""
    channels_last = like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty((n, *like.shape[1:]), dtype=like.dtype, device=like.device, memory_format=fmt)


def _batches(tiles: list[Tile], batch: int) -> Iterator[list[Tile]]:
    for i in range(0, len(tiles), batch):
        yield tiles[i : i + batch]


@torch.no_grad()
def run_tiled(unet: UNet, x: torch.Tensor, tile: int, overlap: int = 64, batch: int = 1) -> torch.Tensor:
    """Run ``unet`` on a (1, C, H, W) input in tiles; the result equals an untiled run up to blending.

    Args:
        unet: the network; ``x`` must be on its device and in its dtype.
        x: the network's input, any size.
        tile: tile side in input pixels (rounded down to the UNet's multiple).
        overlap: overlap between tiles in input pixels (rounded up to the UNet's multiple).
        batch: how many tiles go through the network at once.

    Returns:
        (1, out_channels, H, W), float32 on the input's device.
    """
    m = unet.multiple
    h, w = x.shape[-2:]
    tile = max(unet.min_size, tile // m * m)
    overlap = math.ceil(overlap / m) * m
    if tile >= max(h, w) + m:
        return unet(x).float()
    ph, pw = unet.padded_size(h, w)  # the same padding as an untiled run, a tile's crop at a time
    tiles = plan_tiles(ph, pw, tile, overlap, m)

    def crop(t: Tile) -> torch.Tensor:
        return unet.padded_crop(x, (t.y, t.x), t.size)

    # Pass 1: the global feature mean over the image (valid pixels only, as untiled). The deeper
    # levels of each tile's contracting path are kept for pass 2 (KEEP_BYTES), which computes only
    # the others again.
    total, count, kept = None, 0, None
    for group in _batches(tiles, batch) if unet.global_fc is not None else ():
        crops = torch.cat([crop(t) for t in group])
        for i, t in enumerate(group):
            if kept is None:
                kept = _Kept(unet, crops[:1], len(tiles))
            encoded = unet.encode(crops[i : i + 1], kept.first)
            kept.append(encoded)
            top, bottom, left, right = t.own
            region = (top, min(bottom, h - t.y), left, min(right, w - t.x))
            if region[1] <= region[0] or region[3] <= region[2]:
                continue  # owns only padding
            sums, n = unet.pooled_sums(encoded, region)
            total = sums.float() if total is None else total + sums.float()
            count += n
        del crops, encoded
    pooled = None if total is None else (total / count).to(x.dtype)

    # Pass 2: every tile with the same global vector, blended.
    out = weight = None
    for group in _batches(tiles, batch):
        crops = torch.cat([crop(t) for t in group])
        encoded = None if kept is None else kept.take(len(group))
        result = unet(crops, None if pooled is None else pooled.expand(len(group), -1), encoded).float()
        del encoded
        if out is None:
            out = torch.zeros(1, result.shape[1], ph, pw, device=x.device)
            weight = torch.zeros(1, 1, ph, pw, device=x.device)
        for i, t in enumerate(group):
            wt = blend_weights(t, (ph, pw), overlap).to(x.device)
            out[..., t.y : t.y + t.size[0], t.x : t.x + t.size[1]].addcmul_(result[i], wt)
            weight[..., t.y : t.y + t.size[0], t.x : t.x + t.size[1]] += wt
    del kept
    return out.div_(weight)[..., :h, :w]
