"""The :class:`Engine`: one per viewer (or script), holding the device and a registry of models.

Widgets share one engine, so a model trained in the Train widget is selectable in
the Upscale widget at once, and the VGG-16 network is loaded once for the
perceptual loss and the feature-difference maps.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .nets.srnet import Bicubic, SRNet
from .device import configure_cpu_threads, resolve_device
from .infer.pipeline import ProgressCallback, plan_upscale, run_upscale
from .nets.model_file import MODEL_SUFFIX, SRModel, load_model

BICUBIC = "bicubic"
#: Folder of the model files shipped inside the package.
BUILTIN_MODEL_DIR = Path(__file__).resolve().parent.parent / "models"


def builtin_model_files() -> list[Path]:
    """The ``.safetensors`` files shipped with the package, sorted by name."""
    if not BUILTIN_MODEL_DIR.is_dir():
        return []
    return sorted(BUILTIN_MODEL_DIR.glob(f"*{MODEL_SUFFIX}"))


class Engine:
    """Device, model registry and shared networks.

    >>> engine = Engine(device="cpu")
    >>> engine.names()[0]
    'bicubic'
    >>> big = engine.upscale(np.zeros((8, 8), np.uint8), "bicubic", scale=2)
    >>> big.shape
    (16, 16)

    Registry entries are :class:`SRModel` objects (or model files, loaded on first use).
    Listeners added with :meth:`on_change` are called with no arguments whenever the set
    of models changes (from any thread: GUI listeners must marshal to their own thread).
    """

    def __init__(self, device: str | torch.device = "auto", *, builtins: bool = True) -> None:
        self._device = resolve_device(device)
        self._lock = threading.RLock()
        self._models: dict[str, SRModel | Path] = {}
        self._listeners: list[Callable[[], None]] = []
        self._vgg_features: nn.Sequential | None = None
        self._default: str = BICUBIC
        self._models[BICUBIC] = SRModel(BICUBIC, Bicubic(2), scale=None, in_channels=None, source="builtin")
        if builtins:
            for path in builtin_model_files():
                self._models[path.stem] = path
            self._default = self.builtin_default() or BICUBIC
        if self._device.type == "cpu":
            configure_cpu_threads()

    # --- device --------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self._device

    def set_device(self, device: str | torch.device) -> torch.device:
        """Switch device (``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``); models move on next use."""
        self._device = resolve_device(device)
        return self._device

    # --- registry ------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Registered model names: the default first, then built-ins, then the rest in order added."""
        with self._lock:
            names = list(self._models)
        names.sort(key=lambda n: (n != self._default, n != BICUBIC, 0))
        return names

    @property
    def default_model(self) -> str:
        return self._default

    def builtin_default(self) -> str | None:
        """Name of the preferred built-in model (x2 when shipped), or ``None``."""
        stems = [p.stem for p in builtin_model_files()]
        for stem in stems:
            if "x2" in stem:
                return stem
        return stems[0] if stems else None

    def set_default(self, name: str) -> None:
        if name not in self._models:
            raise KeyError(f"no model named {name!r}; registered: {self.names()}")
        self._default = name
        self._notify()

    def register(
        self,
        model: SRModel | SRNet,
        name: str | None = None,
        *,
        normalization: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        source: str = "session",
        replace: bool = True,
    ) -> str:
        """Add a model under ``name`` and notify listeners; returns the name used.

        With ``replace=False`` an existing name gets a suffix ``" (2)"``, ``" (3)"``...
        """
        if isinstance(model, SRNet):
            model = SRModel(
                name=name or f"session x{model.scale}",
                net=model,
                scale=model.scale,
                in_channels=model.in_channels,
                normalization=normalization or {"mode": "dtype"},
                metadata=metadata or {},
                source=source,
            )
        elif not isinstance(model, SRModel):
            raise TypeError(f"register() needs an SRNet or SRModel, got {type(model).__name__}")
        name = name or model.name
        with self._lock:
            if not replace and name in self._models:
                k = 2
                while f"{name} ({k})" in self._models:
                    k += 1
                name = f"{name} ({k})"
            model.name = name
            self._models[name] = model
        self._notify()
        return name

    def load(self, path: str | os.PathLike, name: str | None = None) -> str:
        """Load a model file (validated now) and register it; returns its name."""
        model = load_model(path, name=name)
        return self.register(model, name or model.name, source=str(path))

    def remove(self, name: str) -> None:
        with self._lock:
            if name == BICUBIC:
                raise ValueError("the bicubic baseline cannot be removed")
            self._models.pop(name)
            if self._default == name:
                self._default = self.builtin_default() or BICUBIC
        self._notify()

    def get(self, model: str | os.PathLike | SRModel | nn.Module | None = None) -> SRModel:
        """Resolve a name, a model-file path, an ``SRNet``/``SRModel`` or ``None`` (the default)."""
        if model is None:
            model = self._default
        if isinstance(model, SRModel):
            return model
        if isinstance(model, SRNet):
            return SRModel("custom", model, model.scale, model.in_channels, source="python")
        if isinstance(model, nn.Module):
            scale = getattr(model, "scale", None)
            if scale is None:
                raise TypeError("a custom nn.Module needs a 'scale' attribute (int); or wrap it in SRModel")
            if not hasattr(model, "receptive_field"):
                raise TypeError("a custom nn.Module needs a receptive_field() method (radius in input px)")
            return SRModel(type(model).__name__, model, int(scale), getattr(model, "in_channels", 1), source="python")
        key = str(model)
        with self._lock:
            entry = self._models.get(key)
            if isinstance(entry, Path):  # built-in file: load on first use
                entry = load_model(entry, name=key)
                entry.source = "builtin"
                self._models[key] = entry
        if entry is not None:
            return entry
        if key.endswith(MODEL_SUFFIX) or os.path.exists(key):
            return load_model(key)
        raise KeyError(f"no model named {key!r}; registered models: {self.names()} (or pass a .safetensors path)")

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` whenever models are added or removed; returns a disconnect function."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _notify(self) -> None:
        for cb in list(self._listeners):
            cb()

    # --- shared networks -----------------------------------------------------------------------
    def vgg_features(self) -> nn.Sequential:
        """The frozen VGG-16 ``features`` (ImageNet weights), loaded once per engine, on the device."""
        from .nets.vgg import load_vgg16_features

        with self._lock:
            if self._vgg_features is None:
                self._vgg_features = load_vgg16_features()
            self._vgg_features.to(self._device)
            return self._vgg_features

    def vgg(self, layers: Sequence[str] | None = None) -> nn.Module:
        """A :class:`~napari_superres.engine.nets.vgg.VGGFeatures` for ``layers`` over the shared VGG."""
        from .nets.vgg import DEFAULT_LAYERS, VGGFeatures

        return VGGFeatures(tuple(layers or DEFAULT_LAYERS), features=self.vgg_features()).to(self._device)

    # --- inference -----------------------------------------------------------------------------
    def prepare(self, model: str | os.PathLike | SRModel | nn.Module | None = None) -> SRModel:
        """Resolve ``model`` and move its network to this engine's device (once)."""
        resolved = self.get(model)
        first = next(resolved.net.parameters(), None)
        if first is not None and first.device != self._device:
            resolved.net.to(self._device)
        resolved.net.eval()
        return resolved

    def upscale(
        self,
        image: Any,
        model: str | os.PathLike | SRModel | nn.Module | None = None,
        *,
        scale: int | None = None,
        axes: str | None = None,
        rgb: bool | None = None,
        tile: int | None = None,
        batch_size: int | None = None,
        normalization: str | dict[str, Any] | None = None,
        output_dtype: Any = None,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """See :func:`napari_superres.upscale`."""
        from .normalization import normalization_spec

        resolved = self.prepare(model)
        if isinstance(normalization, str):
            normalization = normalization_spec(normalization)
        if _is_dask(image):
            from .infer.lazy import upscale_dask

            return upscale_dask(
                image, resolved, engine=self, scale=scale, axes=axes, rgb=rgb, tile=tile,
                batch_size=batch_size, normalization=normalization, output_dtype=output_dtype,
            )  # fmt: skip
        image = np.asarray(image)
        job = plan_upscale(
            image, resolved, scale=scale, axes=axes, rgb=rgb, tile=tile, device=self._device,
            batch_size=batch_size, normalization=normalization, output_dtype=output_dtype,
        )  # fmt: skip
        return run_upscale(image, job, progress=progress, should_stop=should_stop)


def _is_dask(image: Any) -> bool:
    return type(image).__module__.startswith("dask")


_default_engine: Engine | None = None
_default_lock = threading.Lock()


def default_engine() -> Engine:
    """The process-wide engine used by :func:`napari_superres.upscale` when none is given."""
    global _default_engine
    with _default_lock:
        if _default_engine is None:
            _default_engine = Engine()
        return _default_engine


def upscale(
    image: Any,
    model: str | os.PathLike | SRModel | nn.Module | None = None,
    *,
    scale: int | None = None,
    axes: str | None = None,
    rgb: bool | None = None,
    tile: int | None = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    normalization: str | dict[str, Any] | None = None,
    output_dtype: Any = None,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    engine: Engine | None = None,
) -> np.ndarray:
    """Upscale an image with a super-resolution model.

    Parameters
    ----------
    image : array ``(..., Y, X)`` or RGB(A) ``(..., Y, X, 3|4)``; uint8/uint16/int/float/bool.
        Leading axes (Z, T, C...) are processed plane by plane.  A dask array gives a lazy
        dask array back (each chunk upscaled independently with a halo).
    model : registry name (``"bicubic"``, a built-in, a session model), a ``.safetensors``
        path, an :class:`~napari_superres.engine.SRNet` or :class:`SRModel`.  ``None``: the
        engine's default (the built-in model when shipped).
    scale : upscaling factor; fixed by the model (an error if it differs), default 2 for bicubic.
    axes : letters per dimension, e.g. ``"ZYX"``, ``"TCYX"``, ``"YXS"`` (S = RGB samples).
        Default: last two axes (or the two before an RGB axis).
    rgb : force (True) or forbid (False) treating a last axis of 3/4 as RGB(A).
    tile : tile edge in input pixels (default: automatic).
    device : ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` (default: the engine's).
    normalization : ``"dtype"`` or ``"percentile"`` (1, 99.8) or a spec dict; default: the model's.
    output_dtype : default: the input's dtype (values clipped to its range).
    progress : ``progress(done_tiles, total_tiles)``.
    should_stop : checked between tile batches; returning True raises
        :class:`~napari_superres.engine.infer.tiling.Cancelled`.

    Returns
    -------
    ``numpy.ndarray`` with Y and X multiplied by ``scale``, other axes unchanged.
    """
    engine = engine or default_engine()
    if device is not None and resolve_device(device) != engine.device:
        engine = _EngineOnDevice(engine, device)
    return engine.upscale(
        image, model, scale=scale, axes=axes, rgb=rgb, tile=tile, batch_size=batch_size,
        normalization=normalization, output_dtype=output_dtype, progress=progress, should_stop=should_stop,
    )  # fmt: skip


class _EngineOnDevice(Engine):
    """A view of an engine's registry that runs on another device (for ``upscale(device=...)``)."""

    def __init__(self, base: Engine, device: str | torch.device) -> None:  # noqa: D107 - shares state
        self.__dict__.update(base.__dict__)
        self._device = resolve_device(device)

