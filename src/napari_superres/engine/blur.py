"""Gaussian blur of torch tensors: the optics of the training degradation, the blind-spot forward model and
``upscale``'s blur check (:mod:`~napari_superres.engine.infer.blur_check`) all blur with it.

Taps from :func:`~napari_superres.engine.filters.gaussian_kernel1d`, radius ``ceil(BLUR_TRUNCATE * sigma)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import filters

#: The optical blur's kernel reaches this many standard deviations on each side.
BLUR_TRUNCATE = 3.0


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian, radius ``ceil(3 sigma)`` (float32; taps from :mod:`.filters`)."""
    return torch.from_numpy(filters.gaussian_kernel1d(sigma, filters.gaussian_radius(sigma, BLUR_TRUNCATE)))


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` with reflected borders; ``sigma`` in pixels, ``<= 0`` is a no-op."""
    if sigma <= 0:
        return x
    g = gaussian_kernel1d(sigma).to(x.device, x.dtype)
    r = (g.numel() - 1) // 2
    c = x.shape[1]
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    y = F.pad(x, (r, r, 0, 0), mode=mode)
    y = F.conv2d(y, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, r, r), mode=mode)
    return F.conv2d(y, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


__all__ = ["BLUR_TRUNCATE", "gaussian_blur", "gaussian_kernel1d"]
