"""Reference-free check of a super-resolved image: is it supported by the measured low-res data?

Without a high-res reference one can still degrade the output back to the input's grid
and compare it with what was measured.  A faithful output, degraded, reproduces the
input up to its noise; content the network invented (an object, a texture, a sharpened
edge that is not in the data) leaves a residual that stands above the noise.  So
:func:`consistency`

1. re-degrades ``upscaled`` the way low-res images are made (optional Gaussian blur in
   high-res px, then ``area`` binning -- a camera with larger pixels -- or antialiased
   ``bicubic`` / ``bilinear`` resizing, or ``nearest`` decimation);
2. fits the input's noise (Poisson-Gaussian, :func:`napari_superres.engine.noise.estimate_noise`)
   and divides the residual ``re-degraded - input`` by the noise std expected at each pixel;
3. the map is the local RMS of that normalised residual (Gaussian window of ``smooth``
   low-res px), upsampled (nearest) to the upscaled grid: **about 1 where the output is
   consistent with the data (the residual is noise), much larger where it is not**.

Figures: PSNR of the re-degraded output against the input, next to the *noise-level
PSNR*, the PSNR that the input's own noise gives against its noise-free version
(``10 log10(range**2 / mean(sigma**2))``).  A consistent output reaches about the
noise-level PSNR (a little above if it also removed some noise); several dB below means
structure the data does not support.

Assumptions: ``upscaled`` is in the same intensity units as ``low_res`` (napari-superres
outputs are); the degradation is roughly the one that made ``low_res`` (pass the model's,
or :func:`napari_superres.engine.train.estimate.estimate_degradation`'s); the input's noise
is independent between pixels.  numpy + torch (for antialiased resizing) only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..filters import gaussian_blur
from ..noise import NoiseModel, estimate_noise, local_mean
from .pixel import psnr_from_mse

#: Re-degradation (downsampling) methods, as the training degradations.
REDEGRADE_METHODS = ("area", "bicubic", "bilinear", "nearest")
DEFAULT_METHOD = "area"
#: Gaussian window (sigma, low-res px) of the local RMS in the map.
DEFAULT_SMOOTH = 1.0
#: Map value above which a pixel counts as inconsistent (noise sigmas, local RMS).
INCONSISTENT_LEVEL = 3.0
#: The summary calls an output consistent when its re-degraded PSNR is at most this far (dB) below
#: the noise-level PSNR and fewer than this share of its pixels are above INCONSISTENT_LEVEL.
PSNR_TOLERANCE = 1.0
INCONSISTENT_SHARE = 1e-3


@dataclass
class ConsistencyResult:
    """What :func:`consistency` measured.

    Attributes
    ----------
    map : float32, the upscaled image's shape: local RMS of the residual in noise sigmas
        (about 1 = consistent with the data; see :data:`INCONSISTENT_LEVEL`).
    residual : float32, the low-res shape: ``(re-degraded - low_res) / sigma`` per pixel.
    redegraded : float32, the low-res shape: the upscaled image degraded back.
    psnr : PSNR (dB) of ``redegraded`` against ``low_res`` (``data_range`` below).
    noise_psnr : PSNR (dB) that noise of the estimated level alone gives (the reference).
    rms : RMS of ``residual`` over the image (1.0 = residual at the noise level).
    inconsistent_fraction : share of upscaled pixels whose map exceeds :data:`INCONSISTENT_LEVEL`.
    data_range : intensity range used for the PSNRs (``max - min`` of ``low_res``).
    noise : the fitted :class:`~napari_superres.engine.noise.NoiseModel` (low-res intensity units).
    settings : scale, method, blur_sigma, smooth actually used.
    """

    map: np.ndarray
    residual: np.ndarray
    redegraded: np.ndarray
    psnr: float
    noise_psnr: float
    rms: float
    inconsistent_fraction: float
    data_range: float
    noise: NoiseModel
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for a status bar or a log."""
        consistent = self.psnr >= self.noise_psnr - PSNR_TOLERANCE and self.inconsistent_fraction < INCONSISTENT_SHARE
        verdict = "consistent with the input" if consistent else "NOT fully supported by the input (see the map)"
        return (
            f"re-degraded PSNR {self.psnr:.2f} dB vs noise level {self.noise_psnr:.2f} dB "
            f"(residual {self.rms:.2f} sigma RMS, {100 * self.inconsistent_fraction:.2f} % of pixels above "
            f"{INCONSISTENT_LEVEL:g} sigma): {verdict}"
        )


