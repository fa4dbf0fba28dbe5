"""Where two images differ in VGG-16 feature space: the VGG feature distance (uncalibrated, not LPIPS).

For each chosen VGG-16 layer ``l`` (default ``relu1_2, relu2_2, relu3_3, relu4_3``), the
features of A and B are unit-normalised along channels, their squared difference is
summed over channels (a ``(H_l, W_l)`` map in [0, 4]), and the map is upsampled
bilinearly (``align_corners=False``) to the image size.  The combined map is
``sum_l w_l * map_l`` with layer weights ``w_l`` normalised to sum to 1 (default: equal,
``1 / n_layers``), so it also lies in [0, 4]; 0 means identical features.  This is
LPIPS's construction (Zhang et al. 2018) without its learned per-channel weights, so its
numbers are not LPIPS numbers; LPIPS itself, with the calibrated weights, is
:mod:`.lpips_metric`.

Details that make the map well defined and tileable:

* Intensities: A and B are put on [0, 1] with **one** range for both, from the
  reference B (``engine/normalization.py``: ``"dtype"`` by default, e.g. uint16 / 65535,
  or ``"percentile"``), so the comparison is fair.  Grayscale is repeated to RGB,
  RGB(A) uses R, G, B.  Stacks are mapped plane by plane.
* Each plane is reflect-padded on the bottom/right to a multiple of the deepest layer's
  stride (8 for ``relu4_3``) and the map cropped back, so every layer's grid divides the
  image exactly.
* Large planes are processed in tiles of ``tile`` pixels plus a halo larger than the
  receptive field of the deepest layer (see :func:`vgg_geometry`), aligned to the
  stride, and only the tile cores are kept: the tiled map equals the untiled one up to
  float rounding while memory depends on the tile size, not the image size.
* The VGG network is passed in: ``vgg=`` a ready :class:`VGGFeatures`, or ``engine=`` an
  :class:`~napari_superres.engine.Engine` (VGG-16 loaded once per engine, shared with the
  perceptual loss, copied per device); without the ImageNet weights
  :class:`~napari_superres.engine.nets.vgg.VGGWeightsUnavailable` propagates with its message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..device import resolve_device
from ..errors import Cancelled
from ..infer.tiling import TileLayout
from ..layout import PlaneLayout, check_pair
from ..nets.vgg import DEFAULT_LAYERS, VGG16_LAYERS, VGGFeatures
from ..normalization import intensity_range, normalize

#: Core tile edge (input pixels) used when ``tile`` is not given; planes that fit in one
#: tile plus halo are processed whole.
DEFAULT_FEATURE_TILE = 384
#: Added to feature norms before dividing (as LPIPS), so all-zero features give a zero map.
NORM_EPS = 1e-10

ProgressCallback = Callable[[int, int], None]


def layer_weights(
    layers: Sequence[str], weights: Sequence[float] | Mapping[str, float] | None = None
) -> dict[str, float]:
    """Normalised (sum 1) non-negative weight per layer; ``None`` gives equal weights.

    ``weights`` is a sequence aligned with ``layers`` or a ``{layer: weight}`` mapping.
    """
    layers = tuple(layers)
    if not layers:
        raise ValueError(f"choose at least one VGG-16 layer from {list(VGG16_LAYERS)}")
    unknown = [name for name in layers if name not in VGG16_LAYERS]
    if unknown:
        raise ValueError(f"unknown VGG-16 layers {unknown}; choose from {list(VGG16_LAYERS)}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers repeat: {list(layers)}")
    if weights is None:
        raw = [1.0] * len(layers)
    elif isinstance(weights, Mapping):
        extra = set(weights) - set(layers)
        if extra:
            raise ValueError(f"weights given for layers not chosen: {sorted(extra)}")
        raw = [float(weights.get(name, 0.0)) for name in layers]
    else:
        raw = [float(w) for w in weights]
        if len(raw) != len(layers):
            raise ValueError(f"{len(raw)} weights for {len(layers)} layers {list(layers)}")
    if any(not np.isfinite(w) or w < 0 for w in raw) or sum(raw) <= 0:
        raise ValueError(f"layer weights must be finite, non-negative and not all zero, got {raw}")
    total = sum(raw)
    return {name: w / total for name, w in zip(layers, raw)}


def vgg_geometry(features: nn.Sequential, last_index: int) -> tuple[int, int, int]:
    """``(receptive_field, stride, halo)`` in input pixels of ``features[last_index]``.

    The receptive field is the full edge of the input window one feature sees; the
    halo (a multiple of ``stride``) covers half of it plus two feature pixels for the
    bilinear upsampling, so a tile's core is unaffected by the tile's zero padding.
    For ``relu4_3``: receptive field 92, stride 8, halo 64; ``relu5_3``: 196, 16, 144.
    """
    rf, jump = 1, 1
    for i, layer in enumerate(features):
        if i > last_index:
            break
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
            s = layer.stride if isinstance(layer.stride, int) else layer.stride[0]
            d = layer.dilation if isinstance(layer.dilation, int) else layer.dilation[0]
            rf += (k - 1) * d * jump
            jump *= s
    halo = -(-(rf // 2 + 2 * jump) // jump) * jump
    return rf, jump, halo


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _pad_to_stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Pad ``(N, C, H, W)`` on the bottom/right to multiples of ``stride`` (reflect, or edge when too small)."""
    h, w = x.shape[-2:]
    ph, pw = _round_up(h, stride) - h, _round_up(w, stride) - w
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _unit(f: torch.Tensor) -> torch.Tensor:
    return f / (torch.sqrt((f * f).sum(dim=1, keepdim=True)) + NORM_EPS)


