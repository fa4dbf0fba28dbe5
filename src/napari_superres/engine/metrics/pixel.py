"""Image-quality figures and pixel-wise difference maps: PSNR, PSNR on Y, SSIM, error and SSIM maps.

Conventions
-----------
``a`` is the image under test (e.g. a super-resolved result), ``b`` the reference
(ground truth).  Both hold values in the **same intensity units** (e.g. a float32
result of :func:`napari_superres.upscale` of a uint16 image is in uint16 units) and
have the same shape.  Every figure and map is symmetric in ``a`` and ``b`` except that
the default data range is read from ``b``:

* unsigned integers: the dtype's maximum (uint8 255, uint16 65535), as scikit-image;
* signed integers: the dtype's full span (max - min);
* bool: 1;
* floats: 1 when ``b`` lies in ``[0, 1]``, else ``b.max() - b.min()`` (scikit-image
  refuses to guess for floats: pass ``data_range`` explicitly when you know it).

:func:`psnr` and :func:`ssim` equal scikit-image's ``peak_signal_noise_ratio(b, a)``
and ``structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=...)`` (Wang et al. 2004) for the same data range.

Layouts: 2D ``(Y, X)``, RGB(A) ``(..., Y, X, 3|4)`` and stacks (leading axes, or an
``axes`` string as in :func:`napari_superres.engine.layout.parse_axes`).  Maps have the
input's shape without the RGB axis: RGB maps are averaged over R, G, B (alpha is
ignored); stacks are mapped plane by plane.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..layout import NON_FINITE_MESSAGE, PlaneLayout, check_pair
from ..normalization import LUMA_WEIGHTS, intensity_range
from ..options import Normalization
from .ssim import SSIM_SIGMA, SSIM_WINDOW
from .ssim import ssim_map as _ssim_valid_map

#: Pixels added on each side (half the SSIM window) so that the SSIM map has the input's shape.
SSIM_PAD = SSIM_WINDOW // 2
#: Y of ITU-R BT.601 "studio range" on [0, 1] RGB, as MATLAB's ``rgb2ycbcr`` and the SR literature:
#: ``Y = (16 + 219 * luma) / 255`` in [16/255, 235/255], luma = 0.299 R + 0.587 G + 0.114 B
#: (:data:`~napari_superres.engine.normalization.LUMA_WEIGHTS`), i.e. ``(16 + 65.481 R + 128.553 G + 24.966 B) / 255``.
STUDIO_Y_OFFSET = 16.0
STUDIO_Y_SPAN = 219.0


def default_data_range(reference: Any) -> float:
    """Peak-to-peak range used when ``data_range`` is not given (see module docstring)."""
    dtype = np.dtype(reference.dtype)
    if dtype.kind in "iu":  # scikit-image's convention, for every integer dtype
        info = np.iinfo(dtype)
        return float(info.max) - (0.0 if info.min == 0 else float(info.min))
    lo, hi = intensity_range(reference, Normalization("dtype"))
    return float(hi - lo)


def resolve_data_range(b: Any, data_range: float | None) -> float:
    """``data_range``, or the default of the reference ``b``; ``ValueError`` unless positive and finite."""
    dr = default_data_range(b) if data_range is None else float(data_range)
    if not dr > 0 or not math.isfinite(dr):
        raise ValueError(f"data_range must be a positive finite number, got {data_range}")
    return dr


# --- PSNR ----------------------------------------------------------------------------------------
def mse(a: Any, b: Any) -> float:
    """Mean squared error over all values, in float64."""
    check_pair(a, b)
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    err = float(np.mean(d * d))
    if not math.isfinite(err):  # dask inputs are checked here, once computed
        raise ValueError(NON_FINITE_MESSAGE.format(name="A or B"))
    return err


def psnr_from_mse(mse: float, data_range: float) -> float:
    """``10 log10(data_range**2 / mse)`` in dB; ``math.inf`` for ``mse == 0``.

    The one PSNR formula: :func:`psnr`, :func:`psnr_y` and the trainer's validation use it.
    """
    mse = float(mse)
    if mse == 0.0:
        return math.inf
    return float(10.0 * math.log10(float(data_range) ** 2 / mse))


def psnr(a: Any, b: Any, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range**2 / MSE)`` over all values.

    Identical images (MSE = 0) give ``math.inf`` (no warning, no division by zero);
    callers that need a finite number should test ``math.isinf``.
    """
    return psnr_from_mse(mse(a, b), resolve_data_range(b, data_range))


