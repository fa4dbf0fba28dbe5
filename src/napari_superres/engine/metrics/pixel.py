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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..layout import AxesInfo, parse_axes
from ..normalization import intensity_range
from .ssim import SSIM_SIGMA, SSIM_WINDOW
from .ssim import ssim_map as _ssim_valid_map

#: Pixels added on each side (half the SSIM window) so that the SSIM map has the input's shape.
SSIM_PAD = SSIM_WINDOW // 2
#: Y of ITU-R BT.601 "studio range" on [0, 1] RGB, as MATLAB's ``rgb2ycbcr`` and the SR literature:
#: ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255`` in [16/255, 235/255].
Y_OFFSET = 16.0
Y_WEIGHTS = (65.481, 128.553, 24.966)


# --- layout ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlaneLayout:
    """How an image splits into 2D planes ``(C, Y, X)`` (C = 3 for RGB, else 1) and maps go back.

    >>> layout = PlaneLayout.of((5, 64, 64))
    >>> layout.map_shape, layout.n_planes
    ((5, 64, 64), 5)
    """

    info: AxesInfo
    shape: tuple[int, ...]

    @classmethod
    def of(
        cls, shape: tuple[int, ...], axes: str | None = None, rgb: bool | None = None
    ) -> PlaneLayout:
        shape = tuple(int(s) for s in shape)
        return cls(parse_axes(shape, axes, rgb), shape)

    @property
    def is_rgb(self) -> bool:
        return self.info.rgb is not None

    @property
    def plane_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[i] for i in self.info.plane_axes)

    @property
    def n_planes(self) -> int:
        return int(np.prod(self.plane_shape, dtype=np.int64))

    @property
    def yx(self) -> tuple[int, int]:
        return self.shape[self.info.y], self.shape[self.info.x]

    @property
    def map_shape(self) -> tuple[int, ...]:
        """The input's shape without the RGB axis."""
        return tuple(s for i, s in enumerate(self.shape) if i != self.info.rgb)

    def planes(self, image: Any) -> Iterator[np.ndarray]:
        """Yield every plane as a ``(C, Y, X)`` numpy array (C = 3 for RGB, alpha dropped; else 1).

        ``image`` may be a numpy or dask array: one plane is read at a time.
        """
        info = self.info
        for index in np.ndindex(*self.plane_shape):
            key: list[Any] = [slice(None)] * len(self.shape)
            for axis, i in zip(info.plane_axes, index):
                key[axis] = i
            plane = np.asarray(image[tuple(key)])  # remaining axes in array order: Y, X and maybe S
            rest = [a for a in range(len(self.shape)) if a not in info.plane_axes]
            y, x = rest.index(info.y), rest.index(info.x)
            if info.rgb is not None:
                plane = np.moveaxis(plane, (rest.index(info.rgb), y, x), (0, 1, 2))[:3]
            else:
                plane = np.transpose(plane, (y, x))[None]
            yield plane

    def empty_maps(self) -> np.ndarray:
        """A float32 ``(n_planes, Y, X)`` buffer for one map per plane."""
        return np.empty((self.n_planes, *self.yx), dtype=np.float32)

    def assemble(self, maps: np.ndarray) -> np.ndarray:
        """``(n_planes, Y, X)`` maps -> an array of :attr:`map_shape` (the input's axis order)."""
        info = self.info
        out = maps.reshape(*self.plane_shape, *self.yx)
        order = [*info.plane_axes, info.y, info.x]  # axes of ``out`` as input axes
        kept = [a for a in range(len(self.shape)) if a != info.rgb]
        return np.ascontiguousarray(np.transpose(out, np.argsort([kept.index(a) for a in order])))


