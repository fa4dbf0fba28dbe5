"""Axis strings and plane layouts: which axes of an array are spatial (Y, X), RGB samples (S),
channels (C) or planes, and how an image splits into 2D planes and maps go back.

Letters: ``Y`` and ``X`` (exactly one each, upscaled), ``S`` (RGB/RGBA samples, last,
size 3 or 4), ``C`` (a channel axis, processed channel by channel) and any other
letter (``Z``, ``T``, ``Q``...) for axes processed plane by plane.

:class:`PlaneLayout` and :func:`check_pair` serve the metrics (pixel figures and VGG
feature maps alike): one plane at a time, numpy or dask input.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

SPATIAL = "YX"
RGB_AXIS = "S"
CHANNEL_AXIS = "C"


@dataclass(frozen=True)
class AxesInfo:
    """Parsed axes of an ``ndim``-D array."""

    axes: str

    @property
    def y(self) -> int:
        return self.axes.index("Y")

    @property
    def x(self) -> int:
        return self.axes.index("X")

    @property
    def rgb(self) -> int | None:
        return self.axes.index(RGB_AXIS) if RGB_AXIS in self.axes else None

    @property
    def channel(self) -> int | None:
        return self.axes.index(CHANNEL_AXIS) if CHANNEL_AXIS in self.axes else None

    @property
    def plane_axes(self) -> tuple[int, ...]:
        """Axes iterated over (everything but Y, X and S), in array order."""
        return tuple(i for i, a in enumerate(self.axes) if a not in "YXS")

    @property
    def order(self) -> tuple[int, ...]:
        """Transpose that puts plane axes first, then S (if any), then Y, X."""
        tail = ([self.rgb] if self.rgb is not None else []) + [self.y, self.x]
        return self.plane_axes + tuple(tail)


def guess_rgb(shape: tuple[int, ...]) -> bool:
    """napari's rule: more than 2 dims and a last axis of 3 or 4."""
    return len(shape) > 2 and shape[-1] in (3, 4)


def default_axes(shape: tuple[int, ...], rgb: bool | None = None) -> str:
    """Last two axes spatial (or the two before an RGB axis); leading axes are planes (``Q``)."""
    ndim = len(shape)
    if rgb is None:
        rgb = guess_rgb(shape)
    if rgb:
        if ndim < 3:
            raise ValueError(f"an RGB image needs (..., Y, X, 3|4), got shape {shape}")
        return "Q" * (ndim - 3) + "YXS"
    if ndim < 2:
        raise ValueError(f"an image needs at least 2 dimensions (Y, X), got shape {shape}")
    return "Q" * (ndim - 2) + "YX"


#: Without ``axes``, a last axis this small (and not RGB) is more likely channels than X: refused.
AMBIGUOUS_LAST_AXIS = 4


def parse_axes(shape: tuple[int, ...], axes: str | None = None, rgb: bool | None = None) -> AxesInfo:
    """Validate ``axes`` against ``shape`` (or infer it) and return an :class:`AxesInfo`.

    Raises ``ValueError`` with the fix when the string does not fit the array, or when no
    ``axes`` are given and the guess would be doubtful: a ``(64, 64, 2)`` array is 64 planes of
    64x2 pixels by the default rule, but far more often a 2-channel image (a trailing axis of
    2 is not RGB), so it is refused with the two readings to choose from.
    """
    if axes is None:
        guessed = default_axes(shape, rgb)
        if len(shape) >= 3 and not guessed.endswith(RGB_AXIS) and shape[-1] <= AMBIGUOUS_LAST_AXIS:
            lead = "Q" * (len(shape) - 3)
            raise ValueError(
                f"shape {tuple(shape)} is ambiguous: its last axis has only {shape[-1]} elements, so it reads as "
                f"{shape[-3]} planes of {shape[-2]}x{shape[-1]} pixels, but it may be {shape[-1]} channels of "
                f"{shape[-3]}x{shape[-2]} pixels; pass axes='{lead}YXC' for channels (or axes='{lead}QYX' if the "
                "last two axes really are Y and X)"
            )
        return AxesInfo(guessed)
    axes = axes.upper()
    if len(axes) != len(shape):
        raise ValueError(f"axes {axes!r} has {len(axes)} letters but the image has {len(shape)} dimensions {shape}")
    if axes.count("Y") != 1 or axes.count("X") != 1:
        raise ValueError(f"axes {axes!r} must contain exactly one 'Y' and one 'X' (the upscaled axes)")
    channelish = axes.count(CHANNEL_AXIS) + axes.count(RGB_AXIS)
    if channelish > 1:
        raise ValueError(
            f"axes {axes!r} has more than one channel axis (C or S); split the image so that it has at most one"
        )
    if RGB_AXIS in axes:
        if axes[-1] != RGB_AXIS or shape[-1] not in (3, 4):
            raise ValueError(f"the RGB axis 'S' must be last and of size 3 or 4, got axes {axes!r}, shape {shape}")
    for letter in set(axes):
        if axes.count(letter) > 1:
            raise ValueError(f"axis letter {letter!r} appears twice in {axes!r}")
    return AxesInfo(axes)


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
    def of(cls, shape: tuple[int, ...], axes: str | None = None, rgb: bool | None = None) -> PlaneLayout:
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
            if plane.dtype.kind == "f" and not isinstance(image, np.ndarray) and not np.isfinite(plane).all():
                raise ValueError(NON_FINITE_MESSAGE.format(name="A or B"))
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
            raise ValueError(f"image {name} has dtype {dtype}; compare integer, float or bool images")
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"A has shape {tuple(a.shape)} but B (the reference) has shape {tuple(b.shape)}; they must be "
            "equal: resample A onto B's pixel grid first (e.g. upscale the low-res image by the scale factor)"
        )
    if 0 in tuple(b.shape):
        raise ValueError(f"the images are empty (shape {tuple(b.shape)})")
    for name, img in (("A", a), ("B", b)):
        check_finite(img, name)


#: Message for NaN/Inf pixels in a compared image (``{name}``: A, B, or "A or B").
NON_FINITE_MESSAGE = (
    "image {name} contains NaN or Inf values; figures and maps of it would be NaN: replace them first "
    "(e.g. np.nan_to_num) or compare a region without them"
)


def check_finite(image: Any, name: str) -> None:
    """``ValueError`` naming ``name`` if a numpy float ``image`` holds NaN or Inf.

    Other arrays (dask) are checked plane by plane as :meth:`PlaneLayout.planes` reads them.
    """
    if isinstance(image, np.ndarray) and image.dtype.kind == "f" and not np.isfinite(image).all():
        raise ValueError(NON_FINITE_MESSAGE.format(name=name))
