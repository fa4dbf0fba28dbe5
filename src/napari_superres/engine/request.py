"""One upscaling request: :class:`UpscaleRequest`, every choice of ``upscale(...)`` in one typed value.

Every front end (``napari_superres.upscale``, :meth:`~napari_superres.engine.Engine.upscale`,
the Upscale widget, ``napari-superres upscale``, dask, bioimage.io packages) builds one of
these and hands it to :func:`~napari_superres.engine.infer.planning.plan`, which checks it
against the image and the model once and returns the job that runs.

The request itself checks only what needs no image and no model (types, names, ranges), at
construction, so a typo fails at once with :class:`InvalidRequestError`:

>>> request = UpscaleRequest.from_kwargs(model="bicubic", scale=3, tile=0, normalization="percentile")
>>> request.scale, request.tile, request.normalization.mode
(3, None, 'percentile')
>>> request.replace(scale=2).scale
2
>>> UpscaleRequest.from_kwargs(tiel=64)
Traceback (most recent call last):
...
napari_superres.engine.errors.InvalidRequestError: unknown upscale option 'tiel' (did you mean 'tile'?); known: ...

Torch-free: importing it costs numpy only.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .errors import InvalidRequestError
from .options import (
    BACKENDS,
    DEFAULT_DEGRADATION,
    PRECISIONS,
    Normalization,
    check_scale,
    parse_device_name,
    tile_or_auto,
)


@dataclass(frozen=True)
class UpscaleRequest:
    """What to upscale with, and how (see :func:`napari_superres.upscale` for each option).

    Values are checked and put in canonical form at construction: ``scale`` an ``int``,
    ``tile`` an ``int`` or ``None`` (automatic; ``0`` means the same), ``device`` a canonical
    name (``torch.device`` values are accepted), ``normalization`` a :class:`Normalization`,
    ``output_dtype`` a ``numpy.dtype``, ``backend`` / ``precision`` lower case.  ``None``
    means "the default": the model's (scale, normalization), the engine's (device), the
    image's (axes, RGB, dtype), or chosen from free memory (tile, batch size).
    """

    #: registry name, model-file path, ``SRModel`` / ``SRNet`` / ``nn.Module``; ``None``: the engine's default
    model: Any = None
    #: upscaling factor (fixed by a trained model; the bicubic baseline: any, default 2)
    scale: int | None = None
    #: axis letters of the image, e.g. ``"ZYX"``, ``"TCYX"``, ``"YXS"``
    axes: str | None = None
    #: force (True) or forbid (False) reading a last axis of 3/4 as RGB(A)
    rgb: bool | None = None
    #: tile edge in input pixels (``None``: automatic)
    tile: int | None = None
    #: tiles per network call (``None``: automatic)
    batch_size: int | None = None
    #: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` (``None``: the engine's)
    device: str | None = None
    #: intensity normalisation (``None``: the model's)
    normalization: Normalization | None = None
    #: dtype of the result (``None``: the input's; a bioimage.io package: float32)
    output_dtype: np.dtype | None = None
    #: ``"auto"``, ``"torch"`` or ``"onnxruntime"`` (``None``: ``$NAPARI_SUPERRES_BACKEND``, else auto)
    backend: str | None = None
    #: ``"fp32"``, ``"bf16"``, ``"int8"`` or ``"auto"`` (``None``: fp32)
    precision: str | None = None
    #: what a conditioned model is told about the image's blur and noise (``"auto"``: estimated)
    degradation: Any = DEFAULT_DEGRADATION
    #: consent to a model package named by path running Python code it brings
    trust_code: bool = False
    #: run the network through ``torch.compile`` (``None``: ``$NAPARI_SUPERRES_COMPILE == "1"``)
    compile: bool | None = None
    #: average the network over the eight flips and quarter turns of each tile ("x8", EDSR+): 8x the compute
    self_ensemble: bool = False

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "scale", check_scale(self.scale))
        put(self, "tile", tile_or_auto(self.tile))
        if self.axes is not None and not isinstance(self.axes, str):
            raise InvalidRequestError(f"axes must be a string of axis letters such as 'ZYX', got {self.axes!r}")
        for name in ("rgb", "compile"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool | np.bool_):
                raise InvalidRequestError(f"{name} must be True, False or None, got {getattr(self, name)!r}")
            if getattr(self, name) is not None:
                put(self, name, bool(getattr(self, name)))
        put(self, "trust_code", bool(self.trust_code))
        if not isinstance(self.self_ensemble, bool | np.bool_):
            raise InvalidRequestError(f"self_ensemble must be True or False, got {self.self_ensemble!r}")
        put(self, "self_ensemble", bool(self.self_ensemble))
        put(self, "batch_size", _batch_size(self.batch_size))
        if self.device is not None:  # a torch.device reads as its name ("cuda:0")
            device = self.device if isinstance(self.device, str) else _device_name(self.device)
            put(self, "device", parse_device_name(device))
        if self.normalization is not None:
            put(self, "normalization", Normalization.parse(self.normalization))
        put(self, "output_dtype", _output_dtype(self.output_dtype))
        put(self, "backend", _choice("backend", self.backend, BACKENDS))
        put(self, "precision", _choice("precision", self.precision, PRECISIONS))

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> UpscaleRequest:
        """The request of ``upscale(image, **kwargs)``'s keyword arguments (``model=`` included).

        An unknown keyword raises :class:`InvalidRequestError` naming it, the closest known
        one and every known one.
        """
        _check_names(kwargs)
        return cls(**kwargs)

    def replace(self, **changes: Any) -> UpscaleRequest:
        """A copy with ``changes`` (checked as :meth:`from_kwargs` checks its keywords)."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    def options(self) -> dict[str, Any]:
        """The request as ``upscale`` keyword arguments (``model`` left out): ``upscale(image, model, **r.options())``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}


#: The keyword arguments a request is made of (``model`` first).
REQUEST_OPTIONS = tuple(f.name for f in fields(UpscaleRequest))


def _check_names(kwargs: Mapping[str, Any]) -> None:
    unknown = [name for name in kwargs if name not in REQUEST_OPTIONS]
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, REQUEST_OPTIONS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise InvalidRequestError(f"unknown upscale option {name!r}{hint}; known: {', '.join(REQUEST_OPTIONS)}")


def _device_name(device: Any) -> str:
    if type(device).__name__ == "device" and hasattr(device, "type"):  # torch.device, without importing torch
        return str(device)
    if isinstance(device, os.PathLike):
        raise InvalidRequestError(f"device must be a device name, got a path {os.fspath(device)!r}")
    return parse_device_name(device)  # raises DeviceError naming the choices


def _batch_size(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value).is_integer():
        raise InvalidRequestError(
            f"batch_size must be a whole number of tiles >= 1 (or None: automatic), got {value!r}"
        )
    return max(1, int(value))


def _output_dtype(value: Any) -> np.dtype | None:
    if value is None:
        return None
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise InvalidRequestError(
            f"output_dtype must be a numpy dtype such as 'uint16' or 'float32', got {value!r}"
        ) from None
    if dtype.kind not in "uifb":
        raise InvalidRequestError(f"output_dtype must be an integer, float or bool dtype, got {dtype}")
    return dtype


def _choice(what: str, value: Any, choices: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    name = value.lower() if isinstance(value, str) else value
    if name not in choices:
        raise InvalidRequestError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return name


__all__ = ["REQUEST_OPTIONS", "UpscaleRequest"]
