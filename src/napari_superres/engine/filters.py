"""The one Gaussian kernel of the engine, and a numpy Gaussian blur (numpy only).

SSIM's window (11 taps, sigma 1.5), the training degradation's optical blur (torch,
radius ``ceil(3 sigma)``) and the synthetic sample data's PSF (numpy, radius
``ceil(3.5 sigma)``) all take their taps from :func:`gaussian_kernel1d`; the torch
users convert them with ``torch.from_numpy(...)``.
"""

from __future__ import annotations

import math

import numpy as np


def gaussian_radius(sigma: float, truncate: float) -> int:
    """Kernel radius (pixels) that keeps ``truncate`` standard deviations on each side, at least 1."""
    return max(1, int(math.ceil(truncate * float(sigma))))


def gaussian_kernel1d(sigma: float, radius: int) -> np.ndarray:
    """Normalised (sum 1) sampled Gaussian of ``2 * radius + 1`` taps, float32.

    ``sigma`` and ``radius`` in pixels; the taps are computed in float64 and rounded once.

    >>> gaussian_kernel1d(1.5, 5).shape
    (11,)
    """
    if not sigma > 0:
        raise ValueError(f"a Gaussian kernel needs sigma > 0, got {sigma}")
    x = np.arange(-int(radius), int(radius) + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2.0 * float(sigma) ** 2))
    return (g / g.sum()).astype(np.float32)


def gaussian_blur_axis(array: np.ndarray, sigma: float, axis: int, truncate: float = 3.5) -> np.ndarray:
    """Gaussian blur along one ``axis`` (reflect borders, edge when too small); float32 out.

    ``sigma`` in pixels; ``sigma <= 0`` returns a float32 copy.  The kernel reaches
    ``truncate`` standard deviations (:func:`gaussian_radius`).
    """
    out = np.asarray(array, dtype=np.float32)
    if sigma <= 0:
        return out.copy()
    k = gaussian_kernel1d(sigma, gaussian_radius(sigma, truncate))
    r = len(k) // 2
    n = out.shape[axis]
    pad = [(0, 0)] * out.ndim
    pad[axis] = (r, r)
    padded = np.pad(out, pad, mode="reflect" if n > r else "edge")
    acc = np.zeros_like(out)
    for i, w in enumerate(k):
        sl = [slice(None)] * out.ndim
        sl[axis] = slice(i, i + n)
        acc += w * padded[tuple(sl)]
    return acc


def gaussian_blur(image: np.ndarray, sigma: float, truncate: float = 3.5) -> np.ndarray:
    """Separable Gaussian blur of the last two axes (Y, X): :func:`gaussian_blur_axis` on each; float32 out."""
    out = np.asarray(image, dtype=np.float32)
    if sigma <= 0:
        return out.copy()
    for axis in (-2, -1):
        out = gaussian_blur_axis(out, sigma, axis, truncate)
    return out


__all__ = ["gaussian_blur", "gaussian_blur_axis", "gaussian_kernel1d", "gaussian_radius"]