def rgb_to_y(rgb: np.ndarray, data_range: float) -> np.ndarray:
    """Studio-range BT.601 luma of ``(..., 3|4)`` RGB(A) values: float64 in [16/255, 235/255].

    ``rgb / data_range`` must be in [0, 1]; this is MATLAB's ``rgb2ycbcr`` Y (not rounded)
    divided by 255, the channel on which SR papers report "PSNR (Y)".
    """
    rgb01 = np.asarray(rgb, dtype=np.float64)[..., :3] / float(data_range)
    return (STUDIO_Y_OFFSET + STUDIO_Y_SPAN * (rgb01 @ np.asarray(LUMA_WEIGHTS, dtype=np.float64))) / 255.0


def psnr_y(a: Any, b: Any, crop_border: int = 0, data_range: float | None = None) -> float:
    """PSNR (dB) on the Y channel of RGB(A) images ``(..., Y, X, 3|4)``, as in the SR literature.

    ``crop_border`` pixels are removed from every side of Y and X first (papers crop
    ``scale`` pixels).  Y is in [0, 1] units (see :func:`rgb_to_y`), so the peak is 1.
    """
    check_pair(a, b)
    if b.ndim < 3 or b.shape[-1] not in (3, 4):
        raise ValueError(f"psnr_y needs RGB(A) images (..., Y, X, 3|4), got shape {tuple(b.shape)}")
    dr = resolve_data_range(b, data_range)
    crop_border = int(crop_border)
    if crop_border < 0 or 2 * crop_border >= min(b.shape[-3], b.shape[-2]):
        raise ValueError(f"crop_border {crop_border} is negative or leaves nothing of a {b.shape[-3:-1]} image")
    ya, yb = rgb_to_y(a, dr), rgb_to_y(b, dr)
    if crop_border:
        crop = (..., slice(crop_border, -crop_border), slice(crop_border, -crop_border))
        ya, yb = ya[crop], yb[crop]
    return psnr_from_mse(np.mean((ya - yb) ** 2), 1.0)


# --- SSIM ----------------------------------------------------------------------------------------
def _ssim_layout(shape: tuple[int, ...], channel_axis: int | None, axes: str | None, rgb: bool | None):
    """Layout for SSIM: an explicit ``channel_axis`` means "average over every channel of that axis"."""
    if channel_axis is None:
        return PlaneLayout.of(shape, axes, rgb), None
    channel_axis %= len(shape)
    return None, channel_axis


def _planes_for_ssim(a: Any, b: Any, channel_axis: int | None, axes: str | None, rgb: bool | None):
    """Yield ``(a_plane, b_plane)`` pairs of ``(C, Y, X)`` arrays."""
    layout, ch = _ssim_layout(tuple(b.shape), channel_axis, axes, rgb)
    if layout is not None:
        yield from zip(layout.planes(a), layout.planes(b))
        return
    a_m, b_m = np.moveaxis(np.asarray(a), ch, 0), np.moveaxis(np.asarray(b), ch, 0)
    if a_m.ndim != 3:
        raise ValueError(f"with channel_axis, images must be (Y, X) plus that channel axis, got {tuple(b.shape)}")
    yield a_m, b_m


