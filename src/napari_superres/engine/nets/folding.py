"""An :class:`~.srnet.SRNet` rewritten so that every convolution runs at low resolution.

A bilinear x2 upsampling followed by a 3x3 convolution is, away from the border, a 3x3
convolution of the low-res map into ``4 x c_out`` channels followed by a pixel shuffle
(``DepthToSpace``): each output phase ``(py, px)`` reads the same 3x3 low-res neighbourhood
with its own kernel.  A 3x3 convolution after a pixel shuffle is likewise a 3x3 convolution
of the shuffled-in channels (exactly, borders included).  :func:`fold_upsampling` applies
both to a bilinear :class:`~.srnet.SRNet`: same FLOPs, but no upsampled feature map is ever
stored (ONNX Runtime spent a fifth of the int8 graph's time in that resize) and the output
convolutions read low-res maps, where int8 convolutions run.

The result equals the network's (within float rounding) everywhere: where the bilinear resize
clamps at the border and its convolution zero-pads, the outermost low-res ring is computed
by the original operations on thin strips.  Used by the reduced-precision paths
(:mod:`~napari_superres.engine.infer.bf16`, :mod:`~napari_superres.engine.infer.precision`);
fp32 inference runs the network as trained.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .srnet import SRNet, Upsample, bicubic_skip

#: 1-D bilinear x2 upsampling (``align_corners=False``) as taps on the low-res grid: output
#: phase ``p`` at ``2i + p`` reads ``z(i - 1), z(i), z(i + 1)`` with these weights.
_BILINEAR_X2 = torch.tensor([[0.25, 0.75, 0.0], [0.0, 0.75, 0.25]], dtype=torch.float64)


def _bilinear_taps() -> torch.Tensor:
    """``(2, 3, 3)``: ``taps[p, k, d]`` is the weight of ``z(i + d - 1)`` in the bilinear-upsampled
    value that tap ``k`` of a 3x3 kernel reads for output phase ``p``, i.e. at ``2i + p + k - 1``."""
    taps = torch.zeros(2, 3, 3, dtype=torch.float64)
    for p in range(2):
        for k in range(3):
            m, r = divmod(p + k - 1, 2)  # that hr pixel is phase r of low-res pixel i + m
            for j in range(3):
                if _BILINEAR_X2[r, j]:
                    taps[p, k, m + j] += _BILINEAR_X2[r, j]
    return taps


def _new_conv(conv: nn.Conv2d, weight: torch.Tensor) -> nn.Conv2d:
    """A 3x3 zero-padded conv with ``weight`` (float64 ``(4 c_out, c_in', 3, 3)``), ``conv``'s bias per phase."""
    out = nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1, bias=conv.bias is not None)
    with torch.no_grad():
        out.weight.copy_(weight.to(conv.weight.dtype))
        if conv.bias is not None:
            out.bias.copy_(conv.bias.detach().repeat_interleave(4))
    return out


def fold_upsample_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """The low-res conv (``c_in -> 4 c_out``) whose pixel-shuffled output is ``conv`` of the x2 bilinear map."""
    w = conv.weight.detach().double()  # (c_out, c_in, 3, 3)
    taps = _bilinear_taps()
    folded = torch.einsum("ocyx,ayu,bxv->oabcuv", w, taps, taps)  # (o, py, px, c, dy, dx)
    return _new_conv(conv, folded.reshape(w.shape[0] * 4, w.shape[1], 3, 3))


def fold_shuffled_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """The low-res conv (``4 c_in -> 4 c_out``) equal to ``conv`` after ``PixelShuffle(2)``, before another one.

    Shuffled channel ``c * 4 + ry * 2 + rx`` is hr channel ``c`` at phase ``(ry, rx)`` (torch's
    ``PixelShuffle`` order); exact, borders included (both zero-pad).
    """
    w = conv.weight.detach().double()
    c_out, c_in = w.shape[:2]
    folded = torch.zeros(c_out, 2, 2, c_in, 2, 2, 3, 3, dtype=torch.float64)
    for py, px, ky, kx in itertools.product(range(2), range(2), range(3), range(3)):
        (my, ry), (mx, rx) = divmod(py + ky - 1, 2), divmod(px + kx - 1, 2)
        folded[:, py, px, :, ry, rx, my + 1, mx + 1] += w[:, :, ky, kx]
    return _new_conv(conv, folded.reshape(c_out * 4, c_in * 4, 3, 3))


class FoldedUpsample(nn.Module):
    """Bilinear x2 upsampling + 3x3 conv as one low-res conv: ``(N, C, H, W) -> (N, 4 C_out, H, W)``.

    The output is the upsampled-and-convolved map in ``PixelShuffle(2)`` channel order (shuffle
    it for ``(N, C_out, 2H, 2W)``).  Exact, borders included: the outermost low-res ring, where
    the resize clamps and the conv zero-pads, is computed by the original operations on strips
    two pixels wide (needs ``H, W >= 2``).
    """

    def __init__(self, stage: Upsample) -> None:
        super().__init__()
        self.upsample, self.conv = stage[0], stage[1]  # the original modules (shared), for the border
        self.folded = fold_upsample_conv(self.conv)

    def _original(self, strip: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(self.conv(self.upsample(strip)), 2)

    def border_rows(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first and last low-res rows of the output, ``(N, 4 C_out, 1, W)`` each."""
        return self._original(z[:, :, :2])[:, :, :1], self._original(z[:, :, -2:])[:, :, -1:]

    def border_columns(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first and last low-res columns of the output, ``(N, 4 C_out, H, 1)`` each."""
        return self._original(z[..., :2])[..., :1], self._original(z[..., -2:])[..., -1:]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        t = self.folded(z)
        top, bottom = self.border_rows(z)
        t = torch.cat([top, t[:, :, 1:-1], bottom], dim=2)
        left, right = self.border_columns(z)
        return torch.cat([left, t[..., 1:-1], right], dim=3)


class FoldedSRNet(nn.Module):
    """``SRNet`` with its bilinear upsampling stages and output conv folded to low resolution.

    Same call and result as the network (within float rounding): ``(N, C_in [+ maps], H, W)``
    -> ``(N, C_out, s*H, s*W)`` float, ``H, W >= 2``.  ``skip=False``: without the network's
    bicubic global skip (the caller adds ``bicubic(image)``; the int8 graph leaves it to torch).
    """

    def __init__(self, net: SRNet, *, skip: bool = True) -> None:
        super().__init__()
        c = net.config
        self.config = c
        #: whether forward adds the bicubic global skip (where the network has one)
        self.skip = bool(skip and c.global_skip)
        self.head, self.body = net.head, net.body
        stages: list[nn.Module] = []
        for stage in net.upsampler:
            stages += [FoldedUpsample(stage[0]), stage[1], nn.PixelShuffle(2)]
        # the output conv reads the last stage's shuffled map: fold it into that stage's grid
        self.upsampler = nn.Sequential(*stages[:-1])
        self.tail = nn.Sequential(fold_shuffled_conv(net.tail[0]), *list(net.tail)[1:], nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        y = self.tail(self.upsampler(self.body(self.head(x))))
        return y + bicubic_skip(x, c) if self.skip else y


def foldable(net: nn.Module) -> bool:
    """Whether :func:`fold_upsampling` applies: an SRNet of bilinear x2 stages, no blocks after them."""
    if not isinstance(net, SRNet):
        return False
    c = net.config
    stages = list(net.upsampler)
    return (
        c.upsampling == "bilinear"
        and c.upsample_blocks == 0
        and len(stages) > 0
        and all(isinstance(s[0], Upsample) and s[0].factor == 2 and len(s) == 2 for s in stages)
        and isinstance(net.tail[0], nn.Conv2d)
        and net.tail[0].kernel_size == (3, 3)
    )


def fold_upsampling(net: nn.Module, *, skip: bool = True) -> nn.Module:
    """``net`` with all convolutions at low resolution (:class:`FoldedSRNet`), or ``net`` itself.

    Shares the head and body modules with ``net`` (no copy of their weights); the folded
    convolutions are new float32 modules.  Networks :func:`foldable` rejects are returned as they are.
    ``skip=False``: the folded network leaves out the bicubic global skip (see :class:`FoldedSRNet`).
    """
    return FoldedSRNet(net, skip=skip) if foldable(net) else net
