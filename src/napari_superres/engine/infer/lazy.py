"""Lazy (dask) upscaling: every chunk is upscaled on its own, with a halo, when computed.

:func:`upscale_dask` returns a dask array at once; nothing runs until it (or a part
of it, e.g. the plane napari displays) is computed.  Per chunk:

1. the chunk is read together with a halo of ``receptive_field`` input pixels from its
   neighbours in Y and X (none along the other axes: planes are independent),
2. :func:`~napari_superres.engine.infer.planning.plan_upscale` /
   :func:`~napari_superres.engine.infer.pipeline.run_upscale` upscale it (tiled within the chunk),
   normalised with the intensity range of the *whole* array,
3. the halo's ``receptive_field * scale`` output pixels are cut away again on every side
   that has a neighbour, so the output chunks are the input chunks times ``scale`` in Y/X.

Hence the result equals the in-memory ``upscale(np.asarray(x))`` up to float rounding,
including across chunk borders.

Intensity range: integer images in ``"dtype"`` mode need no pass over the data.  Float
images (min/max) and ``"percentile"`` normalisation read the whole array ONCE, up front
in :func:`upscale_dask` (a dask compute of a strided subsample, the same one the
in-memory path uses: all chunks are read, one at a time, and only ~4 M values are
kept).  For a large array on slow storage that doubles the reading; pass
``value_range=(lo, hi)`` when it is known to skip it.

The task graph is picklable, so it runs on a ``dask.distributed`` cluster: the model
travels once per worker as safetensors bytes + JSON config (one graph key that every
chunk task depends on), and each worker process keeps the rebuilt network in a cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..device import copy_module_to, on_device, resolve_device
from ..errors import InvalidRequestError
from ..nets.conditioning import DegradationCondition
from ..nets.model_file import SRModel
from ..nets.srnet import Bicubic, SRNet, SRNetConfig
from ..normalization import _PERCENTILE_SAMPLE, Normalization, content_grid, intensity_range, range_needs_data
from ..request import UpscaleRequest
from .conditioning import DegradationRequest
from .job import UpscaleJob
from .pipeline import condition_for, run_upscale
from .planning import plan, plan_upscale
from .predictor import Predictor

if TYPE_CHECKING:  # pragma: no cover
    import dask.array as da

    from ..layout import AxesInfo

#: How many rebuilt networks a worker process keeps (keyed by weights digest and device).
_WORKER_CACHE_SIZE = 4
_worker_cache: OrderedDict[tuple[str, str], SRModel] = OrderedDict()
_worker_lock = threading.Lock()
#: One chunk at a time on a GPU per process: each chunk sizes its tiles and batches from the
#: free device memory, so concurrent chunks would overcommit it.  Other threads meanwhile
#: read inputs and write outputs, and within a chunk host work overlaps device work.
_gpu_locks: dict[str, threading.Lock] = {}


class ModelPayload:
    """A picklable handle on an :class:`SRModel` for dask tasks.

    In the process that built the graph it holds the model as given; a chunk that runs
    on another device gets a copy of the network made once per device (the given
    network is never moved).  Pickled (for ``dask.distributed`` workers) it carries the network as
    safetensors bytes + its JSON config (the bicubic baseline as just its scale; other
    ``nn.Module`` networks are pickled as they are); :meth:`model` rebuilds it once per
    worker process and device and caches it.
    """

    def __init__(self, model: SRModel, device: str | torch.device) -> None:
        self._model: SRModel | None = model
        #: a name ("auto": each worker picks its own) or a torch.device, resolved where the chunk runs
        self.device: str | torch.device = device if isinstance(device, torch.device) else str(device)
        self._state: dict[str, Any] | None = None
        self._copies: dict[str, SRModel] = {}  # in the building process: the model on other devices
        self._copies_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # the model travels as bytes; copies stay behind
        if self._state is None:
            self._state = _serialise_model(self._model)  # type: ignore[arg-type]
        return {"device": self.device, "state": self._state}

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.device = d["device"]
        self._state = d["state"]
        self._model = None

    @property
    def token(self) -> str:
        if self._state is None:
            self._state = _serialise_model(self._model)  # type: ignore[arg-type]
        return self._state["token"]

    def model(self) -> SRModel:
        """The model on this process's device (rebuilt and cached once per worker process)."""
        device = resolve_device(self.device)
        if self._model is not None:
            if on_device(self._model.net, device):
                return self._model
            with self._copies_lock:
                copy = self._copies.get(str(device))
                if copy is None:
                    copy = self._copies[str(device)] = replace(self._model, net=copy_module_to(self._model.net, device))
            return copy
        assert self._state is not None
        key = (self._state["token"], str(device))
        with _worker_lock:
            model = _worker_cache.get(key)
            if model is None:
                model = _deserialise_model(self._state)
                model.net.to(device).eval()
                _worker_cache[key] = model
                while len(_worker_cache) > _WORKER_CACHE_SIZE:
                    _worker_cache.popitem(last=False)
            else:
                _worker_cache.move_to_end(key)
        return model


