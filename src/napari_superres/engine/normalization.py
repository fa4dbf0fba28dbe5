"""Intensity normalisation to ``[0, 1]`` and back, and RGB <-> YCbCr.

A normalisation is a :class:`~napari_superres.engine.options.Normalization` (its one
parser: ``Normalization.parse``), stored in model files as a small JSON-able dict so
inference repeats what training did:

* ``{"mode": "dtype"}``: integer images are divided by their dtype's range
  (uint16 -> /65535); float images use their own min/max (computed once per image).
* ``{"mode": "percentile", "low": 1.0, "high": 99.8}``: the image's percentiles
  (as CSBDeep) map to 0 and 1, computed once over the whole image.  This is the
  **training default** (:data:`DEFAULT_NORMALIZATION`): microscopy data rarely fills its
  dtype (a uint16 camera image often spans a few thousand counts, a 12-bit camera stores
  at most 4095 in uint16), and dividing by the dtype range leaves the signal in a sliver
  of ``[0, 1]`` where a network barely learns.  Percentiles put dim and bright, 8/12/16-bit
  and float images on the same footing.  In training, the low-res image's percentiles set
  the map of a pair and the high-res image uses that range carried over to its own units
  (:func:`matched_range`), so a pair need not share one intensity scale (different exposure,
  gain or offset) and the network does not learn a change of scale; at inference the
  input's percentiles are computed once per image (once per channel along C), never per
  tile, and the output is mapped back with the same ``(lo, hi)``.

:func:`intensity_range` turns a description and an image into ``(lo, hi)``; the
forward map is ``(x - lo) / (hi - lo)`` and the inverse ``y * (hi - lo) + lo``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .options import (  # noqa: F401 - re-exported: the choices and defaults live in options.py
    DEFAULT_NORMALIZATION,
    DEFAULT_PERCENTILES,
    NORMALIZATION_MODES,
    Normalization,
    default_normalization,
)

#: What the functions below accept as a normalisation (see :meth:`Normalization.parse`; ``None``: ``"dtype"``).
NormalizationLike = str | Mapping[str, Any] | Normalization | None

#: Above this many pixels, percentiles are estimated on a strided subsample.
_PERCENTILE_SAMPLE = 4_000_000


def normalization_spec(mode: str = "dtype", low: float = DEFAULT_PERCENTILES[0], high: float = DEFAULT_PERCENTILES[1]) -> dict[str, Any]:
    """The spec dict of ``mode`` (``"dtype"`` or ``"percentile"`` with ``low`` / ``high`` percentiles)."""
    return Normalization(mode, low, high).to_dict()


def _subsample(image: Any) -> np.ndarray:
    arr = image
    n = int(np.prod(arr.shape)) if arr.ndim else 1
    if n > _PERCENTILE_SAMPLE:
        step = int(np.ceil(n / _PERCENTILE_SAMPLE))
        arr = arr.reshape(-1)[::step] if isinstance(arr, np.ndarray) else arr.reshape(-1)[::step]
    return np.asarray(arr)


#: Integer dtypes whose full range is the ``"dtype"`` mode's range (camera conventions:
#: uint8 -> /255, uint16 -> /65535).  Every other integer dtype (int8, int16, int32, int64,
#: uint32, uint64) uses the image's own min/max as float images do: signed images hold
#: offsets or differences, and 32/64-bit ranges are absurd next to float32's 24-bit
#: precision (an int64 image of 0..1000 divided by its dtype range is 0.5 everywhere).
DTYPE_RANGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


def range_needs_data(dtype: Any, spec: NormalizationLike = None) -> bool:
    """Whether :func:`intensity_range` reads the image's values (``False``: the dtype alone decides)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return False
    return not (Normalization.parse(spec).mode == "dtype" and dtype in DTYPE_RANGE_DTYPES)


def needs_float64(dtype: Any) -> bool:
    """Whether values of ``dtype`` lose precision through float32 (integers wider than 16 bits, float64)."""
    dtype = np.dtype(dtype)
    return (dtype.kind in "iu" and dtype.itemsize > 2) or dtype == np.float64


def intensity_range(image: Any, spec: NormalizationLike = None) -> tuple[float, float]:
    """``(lo, hi)`` that map to 0 and 1 for ``image`` (numpy or dask array) under ``spec``.

    Computed once per image, never per tile or plane.  A constant image gives
    ``hi = lo + 1`` so the map stays finite.  ``"dtype"`` mode: uint8/uint16 use their
    dtype range, other integers and floats their own min/max (see :data:`DTYPE_RANGE_DTYPES`).
    """
    norm = Normalization.parse(spec)
    dtype = np.dtype(image.dtype)
    mode = norm.mode
    if mode == "dtype" and dtype in DTYPE_RANGE_DTYPES:
        return 0.0, float(np.iinfo(dtype).max)
    if dtype == np.bool_:
        return 0.0, 1.0
    sample = _subsample(image)
    if mode == "percentile":
        lo, hi = np.percentile(sample, [norm.low, norm.high])
    else:
        lo, hi = np.min(sample), np.max(sample)
        if 0.0 <= lo and hi <= 1.0:  # already a [0, 1] float image: keep it as is
            lo, hi = 0.0, 1.0
    lo, hi = float(lo), float(hi)
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ValueError("image contains NaN or Inf values; replace them (e.g. np.nan_to_num) before upscaling")
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