def check_pair(a: Any, b: Any) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` are comparable arrays of equal shape."""
    for name, img in (("A", a), ("B", b)):
        dtype = np.dtype(getattr(img, "dtype", object))
        if dtype.kind not in "uifb":
            raise ValueError(
                f"image {name} has dtype {dtype}; compare integer, float or bool images"
            )
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"A has shape {tuple(a.shape)} but B (the reference) has shape {tuple(b.shape)}; they must be "
            "equal: resample A onto B's pixel grid first (e.g. upscale the low-res image by the scale factor)"
        )
    if 0 in tuple(b.shape):
        raise ValueError(f"the images are empty (shape {tuple(b.shape)})")


def default_data_range(reference: Any) -> float:
    """Peak-to-peak range used when ``data_range`` is not given (see module docstring)."""
    lo, hi = intensity_range(reference, {"mode": "dtype"})
    return float(hi - lo)


def _data_range(b: Any, data_range: float | None) -> float:
    dr = default_data_range(b) if data_range is None else float(data_range)
    if not dr > 0 or not math.isfinite(dr):
        raise ValueError(f"data_range must be a positive finite number, got {data_range}")
    return dr


# --- PSNR ----------------------------------------------------------------------------------------
def mse(a: Any, b: Any) -> float:
    """Mean squared error over all values, in float64."""
    check_pair(a, b)
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float(np.mean(d * d))


def psnr(a: Any, b: Any, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range**2 / MSE)`` over all values.

    Identical images (MSE = 0) give ``math.inf`` (no warning, no division by zero);
    callers that need a finite number should test ``math.isinf``.
    """
    dr = _data_range(b, data_range)
    err = mse(a, b)
    if err == 0.0:
        return math.inf
    return float(10.0 * math.log10(dr * dr / err))


def rgb_to_y(rgb: np.ndarray, data_range: float) -> np.ndarray:
    """Studio-range BT.601 luma of ``(..., 3|4)`` RGB(A) values: float64 in [16/255, 235/255].

    ``rgb / data_range`` must be in [0, 1]; this is MATLAB's ``rgb2ycbcr`` Y (not rounded)
    divided by 255, the channel on which SR papers report "PSNR (Y)".
    """
    rgb01 = np.asarray(rgb, dtype=np.float64)[..., :3] / float(data_range)
    return (Y_OFFSET + rgb01 @ np.asarray(Y_WEIGHTS, dtype=np.float64)) / 255.0


def psnr_y(a: Any, b: Any, crop_border: int = 0, data_range: float | None = None) -> float:
    """PSNR (dB) on the Y channel of RGB(A) images ``(..., Y, X, 3|4)``, as in the SR literature.

    ``crop_border`` pixels are removed from every side of Y and X first (papers crop
    ``scale`` pixels).  Y is in [0, 1] units (see :func:`rgb_to_y`), so the peak is 1.
    """
    check_pair(a, b)
    if b.ndim < 3 or b.shape[-1] not in (3, 4):
        raise ValueError(f"psnr_y needs RGB(A) images (..., Y, X, 3|4), got shape {tuple(b.shape)}")
    dr = _data_range(b, data_range)
    crop_border = int(crop_border)
    if crop_border < 0 or 2 * crop_border >= min(b.shape[-3], b.shape[-2]):
        raise ValueError(
            f"crop_border {crop_border} is negative or leaves nothing of a {b.shape[-3:-1]} image"
        )
    ya, yb = rgb_to_y(a, dr), rgb_to_y(b, dr)
    if crop_border:
        crop = (..., slice(crop_border, -crop_border), slice(crop_border, -crop_border))
        ya, yb = ya[crop], yb[crop]
    err = float(np.mean((ya - yb) ** 2))
    return math.inf if err == 0.0 else float(10.0 * math.log10(1.0 / err))


# --- SSIM ----------------------------------------------------------------------------------------
def _ssim_layout(
    shape: tuple[int, ...], channel_axis: int | None, axes: str | None, rgb: bool | None
):
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
        raise ValueError(
            f"with channel_axis, images must be (Y, X) plus that channel axis, got {tuple(b.shape)}"
        )
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
    dr = _data_range(b, data_range)
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
    dr = _data_range(b, data_range)
    layout = PlaneLayout.of(tuple(b.shape), axes, rgb)
    out = layout.empty_maps()
    pad = ((0, 0), (SSIM_PAD, SSIM_PAD), (SSIM_PAD, SSIM_PAD))
    for i, (pa, pb) in enumerate(zip(layout.planes(a), layout.planes(b))):
        ta = torch.from_numpy(
            np.pad(np.asarray(pa, np.float32) / np.float32(dr), pad, mode="symmetric")
        )
        tb = torch.from_numpy(
            np.pad(np.asarray(pb, np.float32) / np.float32(dr), pad, mode="symmetric")
        )
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


def absolute_error_map(
    a: Any, b: Any, *, axes: str | None = None, rgb: bool | None = None
) -> np.ndarray:
    """``|a - b|`` in the images' intensity units, float32, input shape without RGB axis (RGB: mean of R, G, B)."""
    return _error_map(a, b, False, axes, rgb)


def squared_error_map(
    a: Any, b: Any, *, axes: str | None = None, rgb: bool | None = None
) -> np.ndarray:
    """``(a - b)**2`` in squared intensity units, float32; its mean over all pixels is the MSE (grayscale)."""
    return _error_map(a, b, True, axes, rgb)


# --- everything at once --------------------------------------------------------------------------
def compare(
    a: Any,
    b: Any,
    *,
    data_range: float | None = None,
    axes: str | None = None,
    rgb: bool | None = None,
    crop_border: int = 0,
    perceptual: bool = True,
    layers: tuple[str, ...] | None = None,
    weights: Any = None,
    engine: Any = None,
    vgg: Any = None,
    normalization: str | dict[str, Any] | None = None,
    tile: int | None = None,
) -> dict[str, Any]:
    """All figures for ``a`` against the reference ``b``.

    Returns a dict: ``psnr`` (dB, ``inf`` for identical images), ``ssim``, ``psnr_y``
    (dB on Y after cropping ``crop_border`` px; RGB only, else ``None``), ``perceptual``
    (mean of the VGG-16 feature-difference map, see
    :func:`~napari_superres.engine.metrics.features.feature_difference`; ``None`` when
    ``perceptual=False`` or the ImageNet weights are unavailable, then ``perceptual_note``
    says how to get them), ``data_range`` and ``layers``.
    """
    from .features import perceptual_distance
    from ..nets.vgg import DEFAULT_LAYERS, VGGWeightsUnavailable

    check_pair(a, b)
    layers = tuple(layers or DEFAULT_LAYERS)
    layout = PlaneLayout.of(tuple(b.shape), axes, rgb)
    dr = _data_range(b, data_range)
    result: dict[str, Any] = {
        "psnr": psnr(a, b, dr),
        "ssim": ssim(a, b, dr, axes=axes, rgb=rgb) if min(layout.yx) >= SSIM_WINDOW else None,
        "psnr_y": psnr_y(a, b, crop_border, dr)
        if layout.is_rgb and layout.info.rgb == len(b.shape) - 1
        else None,
        "perceptual": None,
        "perceptual_note": None,
        "data_range": dr,
        "layers": list(layers),
    }
    if result["ssim"] is None:
        result["ssim_note"] = f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} px, got {layout.yx}"
    if perceptual:
        try:
            result["perceptual"] = perceptual_distance(
                a, b, layers=layers, weights=weights, engine=engine, vgg=vgg,
                normalization=normalization, axes=axes, rgb=rgb, tile=tile,
            )  # fmt: skip
        except VGGWeightsUnavailable as e:
            result["perceptual_note"] = str(e)
    return result


__all__ = [
    "PlaneLayout",
    "absolute_error_map",
    "check_pair",
    "compare",
    "default_data_range",
    "mse",
    "psnr",
    "psnr_y",
    "rgb_to_y",
    "squared_error_map",
    "ssim",
    "ssim_map",
]