def _serialise_model(model: SRModel) -> dict[str, Any]:
    """Everything needed to rebuild ``model`` elsewhere, without pickling torch objects when possible."""
    meta = {
        "name": model.name,
        "scale": model.scale,
        "in_channels": model.in_channels,
        "normalization": dict(model.normalization),
        "source": model.source,
    }
    net = model.net
    if isinstance(net, Bicubic):
        state: dict[str, Any] = {"kind": "bicubic", "net_scale": int(net.scale)}
        blob = json.dumps(state).encode()
    elif isinstance(net, SRNet):
        from safetensors.torch import save

        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
        blob = save(tensors)
        state = {"kind": "srnet", "config": json.dumps(net.config.to_dict()), "weights": blob}
    else:  # a custom nn.Module: sent as the object itself (dask pickles it; never read from a file)
        blob = uuid.uuid4().bytes  # no stable digest of arbitrary code: cache it per graph
        state = {"kind": "module", "module": net}
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode())
    digest.update(blob)
    return {**state, "meta": meta, "token": digest.hexdigest()}


def _deserialise_model(state: dict[str, Any]) -> SRModel:
    meta = state["meta"]
    if state["kind"] == "bicubic":
        net: torch.nn.Module = Bicubic(state["net_scale"])
    elif state["kind"] == "srnet":
        from safetensors.torch import load

        net = SRNet(SRNetConfig.from_dict(json.loads(state["config"])))
        net.load_state_dict(load(state["weights"]), strict=True)
    else:
        net = state["module"]
    return SRModel(
        name=meta["name"],
        net=net,
        scale=meta["scale"],
        in_channels=meta["in_channels"],
        normalization=meta["normalization"],
        source=meta["source"],
    )


@dataclass(frozen=True)
class _BlockSpec:
    """What every chunk task needs besides its block and the model (small, picklable)."""

    axes: str | None
    rgb: bool
    scale: int
    halo: int
    tile: int | None
    batch_size: int | None
    normalization: dict[str, Any]
    out_dtype: str
    ranges: tuple[tuple[int, float, float], ...]  # (channel index or -1, lo, hi)
    backend: str | None = None
    #: degradation conditions of a conditioned network, estimated once for the whole array:
    #: (channel index or -1, noise_gain, noise_offset, blur_sigma)
    conditions: tuple[tuple[int, float, float, float], ...] = ()
    precision: str = "fp32"
    self_ensemble: bool = False