#: Fraction of the (binned) high-res pixels, darkest first, that :func:`matched_range` treats as background.
BACKGROUND_FRACTION = 0.2


def matched_range(
    gt: np.ndarray, lq: np.ndarray, scale: int, lq_range: tuple[float, float]
) -> tuple[float, float] | None:
    """The low-res image's ``(lo, hi)`` expressed in the high-res image's intensity units.

    Training pairs are normalised with one map: the low-res image by its own percentiles,
    the high-res image by the *same* range carried over through a linear intensity match
    ``gt ~ a * lq + b``.  Then the network learns the restoration, not a change of
    intensity scale, and inference (which only sees the low-res input and maps the output
    back with the input's range) returns values in the high-res image's units.  Normalising
    each image by its own percentiles instead (CARE) leaves a systematic gain in the output
    whenever blur lowers the low-res peaks: measured on a dim uint16 pair, held-out PSNR in
    raw units went from -0.1 dB to +4.0 dB over bicubic with the matched range.

    The match is fitted on statistics that blur and zero-mean noise do not change: the
    mean of all pixels and the mean of background pixels, selected on the high-res image
    binned to the low-res grid (its darkest :data:`BACKGROUND_FRACTION`), both averaged over
    the same pixels of the two images.  So ``a`` absorbs a different exposure or gain and
    ``b`` a different offset.

    ``gt`` ``(..., H, W)`` and ``lq`` ``(..., H/scale, W/scale)``, any dtype, same leading shape.
    Returns ``None`` when no positive gain can be fitted (e.g. a flat image): use the
    high-res image's own range then.
    """
    gt = np.asarray(gt, dtype=np.float64)
    lq = np.asarray(lq, dtype=np.float64)
    s = int(scale)
    h, w = lq.shape[-2:]
    binned = gt[..., : h * s, : w * s].reshape(*gt.shape[:-2], h, s, w, s).mean(axis=(-3, -1))
    if binned.shape != lq.shape:
        return None
    g, q = _subsample(binned), _subsample(lq)
    background = g <= np.quantile(g, BACKGROUND_FRACTION)
    if background.all():
        return None
    g_mean, q_mean = float(g.mean()), float(q.mean())
    g_bg, q_bg = float(g[background].mean()), float(q[background].mean())
    if not q_mean - q_bg > 0:
        return None
    gain = (g_mean - g_bg) / (q_mean - q_bg)
    if not (np.isfinite(gain) and gain > 0):
        return None
    offset = g_bg - gain * q_bg
    lo, hi = lq_range
    return gain * lo + offset, gain * hi + offset


def normalize(plane: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """float32 ``(plane - lo) / (hi - lo)`` (no clipping: percentile ranges may be exceeded).

    Wide integers and float64 (:func:`needs_float64`) are shifted in float64 first, so
    e.g. int64 values near 1e12 keep their differences.
    """
    plane = np.asarray(plane)
    if needs_float64(plane.dtype):
        return ((plane.astype(np.float64) - lo) * (1.0 / (hi - lo))).astype(np.float32)
    out = np.asarray(plane, dtype=np.float32)
    scale = np.float32(1.0 / (hi - lo))
    return (out - np.float32(lo)) * scale


def denormalize(plane: np.ndarray, lo: float, hi: float, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`normalize`, cast to ``dtype``; integers are rounded and clipped to their range.

    Computed in float64 for wide dtypes (:func:`needs_float64`); float16 is clipped to its
    finite range.
    """
    dtype = np.dtype(dtype)
    if needs_float64(dtype):
        out = np.asarray(plane, dtype=np.float64) * (hi - lo) + lo
    else:
        out = plane * np.float32(hi - lo) + np.float32(lo)
    if dtype == np.float16:
        np.clip(out, -65504.0, 65504.0, out=out)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        np.rint(out, out=out)
        np.clip(out, info.min, info.max, out=out)
    elif dtype == np.bool_:
        return out > 0.5
    return out.astype(dtype, copy=False)


# ITU-R BT.601 (JPEG / full range) YCbCr, on [0, 1] values.
#: ITU-R BT.601 luma weights of R, G, B: the one luminance of the engine (inference, training data,
#: and the studio-range "PSNR (Y)" of the metrics, which is ``(16 + 219 * luma) / 255``).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
_RGB_TO_YCBCR = np.array(
    [LUMA_WEIGHTS, [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR).astype(np.float32)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` float RGB in [0, 1] -> ``(3, H, W)`` Y, Cb, Cr (Cb/Cr centred on 0.5)."""
    ycc = np.tensordot(_RGB_TO_YCBCR, rgb, axes=1)
    ycc[1:] += 0.5
    return ycc.astype(np.float32, copy=False)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`; ``(3, H, W)`` float."""
    ycc = ycc.copy()
    ycc[1:] -= 0.5
    return np.tensordot(_YCBCR_TO_RGB, ycc, axes=1).astype(np.float32, copy=False)


def rgb_luminance(rgb: np.ndarray) -> np.ndarray:
    """Y (BT.601) of ``(3, H, W)`` RGB; the channel the SR literature evaluates on."""
    return np.tensordot(_RGB_TO_YCBCR[0], rgb, axes=1).astype(np.float32, copy=False)
