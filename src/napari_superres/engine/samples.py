"""Deterministic synthetic fluorescence microscopy: sample data and test pairs, no download.

The scene is a sparse fluorescent object drawn from a seed: smooth filaments (random
curves of slowly varying curvature, like microtubules or actin), puncta (vesicles,
diffraction-limited spots) and a faint smooth cytoplasm background.  The object is
blurred by a Gaussian point-spread function at the high-resolution pixel size, then

* the **high-res** image samples the blurred object on the fine grid;
* the **low-res** image integrates the same blurred object over ``scale x scale`` blocks
  (a camera with larger pixels: area, not point, sampling).

Noise model (``noise=True``), shared intensity scale so that low- and high-res values
are directly comparable (a pixel's expected value does not depend on its size)::

    photons   ~ Poisson(area * (background + peak * object))   # area = s^2 for low-res, 1 for high-res
    value_ADU = OFFSET + SPAN * (photons + Normal(0, read_noise)) / (area * peak)

(the background stays in the image, like autofluorescence: its expected value is
``OFFSET + SPAN * background``).

The low-res image gets ``peak_photons`` expected photons per high-res-pixel area at the
brightest point (so ``s^2 * peak_photons`` per low-res pixel); the high-res image is the
"ground truth" acquisition with mild noise, ``hr_photons`` (10x more by default).  Both
are ``uint16``: ``OFFSET`` (camera offset) plus about ``SPAN * (1 + background)`` counts.

Everything is numpy only and fast: a 512 x 512 pair takes a few tens of milliseconds.
"""

from __future__ import annotations

import numpy as np

from .filters import gaussian_blur  # noqa: F401 - the PSF blur (kernel radius 3.5 sigma); re-exported

#: Camera offset (ADU) added to every pixel.
OFFSET = 100
#: ADU of an object value of 1 (above background), before noise.
SPAN = 30_000
#: Default standard deviation of the Gaussian PSF, in high-res pixels.
PSF_SIGMA = 1.5
#: Intrinsic width (Gaussian sigma, high-res px) of filaments and puncta before the PSF.
STRUCTURE_SIGMA = 0.6
#: Filaments and puncta per 256 x 256 high-res pixels.
FILAMENTS_PER_TILE = 14
PUNCTA_PER_TILE = 60
_TILE_AREA = 256 * 256
#: Step (high-res px) between points drawn along a filament.
_STEP = 0.5


