"""The one validation of an upscaling request: :func:`plan` turns an image, an
:class:`~napari_superres.engine.request.UpscaleRequest` and a model (or the engine that
resolves it) into an :class:`~napari_superres.engine.infer.job.UpscaleJob`, before any work.

Every front end calls it once: ``napari_superres.upscale`` and ``Engine.upscale`` (through
``Engine.plan``), the Upscale widget (on the GUI thread, before its worker starts), the
command line, :func:`~napari_superres.engine.infer.lazy.upscale_dask` (for the whole array;
each chunk then sizes its own tiles with :func:`plan_upscale`) and bioimage.io packages.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import torch

from ..device import resolve_device
from ..errors import InvalidRequestError
from ..layout import parse_axes
from ..normalization import check_normalization
from ..options import BACKENDS, Normalization, reconcile_scale
from ..request import UpscaleRequest
from .conditioning import DegradationRequest
from .job import UpscaleJob
from .onnx_backend import onnxruntime_available
from .precision import resolve_precision
from .predictor import Predictor
from .tiling import MIN_TILE, choose_batch, choose_tile

#: ``$NAPARI_SUPERRES_COMPILE=1``: run networks through ``torch.compile`` unless a request says otherwise.
COMPILE_ENV = "NAPARI_SUPERRES_COMPILE"
#: ``$NAPARI_SUPERRES_BACKEND``: the backend of requests that name none.
BACKEND_ENV = "NAPARI_SUPERRES_BACKEND"


class ModelSource(Protocol):
    """What :func:`plan` needs of an engine: a model resolver and a default device (``Engine`` is one)."""

    def get(self, model: Any = None, *, trust_code: bool = False) -> Predictor: ...

    def resolve(self, device: Any = None) -> torch.device: ...


def check_image(image: Any) -> None:
    """Raise ``ValueError`` for arrays no model can upscale (empty, 1 px, complex, object)."""
    shape = tuple(getattr(image, "shape", ()))
    dtype = np.dtype(getattr(image, "dtype", object))
    if len(shape) < 2:
        raise InvalidRequestError(f"an image needs at least 2 dimensions (Y, X), got shape {shape}")
    if dtype.kind not in "uifb":
        raise InvalidRequestError(f"cannot upscale an image of dtype {dtype}; use an integer or float image")
    if 0 in shape:
        raise InvalidRequestError(f"the image is empty (shape {shape})")


def plan(image: Any, request: UpscaleRequest, source: ModelSource | Predictor) -> UpscaleJob:
    """Check ``request`` against ``image`` (numpy or dask: only its shape and dtype are read) and a model.

    ``source``: an engine (``request.model`` is resolved by its registry, ``request.device``
    defaults to the engine's) or the model itself (``request.model`` is then ignored;
    ``request.device`` defaults to ``"auto"``).  Raises :class:`InvalidRequestError` (a
    ``ValueError``) naming the fix, ``KeyError`` for an unknown model name, or
    :class:`~napari_superres.engine.errors.DeviceUnavailableError`; nothing has run yet.
    The model is not moved to the device here (the runner does that).

    ``tile``/``batch_size`` default to what the device's memory allows for this model
    (:func:`~napari_superres.engine.infer.tiling.choose_tile`); ``compile`` defaults to
    ``$NAPARI_SUPERRES_COMPILE == "1"``, ``backend`` to ``$NAPARI_SUPERRES_BACKEND`` or
    ``"auto"`` (see :func:`resolve_backend`), ``precision`` to fp32
    (:func:`~napari_superres.engine.infer.precision.resolve_precision`); ``degradation`` is
    parsed here and estimated when the job runs (:func:`~napari_superres.engine.infer.pipeline.job_condition`).
    """
    if isinstance(source, Predictor):
        model, device = source, resolve_device(request.device)
    else:
        model, device = source.get(request.model, trust_code=request.trust_code), source.resolve(request.device)
    check_image(image)
    info = parse_axes(tuple(image.shape), request.axes, request.rgb)
    h, w = image.shape[info.y], image.shape[info.x]
    if h < 2 or w < 2:
        raise InvalidRequestError(f"the image is too small to upscale: {h}x{w} px in Y, X (needs at least 2x2)")
    scale = reconcile_scale(request.scale, model.scale, model.name)
    if model.scale is None and getattr(model.net, "scale", scale) != scale:
        model = replace(model, net=type(model.net)(scale))  # the bicubic baseline, at the asked scale
    if model.in_channels not in (None, 1):
        n_rgb = image.shape[info.rgb] if info.rgb is not None else 1
        if info.rgb is None or n_rgb < model.in_channels:
            raise InvalidRequestError(
                f"model {model.name!r} expects {model.in_channels}-channel (RGB) images but the image has "
                f"{n_rgb} channel(s) per pixel; choose a 1-channel model for grayscale or multichannel data"
            )
    out_shape = list(image.shape)
    out_shape[info.y] *= scale
    out_shape[info.x] *= scale
    job = UpscaleJob(
        model=model, scale=scale, axes=info, in_shape=tuple(image.shape), out_shape=tuple(out_shape),
        out_dtype=np.dtype(image.dtype) if request.output_dtype is None else request.output_dtype, tile=request.tile or 0, device=device,
        batch_size=1, normalization=dict(model.normalization), degradation=DegradationRequest.parse(request.degradation),
        auto_tile=request.tile is None, request=request,
    )  # fmt: skip
    if model.own_pipeline:
        return _own_pipeline_job(job)
    return _tiled_job(job, image)


def _own_pipeline_job(job: UpscaleJob) -> UpscaleJob:
    """A model that normalises and tiles each plane itself (a bioimage.io package): float32 out by default."""
    request, model = job.request, job.model
    if request.normalization is not None:
        raise InvalidRequestError(
            f"model {model.name!r} is a bioimage.io package that normalises its input itself; leave normalization unset"
        )
    if request.self_ensemble:
        raise InvalidRequestError(
            f"model {model.name!r} is a bioimage.io package that tiles its input itself, so the engine cannot "
            "average it over flips and turns; leave self_ensemble off"
        )
    if request.output_dtype is None:
        job.out_dtype = np.dtype(np.float32)  # the package's output units, not the input's dtype
    return job


def _tiled_job(job: UpscaleJob, image: Any) -> UpscaleJob:
    """The engine's tiled pipeline: tile, batch, backend, precision and normalisation chosen."""
    request, model, device = job.request, job.model, job.device
    h, w = image.shape[job.axes.y], image.shape[job.axes.x]
    width = model_width(model.net)
    tile = request.tile or choose_tile(h, w, device, model_width=width, scale=job.scale)
    halo = model.receptive_field
    job.tile = max(int(tile), 2 * (2 * halo + max(2, halo // 2)), MIN_TILE)
    batch_size = request.batch_size
    if batch_size is None:
        batch_size = choose_batch(min(job.tile, max(h, w)), device, model_width=width, scale=job.scale)
    job.batch_size = max(1, int(batch_size))
    compile = request.compile if request.compile is not None else os.environ.get(COMPILE_ENV, "") == "1"
    job.compile = bool(compile)
    job.backend, job.backend_required = resolve_backend(request.backend, model, device, compile=job.compile)
    job.precision = resolve_precision(request.precision, device, model)
    job.self_ensemble = request.self_ensemble
    normalization = request.normalization or Normalization.parse(model.normalization)
    job.normalization = check_normalization(normalization.to_dict())
    return job


def plan_upscale(image: Any, model: Any, *, device: torch.device | str | None = None, **options: Any) -> UpscaleJob:
    """:func:`plan` for a model at hand: ``plan(image, UpscaleRequest.from_kwargs(device=device, **options), model)``.

    ``options``: the keywords of :class:`~napari_superres.engine.request.UpscaleRequest`
    (``scale``, ``axes``, ``tile``, ``normalization``, ``backend``, ``precision``...).
    """
    return plan(image, UpscaleRequest.from_kwargs(device=device, **options), model)


def resolve_backend(
    backend: str | None, model: Any, device: torch.device, *, compile: bool = False
) -> tuple[str, bool]:
    """``(backend, required)``: what runs ``model``'s network on ``device``.

    ``"auto"`` picks ONNX Runtime on the CPU when it is installed (the ``onnx`` extra) and
    the network has weights (measured ~2x faster than eager torch there, same values;
    ``benchmarks/candidates.py``), torch otherwise (GPUs, ``compile=True``, bicubic); a
    network that fails to export falls back to torch.  ``"onnxruntime"`` insists: a
    ``ValueError`` names the fix when it cannot run.
    """
    name = (backend or os.environ.get(BACKEND_ENV) or "auto").lower()
    if name not in BACKENDS:
        raise InvalidRequestError(f"backend must be one of {BACKENDS}, got {backend!r}")
    has_weights = next(iter(model.net.parameters()), None) is not None
    if name == "onnxruntime":
        if device.type != "cpu":
            raise InvalidRequestError(
                f"backend 'onnxruntime' runs on the CPU; use device='cpu' or backend='torch' on {device}"
            )
        if not onnxruntime_available():
            raise InvalidRequestError(
                "backend 'onnxruntime' needs the onnxruntime and onnx packages: "
                "pip install 'napari-superres[onnx]', or use backend='torch'"
            )
        return ("onnxruntime", True) if has_weights else ("torch", False)
    if name == "auto" and device.type == "cpu" and has_weights and not compile and onnxruntime_available():
        return "onnxruntime", False
    return "torch", name == "torch"


def model_width(net: torch.nn.Module) -> int:
    """The widest feature map (channels) of ``net``: what sizes its activations (1 for bicubic)."""
    config = getattr(net, "config", None)
    if config is not None and hasattr(config, "channels"):
        return int(max(config.channels, *(config.upsample_channels or (config.channels,))))
    widths = [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    return int(max(widths, default=1))


__all__ = ["ModelSource", "check_image", "model_width", "plan", "plan_upscale", "resolve_backend"]
