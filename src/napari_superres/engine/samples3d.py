"""Synthetic anisotropic fluorescence volumes: 3D filaments and puncta, numpy only.

The object (filaments: smooth random 3D curves of isotropic random direction; puncta:
points) lives on an isotropic voxel grid.  :func:`anisotropic_acquisition` images it
the way a confocal or light-sheet microscope does::

    ground truth  = object * Gaussian PSF (sigma_xy in every direction)      # the isotropic ideal
    acquisition   = object * Gaussian PSF (sigma_z = psf_ratio * sigma_xy along Z, sigma_xy in Y/X)
                    sampled every ``factor``-th plane (plane k = fine plane k * factor),
                    Poisson photon noise, camera offset, uint16

so an axial upsampling by ``factor`` should bring the acquisition back to the ground
truth grid (``(Z - 1) * factor + 1`` planes are inside the sampled range).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .filters import gaussian_blur_axis
from .samples import OFFSET, STRUCTURE_SIGMA  # the same camera offset and structure width as the 2D samples

#: Filaments and puncta per 64**3 voxels.
FILAMENTS_PER_BLOCK = 6
PUNCTA_PER_BLOCK = 30
_BLOCK = 64**3
#: Step (voxels) between points drawn along a filament, and how much its direction wanders per step.
_STEP = 0.5
_BEND = 0.06
#: Faint smooth background (cytoplasm), as a fraction of the brightest structure.
_BACKGROUND = 0.03


def blur_axis(volume: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Gaussian blur of one axis (reflected borders), float32; ``sigma <= 0`` returns a float32 copy."""
    return gaussian_blur_axis(volume, sigma, axis)


def blur3d(volume: np.ndarray, sigmas: tuple[float, float, float]) -> np.ndarray:
    """Separable Gaussian blur of a ``(Z, Y, X)`` volume with per-axis sigmas (voxels), float32."""
    out = np.asarray(volume, dtype=np.float32)
    for axis, s in enumerate(sigmas):
        out = blur_axis(out, s, axis)
    return out


def _splat(shape: tuple[int, int, int], pts: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Trilinear splat of points ``(N, 3)`` (z, y, x) with weights into a float32 volume."""
    vol = np.zeros(shape, dtype=np.float64)
    base = np.floor(pts).astype(np.int64)
    frac = pts - base
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                idx = base + np.array([dz, dy, dx])
                w = weight.copy()
                for a, d in enumerate((dz, dy, dx)):
                    w *= frac[:, a] if d else 1.0 - frac[:, a]
                ok = np.all((idx >= 0) & (idx < np.array(shape)), axis=1)
                np.add.at(vol, (idx[ok, 0], idx[ok, 1], idx[ok, 2]), w[ok])
    return vol.astype(np.float32)


def synthetic_object_3d(shape: tuple[int, int, int] = (64, 128, 128), seed: int = 0) -> np.ndarray:
    """Filaments and puncta on an isotropic grid, ``(Z, Y, X)`` float32, brightest structures about 1.

    Deterministic for a seed.  Not yet blurred by a PSF (only their intrinsic width).
    """
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"a synthetic volume needs a (Z, Y, X) shape of at least 4 per axis, got {shape}")
    rng = np.random.default_rng(seed)
    dims = np.asarray(shape, dtype=np.float64)
    volume = float(np.prod(dims)) / _BLOCK
    points, weights = [], []
    for _ in range(max(1, int(round(FILAMENTS_PER_BLOCK * volume)))):
        length = rng.uniform(0.5, 1.5) * float(dims.max())
        n = int(length / _STEP)
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        dirs = np.empty((n, 3))
        for i in range(n):
            d = d + rng.normal(scale=_BEND, size=3)
            d /= np.linalg.norm(d)
            dirs[i] = d
        start = rng.uniform(0, 1, size=3) * dims
        pts = start + np.cumsum(dirs * _STEP, axis=0)
        points.append(pts)
        weights.append(np.full(n, rng.uniform(0.4, 1.0) * _STEP))
    n_puncta = max(1, int(round(PUNCTA_PER_BLOCK * volume)))
    points.append(rng.uniform(0, 1, size=(n_puncta, 3)) * dims)
    weights.append(rng.uniform(0.5, 2.0, size=n_puncta))
    obj = _splat(shape, np.concatenate(points), np.concatenate(weights))
    obj = blur3d(obj, (STRUCTURE_SIGMA,) * 3)
    obj /= max(float(np.percentile(obj, 99.9)), 1e-6)
    smooth = blur3d(rng.uniform(size=shape).astype(np.float32), (8.0, 8.0, 8.0))
    smooth = (smooth - smooth.min()) / max(float(np.ptp(smooth)), 1e-6)
    return (np.clip(obj, 0, 2) + _BACKGROUND * smooth).astype(np.float32)


@dataclass
class AnisotropicVolume:
    """A synthetic acquisition and its ground truth.

    Attributes
    ----------
    low_z : ``(Z, Y, X)`` uint16 acquisition, every ``factor``-th plane of the fine grid.
    ground_truth : ``(Z_fine, Y, X)`` float32 isotropic-PSF volume, noise free, same intensity
        units as ``low_z`` (plane ``k * factor`` of it sits where plane ``k`` of ``low_z`` does).
    factor, sigma_xy, psf_ratio : the acquisition's parameters (sigma in fine voxels).
    """

    low_z: np.ndarray
    ground_truth: np.ndarray
    factor: int
    sigma_xy: float
    psf_ratio: float


def anisotropic_acquisition(
    obj: np.ndarray,
    factor: int,
    *,
    sigma_xy: float = 1.0,
    psf_ratio: float | None = None,
    photons: float | None = 200.0,
    seed: int = 0,
) -> AnisotropicVolume:
    """Image ``obj`` ``(Z, Y, X)`` with an axially elongated PSF and Z steps of ``factor`` voxels.

    ``psf_ratio`` is the axial / lateral PSF width (default ``factor``: Z sampled as finely,
    relative to its PSF, as Y and X).  ``photons``: expected photons at object value 1
    (Poisson noise), ``None`` for no noise.
    """
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    ratio = float(factor if psf_ratio is None else psf_ratio)
    s_xy = float(sigma_xy)
    gt = blur3d(obj, (s_xy, s_xy, s_xy))
    blurred = blur3d(obj, (ratio * s_xy, s_xy, s_xy))[::factor]
    rng = np.random.default_rng(seed + 1)
    peak = 1000.0 if photons is None else float(photons)
    expected = np.clip(blurred, 0, None) * peak
    counts = expected if photons is None else rng.poisson(expected).astype(np.float32)
    low_z = np.clip(np.rint(OFFSET + counts), 0, 65535).astype(np.uint16)
    return AnisotropicVolume(
        low_z=low_z,
        ground_truth=(OFFSET + gt * peak).astype(np.float32),
        factor=factor,
        sigma_xy=float(sigma_xy),
        psf_ratio=ratio,
    )


__all__ = ["AnisotropicVolume", "anisotropic_acquisition", "blur3d", "blur_axis", "synthetic_object_3d"]