def _upscale_block(block: np.ndarray, *, payload: ModelPayload, spec: _BlockSpec, block_info=None) -> np.ndarray:
    """Upscale one overlapped block and cut its halo off the sides that have a neighbour."""
    info = block_info[0]
    where, count = info["chunk-location"], info["num-chunks"]
    model = payload.model()
    device = resolve_device(payload.device)
    with _device_lock(device):
        job = plan_upscale(
            block, model, scale=spec.scale, axes=spec.axes, rgb=spec.rgb, tile=spec.tile, device=device,
            batch_size=spec.batch_size, normalization=spec.normalization, output_dtype=np.dtype(spec.out_dtype),
            backend=spec.backend, precision=spec.precision, self_ensemble=spec.self_ensemble,
        )  # fmt: skip
        ranges: dict[int, tuple[float, float]] = {c: (lo, hi) for c, lo, hi in spec.ranges}
        c_axis = job.axes.channel
        if c_axis is not None:  # channel indices of this block, relative to its first one
            first = info["array-location"][c_axis][0]
            ranges = {c - first: r for c, r in ranges.items() if first <= c < first + block.shape[c_axis]}
        conditions = {c: DegradationCondition(g, o, b) for c, g, o, b in spec.conditions}
        if c_axis is not None:
            conditions = {c - first: v for c, v in conditions.items() if first <= c < first + block.shape[c_axis]}
        job.conditions.update(conditions)  # the whole array's estimate, not this block's
        out = run_upscale(block, job, value_range=ranges[-1] if -1 in ranges else ranges)
    trim = [slice(None)] * out.ndim
    cut = spec.halo * spec.scale
    for ax in (job.axes.y, job.axes.x):
        start = cut if where[ax] > 0 else 0
        stop = out.shape[ax] - cut if where[ax] < count[ax] - 1 else out.shape[ax]
        trim[ax] = slice(start, stop)
    return out[tuple(trim)]