def _resolve_degradation(degradation: Any, blur_sigma: float | None) -> tuple[str, float]:
    """``(method, blur sigma)`` from a method name, a DegradationConfig (or its dict), or ``None``."""
    method, blur = DEFAULT_METHOD, 0.0
    if degradation is None:
        pass
    elif isinstance(degradation, str):
        method = degradation
    else:
        d = degradation.to_dict() if hasattr(degradation, "to_dict") else dict(degradation)
        methods = d.get("methods") or (DEFAULT_METHOD,)
        method = methods if isinstance(methods, str) else (DEFAULT_METHOD if DEFAULT_METHOD in methods else methods[0])
        sigma = d.get("blur_sigma")
        if sigma is not None and float(d.get("blur_prob", 1.0)) > 0:
            blur = float(np.mean(sigma)) if not isinstance(sigma, (int, float)) else float(sigma)
    if method not in REDEGRADE_METHODS:
        raise ValueError(f"unknown re-degradation method {method!r}; choose one of {list(REDEGRADE_METHODS)}")
    if blur_sigma is not None:
        blur = float(blur_sigma)
    if not math.isfinite(blur) or blur < 0:
        raise ValueError(f"blur_sigma must be a number >= 0 (high-res px), got {blur}")
    return method, blur


def redegrade(upscaled: np.ndarray, scale: int, method: str = DEFAULT_METHOD, blur_sigma: float = 0.0) -> np.ndarray:
    """``(..., s*H, s*W)`` -> ``(..., H, W)`` float32: Gaussian blur (high-res px), then downsampling by ``method``."""
    x = gaussian_blur(upscaled, blur_sigma) if blur_sigma > 0 else np.asarray(upscaled, dtype=np.float32)
    h, w = x.shape[-2] // scale, x.shape[-1] // scale
    if method == "area":
        lead = x.shape[:-2]
        blocks = x[..., : h * scale, : w * scale].reshape(*lead, h, scale, w, scale)
        return blocks.mean(axis=(-3, -1), dtype=np.float64).astype(np.float32)
    if method == "nearest":
        off = scale // 2
        return np.ascontiguousarray(x[..., off::scale, off::scale][..., :h, :w])
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, 1, *x.shape[-2:])))
    y = F.interpolate(t, size=(h, w), mode=method, align_corners=False, antialias=True)
    return y.numpy().reshape(*x.shape[:-2], h, w)


def _infer_scale(low_shape: tuple[int, ...], up_shape: tuple[int, ...]) -> int:
    sy, ry = divmod(up_shape[-2], low_shape[-2])
    sx, rx = divmod(up_shape[-1], low_shape[-1])
    if ry or rx or sy != sx or sy < 1:
        raise ValueError(
            f"the upscaled image {up_shape[-2:]} is not an integer multiple of the low-res image {low_shape[-2:]} "
            f"(same factor in Y and X); pass scale= or check that the two images belong together"
        )
    return sy


#: Largest magnitude of a pixel :func:`consistency` accepts (its float32 arithmetic squares
#: differences: beyond this they overflow to Inf and the figures turn NaN).
MAX_ABS_VALUE = 1e15


