"""Axis strings: which axes of an array are spatial (Y, X), RGB samples (S), channels (C) or planes.

Letters: ``Y`` and ``X`` (exactly one each, upscaled), ``S`` (RGB/RGBA samples, last,
size 3 or 4), ``C`` (a channel axis, processed channel by channel) and any other
letter (``Z``, ``T``, ``Q``...) for axes processed plane by plane.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def parse_axes(shape: tuple[int, ...], axes: str | None = None, rgb: bool | None = None) -> AxesInfo:
    """Validate ``axes`` against ``shape`` (or infer it) and return an :class:`AxesInfo`.

    Raises ``ValueError`` with the fix when the string does not fit the array.
    """
    if axes is None:
        return AxesInfo(default_axes(shape, rgb))
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