def ssim(
    a: Any,
    b: Any,
    data_range: float | None = None,
    *,
    channel_axis: int | None = None,
    axes: str | None = None,
    rgb: bool | None = None,
) -> float:
    """Mean structural similarity (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03), computed in float64.

    Equals scikit-image's ``structural_similarity(a, b, data_range=..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False)``: the mean of the SSIM map away from a
    5-pixel border.  RGB(A) images (guessed as napari does, or ``channel_axis``) give the
    mean over channels as scikit-image's ``channel_axis``; stacks give the mean over 2D
    planes (scikit-image would use 3D windows on a stack).  Y and X must be >= 11.
    """
    check_pair(a, b)
    dr = resolve_data_range(b, data_range)
    scores = []
    for pa, pb in _planes_for_ssim(a, b, channel_axis, axes, rgb):
        ta = torch.from_numpy(np.asarray(pa, dtype=np.float64) / dr)[None]
        tb = torch.from_numpy(np.asarray(pb, dtype=np.float64) / dr)[None]
        # SSIM is invariant to a common scaling of a, b and the data range: data_range 1 on a/dr, b/dr
        smap = _ssim_valid_map(ta, tb, data_range=1.0, window=SSIM_WINDOW, sigma=SSIM_SIGMA)
        scores.append(smap.mean(dim=(0, 2, 3)))
    return float(torch.cat(scores).mean())


def ssim_map(
    a: Any,
    b: Any,
    data_range: float | None = None,
    *,
    axes: str | None = None,
    rgb: bool | None = None,
) -> np.ndarray:
    """Local SSIM in [-1, 1] with the input's shape (without RGB axis), float32.

    Each plane is padded by :data:`SSIM_PAD` = 5 pixels with half-sample symmetric
    reflection (``numpy.pad(mode="symmetric")``, scipy's ``"reflect"``) before the
    11-pixel Gaussian window, so the map equals scikit-image's ``full=True`` map; its
    mean away from a 5-pixel border is :func:`ssim`.  RGB: mean over R, G, B.
    """
    check_pair(a, b)
    dr = resolve_data_range(b, data_range)
    layout = PlaneLayout.of(tuple(b.shape), axes, rgb)
    out = layout.empty_maps()
    pad = ((0, 0), (SSIM_PAD, SSIM_PAD), (SSIM_PAD, SSIM_PAD))
    for i, (pa, pb) in enumerate(zip(layout.planes(a), layout.planes(b))):
        ta = torch.from_numpy(np.pad(np.asarray(pa, np.float32) / np.float32(dr), pad, mode="symmetric"))
        tb = torch.from_numpy(np.pad(np.asarray(pb, np.float32) / np.float32(dr), pad, mode="symmetric"))
        out[i] = _ssim_valid_map(ta[None], tb[None], data_range=1.0)[0].mean(dim=0).numpy()
    return layout.assemble(out)


# --- pixel error maps ----------------------------------------------------------------------------
def _error_map(a: Any, b: Any, squared: bool, axes: str | None, rgb: bool | None) -> np.ndarray:
    check_pair(a, b)
    layout = PlaneLayout.of(tuple(b.shape), axes, rgb)
    out = layout.empty_maps()
    for i, (pa, pb) in enumerate(zip(layout.planes(a), layout.planes(b))):
        d = np.asarray(pa, dtype=np.float32) - np.asarray(pb, dtype=np.float32)
        d = d * d if squared else np.abs(d)
        out[i] = d.mean(axis=0)
    return layout.assemble(out)


def absolute_error_map(a: Any, b: Any, *, axes: str | None = None, rgb: bool | None = None) -> np.ndarray:
    """``|a - b|`` in the images' intensity units, float32, input shape without RGB axis (RGB: mean of R, G, B)."""
    return _error_map(a, b, False, axes, rgb)


def squared_error_map(a: Any, b: Any, *, axes: str | None = None, rgb: bool | None = None) -> np.ndarray:
    """``(a - b)**2`` in squared intensity units, float32; its mean over all pixels is the MSE (grayscale)."""
    return _error_map(a, b, True, axes, rgb)


__all__ = [
    "PlaneLayout",
    "absolute_error_map",
    "check_pair",
    "default_data_range",
    "mse",
    "psnr",
    "psnr_from_mse",
    "psnr_y",
    "rgb_to_y",
    "squared_error_map",
    "ssim",
    "ssim_map",
]
