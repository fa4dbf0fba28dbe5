"""Intensity normalisation to ``[0, 1]`` and back, and RGB <-> YCbCr.

A normalisation is a :class:`~napari_superres.engine.options.Normalization` (its one
parser: ``Normalization.parse``), stored in model files as a small JSON-able dict so
inference repeats what training did:

* ``{"mode": "dtype"}``: integer images are divided by their dtype's range
  (uint16 -> /65535); float images use their own min/max (computed once per image).
* ``{"mode": "percentile", "low": 1.0, "high": 99.8}``: the image's percentiles
  (as CSBDeep) map to 0 and 1, computed once over the whole image (a sparse field's high end over its content:
  :func:`content_share`).  This is the
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


def normalization_spec(
    mode: str = "dtype", low: float = DEFAULT_PERCENTILES[0], high: float = DEFAULT_PERCENTILES[1]
) -> dict[str, Any]:
    """The spec dict of ``mode`` (``"dtype"`` or ``"percentile"`` with ``low`` / ``high`` percentiles)."""
    return Normalization(mode, low, high).to_dict()


def check_normalization(spec: Any) -> dict[str, Any]:
    """``spec`` validated (a copy): ``ValueError`` naming what is wrong for an unknown mode, percentiles
    that are not numbers in ``0 <= low < high <= 100``, or anything that is not such a dict."""
    if not isinstance(spec, dict):
        raise ValueError(f"a normalization is a dict such as {{'mode': 'percentile'}}, got {type(spec).__name__}")
    mode = spec.get("mode", "dtype")
    if mode == "bioimageio":  # a bioimage.io package normalises inside its own pipeline
        return dict(spec)
    if not isinstance(mode, str) or mode not in NORMALIZATION_MODES:
        raise ValueError(f"normalization mode must be one of {NORMALIZATION_MODES}, got {mode!r}")
    if mode == "dtype":
        return dict(spec)
    low, high = spec.get("low", DEFAULT_PERCENTILES[0]), spec.get("high", DEFAULT_PERCENTILES[1])
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"percentile {name} must be a number in [0, 100], got {value!r}")
    if not 0 <= low < high <= 100:
        raise ValueError(f"percentiles need 0 <= low < high <= 100, got low={low}, high={high}")
    return {**spec, "low": float(low), "high": float(high)}


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


#: :func:`fill_value`: a fill covers at least this share of the pixels ...
FILL_MIN_SHARE = 0.02
#: ... and lies under the rest's 1st percentile by more than this share of the rest's 1 - 99.8 percentile range.
FILL_GAP = 0.05


def fill_value(values: np.ndarray) -> float | None:
    """The value that pads ``values`` (any shape; a stitched mosaic's or a registered image's fill), or ``None``.

    A fill is the minimum, covers at least :data:`FILL_MIN_SHARE` (and not all) of the pixels, and lies apart
    from the data: under the rest's 1st percentile by more than :data:`FILL_GAP` of the rest's range (a camera
    image padded with 0 under its offset of ~100 counts).  Zeros that continue the data's own distribution (a
    background subtracted and clipped at 0) are no fill.  Measured (a quarter of held-out low-photon images set to
    0, docs/design.md): the fill moved the percentile normalisation's low end to 0 and the built-in x2 lost 0.3-3.5
    dB away from it.
    """
    flat = _subsample(np.asarray(values).reshape(-1))  # the share and the percentiles of a strided sample
    if flat.size < 100 or flat.dtype.kind not in "iuf":
        return None
    lowest = flat.min()
    is_fill = flat == lowest
    share = float(is_fill.mean())
    if not FILL_MIN_SHARE <= share < 1.0:
        return None
    rest = flat[~is_fill]
    lo, hi = np.percentile(rest.astype(np.float64), [1.0, 99.8])
    return float(lowest) if hi > lo and lo - float(lowest) > FILL_GAP * (hi - lo) else None


def data_box(plane: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)``: the bounding box of what is not ``plane``'s fill (:func:`fill_value`; 2-D), the rows and
    columns at its borders that hold nothing but the fill left out; ``None`` where there is no fill."""
    fill = fill_value(plane)
    if fill is None:
        return None
    data = plane != fill
    rows, cols = np.flatnonzero(data.any(axis=1)), np.flatnonzero(data.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def without_fill_border(plane: np.ndarray) -> np.ndarray:
    """``plane`` (2-D) cropped to its :func:`data_box`; ``plane`` itself where there is no fill."""
    box = data_box(plane)
    return plane if box is None else plane[box[0] : box[1], box[2] : box[3]]


#: :func:`content_share`: blocks of this many px per side are averaged (noise down 4x) ...
CONTENT_BLOCK = 4
#: ... and hold content where their mean lies above the background (the blocks' 5th percentile) by this share of
#: the way to the high percentile.
CONTENT_LEVEL = 0.1
#: Where less than this share of the image holds content, the percentile normalisation's high end is read as if
#: the empty background beyond it were not there: the top ``(100 - high) %`` of ``CONTENT_SHARE_FULL`` of the pixels
#: instead of all of them.  Measured (docs/design.md): a held-out field spread over 4 or 9 times its area of empty
#: background was normalised up to 2x brighter and the built-in x2 lost 0.4-3.2 dB on it.
CONTENT_SHARE_FULL = 0.5


def content_grid(image: Any) -> np.ndarray | None:
    """A strided 2-D sample ``(planes, y, x)`` of ``image``'s last two axes (at most 4 planes, evenly spread, and
    about :data:`_PERCENTILE_SAMPLE` px), which :func:`content_share` reads; ``None`` for fewer than 2 axes."""
    if getattr(image, "ndim", 0) < 2:
        return None
    lead = tuple(image.shape[:-2])
    n = int(np.prod(lead)) if lead else 1
    picks = np.unique(np.linspace(0, n - 1, min(4, n)).round().astype(int))
    step = max(1, int(np.ceil(np.sqrt(len(picks) * int(np.prod(image.shape[-2:])) / _PERCENTILE_SAMPLE))))
    # plane by plane: a view of each (a transposed array is not copied whole; a dask array reads those planes)
    return np.stack([np.asarray(image[np.unravel_index(i, lead) if lead else ()][::step, ::step]) for i in picks])


def content_share(grid: np.ndarray | None, lo: float, hi: float, fill: float | None = None) -> float:
    """The share of ``grid`` (:func:`content_grid`) that holds content: :data:`CONTENT_BLOCK`-px blocks whose mean
    rises above the background by :data:`CONTENT_LEVEL` of the way to ``hi``.  Blocks holding the ``fill`` value are
    left out.  1.0 (all content) where there is too little to read: fewer than 16 blocks, or no range."""
    b = CONTENT_BLOCK
    if grid is None or grid.dtype.kind not in "iuf" or hi <= lo:
        return 1.0
    h, w = grid.shape[-2] // b * b, grid.shape[-1] // b * b
    blocks = grid[:, :h, :w].reshape(grid.shape[0], h // b, b, w // b, b).swapaxes(2, 3).reshape(-1, b * b)
    if fill is not None:
        blocks = blocks[(blocks != fill).all(axis=1)]
    if blocks.shape[0] < 16:
        return 1.0
    means = blocks.astype(np.float64).mean(axis=1)
    background = float(np.percentile(means, 5))
    if not hi > background:
        return 1.0
    return float(np.mean(means > background + CONTENT_LEVEL * (hi - background)))


def intensity_range(image: Any, spec: NormalizationLike = None, *, content: Any = None) -> tuple[float, float]:
    """``(lo, hi)`` that map to 0 and 1 for ``image`` (numpy or dask array) under ``spec``.

    Computed once per image, never per tile or plane.  A constant image gives
    ``hi = lo + 1`` so the map stays finite.  ``"dtype"`` mode: uint8/uint16 use their
    dtype range, other integers and floats their own min/max (see :data:`DTYPE_RANGE_DTYPES`).
    ``"percentile"`` mode leaves a fill value out (:func:`fill_value`: a mosaic's or a registered image's padding),
    and in a sparse field reads the high percentile as over its content (:func:`content_share`: empty background
    beyond :data:`CONTENT_SHARE_FULL` of the image does not lower it).  ``content``: the :func:`content_grid` of the
    image when ``image`` is already a flat sample of it (the dask path); default: read from ``image``.
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
        fill = fill_value(sample)
        values = sample if fill is None else sample[sample != fill]
        lo, hi = _percentiles(values, [norm.low, norm.high])
        share = content_share(content_grid(image) if content is None else content, lo, hi, fill)
        if share < CONTENT_SHARE_FULL:  # a sparse field: the high end read as over its content
            top = (100.0 - norm.high) * share / CONTENT_SHARE_FULL
            hi = max(_percentiles(values, [norm.low, 100.0 - top])[1], hi)
    else:
        lo, hi = np.min(sample), np.max(sample)
        if 0.0 <= lo and hi <= 1.0:  # already a [0, 1] float image: keep it as is
            lo, hi = 0.0, 1.0
    lo, hi = float(lo), float(hi)
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ValueError("image contains NaN or Inf values; replace them (e.g. np.nan_to_num) before upscaling")
    if hi <= lo:  # a constant image: a unit range, wider where float64 steps are coarser (int64 near 2**63)
        step = max(1.0, 2 * float(np.spacing(abs(lo))))
        if np.isfinite(lo + step):
            hi = lo + step
        else:
            lo = hi - step
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


def _percentiles(sample: np.ndarray, q: list[float]) -> tuple[float, float]:
    """``np.percentile`` that stays finite near a float dtype's limits (its interpolation takes
    differences: ``max - (-max)`` overflows), by working on halved values there."""
    if sample.dtype.kind == "f" and sample.size:
        extreme = max(abs(float(np.min(sample))), abs(float(np.max(sample))))
        if extreme > float(np.finfo(sample.dtype).max) / 4:
            lo, hi = np.percentile(sample.astype(np.float64) * 0.5, q)
            return float(lo) * 2, float(hi) * 2
    lo, hi = np.percentile(sample, q)
    return float(lo), float(hi)


#: Beyond this magnitude of ``lo``, ``hi`` or ``hi - lo``, the maps are computed in float64
#: (float32 arithmetic would overflow to Inf or lose ``1 / (hi - lo)`` to subnormals).
FLOAT32_SAFE_RANGE = 1e30


def _wide_range(lo: float, hi: float) -> bool:
    return not max(abs(lo), abs(hi), abs(hi - lo)) < FLOAT32_SAFE_RANGE  # (an Inf difference is wide too)


def _forward64(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``(x - lo) / (hi - lo)`` in float64, halving first when ``hi - lo`` overflows (float64 extremes)."""
    if np.isfinite(hi - lo):
        return (x - lo) * (1.0 / (hi - lo))
    return (x * 0.5 - lo * 0.5) / (hi * 0.5 - lo * 0.5)


def _inverse64(y: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``y * (hi - lo) + lo`` in float64, finite: halved (and clipped) where it would overflow."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught below, never returned
        if np.isfinite(hi - lo):
            out = y * (hi - lo) + lo
            if np.isfinite(out).all():
                return out
        half = float(np.finfo(np.float64).max) / 2
        out = np.clip(y * (hi * 0.5 - lo * 0.5) + lo * 0.5, -half, half)
    out *= 2.0
    return out


def normalize(plane: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """float32 ``(plane - lo) / (hi - lo)`` (no clipping: percentile ranges may be exceeded).

    Wide integers and float64 (:func:`needs_float64`) are shifted in float64 first, so
    e.g. int64 values near 1e12 keep their differences.
    """
    plane = np.asarray(plane)
    if needs_float64(plane.dtype) or _wide_range(lo, hi):
        return _forward64(plane.astype(np.float64), lo, hi).astype(np.float32)
    out = np.asarray(plane, dtype=np.float32)
    scale = np.float32(1.0 / (hi - lo))
    return (out - np.float32(lo)) * scale


def denormalize(plane: np.ndarray, lo: float, hi: float, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`normalize`, cast to ``dtype``; integers are rounded and clipped to their range.

    Computed in float64 for wide dtypes (:func:`needs_float64`) and ranges near float limits;
    floats are clipped to their dtype's finite range (never Inf), integers saturate exactly at
    their limits (int64/uint64 too, whose maxima float64 cannot hold).
    """
    dtype = np.dtype(dtype)
    if needs_float64(dtype) or _wide_range(lo, hi):
        out = _inverse64(np.asarray(plane, dtype=np.float64), lo, hi)
    else:
        out = plane * np.float32(hi - lo) + np.float32(lo)
    if dtype.kind == "f":
        info = np.finfo(dtype)
        np.clip(out, float(info.min), float(info.max), out=out)
    if np.issubdtype(dtype, np.integer):
        return round_into(out, dtype)
    if dtype == np.bool_:
        return out > 0.5
    return out.astype(dtype, copy=False)


def round_into(values: np.ndarray, dtype: Any) -> np.ndarray:
    """Float ``values`` rounded (half to even) and saturated into integer ``dtype``, in place in ``values``.

    float64 holds neither 2**63 - 1 nor 2**64 - 1: ``np.clip`` to ``iinfo.max`` would round the
    bound up to 2**63 / 2**64 and the cast would wrap to the other end.  Values at or above that
    bound become exactly ``iinfo.max``.
    """
    dtype = np.dtype(dtype)
    info = np.iinfo(dtype)
    if needs_float64(dtype) and values.dtype != np.float64:  # float32 holds not even 2**31 - 1
        values = values.astype(np.float64)
    np.rint(values, out=values)
    top = float(info.max)
    if int(top) <= info.max:  # the bound is exact in this float type
        np.clip(values, info.min, top, out=values)
        return values.astype(dtype)
    over = values >= top
    np.clip(values, info.min, np.nextafter(top, 0), out=values)
    result = values.astype(dtype)
    result[over] = info.max
    return result


# ITU-R BT.601 (JPEG / full range) YCbCr, on [0, 1] values.
#: ITU-R BT.601 luma weights of R, G, B: the one luminance of the engine (inference, training data,
#: and the studio-range "PSNR (Y)" of the metrics, which is ``(16 + 219 * luma) / 255``).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
_RGB_TO_YCBCR = np.array([LUMA_WEIGHTS, [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32)
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


#: Normalised values (the percentile normalisation's low and high ends are 0 and 1) a network is shown; what lies
#: outside is clipped for it and its excess upscaled bicubically (``infer.pipeline.bounded_forward``), and the
#: degradation estimate reads those pixels as their 3 x 3 median (:func:`outliers_as_local_median`).  A camera's hot
#: pixels (a few in 10,000 at the top of the dtype: ~80 after normalisation at 800 photons peak) came back as blobs
#: and rings over the network's whole receptive field: the built-in x2 5-12 dB under bicubic 3 low-res px and more
#: away from them (docs/design.md).
NETWORK_INPUT_RANGE = (-1.0, 3.0)


def outliers_as_local_median(plane: np.ndarray, value_range: tuple[float, float] = NETWORK_INPUT_RANGE) -> np.ndarray:
    """``plane`` (2-D, normalised) with every pixel outside ``value_range`` replaced by the median of its 3 x 3
    neighbourhood (itself included; reflected at the border); ``plane`` itself where none is outside."""
    low, high = value_range
    outside = (plane < low) | (plane > high)
    if not outside.any():
        return plane
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(plane, 1, mode="reflect"), (3, 3))
    fixed = np.array(plane, copy=True)
    fixed[outside] = np.median(windows[outside].reshape(-1, 9), axis=1)
    return fixed
