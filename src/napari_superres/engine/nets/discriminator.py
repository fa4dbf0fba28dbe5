"""Discriminators for adversarial super-resolution training, with spectral normalisation.

* :class:`PatchDiscriminator` (pix2pix PatchGAN): strided 4x4 convs, one realness logit
  per overlapping patch of the input, ``(N, C, H, W) -> (N, 1, ~H/2**n, ~W/2**n)``.
* :class:`UNetDiscriminator` (Real-ESRGAN style): a small U-Net giving a per-pixel
  realness map ``(N, 1, H, W)``, so the generator gets local feedback everywhere.

Spectral normalisation (Miyato et al. 2018) on every conv keeps the discriminator
1-Lipschitz-ish, which stabilises training without batch norm.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

DISCRIMINATORS = ("patchgan", "unet")


def _sn_conv(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int | None = None) -> nn.Module:
    if padding is None:
        padding = kernel // 2
    return spectral_norm(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding))


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``n_layers`` stride-2 convs (width doubling up to ``8 * channels``) then two stride-1 convs.

    Input ``(N, in_channels, H, W)`` in [0, 1]; output logits ``(N, 1, h, w)``.
    """

    def __init__(self, in_channels: int = 1, channels: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [_sn_conv(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        width = channels
        for i in range(1, n_layers):
            nxt = channels * min(2**i, 8)
            layers += [_sn_conv(width, nxt, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            width = nxt
        nxt = channels * min(2**n_layers, 8)
        layers += [_sn_conv(width, nxt, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
        layers += [_sn_conv(nxt, 1, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class UNetDiscriminator(nn.Module):
    """U-Net discriminator with spectral norm: per-pixel realness logits ``(N, 1, H, W)``.

    Three stride-2 downsampling convs, bilinear upsampling with skip connections back to
    full resolution, two 3x3 convs and a 3x3 output conv.  ``H`` and ``W`` are best
    multiples of 8 (other sizes are resized at the skips).
    """

    def __init__(self, in_channels: int = 1, channels: int = 64) -> None:
        super().__init__()
        c = channels
        self.conv0 = nn.Conv2d(in_channels, c, 3, padding=1)
        self.down1 = _sn_conv(c, 2 * c, 4, 2, 1)
        self.down2 = _sn_conv(2 * c, 4 * c, 4, 2, 1)
        self.down3 = _sn_conv(4 * c, 8 * c, 4, 2, 1)
        self.up1 = _sn_conv(8 * c, 4 * c, 3)
        self.up2 = _sn_conv(4 * c, 2 * c, 3)
        self.up3 = _sn_conv(2 * c, c, 3)
        self.conv1 = _sn_conv(c, c, 3)
        self.conv2 = _sn_conv(c, c, 3)
        self.out = nn.Conv2d(c, 1, 3, padding=1)

    @staticmethod
    def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        x0 = act(self.conv0(x))
        x1 = act(self.down1(x0))
        x2 = act(self.down2(x1))
        x3 = act(self.down3(x2))
        y = act(self.up1(self._up(x3, x2))) + x2
        y = act(self.up2(self._up(y, x1))) + x1
        y = act(self.up3(self._up(y, x0))) + x0
        y = act(self.conv2(act(self.conv1(y))))
        return self.out(y)


def build_discriminator(kind: str = "patchgan", in_channels: int = 1, **kwargs: Any) -> nn.Module:
    """``"patchgan"`` (:class:`PatchDiscriminator`) or ``"unet"`` (:class:`UNetDiscriminator`)."""
    if kind == "patchgan":
        return PatchDiscriminator(in_channels, **kwargs)
    if kind == "unet":
        return UNetDiscriminator(in_channels, **kwargs)
    raise ValueError(f"unknown discriminator {kind!r}; choose one of {list(DISCRIMINATORS)}")


__all__ = ["DISCRIMINATORS", "PatchDiscriminator", "UNetDiscriminator", "build_discriminator"]