def bin_image(image: np.ndarray, scale: int) -> np.ndarray:
    """Mean over non-overlapping ``scale x scale`` blocks of the last two axes (area sampling).

    The last two dimensions must be multiples of ``scale``.
    """
    h, w = image.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"shape {(h, w)} is not a multiple of scale {scale}; crop or pad the image first")
    lead = image.shape[:-2]
    blocks = image.reshape(*lead, h // scale, scale, w // scale, scale)
    return blocks.mean(axis=(-3, -1), dtype=np.float64).astype(np.float32)


class _Scene:
    """Random geometry of one field of view: filament point clouds and puncta, with depths."""

    def __init__(self, shape: tuple[int, int], rng: np.random.Generator) -> None:
        h, w = shape
        area_factor = h * w / _TILE_AREA
        n_fil = max(2, int(round(FILAMENTS_PER_TILE * area_factor)))
        n_pun = max(3, int(round(PUNCTA_PER_TILE * area_factor)))
        ys, xs, ws, zs = [], [], [], []
        for _ in range(n_fil):
            length = rng.uniform(0.3, 1.0) * max(h, w)
            n = max(4, int(length / _STEP))
            t = np.arange(n) * _STEP
            # curvature: a slow sinusoid plus a constant bend (rad / px)
            kappa = rng.normal(0.0, 0.01) + rng.uniform(0.0, 0.03) * np.sin(
                2 * np.pi * t / rng.uniform(40.0, 200.0) + rng.uniform(0, 2 * np.pi)
            )
            theta = rng.uniform(0, 2 * np.pi) + np.cumsum(kappa) * _STEP
            y0, x0 = rng.uniform(-0.1, 1.1) * h, rng.uniform(-0.1, 1.1) * w
            ys.append(y0 + np.cumsum(np.sin(theta)) * _STEP)
            xs.append(x0 + np.cumsum(np.cos(theta)) * _STEP)
            # per-unit-length brightness, slightly uneven along the filament
            level = rng.uniform(0.35, 1.0)
            ws.append(level * _STEP * (1.0 + 0.15 * np.sin(t / rng.uniform(5.0, 20.0))))
            zs.append(np.full(n, rng.uniform(0.0, 1.0)))
        self.fil = (np.concatenate(ys), np.concatenate(xs), np.concatenate(ws), np.concatenate(zs))
        self.pun = (
            rng.uniform(0, h, n_pun),
            rng.uniform(0, w, n_pun),
            rng.uniform(1.5, 4.0, n_pun),  # integrated brightness of a spot
            rng.uniform(0.0, 1.0, n_pun),
        )
        # faint smooth cytoplasm: a few low-frequency cosines
        k = 4
        self.bg = (
            rng.uniform(0.5, 3.0, k) * 2 * np.pi / h,
            rng.uniform(0.5, 3.0, k) * 2 * np.pi / w,
            rng.uniform(0, 2 * np.pi, k),
        )
        self.shape = shape


def _splat(shape: tuple[int, int], y: np.ndarray, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Draw weighted points with bilinear weights (sub-pixel positions) into a float32 image."""
    h, w = shape
    y0 = np.floor(y).astype(np.int64)
    x0 = np.floor(x).astype(np.int64)
    fy, fx = y - y0, x - x0
    out = np.zeros(h * w, dtype=np.float64)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            out += np.bincount(yy[ok] * w + xx[ok], weights=(weight * wy * wx)[ok], minlength=h * w)
    return out.reshape(h, w).astype(np.float32)


def _render(scene: _Scene, depth: float | None, depth_sigma: float = 0.15) -> np.ndarray:
    """Unnormalised object; ``depth`` in [0, 1] weights structures by their distance in Z."""
    fy, fx, fw, fz = scene.fil
    py, px, pw, pz = scene.pun
    if depth is not None:
        fw = fw * np.exp(-0.5 * ((fz - depth) / depth_sigma) ** 2)
        pw = pw * np.exp(-0.5 * ((pz - depth) / depth_sigma) ** 2)
    h, w = scene.shape
    points = _splat(scene.shape, np.concatenate([fy, py]), np.concatenate([fx, px]), np.concatenate([fw, pw]))
    obj = gaussian_blur(points, STRUCTURE_SIGMA)
    ky, kx, ph = scene.bg
    yy = np.arange(h, dtype=np.float64)[:, None]
    xx = np.arange(w, dtype=np.float64)[None, :]
    # sum of cos(a*y + b*x + c), separable: cos(u + v) = cos u cos v - sin u sin v
    cy, sy = np.cos(ky * yy), np.sin(ky * yy)  # (h, k)
    cx, sx = np.cos(kx * xx.T + ph).T, np.sin(kx * xx.T + ph).T  # (k, w)
    cyto = (cy @ cx - sy @ sx).astype(np.float32)
    obj += np.float32(0.04) * (1.0 + cyto / len(ky))
    return obj


#: Object values are divided by this (then clipped to 1): the 2D render's typical maximum.
_OBJECT_NORM = 0.8


def synthetic_object(shape: tuple[int, int] = (256, 256), seed: int = 0) -> np.ndarray:
    """The noise-free, unblurred fluorescent object, float32 ``shape`` in ``[0, 1]``.

    Same ``shape`` and ``seed`` give the same image on every platform.
    """
    h, w = _check_shape(shape)
    scene = _Scene((h, w), np.random.default_rng(seed))
    return np.clip(_render(scene, None) / _OBJECT_NORM, 0.0, 1.0)


def _check_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (height, width) with positive sizes, got {shape}")
    return int(shape[0]), int(shape[1])


def _acquire(
    blurred: np.ndarray,
    area: int,
    peak_photons: float,
    background: float,
    read_noise: float,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """Expected object (mean per pixel) -> uint16 camera image on the shared ADU scale."""
    expected = area * peak_photons * (background + blurred.astype(np.float64))
    if rng is not None:
        photons = rng.poisson(expected).astype(np.float64)
        photons += rng.normal(0.0, read_noise, size=photons.shape)
    else:
        photons = expected
    value = OFFSET + SPAN * photons / (area * peak_photons)
    return np.clip(np.rint(value), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def synthetic_pair(
    shape: tuple[int, int] = (256, 256),
    scale: int = 2,
    seed: int = 0,
    noise: bool = True,
    *,
    psf_sigma: float = PSF_SIGMA,
    peak_photons: float = 60.0,
    hr_photons: float = 1000.0,
    background: float = 0.05,
    read_noise: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A registered low-res / high-res pair of the same synthetic field of view.

    Parameters
    ----------
    shape : high-res ``(H, W)`` in pixels; both must be multiples of ``scale``.
    scale : integer pixel-size ratio (low-res pixels are ``scale`` times larger).
    seed : the same seed gives the same pair (object and noise).
    noise : ``False`` gives the expected (noise-free) values.
    psf_sigma : Gaussian PSF standard deviation in high-res pixels.
    peak_photons : expected photons per high-res-pixel area at object value 1 in the
        low-res image (a low-res pixel collects ``scale**2`` times more).
    hr_photons : same for the high-res image (mild noise by default).
    background : background level in object units (adds shot noise).
    read_noise : camera read noise, in photons (rms).

    Returns
    -------
    ``(low_res, high_res)``: ``uint16`` arrays of shape ``(H // scale, W // scale)`` and ``(H, W)``
    on the same intensity scale (``OFFSET + SPAN * (background + blurred object)``).  Pixel ``(i, j)`` of
    ``low_res`` covers ``high_res[i*s:(i+1)*s, j*s:(j+1)*s]``.
    """
    h, w = _check_shape(shape)
    scale = _check_scale((h, w), scale)
    blurred = gaussian_blur(synthetic_object((h, w), seed), psf_sigma)
    return _pair_from_blurred(blurred, scale, seed, noise, peak_photons, hr_photons, background, read_noise)


def _check_scale(shape: tuple[int, int], scale: int) -> int:
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if shape[0] % scale or shape[1] % scale:
        raise ValueError(f"shape {shape} must be a multiple of scale {scale} in both axes")
    return scale


def _pair_from_blurred(
    blurred: np.ndarray,
    scale: int,
    seed: int,
    noise: bool,
    peak_photons: float,
    hr_photons: float,
    background: float,
    read_noise: float,
) -> tuple[np.ndarray, np.ndarray]:
    # an independent stream for the noise, so the object does not depend on `noise`
    rng = np.random.default_rng([seed, 1]) if noise else None
    low_res = _acquire(bin_image(blurred, scale), scale * scale, peak_photons, background, read_noise, rng)
    high_res = _acquire(blurred, 1, hr_photons, background, read_noise, rng)
    return low_res, high_res


def synthetic_stack(
    n_planes: int = 8,
    shape: tuple[int, int] = (256, 256),
    scale: int = 2,
    seed: int = 0,
    noise: bool = True,
    *,
    psf_sigma: float = PSF_SIGMA,
    peak_photons: float = 60.0,
    hr_photons: float = 1000.0,
    background: float = 0.05,
    read_noise: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A Z stack: ``(low_res (n, H/s, W/s), high_res (n, H, W))`` uint16, one field of view at ``n`` depths.

    Every structure has a depth in ``[0, 1]``; plane ``k`` shows structures near
    ``k / (n - 1)`` (Gaussian weight, sigma 0.15), so neighbouring planes are correlated.
    The blur is 2D per plane.  Arguments as :func:`synthetic_pair`.
    """
    if n_planes < 1:
        raise ValueError(f"n_planes must be at least 1, got {n_planes}")
    h, w = _check_shape(shape)
    scale = _check_scale((h, w), scale)
    scene = _Scene((h, w), np.random.default_rng(seed))
    depths = np.linspace(0.0, 1.0, n_planes) if n_planes > 1 else np.array([0.5])
    low_planes, high_planes = [], []
    for k, depth in enumerate(depths):
        obj = np.clip(_render(scene, float(depth)) / _OBJECT_NORM, 0.0, 1.0)
        low_res, high_res = _pair_from_blurred(
            gaussian_blur(obj, psf_sigma), scale, seed * 100_003 + k, noise,
            peak_photons, hr_photons, background, read_noise,
        )  # fmt: skip
        low_planes.append(low_res)
        high_planes.append(high_res)
    return np.stack(low_planes), np.stack(high_planes)
