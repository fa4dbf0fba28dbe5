"""bf16 CPU inference of an :class:`~napari_superres.engine.SRNet` through oneDNN, post-ops fused.

The network is first folded (:func:`~napari_superres.engine.nets.folding.fold_upsampling`:
every convolution at low resolution, the same result), then run as a list of oneDNN
convolutions on bf16 channels_last tensors, each with its activation or residual sum fused
into it (``torch.ops.mkldnn._convolution_pointwise``, the fused convolution torch's own
inductor compiler emits on the CPU): no separate pass over the feature maps for the
activations and sums, and no torch.compile wait.  Measured on the built-in x2 (512² input,
2 threads, CPU time, one process; ``benchmarks/precision.py`` has the quiet-machine figures):
eager bf16 autocast 1.68x ONNX Runtime fp32, folded 1.80x, folded and fused 1.93x.

Networks this does not cover (other activations, normalisation layers, activations after the
residual sum, non-bilinear upsampling) and torch builds without the fused operator run under
eager bf16 autocast instead (:func:`bf16_forward` chooses; the reason is logged once).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..nets.folding import FoldedSRNet, FoldedUpsample, fold_upsampling
from ..nets.srnet import ResidualBlock, bicubic_skip
from .onnx_backend import _fingerprint

log = logging.getLogger(__name__)

_ONE = [1, 1]
_PAD = [1, 1]
Forward = Callable[[torch.Tensor], torch.Tensor]


def _unary(act: nn.Module) -> tuple[str, list[Any]]:
    """oneDNN post-op name and scalars of an activation module (``ValueError`` when not fusable)."""
    if isinstance(act, nn.LeakyReLU):
        return "leaky_relu", [act.negative_slope]
    if isinstance(act, nn.ReLU):
        return "relu", []
    if isinstance(act, nn.Identity):
        return "none", []
    raise ValueError(f"no fused oneDNN post-op for {type(act).__name__}")


class _Conv:
    """One 3x3 convolution in bf16 with a fused activation, or a fused residual sum."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module | None = None) -> None:
        if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1) or conv.groups != 1:
            raise ValueError("only 3x3, stride 1, padding 1 convolutions are fused")
        self.weight = conv.weight.detach().to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        self.bias = None if conv.bias is None else conv.bias.detach().to(torch.bfloat16)
        self.attr, self.scalars = _unary(act if act is not None else nn.Identity())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        op = torch.ops.mkldnn._convolution_pointwise
        return op(x, self.weight, self.bias, _PAD, _ONE, _ONE, 1, self.attr, self.scalars, "")

    def plus(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``conv(x) + residual`` in one pass."""
        op = torch.ops.mkldnn._convolution_pointwise.binary
        return op(x, residual, self.weight, self.bias, _PAD, _ONE, _ONE, 1, "add", 1.0, None, [], None)


class FusedBf16:
    """A folded SRNet as fused bf16 oneDNN convolutions: ``forward(x) -> y``, float32 in and out.

    ``x``: ``(N, C_in [+ maps], H, W)`` float32, ``H, W >= 2``; returns ``(N, C_out, sH, sW)``
    float32.  Holds bf16 copies of the weights: the network itself is not changed.
    """

    def __init__(self, folded: FoldedSRNet) -> None:
        c = folded.config
        if c.norm != "none" or c.block_post_activation:
            raise ValueError("normalisation layers and post-sum activations are not fused")
        self.config = c
        self.head = _Conv(folded.head[0], folded.head[1])
        blocks = list(folded.body)
        if not all(isinstance(b, ResidualBlock) for b in blocks):
            raise ValueError("the body is not a chain of residual blocks")
        self.body = [(_Conv(b.conv1, b.act1), _Conv(b.conv2)) for b in blocks]
        stages = list(folded.upsampler)
        self.stages: list[tuple[FoldedUpsample, nn.Module, bool]] = []
        for i in range(0, len(stages), 3):  # FoldedUpsample, activation[, PixelShuffle]
            up, act = stages[i], stages[i + 1]
            _unary(act)
            self.stages.append((up, act, i + 2 < len(stages)))
        self.folded_convs = [_Conv(up.folded, act) for up, act, _ in self.stages]
        self.tail = _Conv(folded.tail[0], folded.tail[1] if len(folded.tail) > 2 else None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        with torch.inference_mode():
            x32 = x.to("cpu", torch.float32)
            h = self.head(x32.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
            for conv1, conv2 in self.body:
                h = conv2.plus(conv1(h), h)
            for (up, act, shuffle), conv in zip(self.stages, self.folded_convs):
                h_in, h = h, conv(h)  # activation fused
                with torch.autocast("cpu", dtype=torch.bfloat16):  # the border ring: the original ops
                    top, bottom = up.border_rows(h_in)
                    left, right = up.border_columns(h_in)
                    h[:, :, :1], h[:, :, -1:] = act(top), act(bottom)
                    h[..., :1], h[..., -1:] = act(left), act(right)
                if shuffle:
                    h = F.pixel_shuffle(h, 2).contiguous(memory_format=torch.channels_last)
            y = F.pixel_shuffle(self.tail(h).float(), 2)
            return (y + bicubic_skip(x32, c) if c.global_skip else y).contiguous()


def autocast_forward(net: nn.Module) -> Forward:
    """``forward(x) -> y``: ``net`` under CPU bf16 autocast on channels_last; float32 in and out."""
    first4d = next((p for p in net.parameters() if p.dim() == 4), None)
    if first4d is not None and not first4d.is_contiguous(memory_format=torch.channels_last):
        net.to(memory_format=torch.channels_last)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            x = x.to("cpu", torch.float32).contiguous(memory_format=torch.channels_last)
            return net(x).float()

    return forward


def _fused(net: nn.Module) -> FusedBf16 | None:
    """The fused runner of ``net``, or ``None`` (the reason logged) when it does not apply or fails a probe."""
    folded = fold_upsampling(net)
    if not isinstance(folded, FoldedSRNet):
        log.info("bf16: %s is not a foldable SRNet; eager autocast", type(net).__name__)
        return None
    try:
        runner = FusedBf16(folded)
        c = net.config
        runner(torch.zeros(1, c.in_channels + c.cond_channels, 4, 4))  # the operator exists and accepts these
    except (ValueError, RuntimeError, AttributeError, TypeError) as exc:
        log.info("bf16: fused oneDNN convolutions unavailable (%s); eager autocast", exc)
        return None
    return runner


_lock = threading.Lock()
_cache: weakref.WeakKeyDictionary[nn.Module, tuple[Any, Forward]] = weakref.WeakKeyDictionary()


def bf16_forward(net: nn.Module) -> Forward:
    """``forward(x) -> y`` running ``net`` in bf16 on the CPU; float32 ``(N, C, H, W)`` in and out.

    Fused oneDNN convolutions of the folded network where they apply (:class:`FusedBf16`,
    cached per network and weights), else eager bf16 autocast on channels_last.
    """
    key = _fingerprint(net)
    with _lock:
        cached = _cache.get(net)
        if cached is not None and cached[0] == key:
            return cached[1]
        runner = _fused(net.eval())
        forward: Forward = runner if runner is not None else autocast_forward(net)
        _cache[net] = (_fingerprint(net), forward)
        return forward