class _FeatureMapper:
    """Computes per-layer maps of one plane pair, tile by tile."""

    def __init__(self, vgg: VGGFeatures, layers: Sequence[str], tile: int | None) -> None:
        self.vgg = vgg
        self.layers = tuple(layers)
        last = max(VGG16_LAYERS[name] for name in self.layers)
        self.rf, self.stride, self.halo = vgg_geometry(vgg.features, last)
        self.core = _round_up(max(int(tile or DEFAULT_FEATURE_TILE), self.stride), self.stride)
        self.device = next(vgg.parameters()).device

    def tiles(self, h: int, w: int) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
        """``(tile box, core box)`` pairs, boxes ``(y0, y1, x0, x1)`` over the stride-padded plane.

        The layout is inference's :class:`~napari_superres.engine.infer.tiling.TileLayout`
        in units of the stride (so every tile starts on the deepest layer's grid): tiles of
        at most ``core + 2 * halo`` pixels overlapping by at least ``2 * halo``, each owning
        the part up to the middle of its overlaps, which is ``halo`` or more from its edges.
        """
        s = self.stride
        edge, overlap = (self.core + 2 * self.halo) // s, 2 * self.halo // s
        ly = TileLayout(_round_up(h, s) // s, edge, overlap)
        lx = TileLayout(_round_up(w, s) // s, edge, overlap)
        return [
            (
                (ty * s, (ty + ly.tile_size) * s, tx * s, (tx + lx.tile_size) * s),
                (ly.cuts[iy] * s, ly.cuts[iy + 1] * s, lx.cuts[ix] * s, lx.cuts[ix + 1] * s),
            )
            for iy, ty in enumerate(ly.starts)
            for ix, tx in enumerate(lx.starts)
        ]

    @torch.no_grad()
    def plane(
        self,
        pa: np.ndarray,
        pb: np.ndarray,
        on_tile: Callable[[], None],
        should_stop: Callable[[], bool] | None,
    ) -> dict[str, np.ndarray]:
        """Per-layer maps ``{layer: (H, W) float32}`` of ``(C, H, W)`` planes in [0, 1]."""
        h, w = pa.shape[-2:]
        pair = torch.from_numpy(np.stack([pa, pb]).astype(np.float32, copy=False))
        pair = _pad_to_stride(pair, self.stride)
        hp, wp = pair.shape[-2:]
        maps = {name: np.zeros((hp, wp), dtype=np.float32) for name in self.layers}
        for (ty0, ty1, tx0, tx1), (y0, y1, x0, x1) in self.tiles(h, w):
            if should_stop is not None and should_stop():
                raise Cancelled("cancelled")
            batch = pair[:, :, ty0:ty1, tx0:tx1].to(self.device)
            feats = self.vgg(batch)
            for name in self.layers:
                f = _unit(feats[name].float())
                d = ((f[0] - f[1]) ** 2).sum(dim=0)[None, None]
                up = F.interpolate(d, size=(ty1 - ty0, tx1 - tx0), mode="bilinear", align_corners=False)
                core = up[0, 0, y0 - ty0 : y1 - ty0, x0 - tx0 : x1 - tx0]
                maps[name][y0:y1, x0:x1] = core.cpu().numpy()
            del feats
            on_tile()
        return {name: m[:h, :w] for name, m in maps.items()}


def _resolve_vgg(
    layers: Sequence[str], engine: Any, vgg: VGGFeatures | None, device: str | torch.device | None
) -> VGGFeatures:
    """The VGG to use: ``vgg`` as given, else the engine's (on ``device``), else one loaded for this call."""
    if vgg is not None:
        missing = [name for name in layers if name not in getattr(vgg, "layers", ())]
        if missing:
            raise ValueError(f"the given VGG features do not output layers {missing}; build it with them")
        return vgg
    if engine is not None:
        return engine.vgg(tuple(layers), device=device)
    return VGGFeatures(tuple(layers)).to(resolve_device(device))  # loaded now, owned by this call


def _common_range(b: Any, normalization: str | dict[str, Any] | None) -> tuple[float, float]:
    return intensity_range(b, normalization)  # a mode name, a spec dict or None ("dtype")


def feature_difference(
    a: Any,
    b: Any,
    *,
    layers: Sequence[str] = DEFAULT_LAYERS,
    weights: Sequence[float] | Mapping[str, float] | None = None,
    per_layer: bool = False,
    engine: Any = None,
    vgg: VGGFeatures | None = None,
    device: str | torch.device | None = None,
    tile: int | None = None,
    normalization: str | dict[str, Any] | None = None,
    axes: str | None = None,
    rgb: bool | None = None,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """VGG-16 feature-difference map of image ``a`` against the reference ``b`` (see module docstring).

    Parameters
    ----------
    a, b : arrays of equal shape, ``(..., Y, X)`` or RGB(A) ``(..., Y, X, 3|4)``, any
        integer/float dtype, in the same intensity units (numpy or dask).
    layers : VGG-16 layer names (:data:`~napari_superres.engine.nets.vgg.VGG16_LAYERS`).
    weights : per-layer weights (sequence aligned with ``layers`` or mapping), normalised
        to sum 1; default equal.
    per_layer : also return ``{layer: map}`` (unweighted); ``sum(w_l * map_l)`` is the combined map.
    engine : the :class:`~napari_superres.engine.Engine` whose VGG-16 is used (loaded once
        per engine); ``vgg`` : a ready :class:`VGGFeatures` instead (it runs where it is).
        With neither, VGG-16 is loaded for this call only.
    device : where the VGG runs with ``engine`` or neither (default: the engine's default
        device, or ``"auto"``); a per-call choice that moves no shared network.
    tile : core tile edge in pixels (default :data:`DEFAULT_FEATURE_TILE`).
    normalization : ``"dtype"`` (default) or ``"percentile"`` or a spec dict; the range
        comes from ``b`` and is applied to both images.
    axes, rgb : layout, as :func:`napari_superres.upscale`.
    progress : ``progress(done_tiles, total_tiles)``; ``should_stop()`` is checked before
        every tile and raises :class:`~napari_superres.engine.infer.tiling.Cancelled`.

    Returns
    -------
    float32 map in [0, 4] with the input's shape without the RGB axis (e.g. ``(Y, X)``),
    and with ``per_layer=True`` a tuple ``(map, {layer: map})``.

    Raises
    ------
    ValueError for mismatched shapes or bad layers/weights;
    :class:`~napari_superres.engine.nets.vgg.VGGWeightsUnavailable` without the ImageNet weights.
    """
    check_pair(a, b)
    w = layer_weights(layers, weights)
    layout = PlaneLayout.of(tuple(b.shape), axes, rgb)
    lo, hi = _common_range(b, normalization)
    net = _resolve_vgg(tuple(w), engine, vgg, device)
    mapper = _FeatureMapper(net, tuple(w), tile)
    total = layout.n_planes * len(mapper.tiles(*layout.yx))
    done = 0

    def on_tile() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    combined = layout.empty_maps()
    per = {name: layout.empty_maps() for name in w} if per_layer else {}
    for i, (pa, pb) in enumerate(zip(layout.planes(a), layout.planes(b))):
        maps = mapper.plane(normalize(pa, lo, hi), normalize(pb, lo, hi), on_tile, should_stop)
        combined[i] = 0.0
        for name, m in maps.items():
            combined[i] += np.float32(w[name]) * m
            if per_layer:
                per[name][i] = m
    out = layout.assemble(combined)
    if per_layer:
        return out, {name: layout.assemble(m) for name, m in per.items()}
    return out


def perceptual_distance(a: Any, b: Any, **kwargs: Any) -> float:
    """Mean of :func:`feature_difference` (same keyword arguments): 0 for identical images."""
    kwargs.pop("per_layer", None)
    return float(np.mean(feature_difference(a, b, **kwargs), dtype=np.float64))


__all__ = [
    "DEFAULT_FEATURE_TILE",
    "feature_difference",
    "layer_weights",
    "perceptual_distance",
    "vgg_geometry",
]
