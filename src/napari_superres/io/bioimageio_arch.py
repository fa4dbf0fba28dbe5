"""SRNet, self-contained (torch only): the architecture file shipped in bioimage.io packages.

A bioimage.io ``pytorch_state_dict`` weight entry names a Python file and a callable in
it; consumers (bioimageio.core, deepImageJ's converters, ilastik...) execute the file on
its own, without napari-superres installed.  So this file imports nothing but torch and
must keep building the same modules, with the same state-dict keys and the same
forward pass, as :class:`napari_superres.engine.nets.srnet.SRNet`
(``tests/test_bioimageio.py`` checks every option against the engine's network).

``SRNet(**config)`` takes the keys of the engine's ``SRNetConfig`` (the package's
``architecture.kwargs``); input ``(N, in_channels, H, W)`` float32 in about ``[0, 1]``,
output ``(N, out_channels, scale*H, scale*W)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _upsampling_factors(scale: int) -> list:
    if scale not in (2, 3, 4, 8):
        raise ValueError(f"scale must be 2, 3, 4 or 8, got {scale!r}")
    return [3] if scale == 3 else [2] * round(math.log2(scale))


def _activation(name: str, channels: int) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2, inplace=True)
    if name == "prelu":
        return nn.PReLU(channels)
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown activation {name!r}")


def _norm(name: str, channels: int) -> nn.Module:
    if name not in ("none", "batch"):
        raise ValueError(f"unknown norm {name!r}")
    return nn.BatchNorm2d(channels) if name == "batch" else nn.Identity()


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)


class ResidualBlock(nn.Module):
    """``x + norm(conv(act(norm(conv(x)))))`` (optionally activated after the second conv)."""

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


class Upsample(nn.Sequential):
    """One upsampling stage by ``factor``: bilinear + conv, sub-pixel conv, or transposed conv."""

    def __init__(self, c_in: int, c_out: int, factor: int, mode: str) -> None:
        if mode == "bilinear":
            layers = [nn.Upsample(scale_factor=factor, mode="bilinear", align_corners=False), _conv3x3(c_in, c_out)]
        elif mode == "pixelshuffle":
            layers = [_conv3x3(c_in, c_out * factor**2), nn.PixelShuffle(factor)]
        elif mode == "transposed":
            kernel = 4 if factor == 2 else 5
            layers = [nn.ConvTranspose2d(c_in, c_out, kernel, stride=factor, padding=1)]
        else:
            raise ValueError(f"unknown upsampling {mode!r}")
        super().__init__(*layers)


class SRNet(nn.Module):
    """Residual super-resolution CNN (weights come from the package's state dict)."""

    def __init__(
        self,
        scale: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: int = 32,
        blocks: int = 4,
        upsampling: str = "bilinear",
        upsample_channels: Sequence[int] | None = None,
        upsample_blocks: int = 0,
        norm: str = "none",
        activation: str = "relu",
        block_post_activation: bool = False,
        final_activation: bool = False,
        global_skip: bool = True,
        cond_channels: int = 0,
        condition: Sequence[float] = (0.0, 0.0, (1.0 / 12.0) ** 0.5),
    ) -> None:
        super().__init__()
        # a conditioned network reads noise and blur maps after the image: this package tells it the
        # fixed ``condition`` (noise gain, noise offset, blur sigma in px; default: clean and sharp)
        self.in_channels = int(in_channels)
        self.cond_channels = int(cond_channels)
        self.register_buffer("condition", torch.tensor([float(v) for v in condition]), persistent=False)
        factors = _upsampling_factors(int(scale))
        widths = list(upsample_channels) if upsample_channels else [channels] * len(factors)
        if len(widths) != len(factors):
            raise ValueError(f"upsample_channels needs {len(factors)} widths for x{scale}, got {widths}")
        self.scale = int(scale)
        self.global_skip = bool(global_skip)
        self.head = nn.Sequential(_conv3x3(in_channels + cond_channels, channels), _activation(activation, channels))
        self.body = nn.Sequential(
            *(ResidualBlock(channels, norm, activation, block_post_activation) for _ in range(blocks))
        )
        stages = []
        width = channels
        for factor, out_width in zip(factors, widths):
            stage = [Upsample(width, int(out_width), factor, upsampling), _activation(activation, int(out_width))]
            stage += [
                ResidualBlock(int(out_width), norm, activation, block_post_activation) for _ in range(upsample_blocks)
            ]
            stages.append(nn.Sequential(*stage))
            width = int(out_width)
        self.upsampler = nn.Sequential(*stages)
        tail = [_conv3x3(width, out_channels)]
        if final_activation:
            tail.append(_activation(activation, out_channels))
        self.tail = nn.Sequential(*tail)

    def _with_maps(self, x: torch.Tensor) -> torch.Tensor:
        gain, offset, blur = (self.condition[i].to(x.dtype) for i in range(3))
        signal = (x if x.shape[1] == 1 else x.mean(dim=1, keepdim=True)).clamp(min=0.0)
        noise = torch.sqrt((gain * signal + offset).clamp(min=0.0)) * 10.0  # conditioning.NOISE_MAP_GAIN
        return torch.cat([x, noise, (blur * 0.5).expand_as(noise)], dim=1)  # conditioning.BLUR_MAP_GAIN

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x
        if self.cond_channels:
            x = self._with_maps(x)
        y = self.tail(self.upsampler(self.body(self.head(x))))
        if self.global_skip:
            y = y + F.interpolate(image, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return y
