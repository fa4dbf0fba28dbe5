"""Residual super-resolution networks.

``SRNet`` maps a low-resolution image batch ``(N, C_in, H, W)`` (float32, values
roughly in ``[0, 1]``) to ``(N, C_out, s*H, s*W)``.  Its layout is::

    head conv -> residual blocks at low resolution
              -> one x2 (or x3) upsampling stage per factor of ``scale``
                 (each optionally followed by residual blocks)
              -> output conv  (+ bicubic(input) when ``global_skip``)

Upsampling defaults to bilinear interpolation followed by a 3x3 convolution, which
cannot produce checkerboard artifacts.  ``"pixelshuffle"`` uses sub-pixel
convolution with ICNR initialisation (starts equivalent to nearest upsampling, so
also artifact-free) and ``"transposed"`` keeps a stride-2 transposed convolution
for comparison.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..options import ACTIVATIONS, NORM_LAYERS, SUPPORTED_SCALES, UPSAMPLING_MODES, known_settings
from .conditioning import CLEAN, COND_CHANNELS, with_condition

#: Receptive-field radius (input pixels) added by the bicubic global skip.
_BICUBIC_RADIUS = 2.0
#: Radius added by bilinear interpolation, in pixels of the grid it reads.
_BILINEAR_RADIUS = 1.0


def upsampling_factors(scale: int) -> list[int]:
    """Split ``scale`` into the per-stage factors: 2 -> [2], 3 -> [3], 4 -> [2, 2], 8 -> [2, 2, 2]."""
    if scale not in SUPPORTED_SCALES:
        raise ValueError(f"scale must be one of {SUPPORTED_SCALES}, got {scale!r}")
    if scale == 3:
        return [3]
    return [2] * int(round(math.log2(scale)))


@dataclass
class SRNetConfig:
    """Everything needed to rebuild an :class:`SRNet`; stored as JSON in model files.

    Attributes
    ----------
    scale : upscaling factor, one of 2, 3, 4, 8.
    in_channels, out_channels : 1 for grayscale / luminance, 3 for RGB.
    channels : feature width at low resolution.
    blocks : number of residual blocks at low resolution.
    upsampling : ``"bilinear"`` (default), ``"pixelshuffle"`` (ICNR) or ``"transposed"``.
    upsample_channels : feature width after each upsampling stage (default: ``channels``).
    upsample_blocks : residual blocks after each upsampling stage (default 0).
    norm : ``"none"`` (default) or ``"batch"``.
    activation : ``"relu"``, ``"leaky_relu"``, ``"prelu"``, ``"silu"`` or ``"gelu"``.
    block_post_activation : apply the activation after the second conv of each residual
        block too (the seed architecture's "ReLU after every conv").
    final_activation : apply the activation after the output conv.
    global_skip : add ``bicubic(input)`` to the output so the net learns a residual.
    cond_channels : degradation maps read after the image channels (0: a blind network;
        :data:`~napari_superres.engine.nets.conditioning.COND_CHANNELS`: conditioned on the
        image's noise and blur, see :mod:`~napari_superres.engine.nets.conditioning`).
    """

    scale: int = 2
    in_channels: int = 1
    out_channels: int = 1
    channels: int = 32
    blocks: int = 4
    upsampling: str = "bilinear"
    upsample_channels: tuple[int, ...] | None = None
    upsample_blocks: int = 0
    norm: str = "none"
    activation: str = "relu"
    block_post_activation: bool = False
    final_activation: bool = False
    global_skip: bool = True
    cond_channels: int = 0

    def __post_init__(self) -> None:
        upsampling_factors(self.scale)  # validates scale
        if self.cond_channels not in (0, COND_CHANNELS):
            raise ValueError(f"cond_channels must be 0 or {COND_CHANNELS}, got {self.cond_channels!r}")
        if self.upsampling not in UPSAMPLING_MODES:
            raise ValueError(f"upsampling must be one of {UPSAMPLING_MODES}, got {self.upsampling!r}")
        if self.norm not in NORM_LAYERS:
            raise ValueError(f"norm must be one of {NORM_LAYERS}, got {self.norm!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.channels < 1 or self.blocks < 0 or self.upsample_blocks < 0:
            raise ValueError("channels must be >= 1 and block counts >= 0")
        if self.global_skip and self.in_channels != self.out_channels:
            raise ValueError("global_skip needs in_channels == out_channels")
        n_stages = len(upsampling_factors(self.scale))
        if self.upsample_channels is None:
            self.upsample_channels = (self.channels,) * n_stages
        self.upsample_channels = tuple(int(c) for c in self.upsample_channels)
        if len(self.upsample_channels) != n_stages:
            raise ValueError(
                f"upsample_channels needs one width per upsampling stage ({n_stages} for "
                f"x{self.scale}), got {self.upsample_channels}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["upsample_channels"] = list(self.upsample_channels or ())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SRNetConfig:
        d = known_settings(cls, d, "SRNet config keys")
        if d.get("upsample_channels") is not None:
            d["upsample_channels"] = tuple(d["upsample_channels"])
        return cls(**d)


def _activation(name: str, channels: int) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2, inplace=True)
    if name == "prelu":
        return nn.PReLU(channels)
    if name == "silu":
        return nn.SiLU(inplace=True)
    return nn.GELU()


def _norm(name: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if name == "batch" else nn.Identity()


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)


class ResidualBlock(nn.Module):
    """``x + [norm(conv(act(norm(conv(x)))))]``, optionally followed by the activation inside the branch."""

    def __init__(self, channels: int, norm: str, activation: str, post_activation: bool) -> None:
        super().__init__()
        self.conv1 = _conv3x3(channels, channels)
        self.norm1 = _norm(norm, channels)
        self.act1 = _activation(activation, channels)
        self.conv2 = _conv3x3(channels, channels)
        self.norm2 = _norm(norm, channels)
        self.act2 = _activation(activation, channels) if post_activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.norm1(self.conv1(x)))
        y = self.act2(self.norm2(self.conv2(y)))
        return x + y


def icnr_(weight: torch.Tensor, factor: int, initializer=nn.init.kaiming_normal_) -> torch.Tensor:
    """ICNR initialisation (Aitken et al. 2017) of a conv weight feeding ``PixelShuffle(factor)``.

    Every group of ``factor**2`` output channels that the shuffle interleaves into one
    output channel gets the same kernel, so the initial sub-pixel conv equals a conv
    followed by nearest-neighbour upsampling: no checkerboard pattern at start.
    """
    out_ch, in_ch, kh, kw = weight.shape
    sub = torch.empty(out_ch // factor**2, in_ch, kh, kw, dtype=weight.dtype)
    initializer(sub)
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(factor**2, dim=0))
    return weight


class Upsample(nn.Sequential):
    """One upsampling stage by ``factor`` (2 or 3) from ``c_in`` to ``c_out`` channels."""

    def __init__(self, c_in: int, c_out: int, factor: int, mode: str) -> None:
        if mode == "bilinear":
            layers: list[nn.Module] = [
                nn.Upsample(scale_factor=factor, mode="bilinear", align_corners=False),
                _conv3x3(c_in, c_out),
            ]
        elif mode == "pixelshuffle":
            conv = _conv3x3(c_in, c_out * factor**2)
            icnr_(conv.weight, factor)
            nn.init.zeros_(conv.bias)
            layers = [conv, nn.PixelShuffle(factor)]
        else:  # transposed: out = (H - 1) * stride - 2 * padding + kernel = factor * H
            kernel = 4 if factor == 2 else 5
            layers = [nn.ConvTranspose2d(c_in, c_out, kernel, stride=factor, padding=1)]
        super().__init__(*layers)
        self.factor = factor
        self.mode = mode


def bicubic_skip(x: torch.Tensor, config: SRNetConfig) -> torch.Tensor:
    """The global skip of a network of ``config``: its input's image channels (``x``: ``(N, C_in
    [+ maps], H, W)`` float) upsampled bicubically by ``config.scale``, ``(N, C_in, sH, sW)``."""
    image = x[:, : config.in_channels]
    return F.interpolate(image, scale_factor=config.scale, mode="bicubic", align_corners=False)


class SRNet(nn.Module):
    """Residual CNN for single-image super-resolution.

    Parameters
    ----------
    config : :class:`SRNetConfig`, or keyword overrides of it (``SRNet(scale=4, blocks=8)``).

    Input ``(N, in_channels, H, W)`` float, output ``(N, out_channels, scale*H, scale*W)``.
    A conditioned network (``cond_channels > 0``) also takes its degradation maps: either
    appended to the input, ``(N, in_channels + cond_channels, H, W)`` (as training batches and
    the exported graph carry them), or built from ``condition`` (``(3,)`` or ``(N, 3)``, see
    :class:`~napari_superres.engine.nets.conditioning.DegradationCondition`; default: clean and sharp).
    """

    def __init__(self, config: SRNetConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        if config is None:
            config = SRNetConfig(**overrides)
        elif overrides:
            config = SRNetConfig.from_dict({**config.to_dict(), **overrides})
        self.config = config
        c = config
        self.head = nn.Sequential(
            _conv3x3(c.in_channels + c.cond_channels, c.channels), _activation(c.activation, c.channels)
        )
        self.body = nn.Sequential(
            *(ResidualBlock(c.channels, c.norm, c.activation, c.block_post_activation) for _ in range(c.blocks))
        )
        stages = []
        width = c.channels
        for factor, out_width in zip(upsampling_factors(c.scale), c.upsample_channels or ()):
            stage = [Upsample(width, out_width, factor, c.upsampling), _activation(c.activation, out_width)]
            stage += [
                ResidualBlock(out_width, c.norm, c.activation, c.block_post_activation)
                for _ in range(c.upsample_blocks)
            ]
            stages.append(nn.Sequential(*stage))
            width = out_width
        self.upsampler = nn.Sequential(*stages)
        tail: list[nn.Module] = [_conv3x3(width, c.out_channels)]
        if c.final_activation:
            tail.append(_activation(c.activation, c.out_channels))
        self.tail = nn.Sequential(*tail)

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    @property
    def out_channels(self) -> int:
        return self.config.out_channels

    @property
    def cond_channels(self) -> int:
        return self.config.cond_channels

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        if c.cond_channels and x.shape[1] == c.in_channels:
            x = with_condition(x, CLEAN.as_tensor() if condition is None else condition)
        y = self.tail(self.upsampler(self.body(self.head(x))))
        return y + bicubic_skip(x, c) if c.global_skip else y

    def receptive_field(self) -> int:
        """Receptive-field radius in input pixels (rounded up); tiles overlap by at least this."""
        return receptive_field_radius(self.config)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def conditioned_copy(net: SRNet, cond_channels: int = COND_CHANNELS) -> SRNet:
    """A copy of the blind ``net`` that also reads ``cond_channels`` degradation maps.

    The head convolution's weights for the new maps start at zero, so the copy computes exactly
    what ``net`` computes until training teaches it to use them (a warm start).
    """
    if net.config.cond_channels:
        raise ValueError("the network is already conditioned")
    copy = SRNet(SRNetConfig.from_dict({**net.config.to_dict(), "cond_channels": cond_channels}))
    state = net.state_dict()
    head = copy.head[0].weight.detach().clone()
    head.zero_()
    head[:, : net.config.in_channels] = state["head.0.weight"]
    state["head.0.weight"] = head
    copy.load_state_dict(state)
    return copy


def receptive_field_radius(config: SRNetConfig) -> int:
    """Radius (input pixels) of the region of the input that one output pixel depends on.

    Each 3x3 conv adds one pixel of its own grid; a conv after upsampling by ``f``
    adds ``1/f`` input pixels.  Interpolations add their kernel support; the bicubic
    skip adds 2 input pixels (it only matters when it is larger than the net's path).
    """
    c = config
    grid = 1.0  # size of one pixel of the current grid, in input pixels
    radius = 1.0 + 2.0 * c.blocks  # head conv + two convs per block
    for factor in upsampling_factors(c.scale):
        if c.upsampling == "bilinear":
            radius += _BILINEAR_RADIUS * grid  # interpolation reads the neighbours on the low-res grid
            grid /= factor
            radius += grid  # the 3x3 conv after it
        elif c.upsampling == "pixelshuffle":
            radius += grid  # 3x3 conv on the low-res grid
            grid /= factor
        else:
            radius += 2.0 * grid  # transposed conv: kernel spans about 2 input pixels
            grid /= factor
        radius += 2.0 * c.upsample_blocks * grid
    radius += grid  # output conv
    if c.global_skip:
        radius = max(radius, _BICUBIC_RADIUS)
    return int(math.ceil(radius))


# --- presets -----------------------------------------------------------------------------------

#: The seed architecture: x4, conv_1..3 at 128 channels, bilinear up, conv_4..6 at 64,
#: bilinear up, conv_7..9 at 64, conv_10 to 3 channels; ReLU after every conv;
#: BatchNorm after conv 2, 3, 5, 6, 8, 9; residual blocks (2,3), (5,6), (8,9).
SEED_CONFIG = dict(
    scale=4,
    in_channels=3,
    out_channels=3,
    channels=128,
    blocks=1,
    upsampling="bilinear",
    upsample_channels=(64, 64),
    upsample_blocks=1,
    norm="batch",
    activation="relu",
    block_post_activation=True,
    final_activation=True,
    global_skip=False,
)

PRESETS: dict[str, dict[str, Any]] = {
    "seed": SEED_CONFIG,
    "default": dict(channels=32, blocks=4),
    "tiny": dict(channels=8, blocks=2),
}


def build_preset(name: str, **overrides: Any) -> SRNet:
    """Build a network from a named preset (``"seed"``, ``"default"``, ``"tiny"``) plus overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return SRNet(SRNetConfig(**{**PRESETS[name], **overrides}))


class Bicubic(nn.Module):
    """Classical baseline: ``torch.nn.functional.interpolate(mode="bicubic")`` by ``scale``.

    Works on any number of channels; has no parameters and no receptive-field limit
    beyond the 2-pixel cubic kernel.
    """

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        if isinstance(scale, bool) or not float(scale).is_integer() or scale < 1:
            raise ValueError(f"Bicubic needs a whole-number scale >= 1, got {scale!r}")
        self.scale = int(scale)
        self.in_channels = None  # any
        self.out_channels = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)

    def receptive_field(self) -> int:
        return int(_BICUBIC_RADIUS)


__all__ = [
    "SRNet",
    "bicubic_skip",
    "SRNetConfig",
    "Bicubic",
    "ResidualBlock",
    "Upsample",
    "icnr_",
    "receptive_field_radius",
    "upsampling_factors",
    "build_preset",
    "conditioned_copy",
    "PRESETS",
    "SEED_CONFIG",
    "UPSAMPLING_MODES",
    "SUPPORTED_SCALES",
]
