"""CameraNet's two networks: Restore-Net and Enhance-Net (paper §III-C, Fig. 4).

Both are 5-level UNets. Each level: a 3x3 conv + LeakyReLU(0.2), then a block of two
3x3 convs. Down: 3x3 max-pool, stride 2. Up: 2x2 transposed conv, concatenate the skip,
a conv, a block. A global transform block turns the mean of the coarsest level's input
features into a per-channel scale and bias for that level's output (Eq. 4; the authors'
code applies scale *and* bias). Output: a 1x1 conv to 12 planes and PixelShuffle(2); in
Restore-Net a linear 3x3 path from the packed planes to those 12 planes is added first (camnet's,
see RestoreNetConfig.skip); in Enhance-Net a notch at the Nyquist frequencies follows (camnet's,
``color.remove_grid``, see EnhanceNetConfig.notch).
Convolutions pad by reflection, as the authors' ``U_net2``.

Shapes: packed planes are (B, C, H/2, W/2) for an image of H x W pixels.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from camnet_cli import color, noise
from camnet_cli.model.config import RESTORE_IN_CHANNELS, SKIPS, EnhanceNetConfig, OneStageNetConfig, RestoreNetConfig

_SLOPE = 0.2  # LeakyReLU slope of the authors' lrelu


def _conv(cin: int, cout: int, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, padding_mode="reflect")


# Inference without a graph: each convolution's reflected padding is written by the step before
# it (the activation writes into the middle of a padded buffer, the decoder's concatenation too)
# instead of by a copy of its own. The network is bound by memory traffic on a CPU, and the same
# values reach the same convolutions, so the outputs are bit-identical (tested).


def _fused() -> bool:
    """Whether the graph-free path applies: no autograd graph to keep, and not being traced by torch.compile."""
    return not torch.is_grad_enabled() and not torch.compiler.is_compiling()


def _keeps_graph(*tensors: torch.Tensor) -> bool:
    """Whether autograd records what is done to ``tensors`` (training): then nothing is done in place."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _padded_buffer(like: torch.Tensor, channels: int, pad: int) -> torch.Tensor:
    n, _, h, w = like.shape
    layout = torch.channels_last if like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous() else torch.contiguous_format
    return torch.empty((n, channels, h + 2 * pad, w + 2 * pad), dtype=like.dtype, device=like.device, memory_format=layout)


def _centre(buf: torch.Tensor, pad: int) -> torch.Tensor:
    return buf[..., pad : buf.shape[-2] - pad, pad : buf.shape[-1] - pad] if pad else buf


def _reflect_borders(buf: torch.Tensor, pad: int) -> torch.Tensor:
    """Fill the ``pad`` outer rows and columns of ``buf`` by reflecting its centre (F.pad's "reflect")."""
    if pad:
        h, w = buf.shape[-2] - 2 * pad, buf.shape[-1] - 2 * pad
        cols = slice(pad, pad + w)
        buf[..., :pad, cols] = buf[..., pad + 1 : 2 * pad + 1, cols].flip(-2)
        buf[..., pad + h :, cols] = buf[..., h - 1 : pad + h - 1, cols].flip(-2)
        buf[..., :pad] = buf[..., pad + 1 : 2 * pad + 1].flip(-1)
        buf[..., pad + w :] = buf[..., w - 1 : pad + w - 1].flip(-1)
    return buf


def _activate_padded(y: torch.Tensor, pad: int) -> torch.Tensor:
    """LeakyReLU of ``y`` written into a buffer ``pad`` larger each side, its border reflected."""
    buf = _padded_buffer(y, y.shape[1], pad)
    torch.ops.aten.leaky_relu.out(y, _SLOPE, out=_centre(buf, pad))
    return _reflect_borders(buf, pad)