def _device_lock(device: torch.device) -> Any:
    """The process-wide lock of a GPU (see ``_gpu_locks``); a no-op context on the CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    with _worker_lock:
        return _gpu_locks.setdefault(str(device), threading.Lock())


def dask_conditions(
    image: da.Array, job: UpscaleJob, ranges: dict[int, tuple[float, float]]
) -> tuple[tuple[int, float, float, float], ...]:
    """A conditioned network's condition per channel (or -1), estimated once for the whole array as
    :func:`~napari_superres.engine.infer.pipeline.run_upscale` estimates it (the same planes, centre
    crops read alone); ``()`` for a blind network."""
    if not job.model.cond_channels:
        return ()
    in_view = image.transpose(job.axes.order)
    conditions = {key: condition_for(key, job, in_view, lo, hi) for key, (lo, hi) in sorted(ranges.items())}
    return tuple((key, c.noise_gain, c.noise_offset, c.blur_sigma) for key, c in conditions.items())


def with_one_condition(
    image: da.Array, job: UpscaleJob, ranges: dict[int, tuple[float, float]]
) -> tuple[UpscaleJob, DegradationCondition | None]:
    """``(job, condition)``: a conditioned network's condition estimated once (the image's, or its first
    channel's along C, as ``Engine.estimate_degradation`` gives it) and fixed in the job for every chunk and
    channel; ``(job, None)`` for a blind network or a job whose degradation is fixed already.
    ``ranges``: :func:`global_value_ranges` of the image."""
    if not job.model.cond_channels:
        return job, None
    key = min(ranges)
    condition = condition_for(key, job, image.transpose(job.axes.order), *ranges[key])
    return replace(job, degradation=DegradationRequest.parse(condition)), condition


def global_value_ranges(
    image: da.Array, normalization: dict[str, Any], channel_axis: int | None
) -> dict[int, tuple[float, float]]:
    """Intensity ``(lo, hi)`` of a dask array, computed once: ``{-1: range}`` or ``{c: range}`` per channel.

    Integer images in ``"dtype"`` mode (and bool images) read no data.  Otherwise the
    same strided subsample as :func:`~napari_superres.engine.normalization.intensity_range`
    takes in memory is gathered with one dask compute (every chunk read once).
    """
    if channel_axis is None:
        return {-1: _dask_intensity_range(image, normalization)}
    ranges = {}
    for c in range(image.shape[channel_axis]):
        sel = [slice(None)] * image.ndim
        sel[channel_axis] = c
        ranges[c] = _dask_intensity_range(image[tuple(sel)], normalization)
    return ranges


def _dask_intensity_range(image: da.Array, spec: dict[str, Any]) -> tuple[float, float]:
    if not range_needs_data(image.dtype, spec):
        return intensity_range(image, spec)  # from the dtype alone
    n = int(math.prod(image.shape))
    flat = image.reshape(-1)
    if n > _PERCENTILE_SAMPLE:
        flat = flat[:: int(math.ceil(n / _PERCENTILE_SAMPLE))]
    # a sparse field's content share is read on a few strided planes, as in memory (content_grid)
    content = content_grid(image) if Normalization.parse(spec).mode == "percentile" else None
    return intensity_range(np.asarray(flat.compute()), spec, content=content)


def _rechunk_for_halo(image: da.Array, info: AxesInfo, halo: int) -> da.Array:
    """``image`` rechunked (only where needed) so that RGB samples share one chunk and no Y/X chunk is
    narrower than ``halo`` px (the overlap a chunk borrows from its neighbours)."""
    from dask.array.overlap import ensure_minimum_chunksize

    new_chunks: dict[int, Any] = {}
    if info.rgb is not None and len(image.chunks[info.rgb]) > 1:
        new_chunks[info.rgb] = -1
    for ax in (info.y, info.x):
        size = image.shape[ax]
        if size <= halo:
            new_chunks[ax] = -1
        elif min(image.chunks[ax]) < halo:
            new_chunks[ax] = ensure_minimum_chunksize(halo, image.chunks[ax])
    return image.rechunk(new_chunks) if new_chunks else image


def _known_or_global_ranges(
    image: da.Array,
    value_range: tuple[float, float] | dict[int, tuple[float, float]] | None,
    normalization: dict[str, Any],
    channel: int | None,
) -> dict[int, tuple[float, float]]:
    """The normalisation ranges ``{channel or -1: (lo, hi)}``: ``value_range`` when given, else computed
    once over the whole array (:func:`global_value_ranges`)."""
    if value_range is None:
        return global_value_ranges(image, normalization, channel)
    elif isinstance(value_range, dict):
        return {int(k): (float(v[0]), float(v[1])) for k, v in value_range.items()}
    else:
        return {-1: (float(value_range[0]), float(value_range[1]))}


def upscale_dask(
    image: da.Array,
    model: UpscaleJob | UpscaleRequest | SRModel,
    *,
    value_range: tuple[float, float] | dict[int, tuple[float, float]] | None = None,
    **options: Any,
) -> da.Array:
    """Lazily upscale a dask array chunk by chunk; returns a dask array (nothing computed yet).

    model : an :class:`~napari_superres.engine.infer.job.UpscaleJob` planned for ``image``
        (``Engine.plan(image, request)``: no ``options`` then), or a model (``SRModel``) with
        ``options`` (the keywords of :func:`napari_superres.upscale`: ``scale``, ``axes``,
        ``tile``, ``device``...), or an :class:`~napari_superres.engine.request.UpscaleRequest`
        whose ``model`` is an ``SRModel``.  Everything is checked here, before any chunk runs.
    value_range : the normalisation's ``(lo, hi)`` (or ``{channel: (lo, hi)}`` along a C
        axis) when known; otherwise computed here, once, for the whole array (a pass over
        the data for float images and ``"percentile"`` mode; none for integer images in
        ``"dtype"`` mode).

    ``device``: where chunk tasks run the network (default ``"auto"``; on a distributed
    cluster ``"auto"`` lets every worker pick its own GPU or CPU); the model is never moved: a
    chunk on another device than the model's uses a copy.  ``backend``: checked here, resolved
    in each chunk task.  ``degradation``: a conditioned network's estimate is made here, once,
    on the middle plane of the array (per channel along C), so every chunk gets the same (kept
    in the job's ``conditions``).  ``precision``: resolved here, once, for every chunk.

    Returns
    -------
    dask array with Y and X multiplied by the scale, other axes unchanged, dtype the
    input's (or ``output_dtype``).  Output chunks are the input chunks (RGB axis merged
    into one chunk; Y/X chunks smaller than the receptive field merged with a neighbour)
    times the scale in Y and X.
    """
    import dask
    import dask.array as da
    from dask.array.overlap import overlap

    job = _job_for(image, model, options)
    request = job.request
    info = job.axes
    halo = max(job.model.receptive_field, 2)  # at least the bicubic chroma/alpha kernel

    image = _rechunk_for_halo(image, info, halo)
    ranges = _known_or_global_ranges(image, value_range, job.normalization, info.channel)

    spec = _BlockSpec(
        axes=request.axes.upper() if request.axes else None,
        rgb=info.rgb is not None,
        scale=job.scale,
        halo=halo,
        tile=request.tile,
        batch_size=request.batch_size,
        normalization=dict(job.normalization),
        out_dtype=job.out_dtype.str,
        ranges=tuple((c, lo, hi) for c, (lo, hi) in sorted(ranges.items())),
        backend=request.backend,
        conditions=dask_conditions(image, job, ranges),
        precision=job.precision,
        self_ensemble=job.self_ensemble,
    )
    out_chunks = tuple(
        tuple(c * job.scale for c in chunks) if ax in (info.y, info.x) else chunks
        for ax, chunks in enumerate(image.chunks)
    )
    depth = {ax: (halo if ax in (info.y, info.x) and len(image.chunks[ax]) > 1 else 0) for ax in range(image.ndim)}
    padded = overlap(image, depth=depth, boundary=dict.fromkeys(range(image.ndim), "none"), allow_rechunk=False)
    payload = ModelPayload(job.model, request.device if request.device is not None else job.device)
    token = uuid.uuid4().hex  # a new graph per call: models may be retrained in place between calls
    return da.map_blocks(
        _upscale_block,
        padded,
        payload=dask.delayed(payload, pure=True, name=f"superres-model-{token}"),
        spec=spec,
        chunks=out_chunks,
        dtype=job.out_dtype,
        meta=np.empty((0,) * image.ndim, dtype=job.out_dtype),
        name=f"superres-upscale-{token}",
    )


def _job_for(image: da.Array, model: UpscaleJob | UpscaleRequest | SRModel, options: dict[str, Any]) -> UpscaleJob:
    """The job :func:`upscale_dask` streams: ``model`` itself, or planned here from a request or a model."""
    if isinstance(model, UpscaleJob):
        if options:
            raise InvalidRequestError(
                f"upscale_dask(image, job) takes no options (the job has them), got {sorted(options)}"
            )
        job = model
    elif isinstance(model, UpscaleRequest):
        if not isinstance(model.model, Predictor):
            raise InvalidRequestError(
                f"the request's model {model.model!r} is not resolved: plan it with Engine.plan(image, request) "
                "and pass the job"
            )
        job = plan(image, model.replace(**options), model.model)
    else:
        job = plan(image, UpscaleRequest.from_kwargs(**options), model)
    if job.in_shape != tuple(image.shape):
        raise InvalidRequestError(f"the job was planned for shape {job.in_shape}, not {tuple(image.shape)}")
    if job.model.own_pipeline:
        raise InvalidRequestError(
            f"model {job.model.name!r} runs through its own pipeline (a bioimage.io package): it cannot be streamed "
            "chunk by chunk; upscale it in memory (upscale(image, model=...) in Python, or the napari Upscale widget)"
        )
    return job
