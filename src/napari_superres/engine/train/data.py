"""Training data: aligned random patches from (low-res, high-res) pairs or high-res images.

A :class:`PairSource` holds references to the user's arrays (no float copy of whole
stacks) and hands out batches::

    lr, hr = source.sample(16)   # (16, C, p/s, p/s) and (16, C, p, p) float32 in ~[0, 1]

* **Pairs**: ``lr`` and ``hr`` arrays whose Y and X sizes differ by the same integer
  factor, equal to ``scale``; all other axes equal.
* **High-res only**: low-res patches are made on the fly by
  :func:`~napari_superres.engine.train.degradation.degrade` (randomised per patch).
* **Layouts** as in inference (:func:`~napari_superres.engine.layout.parse_axes`): 2D,
  stacks (every Z / T / C plane is a sample), RGB(A) ``(..., Y, X, 3|4)``.  RGB trains a
  1-channel network on luminance (BT.601 Y, as inference feeds it) or a 3-channel
  network on RGB (``in_channels=3``); alpha is ignored.
* **Normalisation** as in inference: :func:`~napari_superres.engine.normalization.intensity_range`
  once per image (once per channel along a ``C`` axis).  Default: percentiles 1 / 99.8.
  With pairs under percentile normalisation the low-res image sets the range and the
  high-res image is normalised with that range carried over to its own intensity units
  (:func:`~napari_superres.engine.normalization.matched_range`: gain and offset fitted on
  blur- and noise-invariant means), so inference, which maps the output back with the
  input's range, returns high-res intensities; otherwise each image uses its own range.
  The spec is stored in the model file so inference repeats it.
* **Validation** is a spatial region: the last ``val_fraction`` of the columns of every
  plane.  Training patches are drawn strictly left of it, so the two never overlap.
* Patches are aligned (a high-res patch covers exactly its low-res patch), get a random
  flip and 90-degree rotation, and are drawn from a seeded ``numpy.random.Generator``
  (the degradation from a seeded ``torch.Generator``); :meth:`PairSource.rng_state`
  / :meth:`PairSource.set_rng_state` make resumed training repeat the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..layout import AxesInfo, parse_axes
from ..nets.conditioning import COND_CHANNELS, DegradationCondition, with_condition
from ..normalization import (
    intensity_range,
    matched_range,
    normalize,
    rgb_luminance,
)
from ..options import TRAIN_DEFAULTS, TRAINING_NORMALIZATION, Normalization
from .conditions import estimate_condition, jittered, low_res_condition, stacked
from .degradation import DegradationConfig, blurred_target, degrade

#: Smallest validation region width / height in high-res px (the SSIM window is 11).
MIN_VAL_PX = 16
#: Largest validation region per plane, in low-res pixels (cropped around its centre).
MAX_VAL_PIXELS = 128 * 128
#: At most this many planes contribute a validation region (evenly spread).
MAX_VAL_PLANES = 8
#: Edge of the fixed preview crop, high-res px.
PREVIEW_PX = 128


@dataclass
class _Plane:
    """One 2-D sample: raw views ``(C_raw, H, W)`` plus the intensity ranges that normalise them."""

    image: int
    index: tuple[int, ...]
    hr: np.ndarray
    hr_range: tuple[float, float]
    lr: np.ndarray | None
    lr_range: tuple[float, float] | None
    rgb: bool
    h_lr: int
    w_lr: int
    train_w_lr: int  # columns [0, train_w_lr) train; [train_w_lr, w_lr) validate


def _as_list(x: Any) -> list[Any]:
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _check_dtype(arr: Any, what: str) -> None:
    dtype = np.dtype(getattr(arr, "dtype", object))
    if dtype.kind not in "uifb":
        raise ValueError(f"{what} has dtype {dtype}; training needs integer, float or bool images")


def _check_finite(plane: np.ndarray, what: str) -> None:
    if plane.dtype.kind == "f" and not np.isfinite(plane).all():
        raise ValueError(
            f"{what} contains NaN or Inf values; replace them (e.g. numpy.nan_to_num) or crop them away before training"
        )


def _check_pair(label: str, hr: Any, lr: Any, info: AxesInfo, s: int) -> None:
    """Raise a ``ValueError`` naming the fix unless low-res ``lr`` is high-res ``hr`` (axes ``info``,
    from :func:`parse_axes`) downsampled by the training scale ``s`` in Y and X, and only there."""
    if lr.ndim != hr.ndim:
        raise ValueError(
            f"{label}: low-res shape {tuple(lr.shape)} and high-res shape {tuple(hr.shape)} have different "
            f"numbers of dimensions; pairs need the same layout"
        )
    parse_axes(tuple(lr.shape), info.axes)
    for ax in range(hr.ndim):
        if ax in (info.y, info.x):
            continue
        if lr.shape[ax] != hr.shape[ax]:
            raise ValueError(
                f"{label}: low-res shape {tuple(lr.shape)} and high-res shape {tuple(hr.shape)} differ along "
                f"non-spatial axis {info.axes[ax]!r}; only Y and X may differ"
            )
    factors = []
    for ax in (info.y, info.x):
        ratio = hr.shape[ax] / lr.shape[ax]
        factors.append(ratio)
    fy, fx = factors
    if not (float(fy).is_integer() and float(fx).is_integer()):
        raise ValueError(
            f"{label}: high-res shape {tuple(hr.shape)} is not an integer multiple of low-res shape "
            f"{tuple(lr.shape)} in Y and X (factors {fy:.4g} x {fx:.4g}); crop the images so that "
            f"high-res = {s} x low-res exactly"
        )
    if fy != fx:
        raise ValueError(
            f"{label}: high-res shape {tuple(hr.shape)} / low-res shape {tuple(lr.shape)} gives factor "
            f"{int(fy)} in Y but {int(fx)} in X; the factor must be the same on both axes"
        )
    if int(fy) != s:
        raise ValueError(
            f"{label}: high-res shape {tuple(hr.shape)} / low-res shape {tuple(lr.shape)} gives factor "
            f"{int(fy)}, but the training scale is {s}; set scale={int(fy)} or use matching images"
        )


class PairSource:
    """Random aligned training patches and a held-out validation region.

    Parameters
    ----------
    hr : high-resolution image(s), numpy arrays (or array-likes) of any layout ``axes`` describes.
    lr : matching low-resolution image(s), or ``None`` to degrade ``hr`` on the fly.
    scale : upscaling factor; for pairs it must equal the size ratio of every spatial axis.
    axes, rgb : as in inference (``"ZYX"``, ``"YXS"``...); one string for all images, or one each.
    patch_size : edge of the training patches in high-res px, a multiple of ``scale``.
    degradation : :class:`DegradationConfig` or its kwargs (``scale`` filled in) for
        high-res-only data; default: the randomised default config.
    val_fraction : fraction of each plane's columns held out for validation (0 = none).
    seed, rank : seeds of the patch sampler (``rank`` gives each distributed worker its own stream).
    normalization : ``"dtype"``, ``"percentile"`` or a spec dict (default: percentile 1 / 99.8 per
        image, :data:`~napari_superres.engine.normalization.DEFAULT_NORMALIZATION`).
    in_channels : 1 (grayscale / RGB luminance, default) or 3 (RGB networks).
    augment : random flips and 90-degree rotations.
    condition : append the degradation maps of each low-res patch (for a conditioned network,
        :mod:`~napari_superres.engine.train.conditions`): batches are then
        ``(N, C + COND_CHANNELS, p/s, p/s)``.
    """

    def __init__(
        self,
        hr: np.ndarray | Sequence[np.ndarray],
        lr: np.ndarray | Sequence[np.ndarray] | None = None,
        *,
        scale: int,
        axes: str | Sequence[str | None] | None = None,
        rgb: bool | None = None,
        patch_size: int = 96,
        degradation: DegradationConfig | dict[str, Any] | None = None,
        val_fraction: float = TRAIN_DEFAULTS.val_fraction,
        seed: int = 0,
        rank: int = 0,
        normalization: str | dict[str, Any] | None = None,
        in_channels: int | None = None,
        augment: bool = True,
        condition: bool = False,
    ) -> None:
        hrs, lrs = _as_list(hr), _as_list(lr)
        if not hrs:
            raise ValueError("no training images: give at least one high-resolution image")
        if lrs and len(lrs) != len(hrs):
            raise ValueError(
                f"got {len(hrs)} high-res and {len(lrs)} low-res images; pairs need one low-res image per high-res image"
            )
        self.scale = int(scale)
        if self.scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.patch_size = int(patch_size)
        if self.patch_size < 2 * self.scale or self.patch_size % self.scale:
            raise ValueError(
                f"patch size {patch_size} (high-res px) must be a multiple of the scale {self.scale} "
                f"and at least {2 * self.scale}; e.g. {max(2, round(patch_size / self.scale)) * self.scale}"
            )
        if not 0.0 <= float(val_fraction) < 0.9:
            raise ValueError(f"val_fraction must be in [0, 0.9), got {val_fraction}")
        self.val_fraction = float(val_fraction)
        self.normalization: dict[str, Any] = Normalization.parse(normalization, TRAINING_NORMALIZATION).to_dict()
        self.paired = bool(lrs)
        if self.paired:
            if degradation is not None:
                raise ValueError("degradation applies to high-res-only training; do not pass it with low-res images")
            self.degradation: DegradationConfig | None = None
        else:
            if isinstance(degradation, DegradationConfig):
                if degradation.scale != self.scale:
                    raise ValueError(
                        f"degradation scale {degradation.scale} differs from the training scale {self.scale}"
                    )
                self.degradation = degradation
            else:
                kwargs = dict(degradation or {})
                kwargs.setdefault("scale", self.scale)
                if int(kwargs["scale"]) != self.scale:
                    raise ValueError(
                        f"degradation scale {kwargs['scale']} differs from the training scale {self.scale}"
                    )
                self.degradation = DegradationConfig.from_dict(kwargs)
            self.degradation = self.degradation.for_normalization(self.normalization)
        self.augment = bool(augment)
        axes_list = list(axes) if isinstance(axes, (list, tuple)) else [axes] * len(hrs)
        if len(axes_list) != len(hrs):
            raise ValueError(f"got {len(axes_list)} axes strings for {len(hrs)} images")

        self.planes: list[_Plane] = []
        self.shapes: list[dict[str, Any]] = []
        any_rgb = False
        for i, hr_img in enumerate(hrs):
            lr_img = lrs[i] if lrs else None
            planes = self._add_image(i, hr_img, lr_img, axes_list[i], rgb)
            any_rgb |= planes[0].rgb
            self.planes.extend(planes)
        self.any_rgb = any_rgb
        self._validation: list[tuple[np.ndarray, np.ndarray]] | None = None
        self.set_in_channels(1 if in_channels is None else in_channels)
        self._weights = np.array(
            [(p.h_lr - self.patch_size // self.scale + 1) * (p.train_w_lr - self.patch_size // self.scale + 1)
             for p in self.planes], dtype=np.float64,
        )  # fmt: skip
        self._weights /= self._weights.sum()
        self._val_seed = int(seed)  # the validation degradation stays fixed whatever reseed() does
        self.cond_channels = COND_CHANNELS if condition else 0
        self._plane_conditions: dict[int, DegradationCondition] = {}
        self.seed = int(seed)
        self.reseed(seed, rank)

    # --- construction ----------------------------------------------------------------------------
    def _val_columns(self, w_lr: int) -> int:
        """Low-res columns held out for validation at the right of a plane ``w_lr`` low-res px wide."""
        if self.val_fraction <= 0:
            return 0
        return max(math.ceil(w_lr * self.val_fraction), math.ceil(MIN_VAL_PX / self.scale))

    def _refuse_small(self, label: str, shape: tuple[int, ...], w_lr: int, h_lr: int, val_w: int, train_w: int) -> None:
        """Raise the ``ValueError`` for an image (high-res ``shape``, ``h_lr`` x ``w_lr`` low-res px, of which
        ``val_w`` columns are held out) whose training region cannot hold a patch: what size would do."""
        s = self.scale
        held = f" after holding out the last {val_w} low-res columns for validation" if val_w else ""
        if min(h_lr, train_w) < 2:  # not even the smallest patch (2 low-res px) fits: say what would
            need_w = next(w for w in range(w_lr, w_lr + 4 * MIN_VAL_PX + 8) if w - self._val_columns(w) >= 2)
            val_need = self._val_columns(need_w) * s
            of_which = f", of which the last {val_need} columns are held out for validation" if val_need else ""
            raise ValueError(
                f"{label}: high-res shape {shape} is too small to train on: training needs at least "
                f"{2 * s} x {need_w * s} high-res px (Y x X){of_which}; use a larger image"
            )
        raise ValueError(
            f"{label}: patch size {self.patch_size} px (high-res) is larger than the image: high-res shape "
            f"{shape} leaves a training region of {h_lr * s} x {max(train_w, 0) * s} px{held}; use a "
            f"patch size of at most {max(min(h_lr, train_w), 0) * s} px, a smaller validation fraction or larger images"
        )

    def _add_image(self, i: int, hr: Any, lr: Any, axes: str | None, rgb: bool | None) -> list[_Plane]:
        s = self.scale
        label = f"image {i}"
        hr = hr if hasattr(hr, "shape") and hasattr(hr, "dtype") else np.asarray(hr)
        _check_dtype(hr, f"high-res {label}")
        info = parse_axes(tuple(hr.shape), axes, rgb)
        if lr is not None:
            lr = lr if hasattr(lr, "shape") and hasattr(lr, "dtype") else np.asarray(lr)
            _check_dtype(lr, f"low-res {label}")
            _check_pair(label, hr, lr, info, s)
        is_rgb = info.rgb is not None
        if is_rgb and hr.shape[info.rgb] < 3:
            raise ValueError(f"{label}: the RGB axis has {hr.shape[info.rgb]} samples; need 3 or 4")

        # intensity range once per image, or once per channel along a C axis (as inference)
        plane_axes = info.plane_axes
        c_pos = plane_axes.index(info.channel) if info.channel is not None else None
        hr_view = hr.transpose(info.order)
        lr_view = lr.transpose(info.order) if lr is not None else None
        ranges: dict[int, tuple[tuple[float, float], tuple[float, float] | None]] = {}

        def range_for(key: int) -> tuple[tuple[float, float], tuple[float, float] | None]:
            if key not in ranges:
                sel: list[Any] = [slice(None)] * hr.ndim
                if key >= 0:
                    sel[info.channel] = key  # type: ignore[index]
                h_sub = np.asarray(hr[tuple(sel)])
                _check_finite(h_sub, f"high-res {label}")
                l_range = h_range = None
                if lr is not None:
                    l_sub = np.asarray(lr[tuple(sel)])
                    _check_finite(l_sub, f"low-res {label}")
                    l_range = intensity_range(l_sub, self.normalization)
                    if self.normalization.get("mode") == "percentile" and not is_rgb:
                        # one map for the pair: the low-res range carried over to high-res units
                        h_view = hr_view if key < 0 else np.take(hr_view, key, axis=c_pos)
                        l_view = lr_view if key < 0 else np.take(lr_view, key, axis=c_pos)
                        h_range = matched_range(h_view, l_view, s, l_range)
                ranges[key] = (h_range or intensity_range(h_sub, self.normalization), l_range)
            return ranges[key]

        H, W = hr.shape[info.y], hr.shape[info.x]
        h_lr, w_lr = H // s, W // s
        val_w = self._val_columns(w_lr)
        train_w = w_lr - val_w
        p_lr = self.patch_size // s
        if p_lr > h_lr or p_lr > train_w:
            self._refuse_small(label, tuple(hr.shape), w_lr, h_lr, val_w, train_w)
        self.shapes.append({"hr": list(hr.shape), "lr": list(lr.shape) if lr is not None else None, "axes": info.axes})

        out = []
        plane_shape = tuple(hr.shape[a] for a in plane_axes)
        for index in np.ndindex(*plane_shape):
            key = index[c_pos] if c_pos is not None else -1
            hr_range, lr_range = range_for(key)
            hp = hr_view[index]
            lp = lr_view[index] if lr_view is not None else None
            if not is_rgb:
                hp = hp[None]
                lp = lp[None] if lp is not None else None
            out.append(
                _Plane(
                    image=i, index=tuple(int(k) for k in index), hr=hp, hr_range=hr_range, lr=lp,
                    lr_range=lr_range, rgb=is_rgb, h_lr=h_lr, w_lr=w_lr, train_w_lr=train_w,
                )
            )  # fmt: skip
        return out

    def set_in_channels(self, in_channels: int) -> None:
        """1: grayscale, RGB as luminance; 3: RGB as RGB (every image must be RGB)."""
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (grayscale / luminance) or 3 (RGB), got {in_channels}")
        if in_channels == 3 and not all(p.rgb for p in self.planes):
            raise ValueError("a 3-channel (RGB) network needs RGB images for every pair; use in_channels=1")
        self.in_channels = int(in_channels)
        self._validation = None

    # --- conversion --------------------------------------------------------------------------------
    def _convert(self, raw: np.ndarray, rng: tuple[float, float], rgb: bool) -> np.ndarray:
        """Raw ``(C_raw, h, w)`` -> normalised float32 ``(in_channels, h, w)``."""
        x = normalize(np.asarray(raw), *rng)
        if rgb:
            x = x[:3]
            if self.in_channels == 1:
                x = rgb_luminance(x)[None]
        return np.ascontiguousarray(x, dtype=np.float32)

    def _hr(self, p: _Plane, ys: slice, xs: slice) -> np.ndarray:
        return self._convert(p.hr[:, ys, xs], p.hr_range, p.rgb)

    def _lr(self, p: _Plane, ys: slice, xs: slice) -> np.ndarray:
        assert p.lr is not None and p.lr_range is not None
        return self._convert(p.lr[:, ys, xs], p.lr_range, p.rgb)

    # --- random state --------------------------------------------------------------------------
    def reseed(self, seed: int, rank: int = 0) -> None:
        """Restart the patch sampler (and degradation) streams from ``seed``; ``rank`` picks a distinct stream."""
        self.seed, self.rank = int(seed), int(rank)
        self._rng = np.random.default_rng([self.seed, self.rank])
        self._torch_gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.rank)

    def rng_state(self) -> dict[str, Any]:
        """The sampler's state: JSON-able numpy part and a ``uint8`` tensor for torch."""
        return {"numpy": self._rng.bit_generator.state, "torch": self._torch_gen.get_state()}

    def set_rng_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["numpy"]
        self._torch_gen.set_state(state["torch"])

    # --- sampling ------------------------------------------------------------------------------
    def _degradation_input(self, hr: torch.Tensor) -> torch.Tensor:
        """``hr`` clipped to ``[0, 1]`` when the degradation clips (dtype-normalised data), else as is."""
        assert self.degradation is not None
        return hr.clamp(0.0, 1.0) if self.degradation.clip is not False else hr

    @property
    def n_planes(self) -> int:
        return len(self.planes)

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A random batch: ``lr (N, C, p/s, p/s)`` and ``hr (N, C, p, p)`` float32 CPU tensors."""
        s, p = self.scale, self.patch_size
        pl = p // s
        rng = self._rng
        which = rng.choice(len(self.planes), size=int(batch_size), p=self._weights)
        hrs, lrs = [], []
        for k in which:
            plane = self.planes[int(k)]
            y0 = int(rng.integers(0, plane.h_lr - pl + 1))
            x0 = int(rng.integers(0, plane.train_w_lr - pl + 1))
            hr = self._hr(plane, slice(y0 * s, (y0 + pl) * s), slice(x0 * s, (x0 + pl) * s))
            lr = self._lr(plane, slice(y0, y0 + pl), slice(x0, x0 + pl)) if self.paired else None
            if self.augment:
                rot, flip = int(rng.integers(4)), bool(rng.integers(2))
                hr = _augment(hr, rot, flip)
                lr = _augment(lr, rot, flip) if lr is not None else None
            hrs.append(hr)
            lrs.append(lr)
        hr_t = torch.from_numpy(np.stack(hrs))
        if self.paired:
            lr_t = torch.from_numpy(np.stack(lrs))
            params: list[dict[str, Any]] = [{} for _ in which]
        else:
            assert self.degradation is not None
            lr_t, params = degrade(  # type: ignore[misc]
                self._degradation_input(hr_t), self.degradation, self._torch_gen, return_params=True
            )
            hr_t = blurred_target(hr_t, params, self.degradation)
        if self.cond_channels:
            conditions = [self._patch_condition(int(k), p) for k, p in zip(which, params)]
            lr_t = with_condition(lr_t, jittered(conditions, rng))
        return lr_t, hr_t  # type: ignore[return-value]

    def set_condition(self, enabled: bool) -> None:
        """Append (or stop appending) each low-res patch's degradation maps, for a conditioned network."""
        self.cond_channels = COND_CHANNELS if enabled else 0
        self._validation = None

    def plane_condition(self, k: int) -> DegradationCondition:
        """Plane ``k``'s own condition, estimated once: the low-res plane's for pairs, else the high-res plane's."""
        if k not in self._plane_conditions:
            p = self.planes[k]
            raw, rng = (p.lr, p.lr_range) if self.paired else (p.hr, p.hr_range)
            x = self._convert(raw, rng, p.rgb)  # type: ignore[arg-type]
            self._plane_conditions[k] = estimate_condition(list(x))
        return self._plane_conditions[k]

    def _patch_condition(self, k: int, params: dict[str, Any]) -> DegradationCondition:
        own = self.plane_condition(k)
        return own if self.paired else low_res_condition(own, params, self.scale)

    # --- validation ----------------------------------------------------------------------------
    def validation(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Held-out regions: ``[(lr (C, h, w), hr (C, s*h, s*w)), ...]`` float32, computed once.

        One region per plane (at most :data:`MAX_VAL_PLANES`, evenly spread), the last
        columns of the plane, cropped to at most :data:`MAX_VAL_PIXELS` low-res pixels
        around the centre row.  High-res-only data is degraded with a fixed seed.
        """
        if self._validation is not None:
            return self._validation
        regions: list[tuple[np.ndarray, np.ndarray]] = []
        origins: list[tuple[int, ...]] = []  # (*plane index, y, x) of each region, high-res px
        if self.val_fraction > 0:
            s = self.scale
            n = len(self.planes)
            picks = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(n, MAX_VAL_PLANES))})
            gen = torch.Generator().manual_seed(self._val_seed + 7919)
            for k in picks:
                p = self.planes[k]
                w = p.w_lr - p.train_w_lr
                h = min(p.h_lr, max(MIN_VAL_PX // s + 1, MAX_VAL_PIXELS // max(w, 1)))
                y0 = (p.h_lr - h) // 2
                xs_lr = slice(p.train_w_lr, p.w_lr)
                ys_lr = slice(y0, y0 + h)
                hr = self._hr(p, slice(y0 * s, (y0 + h) * s), slice(p.train_w_lr * s, p.w_lr * s))
                if self.paired:
                    lr = self._lr(p, ys_lr, xs_lr)
                    params: dict[str, Any] = {}
                else:
                    assert self.degradation is not None
                    lr_b, drawn = degrade(  # type: ignore[misc]
                        self._degradation_input(torch.from_numpy(hr[None])), self.degradation, gen, return_params=True
                    )
                    lr, params = lr_b[0].numpy(), drawn[0]
                    hr = blurred_target(torch.from_numpy(hr[None]), drawn, self.degradation)[0].numpy()
                if self.cond_channels:
                    cond = stacked([self._patch_condition(k, params)])
                    lr = with_condition(torch.from_numpy(lr)[None], cond)[0].numpy()
                regions.append((lr, hr))
                origins.append((*p.index, y0 * s, p.train_w_lr * s))
        self._validation_origins = origins
        self._validation = regions
        return regions

    def preview_region(self) -> tuple[np.ndarray, np.ndarray] | None:
        """A fixed crop of the first validation region: ``(lr (C, h, w), hr (C, s*h, s*w))`` or ``None``."""
        regions = self.validation()
        if not regions:
            return None
        lr, hr = regions[0]
        s = self.scale
        h = min(lr.shape[1], PREVIEW_PX // s)
        w = min(lr.shape[2], PREVIEW_PX // s)
        y0 = (lr.shape[1] - h) // 2
        return lr[:, y0 : y0 + h, :w], hr[:, y0 * s : (y0 + h) * s, : w * s]

    def preview_origin(self) -> tuple[int, ...] | None:
        """Where :meth:`preview_region`'s high-res crop starts in its image: ``(*plane index, y, x)``, high-res px.

        The plane index is the crop's position along the image's leading (Z, T...) axes
        (empty for a 2-D image); ``None`` when there is no validation region.
        """
        regions = self.validation()
        if not regions:
            return None
        *plane, y, x = self._validation_origins[0]
        s = self.scale
        h = min(regions[0][0].shape[1], PREVIEW_PX // s)
        return (*plane, y + (regions[0][0].shape[1] - h) // 2 * s, x)

    def describe(self) -> dict[str, Any]:
        """JSON-able summary stored in the model file's training metadata."""
        return {
            "images": len(self.shapes),
            "planes": len(self.planes),
            "paired": self.paired,
            "shapes": self.shapes,
            "scale": self.scale,
            "patch_size": self.patch_size,
            "in_channels": self.in_channels,
            "cond_channels": self.cond_channels,
            "rgb": self.any_rgb,
            "normalization": self.normalization,
            "degradation": self.degradation.to_dict() if self.degradation else None,
            "val_fraction": self.val_fraction,
            "validation": "last columns of every plane",
        }


def _augment(x: np.ndarray, rot: int, flip: bool) -> np.ndarray:
    """Rotate ``(C, h, w)`` by ``rot`` quarter turns and optionally flip it left-right."""
    if rot:
        x = np.rot90(x, rot, axes=(1, 2))
    if flip:
        x = x[:, :, ::-1]
    return np.ascontiguousarray(x)


def make_pair_source(
    hr: np.ndarray | Sequence[np.ndarray],
    lr: np.ndarray | Sequence[np.ndarray] | None = None,
    *,
    scale: int,
    axes: str | Sequence[str | None] | None = None,
    rgb: bool | None = None,
    patch_size: int = 96,
    degradation: DegradationConfig | dict[str, Any] | None = None,
    val_fraction: float = TRAIN_DEFAULTS.val_fraction,
    seed: int = 0,
    normalization: str | dict[str, Any] | None = None,
    in_channels: int | None = None,
    augment: bool = True,
    condition: bool = False,
) -> PairSource:
    """Build a :class:`PairSource` (see its parameters) from lists of arrays."""
    return PairSource(
        hr, lr, scale=scale, axes=axes, rgb=rgb, patch_size=patch_size, degradation=degradation,
        val_fraction=val_fraction, seed=seed, normalization=normalization, in_channels=in_channels,
        augment=augment, condition=condition,
    )  # fmt: skip


__all__ = ["PairSource", "make_pair_source", "MIN_VAL_PX"]