def _conv_padded(conv: nn.Conv2d, padded: torch.Tensor) -> torch.Tensor:
    """``conv`` of an input already padded by its padding."""
    return F.conv2d(padded, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


def _init(module: nn.Module) -> None:
    """He initialisation for LeakyReLU(0.2), zero biases: the signal keeps its scale through
    the 20-odd layers (PyTorch's default shrinks it at every layer, and a random network's
    output would barely depend on its input).

    A residual block's last conv starts at zero, so the block starts as the identity: added
    up over Enhance-Net's nine residual blocks, He-initialised branches would multiply the
    signal's variance by hundreds and training would crawl (SkipInit, De & Smith 2020;
    Fixup, Zhang et al. 2019).

    Tensors on the meta device (a network built only for its shapes) hold no values to set.
    """
    if any(p.is_meta for p in module.parameters(recurse=False)):
        return
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, a=_SLOPE, nonlinearity="leaky_relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    if isinstance(module, Block) and module.residual:
        nn.init.zeros_(module.conv2.weight)


class Block(nn.Module):
    """conv -> LeakyReLU -> conv, plus the input when residual, then LeakyReLU (unless last)."""

    def __init__(self, channels: int, dilations: tuple[int, int], residual: bool, activate: bool = True) -> None:
        super().__init__()
        self.conv1 = _conv(channels, channels, dilations[0])
        self.conv2 = _conv(channels, channels, dilations[1])
        self.residual = residual
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fused():
            return self.forward_padded(F.pad(x, (self.conv1.padding[0],) * 4, mode="reflect"), x)
        # In-place activations and adds: on a CPU this network is bound by memory traffic.
        y = self.conv2(F.leaky_relu(self.conv1(x), _SLOPE, inplace=True))
        if self.residual:
            y += x
        return F.leaky_relu(y, _SLOPE, inplace=True) if self.activate else y

    def forward_padded(self, padded: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``forward(x)`` without a graph, given ``x`` padded for conv1 (``x``: its centre)."""
        y = _conv_padded(self.conv2, _activate_padded(_conv_padded(self.conv1, padded), self.conv2.padding[0]))
        if self.residual:
            y += x
        return F.leaky_relu(y, _SLOPE, inplace=True) if self.activate else y


class Level(nn.Module):
    """A conv to the level's width + LeakyReLU, then a block."""

    def __init__(self, cin: int, cout: int, dilations: tuple[int, int], residual: bool, activate: bool = True) -> None:
        super().__init__()
        self.conv = _conv(cin, cout)
        self.block = Block(cout, dilations, residual, activate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fused():
            return self.forward_padded(F.pad(x, (self.conv.padding[0],) * 4, mode="reflect"))
        return self.block(F.leaky_relu(self.conv(x), _SLOPE, inplace=True))

    def activated(self, padded: torch.Tensor) -> torch.Tensor:
        """The first conv + LeakyReLU of an input padded for it, padded in turn for the block."""
        return _activate_padded(_conv_padded(self.conv, padded), self.block.conv1.padding[0])

    def forward_padded(self, padded: torch.Tensor) -> torch.Tensor:
        """``forward`` without a graph, of an input already padded for the first conv."""
        first = self.activated(padded)
        return self.block.forward_padded(first, _centre(first, self.block.conv1.padding[0]))


class Encoded(NamedTuple):
    """A UNet's contracting path for one input (``UNet.encode``): the skips, finest first, those
    not kept None, and the coarsest level's input."""

    skips: list[torch.Tensor | None]
    coarse: torch.Tensor


class UNet(nn.Module):
    """The UNet both CameraNet stages share; ``out_channels`` planes at the input's resolution.

    Any input size works: the input is padded to a multiple of 2**(levels - 1) (and to the
    least size the coarsest dilations can reflect) and the output cropped back.
    """

    def __init__(self, config: RestoreNetConfig | EnhanceNetConfig | OneStageNetConfig, out_channels: int = 12) -> None:
        super().__init__()
        c, d = config.channels, config.dilations
        if len(c) != len(d) or len(c) < 2:
            raise ValueError(f"channels {c} and dilations {d} must be equally long, at least 2 levels")
        self.config = config
        ins = (config.in_channels,) + c[:-2]
        # The authors' contracting blocks dilate both convs; middle and expanding blocks the first only.
        self.encoders = nn.ModuleList(Level(i, o, (dil, dil), config.residual) for i, o, dil in zip(ins, c[:-1], d[:-1]))
        self.down = nn.MaxPool2d(3, stride=2, padding=1)
        self.middle = Level(c[-2], c[-1], (d[-1], 1), config.residual)
        self.global_fc = (
            nn.Sequential(nn.Linear(c[-1], 2 * c[-1]), nn.LeakyReLU(_SLOPE), nn.Linear(2 * c[-1], 2 * c[-1]))
            if config.global_block
            else None
        )
        self.ups = nn.ModuleList(nn.ConvTranspose2d(c[i + 1], c[i], 2, stride=2, bias=False) for i in reversed(range(len(c) - 1)))
        self.decoders = nn.ModuleList(
            Level(2 * c[i], c[i], (d[i], 1), config.residual, activate=i > 0) for i in reversed(range(len(c) - 1))
        )
        self.out = nn.Conv2d(c[0], out_channels, 1)
        self.multiple = 2 ** (len(c) - 1)
        self.apply(_init)
        # Reflection needs the map at level i to be larger than its dilation.
        least = max(2**i * (dil + 1) for i, dil in enumerate(d))
        self.min_size = math.ceil(least / self.multiple) * self.multiple

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        """The size an (h, w) input is padded to (at the bottom and right) before the UNet sees it."""
        return max(h + -h % self.multiple, self.min_size), max(w + -w % self.multiple, self.min_size)

    def _pad_mode(self, h: int, w: int) -> str:
        ph, pw = self.padded_size(h, w)
        return "reflect" if ph - h < h and pw - w < w else "replicate"

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = self.padded_size(h, w)
        if (ph, pw) == (h, w):
            return x
        return F.pad(x, (0, pw - w, 0, ph - h), mode=self._pad_mode(h, w))

    def padded_crop(self, x: torch.Tensor, start: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        """``self._pad(x)[..., y : y + th, x : x + tw]`` without padding the whole of ``x``: the
        rows and columns past its edge are indexed from it as the padding mode takes them."""
        h, w = x.shape[-2:]
        (y0, x0), (th, tw) = start, size
        if y0 + th <= h and x0 + tw <= w:
            return x[..., y0 : y0 + th, x0 : x0 + tw]
        reflect = self._pad_mode(h, w) == "reflect"

        def indices(first: int, count: int, length: int) -> torch.Tensor:
            i = torch.arange(first, first + count, device=x.device)
            return torch.where(i < length, i, 2 * (length - 1) - i) if reflect else i.clamp(max=length - 1)

        out = x
        if y0 + th > h:
            out = out.index_select(-2, indices(y0, th, h))
        else:
            out = out[..., y0 : y0 + th, :]
        if x0 + tw > w:
            out = out.index_select(-1, indices(x0, tw, w))
        else:
            out = out[..., x0 : x0 + tw]
        return out.contiguous(memory_format=torch.channels_last) if x.is_contiguous(memory_format=torch.channels_last) else out

    def _encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.down(x)
        return skips, x

    def encode(self, x: torch.Tensor, first: int = 1) -> Encoded:
        """The contracting path's outputs for an input, for ``forward(x, encoded=...)`` and
        ``pooled_sums``: the skips of level ``first`` and deeper (the finer ones, the largest to
        keep and the cheapest to compute again, are None), and the coarsest level's input."""
        skips, coarse = self._encode(self._pad(x))
        return Encoded([None] * first + skips[first:], coarse)

    def pooled(self, x: torch.Tensor, region: tuple[int, int, int, int] | None = None) -> tuple[torch.Tensor, int]:
        """Sum of the coarsest level's input features over a region, and how many positions.

        The global block needs their mean over the *whole image*; a tiled run adds these
        sums up over the tiles' own regions first.

        Args:
            x: (B, C, H, W) network input.
            region: (top, bottom, left, right) in input pixels; default the whole input.

        Returns:
            ``(sums, count)``: (B, C5) feature sums and the number of coarse positions summed.
        """
        h, w = x.shape[-2:]
        return self.pooled_sums(self.encode(x), region or (0, h, 0, w))

    def pooled_sums(self, encoded: Encoded, region: tuple[int, int, int, int]) -> tuple[torch.Tensor, int]:
        """``pooled`` from the input's ``encode``: the region is required."""
        top, bottom, left, right = region
        middle = F.leaky_relu(self.middle.conv(encoded.coarse), _SLOPE, inplace=True)
        m = self.multiple
        part = middle[..., top // m : math.ceil(bottom / m), left // m : math.ceil(right / m)]
        return part.sum(dim=(-2, -1)), part.shape[-2] * part.shape[-1]

    def forward(self, x: torch.Tensor, pooled: torch.Tensor | None = None, encoded: Encoded | None = None) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, out_channels, H, W).

        Args:
            pooled: (B, C5) mean of the coarsest input features over the whole image, when
                ``x`` is only a tile of it; by default the mean over ``x`` itself.
            encoded: ``encode(x)``, kept from an earlier pass over ``x``: only the levels it
                leaves out are computed again.
        """
        h, w = x.shape[-2:]
        if encoded is None:
            skips, coarse = self._encode(self._pad(x))
        else:
            skips, coarse, y = list(encoded.skips), encoded.coarse, self._pad(x)
            for k in range(next(k for k, skip in enumerate(skips + [coarse]) if skip is not None)):
                skips[k] = y = self.encoders[k](y)  # the levels not kept, computed again
                y = self.down(y)
        if _fused():
            padded = self.middle.activated(F.pad(coarse, (self.middle.conv.padding[0],) * 4, mode="reflect"))
            middle_in = _centre(padded, self.middle.block.conv1.padding[0])
            y = self.middle.block.forward_padded(padded, middle_in)
        else:
            middle_in = F.leaky_relu(self.middle.conv(coarse), _SLOPE, inplace=True)
            y = self.middle.block(middle_in)
        if self.global_fc is not None:
            if pooled is None:
                m = self.multiple
                pooled = middle_in[..., : math.ceil(h / m), : math.ceil(w / m)].mean(dim=(-2, -1))
            scale, bias = self.global_fc(pooled.to(middle_in.dtype)).chunk(2, dim=-1)
            y = F.leaky_relu(y * scale[..., None, None] + bias[..., None, None], _SLOPE, inplace=True)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            y = up(y)
            if _fused():
                # The concatenation written straight into the first conv's padded input.
                pad = decoder.conv.padding[0]
                padded = _padded_buffer(y, y.shape[1] + skip.shape[1], pad)
                torch.cat([y, skip], dim=1, out=_centre(padded, pad))
                y = decoder.forward_padded(_reflect_borders(padded, pad))
            else:
                y = decoder(torch.cat([y, skip], dim=1))
        # The output layer may be kept in float32 under a bf16/fp16 network (the engine does):
        # it is cheap, and the image keeps more than 8 bits of precision.
        if _fused() and y.dim() == 4 and y.shape[0] == 1 and y.is_contiguous(memory_format=torch.channels_last) and self.out.weight.dtype == torch.float32:
            # The 1x1 conv as one matrix product whose result is channels first, the layout the
            # tiles are blended into: the conv's channels-last result took 4 times as long to add in.
            _, c, ph, pw = y.shape
            pixels = y.permute(0, 2, 3, 1).reshape(ph * pw, c).float()  # (H*W, C), no copy but the cast
            flat = torch.addmm(self.out.bias[:, None], self.out.weight.view(-1, c), pixels.t())  # (out, H*W)
            return flat.view(1, -1, ph, pw)[..., :h, :w]
        return self.out(y.to(self.out.weight.dtype))[..., :h, :w]


# The lowest noise level Restore-Net is told: about the least noise a raw has (ISO 100 on a Sony
# a7S II, 6.0e-6; the shipped weights' range starts there). Below it the plane would be out of the
# range the weights were trained on, and a network told of less noise than any it has seen shifts
# colours (the shipped v6 weights scored 31.9 dB after the curve on clean held-out raws told 1e-8,
# 38.8 told this).
MIN_OMEGA = 6e-6


def noise_plane(omega: torch.Tensor) -> torch.Tensor:
    """What Restore-Net's noise plane holds for noise levels ``omega``: log10(omega) + 4, about -1.2
    at ISO 100 and +1.7 at ISO 25600 on a modern full-frame sensor; levels below ``MIN_OMEGA``
    count as it."""
    return torch.log10(omega.clamp_min(MIN_OMEGA)) + 4


# The read plane's values are held within the range the shipped weights were trained on (-1.3 to
# +1.0: the two Sony sensors' read noise times 0.5 to 6), with a margin. Beyond it the network
# extrapolates: told a read noise of 1e-6 at ISO 3200 (an estimate can fit none), v7 lost 0.6 dB
# after the curve, and a read noise above the level's own square root is no consistent profile.
READ_PLANE_RANGE = (-1.5, 1.2)


def read_plane(omega: torch.Tensor, read: torch.Tensor) -> torch.Tensor:
    """What Restore-Net's second noise plane holds (a config with ``in_channels`` 6): the read
    noise's share of ``omega``, log10(read² / omega) + 2.5, within ``READ_PLANE_RANGE``. About -0.6
    for a Sony a7R III at ISO 400 and +0.2 at ISO 25600; higher where the read noise is heavier for
    the same omega (small sensors, the shadows of a pushed exposure), which a network told omega
    alone under-denoises in the shadows."""
    share = (read.float() ** 2).clamp_min(1e-20) / omega.float().clamp_min(MIN_OMEGA)
    return (torch.log10(share) + 2.5).clamp(*READ_PLANE_RANGE)


def default_read(omega: torch.Tensor) -> torch.Tensor:
    """The read noise (a standard deviation) that goes with levels ``omega`` when only omega is
    known: ``noise.split_omega``'s (Brooks et al. 2019)."""
    values = [noise.split_omega(max(float(w), MIN_OMEGA)).read for w in omega.reshape(-1).tolist()]
    return torch.tensor(values, dtype=torch.float32, device=omega.device).reshape(omega.shape)


# How many packed pixels Restore-Net pads its input by (see RestoreNet.prepare).
_BORDER = 1
# Rows of packed planes the linear path is added in at once (RestoreNet._add_linear_path).
_LINEAR_BAND = 128


class RestoreNet(nn.Module):
    """Packed raw + noise level -> linear camera RGB at full resolution.

    White balance and the camera -> XYZ matrix are *not* learned: they come from the file's
    metadata and are applied afterwards (``color.camera_to_xyz``), so one network serves any
    Bayer camera. The network does what metadata cannot: demosaicing and denoising.
    """

    def __init__(self, config: RestoreNetConfig | OneStageNetConfig) -> None:
        super().__init__()
        self.config = config
        if config.in_channels not in RESTORE_IN_CHANNELS:
            raise ValueError(f"in_channels must be 5 (the noise level) or 6 (and the read noise's share), got {config.in_channels}")
        if config.skip not in SKIPS:
            raise ValueError(f"skip must be one of {SKIPS}, got {config.skip!r}")
        self.unet = UNet(config)
        self.skip: nn.Conv2d | None = None
        if config.skip == "adaptive":
            # Kernels W0 (output planes 0-11) and W1 (12-23); zero, so training starts from the UNet alone.
            self.skip = nn.Conv2d(4, 24, 3, bias=False)
            nn.init.zeros_(self.skip.weight)

    def prepare(self, packed: torch.Tensor, omega: torch.Tensor | float, read: torch.Tensor | float | None = None) -> torch.Tensor:
        """(B, 4, h, w) packed planes and (B,) noise levels -> (B, in_channels, h + 2, w + 2) UNet input:
        the planes, the noise level (``noise_plane``) and, with ``in_channels`` 6, the read noise's
        share of it (``read_plane``; ``read``: the read noise's standard deviation, None for
        ``default_read``'s). A 5-plane network ignores ``read``.

        The planes are padded by one (``color.pad_bayer``: two sensor pixels, the mosaic
        mirrored), so the border pixels are restored from neighbours where a sensor has them;
        ``finish`` crops the output back (better at the border than the UNet's own reflection of
        the planes, which breaks the Bayer phase).
        """
        if packed.dim() != 4 or packed.shape[1] != 4:
            raise ValueError(f"expected packed raw shaped (B, 4, h, w), got {tuple(packed.shape)}")
        omega = torch.as_tensor(omega, dtype=torch.float32, device=packed.device).reshape(-1, 1, 1, 1)
        levels = [noise_plane(omega)]
        if self.config.in_channels == RESTORE_IN_CHANNELS[1]:
            read = default_read(omega) if read is None else torch.as_tensor(read, dtype=torch.float32, device=packed.device).reshape(-1, 1, 1, 1)
            levels.append(read_plane(omega, read))
        planes = color.pad_bayer(packed, _BORDER)
        size = (packed.shape[0], 1, *planes.shape[2:])
        return torch.cat([planes, *(level.to(packed.dtype).expand(size) for level in levels)], dim=1)

    def linear_path(self, x: torch.Tensor) -> torch.Tensor:
        """The linear path's (B, 12, h, w) planes for a (B, in_channels, h, w) input from ``prepare``, in float32.

        The noise plane is one value per image, so each image's kernel is W0 + level * W1: one
        grouped convolution, edges replicated (a Bayer sample's nearest neighbours of its colour).
        """
        kernels, planes = self._linear_inputs(x)
        return F.conv2d(planes, kernels, groups=x.shape[0]).reshape(x.shape[0], 12, *x.shape[-2:])

    def _linear_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The linear path's kernels, (B * 12, 4, 3, 3), and its input planes, (1, B * 4, h + 2, w + 2)."""
        b, _, h, w = x.shape
        weight = self.skip.weight.float()  # type: ignore[union-attr]
        level = x[:, 4, 0, 0].float().reshape(b, 1, 1, 1, 1)
        kernels = (weight[:12] + level * weight[12:]).reshape(b * 12, 4, 3, 3)
        return kernels, F.pad(x[:, :4].float().reshape(1, b * 4, h, w), (1, 1, 1, 1), mode="replicate")

    def _add_linear_path(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``y + linear_path(x)`` written into ``y``, a band of rows at a time: no image-sized
        temporary, whose first touch of fresh memory took longer than the convolution (0.18 -> 0.05 s
        for 18 megapixels)."""
        kernels, planes = self._linear_inputs(x)
        b, _, h, w = x.shape
        for top in range(0, h, _LINEAR_BAND):
            rows = min(_LINEAR_BAND, h - top)
            y[:, :, top : top + rows] += F.conv2d(planes[..., top : top + rows + 2, :], kernels, groups=b).reshape(b, 12, rows, w)
        return y

    def finish(self, y: torch.Tensor, x: torch.Tensor, *, phases: bool = False) -> torch.Tensor:
        """The UNet's (B, 12, h + 2, w + 2) output for input ``x`` (from ``prepare``) -> (B, 3, 2h, 2w);
        with ``phases``, its phase planes (B, 12, h, w) (``color.apply_matrix``), not laid out.

        The linear path is added here, over the whole image, also when the UNet ran in tiles;
        then the border ``prepare`` added is cropped. Without a graph to keep, a float32 ``y`` is
        overwritten.
        """
        if self.skip is not None:
            if _keeps_graph(y, x):
                y = y.float() + self.linear_path(x)
            else:  # into the UNet's output, which nothing else holds: an image's worth less memory
                y = self._add_linear_path(y.float(), x)
        y = y[..., _BORDER:-_BORDER, _BORDER:-_BORDER]
        return y if phases else F.pixel_shuffle(y, 2)

    def forward(
        self, packed: torch.Tensor, omega: torch.Tensor | float, pooled: torch.Tensor | None = None, read: torch.Tensor | float | None = None
    ) -> torch.Tensor:
        x = self.prepare(packed, omega, read)
        return self.finish(self.unet(x, pooled), x)


# Rows of a band in EnhanceNet.finish (even).
FINISH_BAND = 256


class EnhanceNet(nn.Module):
    """Linear XYZ -> sRGB: tone, contrast and colour style."""

    def __init__(self, config: EnhanceNetConfig) -> None:
        super().__init__()
        if config.base < 0:
            raise ValueError(f"base must be 0 (off) or a positive gain, got {config.base}")
        self.config = config
        self.unet = UNet(config)
        if config.base > 0:
            # The output starts as the plain rendering; the UNet learns what the style adds.
            nn.init.zeros_(self.unet.out.weight)
            nn.init.zeros_(self.unet.out.bias)

    def prepare(self, xyz: torch.Tensor, out: torch.Tensor | None = None, *, phases: bool = False) -> torch.Tensor:
        """(B, 3, H, W) XYZ, H and W even -> (B, 12, H/2, W/2): clip, fixed curve, unshuffle. With
        ``phases``, ``xyz`` is already the image's phase planes (B, 12, H/2, W/2) (``color.apply_matrix``).

        ``out``: a (B, 12, H/2, W/2) tensor of any dtype and layout to fill and return instead,
        a band of rows at a time (no graph is kept): the same values, cast as ``out.to`` would,
        without the whole image in float32 beside it.
        """
        if phases and (xyz.dim() != 4 or xyz.shape[1] != 12):
            raise ValueError(f"expected XYZ phase planes shaped (B, 12, h, w), got {tuple(xyz.shape)}")
        if not phases and (xyz.dim() != 4 or xyz.shape[1] != 3 or xyz.shape[-2] % 2 or xyz.shape[-1] % 2):
            raise ValueError(f"expected XYZ shaped (B, 3, H, W) with even H, W, got {tuple(xyz.shape)}")
        s = 1 if phases else 2  # rows of xyz per row of planes
        if out is None:
            return color.linear_to_srgb(xyz) if phases else F.pixel_unshuffle(color.linear_to_srgb(xyz), 2)
        if out.shape != (xyz.shape[0], 12, xyz.shape[-2] // s, xyz.shape[-1] // s):
            raise ValueError(f"out must be shaped {(xyz.shape[0], 12, xyz.shape[-2] // s, xyz.shape[-1] // s)}, got {tuple(out.shape)}")
        with torch.no_grad():
            for top in range(0, out.shape[-2], FINISH_BAND // 2):
                rows = slice(top, top + FINISH_BAND // 2)
                band = color.linear_to_srgb(xyz[:, :, s * top : s * top + s * FINISH_BAND // 2])  # a new tensor: xyz is kept
                out[:, :, rows].copy_(band if phases else F.pixel_unshuffle(band, 2))
        return out

    def finish(self, y: torch.Tensor, xyz: torch.Tensor, *, phases: bool = False) -> torch.Tensor:
        """(B, 12, h, w) UNet output and the (B, 3, 2h, 2w) XYZ it was given (with ``phases``, its
        (B, 12, h, w) phase planes) -> sRGB: sub-pixel layout, the notch against its grid, then added
        to the plain rendering of the XYZ (EnhanceNetConfig.base; ``color.render_plain``) when the
        config has one.

        Without a graph to keep, a large image is finished in bands of rows, each with the rows the
        notch reads beyond it: the same pixels, and the notch's and the rendering's whole-image
        intermediates (the peak of a develop) become a band's."""
        s = 1 if phases else 2  # rows of xyz per row of y
        height = 2 * y.shape[-2]
        halo = 2 * math.ceil(color.notch_reach(self.config.notch) / 2)  # even: bands start on a y row
        if _keeps_graph(y, xyz) or height <= FINISH_BAND + 2 * halo:
            return self._finish(y, xyz, phases)
        out = torch.empty((y.shape[0], 3, height, 2 * y.shape[-1]), dtype=torch.float32, device=y.device)
        for top in range(0, height, FINISH_BAND):
            bottom = min(top + FINISH_BAND, height)
            a, b = max(0, top - halo), min(height, bottom + halo)
            band = self._finish(y[:, :, a // 2 : b // 2], xyz[:, :, a * s // 2 : b * s // 2], phases)
            out[:, :, top:bottom] = band[:, :, top - a : bottom - a]
        return out

    def _finish(self, y: torch.Tensor, xyz: torch.Tensor, phases: bool = False) -> torch.Tensor:
        out = color.remove_grid(F.pixel_shuffle(y, 2), self.config.notch)
        if self.config.base <= 0:
            return out
        plain = color.render_plain(xyz.float(), self.config.base, phases=phases)
        if not phases:
            return out + plain
        if _keeps_graph(y, xyz):
            return out + F.pixel_shuffle(plain, 2)
        # Added through a view of the output as phase planes: no laid-out copy of the rendering.
        b, _, h, w = plain.shape
        out.view(b, 3, h, 2, w, 2).permute(0, 1, 3, 5, 2, 4).add_(plain.unflatten(1, (3, 2, 2)))
        return out

    def forward(self, xyz: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        return self.finish(self.unet(self.prepare(xyz), pooled), xyz)


class OneStageNet(RestoreNet):
    """The one-stage baseline (paper §IV-C): packed raw + noise level -> sRGB in one UNet.

    It learns everything, white balance and colour included, as the paper's baseline does;
    only its config (and so its width) differs from Restore-Net's.
    """


class CameraNet(nn.Module):
    """Both stages end to end, for training and evaluation.

    Returns the restoration (linear XYZ) and the enhancement (sRGB), as the joint loss
    of paper Eq. 7 needs both.
    """

    def __init__(self, restore: RestoreNet, enhance: EnhanceNet) -> None:
        super().__init__()
        self.restore = restore
        self.enhance = enhance

    def forward(
        self, packed: torch.Tensor, omega: torch.Tensor, wb: torch.Tensor, cam_to_xyz: torch.Tensor, read: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        xyz = color.camera_to_xyz(self.restore(packed, omega, read=read), wb, cam_to_xyz)
        return xyz, self.enhance(xyz)


def build(config: RestoreNetConfig | EnhanceNetConfig | OneStageNetConfig) -> RestoreNet | EnhanceNet | OneStageNet:
    """The network a config describes."""
    kinds = {RestoreNetConfig: RestoreNet, EnhanceNetConfig: EnhanceNet, OneStageNetConfig: OneStageNet}
    return kinds[type(config)](config)  # type: ignore[arg-type]
