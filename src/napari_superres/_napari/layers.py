"""Pure helpers between napari layers and the engine: axes, world transforms, output layer kwargs.

Coordinate convention.  napari draws pixel ``i`` of an image layer centred at
``translate + scale * i`` (before rotate/shear/affine), covering
``[translate + scale * (i - 1/2), translate + scale * (i + 1/2)]``.  The engine upscales
with the ``align_corners=False`` convention: output pixel ``j`` (factor ``s``) samples the
input at continuous index ``(j + 1/2) / s - 1/2``.  Hence the upscaled layer has

* ``scale' = scale / s`` and ``translate' = translate - scale * (s - 1) / (2 s)``

along the upscaled (Y, X) axes, so that it covers exactly the same world region as its
source and every output pixel centre sits where it samples the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from napari.layers import Image

#: Key under which output layers' metadata describe how they were made.
METADATA_KEY = "napari_superres"


def upscaled_layer_transform(
    scale: Sequence[float],
    translate: Sequence[float],
    axes_upscaled: Sequence[int],
    s: int,
    linear: np.ndarray | None = None,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(scale, translate)`` of a layer upscaled ``s`` times along ``axes_upscaled``.

    Parameters
    ----------
    scale, translate : the source layer's per-dimension scale and translate (world units).
    axes_upscaled : indices (into ``scale``) of the upscaled dimensions, usually the last two.
    s : integer upscaling factor.
    linear : optional ``(D, D)`` rotate @ shear matrix of the source layer (napari applies
        ``linear @ (scale * i) + translate``); the half-pixel shift then moves along the
        rotated axes.  ``None`` means identity.

    Returns
    -------
    ``(new_scale, new_translate)`` as tuples of floats; axes not upscaled are unchanged.
    """
    scale_arr = np.asarray(scale, dtype=np.float64)
    translate_arr = np.asarray(translate, dtype=np.float64)
    if scale_arr.shape != translate_arr.shape:
        raise ValueError(f"scale {tuple(scale)} and translate {tuple(translate)} differ in length")
    s = int(s)
    if s < 1:
        raise ValueError(f"upscaling factor must be a positive integer, got {s}")
    ndim = scale_arr.size
    axes = [a % ndim for a in axes_upscaled]
    # shift in data (index) units of the source: output pixel 0 sits at source index -(s-1)/(2s)
    shift = np.zeros(ndim)
    shift[axes] = -(s - 1) / (2 * s)
    offset = scale_arr * shift
    if linear is not None:
        offset = np.asarray(linear, dtype=np.float64) @ offset
    new_scale = scale_arr.copy()
    new_scale[axes] = scale_arr[axes] / s
    return tuple(float(v) for v in new_scale), tuple(float(v) for v in translate_arr + offset)


def layer_axes(layer: Image) -> str:
    """Engine axes string of an image layer's data: ``"...YX"``, or ``"...YXS"`` for RGB(A).

    The layer's last two (displayed-order) dimensions are Y and X; leading dimensions
    (Z, T, channels stacked in one layer...) are processed plane by plane (``"Q"``).
    """
    ndim = int(layer.ndim)
    if ndim < 2:
        raise ValueError(f"layer {layer.name!r} has {ndim} dimension(s); upscaling needs at least Y and X")
    lead = "Q" * (ndim - 2)
    return lead + ("YXS" if getattr(layer, "rgb", False) else "YX")


def upscaled_axes(layer: Image) -> tuple[int, int]:
    """Indices of the upscaled dimensions in the layer's (world) dimensions: the last two."""
    ndim = int(layer.ndim)
    return ndim - 2, ndim - 1


def _linear_matrix(layer: Image) -> np.ndarray | None:
    """The layer's rotate @ shear matrix, or ``None`` when both are trivial."""
    from napari.utils.transforms import Affine

    ndim = int(layer.ndim)
    rs = Affine(scale=np.ones(ndim), rotate=layer.rotate, shear=layer.shear, ndim=ndim).linear_matrix
    return None if np.allclose(rs, np.eye(ndim)) else np.asarray(rs)


def output_layer_kwargs(
    source_layer: Image,
    s: int,
    model_name: str,
    *,
    model_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``viewer.add_image(upscaled, **kwargs)``.

    The new layer overlays the source in world coordinates (scale, translate, rotate,
    shear and affine follow the source), keeps its look (colormap, contrast limits,
    gamma, blending, opacity, rendering of RGB) and records the model in
    ``metadata["napari_superres"]``.
    """
    linear = _linear_matrix(source_layer)
    scale, translate = upscaled_layer_transform(
        source_layer.scale, source_layer.translate, upscaled_axes(source_layer), s, linear
    )
    rgb = bool(getattr(source_layer, "rgb", False))
    kwargs: dict[str, Any] = {
        "name": f"{source_layer.name} ×{int(s)} ({model_name})",
        "scale": scale,
        "translate": translate,
        "rgb": rgb,
        "blending": source_layer.blending,
        "opacity": source_layer.opacity,
        "contrast_limits": tuple(float(v) for v in source_layer.contrast_limits),
    }
    if not rgb:
        kwargs["colormap"] = source_layer.colormap
        kwargs["gamma"] = float(source_layer.gamma)
    if linear is not None:
        kwargs["rotate"] = np.asarray(source_layer.rotate)
        kwargs["shear"] = np.asarray(source_layer.shear)
    affine = np.asarray(source_layer.affine.affine_matrix)
    if not np.allclose(affine, np.eye(affine.shape[0])):
        kwargs["affine"] = affine
    for attr in ("units", "axis_labels"):  # napari >= 0.6
        value = getattr(source_layer, attr, None)
        if value is not None:
            kwargs[attr] = tuple(value)
    info = {"model": model_name, "scale": int(s), "source_layer": source_layer.name}
    info.update(model_info or {})
    kwargs["metadata"] = {**dict(source_layer.metadata), METADATA_KEY: info}
    return kwargs


def map_contrast_limits(data: np.ndarray, *, similarity: bool = False, percentile: float = 99.5) -> tuple[float, float]:
    """Contrast limits of a difference map: ``(0, its percentile-th value)`` (positive), or for a
    similarity map in [-1, 1] (SSIM) ``(its (100 - percentile)-th value, 1)``.

    >>> map_contrast_limits(np.arange(201.0), percentile=99.5)
    (0.0, 199.0)
    >>> map_contrast_limits(np.zeros((2, 2)))[1] > 0
    True
    """
    if similarity:
        return float(max(-1.0, min(np.percentile(data, 100 - percentile), 0.999))), 1.0
    top = float(np.percentile(data, percentile)) if data.size else 0.0
    return 0.0, top if top > 0 else float(data.max()) or 1e-6
