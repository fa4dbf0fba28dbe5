"""Differentiable SSIM (Wang et al. 2004) with a Gaussian window, shared by losses and metrics.

Matches ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=...)`` in the interior; borders use the
valid region only (no padding), as scikit-image crops them from the mean.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ..filters import gaussian_kernel1d

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


@functools.lru_cache(maxsize=8)
def _gaussian_1d(size: int, sigma: float) -> torch.Tensor:
    """The ``size``-tap window (odd ``size``), float32."""
    if size % 2 != 1:
        raise ValueError(f"the SSIM window must have an odd size, got {size}")
    return torch.from_numpy(gaussian_kernel1d(sigma, size // 2))


def _blur(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian filter, 'valid' region, per channel: (N, C, H, W) -> (N, C, H-size+1, W-size+1)."""
    c = x.shape[1]
    g = _gaussian_1d(size, sigma).to(device=x.device, dtype=x.dtype)
    x = F.conv2d(x, g.view(1, 1, 1, size).expand(c, 1, 1, size), groups=c)
    return F.conv2d(x, g.view(1, 1, size, 1).expand(c, 1, size, 1), groups=c)


def ssim_map(
    a: torch.Tensor,
    b: torch.Tensor,
    data_range: float = 1.0,
    window: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
) -> torch.Tensor:
    """Local SSIM of ``(N, C, H, W)`` images: ``(N, C, H-window+1, W-window+1)`` in [-1, 1].

    Computed in float32, or float64 when either input is float64 (metrics need the precision).
    """
    if a.shape != b.shape:
        raise ValueError(f"SSIM needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[-2:]) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window} px, got {tuple(a.shape[-2:])}")
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32  # float64 stays float64
    a, b = a.to(dtype), b.to(dtype)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_a, mu_b = _blur(a, window, sigma), _blur(b, window, sigma)
    var_a = _blur(a * a, window, sigma) - mu_a**2
    var_b = _blur(b * b, window, sigma) - mu_b**2
    cov = _blur(a * b, window, sigma) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return num / den


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM over the valid region (scalar tensor, differentiable)."""
    return ssim_map(a, b, data_range).mean()