def consistency(
    low_res: Any,
    upscaled: Any,
    scale: int | None = None,
    *,
    degradation: Any = None,
    blur_sigma: float | None = None,
    noise: NoiseModel | None = None,
    smooth: float = DEFAULT_SMOOTH,
) -> ConsistencyResult:
    """How well ``upscaled`` is supported by the measured ``low_res`` (no high-res reference needed).

    Parameters
    ----------
    low_res : ``(Y, X)`` or ``(..., Y, X)`` grayscale image (any real dtype), the measured input.
    upscaled : ``(..., s*Y, s*X)`` the super-resolved image, same leading axes, same intensity units.
    scale : the factor ``s`` (default: from the shapes).
    degradation : how low-res images are made: ``"area"`` (default: a camera's larger pixels),
        ``"bicubic"``, ``"bilinear"``, ``"nearest"``, or a
        :class:`~napari_superres.engine.train.degradation.DegradationConfig` (or its dict; e.g. from
        ``estimate_degradation``): its method (``area`` if listed) and mean blur sigma.
    blur_sigma : Gaussian blur (high-res px) applied before downsampling; overrides the degradation's.
    noise : the input's noise model (default: fitted on ``low_res``).
    smooth : Gaussian window (low-res px) of the map's local RMS; 0 = the raw ``|residual|``.

    Returns
    -------
    :class:`ConsistencyResult` (``.map`` on the upscaled grid, ``.psnr``, ``.noise_psnr``, ...).
    """
    low = np.asarray(low_res)
    up = np.asarray(upscaled)
    if low.ndim >= 3 and low.shape[-1] in (3, 4) and up.ndim == low.ndim and up.shape[-1] == low.shape[-1]:
        raise ValueError(
            f"low_res {low.shape} and upscaled {up.shape} look like RGB(A) images (a last axis of "
            f"{low.shape[-1]}); consistency compares grayscale (..., Y, X) images: pass one channel "
            "(low_res[..., 0], upscaled[..., 0]) or the luminance of each"
        )
    if low.ndim < 2 or up.ndim != low.ndim or up.shape[:-2] != low.shape[:-2]:
        raise ValueError(
            f"low_res {low.shape} and upscaled {up.shape} must be (..., Y, X) images with the same leading axes"
        )
    for name, a in (("low_res", low), ("upscaled", up)):
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise ValueError(f"{name} must be a grayscale integer or float image, got dtype {a.dtype}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or Inf values; replace them (e.g. np.nan_to_num) first")
        extreme = max(abs(float(a.min())), abs(float(a.max()))) if a.size else 0.0
        if extreme > MAX_ABS_VALUE:
            raise ValueError(
                f"{name} holds values up to {extreme:.3g}, beyond {MAX_ABS_VALUE:g}: the redegradation "
                f"and noise figures would overflow; rescale both images (e.g. divide by {MAX_ABS_VALUE:g}) first"
            )
    if scale is None:
        scale = _infer_scale(low.shape, up.shape)
    scale = int(scale)
    if scale < 1 or up.shape[-2] != scale * low.shape[-2] or up.shape[-1] != scale * low.shape[-1]:
        raise ValueError(f"upscaled {up.shape[-2:]} must be exactly scale x low_res {low.shape[-2:]} (scale {scale})")
    method, blur = _resolve_degradation(degradation, blur_sigma)
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0 (low-res px), got {smooth}")

    lowf = low.astype(np.float32)
    redeg = redegrade(up, scale, method, blur)
    noise = noise or estimate_noise(lowf)
    sigma = noise.sigma(local_mean(lowf))
    residual = (redeg - lowf) / sigma
    sq = residual * residual
    local = np.sqrt(gaussian_blur(sq, smooth)) if smooth > 0 else np.abs(residual)
    full = np.repeat(np.repeat(local, scale, axis=-2), scale, axis=-1).astype(np.float32)

    data_range = float(lowf.max() - lowf.min()) or 1.0
    mse = float(np.mean((redeg.astype(np.float64) - lowf) ** 2))
    noise_var = float(np.mean(sigma.astype(np.float64) ** 2))
    return ConsistencyResult(
        map=full,
        residual=residual.astype(np.float32),
        redegraded=redeg,
        psnr=psnr_from_mse(max(mse, 1e-20), data_range),  # (floored: a finite figure even when exact)
        noise_psnr=psnr_from_mse(max(noise_var, 1e-20), data_range),
        rms=float(np.sqrt(np.mean(sq, dtype=np.float64))),
        inconsistent_fraction=float(np.mean(full > INCONSISTENT_LEVEL)),
        data_range=data_range,
        noise=noise,
        settings={"scale": scale, "method": method, "blur_sigma": blur, "smooth": float(smooth)},
    )


__all__ = ["ConsistencyResult", "INCONSISTENT_LEVEL", "REDEGRADE_METHODS", "consistency", "redegrade"]
