"""Noise-level estimation from a single image: a Poisson-Gaussian fit on high-pass residuals.

Microscope images carry shot noise (variance proportional to the signal) plus read noise
(constant variance), so the noise variance of a pixel of expected value ``mu`` is about::

    sigma(mu)**2 = gain * mu + offset            (Foi et al. 2008, "Poisson-Gaussian")

:func:`estimate_noise` fits ``gain`` and ``offset`` on one image without a reference:

1. residual ``r`` = the image minus the mean of its 4 neighbours (a discrete Laplacian
   scaled so that for i.i.d. noise of std ``sigma`` the residual has std ``sigma``);
   smooth structure (anything spread over several pixels) mostly cancels;
2. the pixels are split by their local mean (3x3) into intensity bins; in each bin the
   noise std is ``1.4826 * MAD(r)`` (robust: edges and puncta leak into a few residuals
   only, which the median ignores);
3. a least-squares line through ``(mean, std**2)`` of the bins gives ``gain`` (clipped at
   0) and ``offset``.

The estimate assumes noise independent between pixels (true for cameras and PMTs,
not for images that were already filtered, deconvolved or upsampled) and structure
smoother than one pixel (true of Nyquist-sampled microscopy; for sharp natural images
it over-estimates). Numpy only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: std of ``x - mean(4 neighbours)`` for i.i.d. unit-variance noise: sqrt(1 + 4/16).
_RESIDUAL_GAIN = float(np.sqrt(1.25))
#: MAD -> standard deviation for a Gaussian.
_MAD_TO_STD = 1.4826
#: Intensity bins of the Poisson-Gaussian fit, and the fewest pixels a bin needs.
_BINS = 16
_MIN_BIN_PIXELS = 200
#: Largest number of pixels looked at (a strided subsample of the planes beyond it).
_MAX_PIXELS = 4_000_000


@dataclass(frozen=True)
class NoiseModel:
    """``sigma(mu) = sqrt(max(gain * mu + offset, floor))``, in the image's intensity units.

    Attributes
    ----------
    gain : variance per unit of signal (shot noise); 0 for purely Gaussian noise.
    offset : variance at ``mu = 0`` (read noise, shifted by any intensity offset).
    sigma_global : one robust noise std for the whole image (MAD of all residuals).
    floor : smallest variance returned (half the smallest variance measured in an intensity
        bin) so that ``sigma`` never reaches 0 where the fit extrapolates below the data.
    """

    gain: float
    offset: float
    sigma_global: float
    floor: float

    def sigma(self, mu: Any) -> np.ndarray:
        """Noise std for expected values ``mu`` (array or scalar), float32."""
        var = self.gain * np.asarray(mu, dtype=np.float32) + np.float32(self.offset)
        return np.sqrt(np.maximum(var, np.float32(self.floor))).astype(np.float32)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def highpass_residual(image: np.ndarray) -> np.ndarray:
    """``image - mean(4 neighbours)`` of the last two axes, divided by its noise gain (float32, same shape).

    Borders are replicated; for i.i.d. noise of std ``sigma`` the result has std ``sigma``.
    """
    x = np.asarray(image, dtype=np.float32)
    p = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    neighbours = (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]) * np.float32(0.25)
    return (x - neighbours) / np.float32(_RESIDUAL_GAIN)


def local_mean(image: np.ndarray) -> np.ndarray:
    """3x3 box mean of the last two axes (replicated borders), float32."""
    x = np.asarray(image, dtype=np.float32)
    p = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    h, w = x.shape[-2:]
    acc = np.zeros_like(x)
    for dy in range(3):
        for dx in range(3):
            acc += p[..., dy : dy + h, dx : dx + w]
    return acc / np.float32(9.0)


def _mad_std(r: np.ndarray) -> float:
    return float(_MAD_TO_STD * np.median(np.abs(r - np.median(r))))


def estimate_noise(image: Any) -> NoiseModel:
    """Fit a Poisson-Gaussian :class:`NoiseModel` to one image ``(..., Y, X)`` (any real dtype).

    Leading axes are treated as a stack of planes (Y and X must each be at least 3).
    Raises ``ValueError`` for images too small or not finite.
    """
    x = np.asarray(image)
    if x.ndim < 2 or min(x.shape[-2:]) < 3:
        raise ValueError(f"noise estimation needs an image of at least 3 x 3 pixels, got shape {x.shape}")
    x = x.reshape(-1, *x.shape[-2:])
    per_plane = x.shape[1] * x.shape[2]
    if x.shape[0] * per_plane > _MAX_PIXELS:
        step = int(np.ceil(x.shape[0] * per_plane / _MAX_PIXELS))
        x = x[::step] if x.shape[0] >= step else x
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError("image contains NaN or Inf values; replace them (e.g. np.nan_to_num) before estimating noise")
    r = highpass_residual(x)[:, 1:-1, 1:-1].ravel()
    mu = local_mean(x)[:, 1:-1, 1:-1].ravel()
    sigma_global = _mad_std(r)
    edges = np.unique(np.quantile(mu, np.linspace(0.0, 1.0, _BINS + 1)))
    means, variances = [], []
    if len(edges) > 2:
        idx = np.clip(np.searchsorted(edges, mu, side="right") - 1, 0, len(edges) - 2)
        for b in range(len(edges) - 1):
            sel = idx == b
            if np.count_nonzero(sel) >= _MIN_BIN_PIXELS:
                means.append(float(np.mean(mu[sel])))
                variances.append(_mad_std(r[sel]) ** 2)
    if len(means) >= 3:
        gain, offset = np.polyfit(np.asarray(means), np.asarray(variances), 1)
        if gain < 0:  # no visible shot noise: a constant variance
            gain, offset = 0.0, float(np.median(variances))
    else:  # (nearly) constant image: one Gaussian level
        gain, offset = 0.0, sigma_global**2
    # below the darkest bin the line may extrapolate to 0 (an intensity offset): never less than half
    # the smallest variance measured
    floor = max(0.5 * min(variances) if variances else 1e-4 * sigma_global**2, 1e-12)
    return NoiseModel(gain=float(gain), offset=float(offset), sigma_global=sigma_global, floor=float(floor))


__all__ = ["NoiseModel", "estimate_noise", "highpass_residual", "local_mean"]
