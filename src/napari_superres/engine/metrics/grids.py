"""Pixel grids of two images: whether they cover the same field of view, and resampling one onto the other.

Used before comparing a result with a reference of another shape (e.g. a low-res image
with layer scale ``s`` against the high-res acquisition): pure numpy/scipy, no viewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GridMatch:
    """How A's pixel grid maps onto B's along Y and X: A index = ``ratio * B index + offset``."""

    ratio: tuple[float, float]
    offset: tuple[float, float]

    @property
    def identity(self) -> bool:
        return bool(np.allclose(self.ratio, 1.0) and np.allclose(self.offset, 0.0))


def match_grids(
    a_yx: tuple[int, int], a_scale: Any, a_translate: Any,
    b_yx: tuple[int, int], b_scale: Any, b_translate: Any,
) -> GridMatch | None:  # fmt: skip
    """A :class:`GridMatch` when A and B cover the same field of view in Y and X, else ``None``.

    ``*_yx`` are the pixel counts, ``*_scale`` and ``*_translate`` the images' world scale
    and translate along Y and X.  Pixel ``i`` is centred at ``translate + scale * i`` and
    spans one ``scale``, so the field of view is
    ``[translate - scale/2, translate + scale * (n - 1/2)]``; A's and B's must agree to
    within half of the coarser pixel.

    >>> match_grids((4, 4), (2, 2), (0.5, 0.5), (8, 8), (1, 1), (0, 0))
    GridMatch(ratio=(0.5, 0.5), offset=(-0.25, -0.25))
    """
    ratio, offset = [], []
    for na, sa, ta, nb, sb, tb in zip(a_yx, a_scale, a_translate, b_yx, b_scale, b_translate):
        sa, ta, sb, tb = float(sa), float(ta), float(sb), float(tb)
        tol = 0.5 * max(abs(sa), abs(sb))
        start_a, start_b = ta - sa / 2, tb - sb / 2
        if abs(start_a - start_b) > tol or abs((start_a + sa * na) - (start_b + sb * nb)) > tol:
            return None
        ratio.append(sb / sa)
        offset.append((tb - ta) / sa)
    return GridMatch((ratio[0], ratio[1]), (offset[0], offset[1]))


def yx_axes(ndim: int, rgb: bool) -> tuple[int, int]:
    """Indices of Y and X in an image of ``ndim`` dimensions (before the colour axis of an RGB image)."""
    return (ndim - 3, ndim - 2) if rgb else (ndim - 2, ndim - 1)


def match_shapes(
    a_shape: tuple[int, ...], a_scale: Any, a_translate: Any,
    b_shape: tuple[int, ...], b_scale: Any, b_translate: Any, yx: tuple[int, int],
) -> GridMatch | None:  # fmt: skip
    """:func:`match_grids` for whole images: ``None`` unless A and B differ in Y and X only (axes ``yx``)
    and cover the same field of view.  ``*_scale``, ``*_translate``: along Y and X.

    >>> match_shapes((3, 4, 4), (2, 2), (0.5, 0.5), (3, 8, 8), (1, 1), (0, 0), (1, 2)).ratio
    (0.5, 0.5)
    >>> match_shapes((2, 4, 4), (2, 2), (0.5, 0.5), (3, 8, 8), (1, 1), (0, 0), (1, 2)) is None
    True
    """
    y, x = yx
    if len(a_shape) != len(b_shape) or any(
        na != nb for i, (na, nb) in enumerate(zip(a_shape, b_shape)) if i not in (y, x)
    ):
        return None
    return match_grids((a_shape[y], a_shape[x]), a_scale, a_translate, (b_shape[y], b_shape[x]), b_scale, b_translate)


def resample_onto(data: np.ndarray, match: GridMatch, out_yx: tuple[int, int], y: int, x: int) -> np.ndarray:
    """Resample ``data`` (Y, X at axes ``y``, ``x``) onto B's grid with cubic-spline interpolation; float32.

    Other axes are copied through.  Edges use the nearest values.
    """
    from scipy.ndimage import affine_transform

    matrix = np.ones(data.ndim)
    offset = np.zeros(data.ndim)
    matrix[y], matrix[x] = match.ratio
    offset[y], offset[x] = match.offset
    out_shape = list(data.shape)
    out_shape[y], out_shape[x] = out_yx
    return affine_transform(
        np.asarray(data, dtype=np.float32), matrix, offset=offset, output_shape=tuple(out_shape),
        order=3, mode="nearest",
    )  # fmt: skip
