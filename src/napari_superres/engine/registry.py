"""The :class:`Engine`: one per viewer (or script), a registry of models shared by its widgets.

Widgets share one engine, so a model trained in the Train widget is selectable in
the Upscale widget at once, and the VGG-16 network is loaded once for the
perceptual loss and the feature-difference maps.

Shared state, and what guards it:

* The device is a **per-call** choice (``upscale(..., device=)``, ``prepare(model, device)``,
  ``vgg(layers, device=)``); the engine's :attr:`~Engine.device` is only the default for
  calls that name none.  One widget choosing a GPU changes nothing for another.
* Registered networks and the VGG-16 are **never moved** in place: a call on another device
  than the one a network lives on gets a copy, made once per (network, device) and kept
  while the network is registered (refreshed when its weights changed in place, e.g. by
  training), as :class:`~napari_superres.engine.infer.lazy.ModelPayload` does per worker.
* The registry lock guards only the name -> model dictionary (and the default name);
  loading a model file, copying a network to a device and loading VGG-16 (possibly a
  528 MB download) happen outside it.  VGG-16 loads once per engine, under its own lock.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .device import (
    configure_cpu_threads,
    copy_module_to,
    is_out_of_memory,
    on_device,
    out_of_memory_error,
    resolve_device,
)
from .infer.job import ProgressCallback, UpscaleJob
from .infer.pipeline import job_condition, run
from .infer.planning import plan
from .infer.predictor import Predictor
from .loaders import load_model_file
from .nets.conditioning import DegradationCondition
from .nets.model_file import BUILTIN_MODEL_DIR, MODEL_SUFFIX, SRModel, builtin_model_files, load_model  # noqa: F401 - BUILTIN_MODEL_DIR re-exported
from .nets.srnet import Bicubic, SRNet
from .options import DEFAULT_DEGRADATION, Normalization
from .request import UpscaleRequest

DeviceLike = str | torch.device | None

log = logging.getLogger(__name__)

BICUBIC = "bicubic"
#: Model files (named by path) an Engine keeps loaded; the least recently used goes first.
MODEL_FILE_CACHE_SIZE = 4


class Engine:
    """Model registry, shared networks and a default device.

    >>> engine = Engine(device="cpu")
    >>> engine.names()[0]
    'bicubic'
    >>> big = engine.upscale(np.zeros((8, 8), np.uint8), "bicubic", scale=2)
    >>> big.shape
    (16, 16)

    Registry entries are :class:`SRModel` objects (or model files, loaded on first use).
    Listeners added with :meth:`on_change` are called with no arguments whenever the set
    of models changes (from any thread: GUI listeners must marshal to their own thread).

    ``device`` is the default for calls that pass none; every call may choose its own
    (``engine.upscale(image, model, device="cuda")``) without changing it.
    """

    def __init__(self, device: str | torch.device = "auto", *, builtins: bool = True) -> None:
        self._device = resolve_device(device)
        self._lock = threading.RLock()  # guards _models and _default only
        self._models: dict[str, SRModel | Path] = {}
        self._listeners: list[Callable[[], None]] = []
        #: network -> {device: (weights stamp, copy on that device)}; entries go with the network
        self._copies: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[tuple, nn.Module]]] = (
            weakref.WeakKeyDictionary()
        )
        self._copies_lock = threading.Lock()
        #: model files named by path: (real path, mtime ns, size) -> the loaded model, most recent last
        self._files: OrderedDict[tuple[str, int, int, bool], SRModel] = OrderedDict()
        self._vgg_features: nn.Sequential | None = None  # loaded once, on the CPU
        self._vgg_load_lock = threading.Lock()  # one loader at a time; others wait for its result
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
        """The default device of calls that name none (not where the registered networks live)."""
        return self._device

    def set_device(self, device: str | torch.device) -> torch.device:
        """Change the *default* device (``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``).

        Nothing moves; calls already running keep their device.  Front ends with a device
        choice per widget should pass ``device=`` to each call instead of changing this.
        """
        self._device = resolve_device(device)
        return self._device

    def resolve(self, device: DeviceLike = None) -> torch.device:
        """``device`` as a ``torch.device``; ``None`` gives the engine's default."""
        return self._device if device is None else resolve_device(device)

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
                normalization=Normalization.parse(normalization).to_dict(),
                metadata=metadata or {},
                source=source,
            )
        elif not isinstance(model, SRModel):
            raise TypeError(f"register() needs an SRNet or SRModel, got {type(model).__name__}")
        name = name or model.name
        with self._lock:
            if not replace:
                name = self._unique(name)
            model.name = name
            self._models[name] = model
        self._notify()
        return name

    def unique_name(self, base: str) -> str:
        """``base`` when no model has that name, else the first free ``"base (2)"``, ``"base (3)"``...

        >>> engine = Engine(device="cpu", builtins=False)
        >>> engine.unique_name("bicubic"), engine.unique_name("mine")
        ('bicubic (2)', 'mine')
        """
        with self._lock:
            return self._unique(base)

    def _unique(self, name: str) -> str:
        k = 2
        candidate = name
        while candidate in self._models:
            candidate = f"{name} ({k})"
            k += 1
        return candidate

    def load(self, path: str | os.PathLike, name: str | None = None, *, trust_code: bool = False) -> str:
        """Load a model file (validated now) and register it; returns its name.

        ``trust_code``: consent to a model package running Python code it brings (a bioimage.io
        ``pytorch_state_dict`` architecture); without it such a package raises
        :class:`~napari_superres.engine.errors.UntrustedCodeError` (file name and SHA-256).
        """
        model = load_model_file(path, name=name, trust_code=trust_code)  # ours, or a registered format (.zip)
        return self.register(model, name or model.name, source=str(path))

    def remove(self, name: str) -> None:
        with self._lock:
            if name == BICUBIC:
                raise ValueError("the bicubic baseline cannot be removed")
            self._models.pop(name)
            if self._default == name:
                self._default = self.builtin_default() or BICUBIC
        self._notify()

    def get(self, model: str | os.PathLike | SRModel | nn.Module | None = None, *, trust_code: bool = False) -> SRModel:
        """Resolve a name, a model-file path, an ``SRNet``/``SRModel``/:class:`~.infer.predictor.Predictor` or ``None`` (the default).

        ``trust_code``: for a path, consent to the file running code it brings (see :meth:`load`).
        """
        if model is None:
            model = self._default
        if isinstance(model, SRModel | Predictor):  # ours, or a model bringing its own pipeline
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
        if isinstance(entry, Path):  # built-in file: loaded on first use, outside the lock
            loaded = load_model(entry, name=key)
            loaded.source = "builtin"
            with self._lock:  # another thread may have loaded it meanwhile: keep the first
                current = self._models.get(key)
                if current is entry:
                    self._models[key] = current = loaded
            entry = current
        if entry is not None:
            return entry
        if key.endswith(MODEL_SUFFIX) or os.path.exists(key):
            return self._model_file(key, trust_code)
        raise KeyError(f"no model named {key!r}; registered models: {self.names()} (or pass a .safetensors path)")

    def _model_file(self, path: str, trust_code: bool = False) -> SRModel:
        """The model in the file at ``path``, loaded once while the file stays the same (its real path,
        modification time and size): calls naming a file (a bioimage.io package takes seconds to
        open) do not reload it each time; a rewritten file is loaded again."""
        try:
            st = os.stat(path)
        except OSError:
            return load_model_file(path, trust_code=trust_code)  # its own clear error (missing file, ...)
        # consent is part of the key: a file loaded with it is not handed to a call without it
        key = (os.path.realpath(path), st.st_mtime_ns, st.st_size, trust_code)
        with self._lock:
            cached = self._files.get(key)
            if cached is not None:
                self._files.move_to_end(key)
                return cached
        loaded = load_model_file(path, trust_code=trust_code)  # outside the lock: may be slow
        with self._lock:
            loaded = self._files.setdefault(key, loaded)  # another thread's load wins if it came first
            while len(self._files) > MODEL_FILE_CACHE_SIZE:
                self._files.popitem(last=False)
        return loaded

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` whenever models are added or removed; returns a disconnect function."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _notify(self) -> None:
        for cb in list(self._listeners):
            cb()

    # --- per-device copies ----------------------------------------------------------------------
    def on(self, net: nn.Module, device: DeviceLike = None) -> nn.Module:
        """``net`` itself when it lives on ``device``, else its copy there (made once, never moving ``net``).

        A copy is refreshed when ``net``'s weights changed in place since it was made
        (e.g. a model still training); copies go away with ``net``.
        """
        dev = self.resolve(device)
        if on_device(net, dev):
            return net
        stamp = _weights_stamp(net)
        with self._copies_lock:
            cached = self._copies.get(net, {}).get(str(dev))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        log.debug("copying %s to %s (%s)", type(net).__name__, dev, "refresh" if cached else "first use")
        duplicate = copy_module_to(net, dev)  # outside any lock: may be a slow transfer
        with self._copies_lock:
            self._copies.setdefault(net, {})[str(dev)] = (stamp, duplicate)
        return duplicate

    # --- shared networks -----------------------------------------------------------------------
    def vgg_features(self, device: DeviceLike = None) -> nn.Sequential:
        """The frozen VGG-16 ``features`` (ImageNet weights) on ``device`` (default: the engine's).

        Loaded once per engine (on the CPU, under its own lock, never under the registry
        lock); other devices get a copy, so a CPU comparison and a CUDA training step
        never move each other's network.  Raises
        :class:`~napari_superres.engine.errors.VGGWeightsUnavailable` without the weights
        (and tries again on the next call).
        """
        from .nets.vgg import load_vgg16_features

        features = self._vgg_features
        if features is None:
            with self._vgg_load_lock:
                if self._vgg_features is None:
                    log.info("loading VGG-16 features (ImageNet weights) for this engine")
                    self._vgg_features = load_vgg16_features()
                features = self._vgg_features
        return self.on(features, device)  # type: ignore[return-value]

    def vgg(self, layers: Sequence[str] | None = None, device: DeviceLike = None) -> nn.Module:
        """A :class:`~napari_superres.engine.nets.vgg.VGGFeatures` for ``layers`` over the shared VGG on ``device``."""
        from .nets.vgg import DEFAULT_LAYERS, VGGFeatures

        dev = self.resolve(device)
        vgg = VGGFeatures(tuple(layers or DEFAULT_LAYERS), features=self.vgg_features(dev))
        vgg.mean, vgg.std = vgg.mean.to(dev), vgg.std.to(dev)  # its own buffers; the features are there already
        return vgg

    # --- inference -----------------------------------------------------------------------------
    def prepare(
        self,
        model: str | os.PathLike | SRModel | nn.Module | None = None,
        device: DeviceLike = None,
        *,
        trust_code: bool = False,
    ) -> SRModel:
        """Resolve ``model`` and return it ready to run on ``device`` (default: the engine's).

        The registered network is returned as it is when it lives on ``device``; otherwise
        the returned :class:`SRModel` holds a copy on ``device`` (see :meth:`on`).  Networks
        are run in eval mode.  ``trust_code``: see :meth:`load`.
        """
        resolved = self.get(model, trust_code=trust_code)
        net = self.on(resolved.net, device)
        if net is resolved.net:
            net.eval()  # (a mode switch, as inference has always done; the network stays where it is)
            return resolved
        return replace(resolved, net=net.eval())

    def plan(self, image: Any, request: UpscaleRequest) -> UpscaleJob:
        """Check ``request`` against ``image`` once, before any work (see :func:`~.infer.planning.plan`).

        ``request.model`` is resolved by this registry (names, paths, networks; ``None``: the
        default model) and ``request.device`` defaults to this engine's device.  Cheap enough for
        a GUI thread: the model file is loaded (once), nothing runs and nothing moves to a device.
        """
        return plan(image, request, self)

    def run(
        self,
        image: Any,
        job: UpscaleJob,
        *,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Execute a planned job on ``image`` (numpy; a dask array is read into memory first) and return the result.

        The job's network runs on the job's device (a copy made once when it lives elsewhere, see
        :meth:`on`); a conditioned model's degradation is estimated unless the job already holds it
        (:func:`~.infer.pipeline.job_condition`).  Out of memory raises a ``MemoryError`` naming
        smaller tiles, batches or the lazy path.
        """
        if not job.model.own_pipeline:
            job = replace(job, model=self.prepare(job.model, job.device))  # (conditions: the same dict)
        image = np.asarray(image)
        try:
            return run(image, job, progress=progress, should_stop=should_stop)
        except (MemoryError, RuntimeError) as e:
            if not is_out_of_memory(e):
                raise
            out_mb = int(np.prod(job.out_shape, dtype=np.int64)) * job.out_dtype.itemsize / 2**20
            raise out_of_memory_error(
                e,
                f"the output alone is {out_mb:,.0f} MB; pass a smaller tile (now {job.tile}) or batch_size "
                f"(now {job.batch_size}), upscale a smaller image or fewer planes at a time, or pass a dask "
                "array to upscale lazily",
            ) from e

    def run_lazy(self, image: Any, job: UpscaleJob, *, value_range: Any = None) -> Any:
        """A planned job on a dask array: a dask array, each chunk upscaled when computed
        (:func:`~.infer.lazy.upscale_dask`); ``value_range``: the normalisation's ``(lo, hi)`` when known."""
        from .infer.lazy import upscale_dask

        if not job.model.own_pipeline:  # the engine's copy on the job's device, as run() uses (never moved)
            job = replace(job, model=self.prepare(job.model, job.device))
        return upscale_dask(image, job, value_range=value_range)

    def upscale(
        self,
        image: Any,
        model: str | os.PathLike | SRModel | nn.Module | None = None,
        *,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
        **options: Any,
    ) -> Any:
        """See :func:`napari_superres.upscale`; ``device`` defaults to the engine's.

        ``options``: the fields of :class:`~napari_superres.engine.request.UpscaleRequest`
        (``scale``, ``axes``, ``rgb``, ``tile``, ``batch_size``, ``device``, ``normalization``,
        ``output_dtype``, ``backend``, ``precision``, ``degradation``, ``trust_code``).  The same as
        ``engine.run(image, engine.plan(image, UpscaleRequest(model=model, **options)))`` (or
        :meth:`run_lazy` for a dask array).
        """
        job = self.plan(image, UpscaleRequest.from_kwargs(model=model, **options))
        if _is_dask(image) and not job.model.own_pipeline:  # a package's own pipeline reads it into memory
            return self.run_lazy(image, job)
        return self.run(image, job, progress=progress, should_stop=should_stop)

    def estimate_degradation(
        self,
        image: Any,
        model: str | os.PathLike | SRModel | nn.Module | None = None,
        *,
        axes: str | None = None,
        rgb: bool | None = None,
        normalization: str | dict[str, Any] | None = None,
        degradation: Any = DEFAULT_DEGRADATION,
    ) -> DegradationCondition | None:
        """What :meth:`upscale` would tell a conditioned ``model`` about ``image`` (its blur and noise,
        estimated once, with ``degradation``'s overrides; an estimated blur after the check of
        :mod:`~napari_superres.engine.infer.blur_check`, which tells an x2 model that under-sharpens at the
        estimate more blur; an adapted model the blur it was adapted with, unless ``degradation`` states one:
        :func:`~napari_superres.engine.infer.blur_check.adapted_condition`); ``None`` for a blind model.  Pass the
        result as ``upscale(..., degradation=result)`` to upscale with exactly it."""
        request = UpscaleRequest(
            model=model, axes=axes, rgb=rgb, normalization=normalization, degradation=degradation, device="cpu",
            backend="torch",
        )  # fmt: skip
        resolved = self.get(model)
        if not resolved.cond_channels:
            return None
        job = self.plan(image, request)
        if _is_dask(image):  # the middle plane's centre, with the whole array's intensity range
            from .infer.lazy import dask_conditions, global_value_ranges

            ranges = global_value_ranges(image, job.normalization, job.axes.channel)
            _, gain, offset, blur = dask_conditions(image, job, ranges)[0]
            return DegradationCondition(gain, offset, blur)
        return job_condition(np.asarray(image), job)


def _is_dask(image: Any) -> bool:
    return type(image).__module__.startswith("dask")


def _weights_stamp(net: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer of ``net`` is replaced or modified in place."""
    return tuple((t.data_ptr(), t._version) for t in (*net.parameters(), *net.buffers()))


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
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    engine: Engine | None = None,
    **options: Any,
) -> Any:
    """Upscale an image with a super-resolution model.

    The keyword options (``scale`` ... ``precision``) are the fields of
    :class:`~napari_superres.engine.request.UpscaleRequest`: an unknown one raises
    :class:`~napari_superres.engine.errors.InvalidRequestError` naming the known ones, and the
    whole request is checked against the image and the model before any work
    (``engine.plan(image, request)``, then ``engine.run(image, job)``).

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
    should_stop : checked between tile batches (and inside ONNX Runtime's run of a tile); returning
        True raises :class:`~napari_superres.engine.infer.tiling.Cancelled`.  With it and the
        automatic tile, CPU tiles take about ``TILE_SECONDS`` (1 s) of measured compute each, so
        a stop is answered within about a second at any image size.
    backend : what runs the network: ``"auto"`` (default: ONNX Runtime on the CPU when the
        ``onnx`` extra is installed and the network exports, else torch), ``"torch"`` or
        ``"onnxruntime"``.  Same values either way (within float rounding).
    degradation : what a conditioned model (the built-ins) is told about the image's blur and noise:
        ``"auto"`` (default: estimated once per image, see :meth:`Engine.estimate_degradation`),
        ``"clean"``, a dict overriding some of the estimate (``{"blur_sigma": 1.2}`` in low-res px,
        ``{"peak_photons": 500}``, ``"read_noise"``), a ``DegradationCondition`` or a training
        ``DegradationConfig``; see :mod:`napari_superres.engine.infer.conditioning`.
    trust_code : allow a model package named by path to run Python code it brings (a
        bioimage.io package whose only weights are ``pytorch_state_dict`` with an architecture
        file); without it such a package raises
        :class:`~napari_superres.engine.errors.UntrustedCodeError`.  Only for files you trust.
    precision : CPU arithmetic of the network: ``"fp32"`` (default), ``"bf16"`` (oneDNN, CPUs
        with AVX-512 BF16 or AMX), ``"int8"`` (ONNX Runtime static quantization, CPUs with
        VNNI; the quantized graph is cached on disk) or ``"auto"``: the fastest whose loss
        against fp32, measured offline on held-out images for this model
        (``benchmarks/precision.py``), is within 0.05 dB and this CPU runs, else fp32.
        An explicit ``"bf16"``/``"int8"`` that cannot run here raises ``ValueError``.
    self_ensemble : average the network over the eight flips and quarter turns of each tile
        (EDSR+'s "x8" self-ensemble): eight times the compute and the same memory, for about
        +0.1 dB on noisy microscopy (see :mod:`napari_superres.engine.infer.ensemble`).

    Returns
    -------
    ``numpy.ndarray`` with Y and X multiplied by ``scale``, other axes unchanged.
    """
    engine = engine or default_engine()
    return engine.upscale(image, model, progress=progress, should_stop=should_stop, **options)
