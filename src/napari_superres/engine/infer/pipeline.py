"""Upscale numpy images of any layout with an :class:`SRModel`.

The pipeline per image: parse axes -> intensity range once per image (or channel) ->
for every plane: normalise, (RGB: split luminance/chroma), tiled network pass,
inverse normalisation into a pre-allocated output of the input's dtype.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..device import autocast
from ..errors import NonFiniteOutputError
from ..nets.conditioning import CLEAN, ESTIMATE_CROP, DegradationCondition, with_condition
from ..nets.model_file import SRModel
from ..normalization import (
    FLOAT32_SAFE_RANGE,
    NETWORK_INPUT_RANGE,
    denormalize,
    intensity_range,
    needs_float64,
    normalize,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)
from .blur_check import (
    CHECK_SCALES,
    adapted_condition,
    checked_condition,
    recorded_max_blur,
    recorded_target_blur,
    within_trained_blur,
)
from .ensemble import DIHEDRAL, self_ensemble
from .job import ProgressCallback, UpscaleJob
from .onnx_backend import OnnxRunner, onnx_failure, onnx_runner
from .planning import check_image, model_width, plan, plan_upscale, resolve_backend  # noqa: F401 - re-exported
from .precision import bf16_forward, int8_runner, int8_tuning
from .tiling import (
    PROBE_TILE,
    THROUGHPUT,
    Cancelled,
    count_tiles,
    plan_overlap,
    tiled_forward,
    tiled_map,
    timed_tile,
)

#: torch.compile'd networks, compiled once per network
_compiled: weakref.WeakKeyDictionary[torch.nn.Module, Callable[..., torch.Tensor]] = weakref.WeakKeyDictionary()


class _Runner:
    """Runs a job's network on planes; owns the OOM fallback and progress accounting."""

    def __init__(self, job: UpscaleJob, progress: ProgressCallback | None, should_stop: Callable[[], bool] | None):
        self.job = job
        self.done = 0
        self.total = job.total_tiles()
        self.progress = progress
        self.should_stop = should_stop
        self.tile = job.tile
        self.batch_size = job.batch_size
        net = job.model.net
        net.eval()
        self.net: Callable[[torch.Tensor], torch.Tensor] = net
        #: the degradation condition ``(3,)`` of the plane being upscaled (conditioned networks only)
        self.condition: torch.Tensor | None = None
        #: the network exported to ONNX Runtime (CPU), or None: torch runs it
        self.onnx: OnnxRunner | None = None
        in_channels = (job.model.in_channels or 1) + job.model.cond_channels  # image + degradation maps
        if job.precision != "fp32":  # reduced precision on the CPU: int8 (ONNX Runtime) or bf16 (oneDNN)
            if job.precision == "int8":
                self.onnx = int8_runner(net, in_channels=in_channels, tuning=int8_tuning(job.model))
            else:
                self.net = bf16_forward(net)
            return
        if job.backend == "onnxruntime":
            self.onnx = onnx_runner(net, in_channels=in_channels, device=str(job.device))
            if self.onnx is None and job.backend_required:
                raise RuntimeError(f"backend 'onnxruntime' cannot run this model: {onnx_failure(net)}")
        if self.onnx is not None:
            return
        if job.device.type in ("cuda", "cpu") and any(p.dim() == 4 for p in net.parameters()):
            # NHWC convolutions: faster with cuDNN (tensor cores) and oneDNN alike; in place, once
            first4d = next(p for p in net.parameters() if p.dim() == 4)
            if not first4d.is_contiguous(memory_format=torch.channels_last):
                net.to(memory_format=torch.channels_last)
        if job.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # tiles share one shape: tune once, reuse
        if job.compile:
            compiled = _compiled.get(net)
            if compiled is None:
                compiled = _compiled[net] = torch.compile(net, dynamic=False)
            self.net = compiled

    def release(self) -> None:
        """End of the job: ONNX Runtime hands its arena's memory back once idle (the session stays cached)."""
        if self.onnx is not None:
            self.onnx.release_later()

    @property
    def _where(self) -> str:
        return f"{self.job.device}/{'onnxruntime' if self.onnx is not None else 'torch'}"

    def size_tiles_by_time(self) -> None:
        """Automatic tile on the CPU with a ``should_stop``: tiles of about ``TILE_SECONDS`` of compute.

        The throughput of this network here is the one measured on earlier tiles (this
        process), else a probe of two ``PROBE_TILE``-px calls, divided by the network passes
        of a tile (eight with ``self_ensemble``); the memory bound still applies.  Cancel
        then ends the job within about one tile, and the progress bar moves within about
        one tile of the start, at any image size and load.
        """
        job = self.job
        if not (job.auto_tile and job.device.type == "cpu" and self.should_stop is not None):
            return
        h, w = job.in_shape[job.axes.y], job.in_shape[job.axes.x]
        halo = job.model.receptive_field
        rate = THROUGHPUT.rate(job.model.net, self._where)
        if rate is None:
            probe = torch.zeros(1, job.model.in_channels or 1, PROBE_TILE, PROBE_TILE)
            before, self.condition = self.condition, CLEAN.as_tensor() if job.model.cond_channels else None
            try:
                self._network(probe)  # the first call sets up buffers; the second one is timed
                t0 = time.perf_counter()
                self._network(probe)
            finally:
                self.condition = before
            rate = PROBE_TILE**2 / max(time.perf_counter() - t0, 1e-6)
        if job.self_ensemble:  # eight network passes per tile
            rate /= len(DIHEDRAL)
        tile = min(self.tile, timed_tile(h, w, rate, halo))
        if tile != self.tile:
            self.tile = tile
            self.total = job.n_planes * count_tiles(h, w, tile, halo)
        if self.progress is not None:
            self.progress(0, self.total)

    def _tick(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of normalised tiles ``(N, C, h, w)`` -> ``(N, C_out, sh, sw)``: the network's output, or with
        ``job.self_ensemble`` the mean over the tiles' eight flips and quarter turns (:mod:`.ensemble`).

        The network sees the tiles within :data:`~..normalization.NETWORK_INPUT_RANGE`; what lies outside (a
        camera's hot pixels, up to thousands of times the image's range) is added back bicubically upscaled
        (:func:`bounded_forward`)."""
        network = (lambda t: self_ensemble(self._network, t)) if self.job.self_ensemble else self._network
        return bounded_forward(network, x, int(self.job.scale))

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        if self.condition is not None:  # a conditioned network reads its degradation maps too
            x = with_condition(x, self.condition)
        if self.onnx is not None:
            y = self.onnx(x, stop=self.should_stop)  # Cancel ends the run inside the tile
        elif self.job.precision == "bf16":
            y = self.net(x)
        else:
            with torch.inference_mode(), autocast(self.job.device):
                x = x.to(self.job.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                y = self.net(x)
        if self.job.device.type == "cpu":
            THROUGHPUT.record(self.job.model.net, self._where, x.shape[0] * x.shape[-2] * x.shape[-1],
                              time.perf_counter() - t0)  # fmt: skip
        return y

    def run_plane(
        self, plane: np.ndarray, channels_out: int, sink: Any = None, prepare: Any = None
    ) -> np.ndarray | None:
        """``(C, H, W)`` float32 normalised -> ``(C_out, sH, sW)`` float32.

        With ``sink(y0, x0, block)`` the output blocks go there as they are computed
        (see :func:`~napari_superres.engine.infer.tiling.tiled_map`) and nothing is returned;
        then ``plane`` may be raw (any dtype) with ``prepare`` normalising each batch of tiles.
        """
        x = plane if prepare is not None else torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))
        while True:
            done_before = self.done
            kwargs = dict(
                scale=self.job.scale, halo=self.job.model.receptive_field, tile=self.tile,
                batch_size=self.batch_size, on_tile=self._tick, should_stop=self.should_stop,
                device=self.job.device,
            )  # fmt: skip
            try:
                if sink is not None:
                    tiled_map(self._forward, x, sink, prepare=prepare, **kwargs)
                    return None
                return tiled_forward(self._forward, x, out_channels=channels_out, **kwargs).numpy()
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                smaller = self.tile // 2
                halo = self.job.model.receptive_field
                try:
                    plan_overlap(halo, smaller)
                except ValueError:
                    raise MemoryError(f"out of GPU memory even with {self.tile}-px tiles; use device='cpu'") from None
                self.tile, self.batch_size = smaller, max(1, self.batch_size // 2)
                self.done = done_before
                self.total = self.job.n_planes * count_tiles(
                    self.job.in_shape[self.job.axes.y], self.job.in_shape[self.job.axes.x], self.tile, halo
                )


def bounded_forward(network: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: int) -> torch.Tensor:
    """``network`` on ``x`` ``(N, C, h, w)`` (normalised) clipped to
    :data:`~..normalization.NETWORK_INPUT_RANGE`, plus the bicubic upscaling (``scale``) of what the clip took off
    where the output has ``C`` channels too; ``network(x)`` itself where nothing is outside (the same result to
    the bit)."""
    low, high = NETWORK_INPUT_RANGE
    outside = (x < low) | (x > high)
    if not bool(outside.any()):
        return network(x)
    clipped = x.clamp(low, high)
    y = network(clipped)
    if y.shape[1] != x.shape[1]:
        return y
    excess = F.interpolate((x - clipped).float(), scale_factor=scale, mode="bicubic", align_corners=False)
    return y + excess.to(device=y.device, dtype=y.dtype)


def _denormalize_into(block: np.ndarray, target: np.ndarray, lo: float, hi: float) -> None:
    """``target[...] = denormalize(block, lo, hi, target.dtype)``, in place in ``block`` (which the caller owns).

    The same arithmetic as :func:`~napari_superres.engine.normalization.denormalize` (float32
    multiply, add, round half to even, clip), so the same values, without a temporary:
    numpy's single-threaded in-place ufuncs, then one casting copy into ``target``.  (Measured
    on 2 shared cores: torch's two-thread elementwise kernels cost ~20x the CPU time of these
    memory-bound passes when the threads wait on each other.)
    """
    dtype = target.dtype
    if needs_float64(dtype) or dtype == np.float16 or not max(abs(lo), abs(hi), abs(hi - lo)) < FLOAT32_SAFE_RANGE:
        target[...] = denormalize(block, lo, hi, dtype)  # wide dtypes, float limits (clipped), huge ranges
        return
    np.multiply(block, np.float32(hi - lo), out=block)
    np.add(block, np.float32(lo), out=block)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        np.rint(block, out=block)
        np.clip(block, info.min, info.max, out=block)
    elif dtype == np.bool_:
        np.greater(block, 0.5, out=target)
        return
    np.copyto(target, block, casting="unsafe")


def check_finite_output(values: np.ndarray, model: SRModel) -> None:
    """:class:`NonFiniteOutputError` if a network's (normalised) output holds NaN or Inf.

    Cast to an integer dtype those would become silently wrong pixels (NaN -> 0), so the
    whole call fails instead and nothing is returned or written.
    """
    if not np.isfinite(values).all():
        raise NonFiniteOutputError(
            f"model {model.name!r} produced NaN or Inf values on this image (its weights are broken or overflow); "
            "nothing was returned or written: use another model, or retrain this one (e.g. with a lower "
            "learning rate)"
        )


def _bicubic(plane: np.ndarray, scale: int) -> np.ndarray:
    """``(C, H, W)`` float32 -> bicubic ``(C, sH, sW)`` (torch's kernel, as the baseline)."""
    x = torch.from_numpy(np.ascontiguousarray(plane))[None]
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)[0].numpy()


def run_upscale(
    image: Any,
    job: UpscaleJob,
    *,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    out: np.ndarray | None = None,
    value_range: tuple[float, float] | Mapping[int, tuple[float, float]] | None = None,
) -> np.ndarray:
    """Execute a planned job on ``image`` (numpy, or anything ``np.asarray`` reads plane by plane).

    ``value_range``: the normalisation's ``(lo, hi)`` when already known (e.g. computed once
    for a whole dask array of which ``image`` is one chunk): one pair for the image, or a
    mapping from index along the image's C axis to a pair.  Default: computed from ``image``.
    """
    info = job.axes
    if out is None:
        out = np.empty(job.out_shape, dtype=job.out_dtype)
    out_view = out.transpose(info.order)
    in_view = image.transpose(info.order)
    plane_shape = tuple(job.in_shape[i] for i in info.plane_axes)
    model = job.model
    runner = _Runner(job, progress, should_stop)

    # intensity range once per image, or once per channel along a C axis
    ranges: dict[int, tuple[float, float]] = {}
    c_pos = info.plane_axes.index(info.channel) if info.channel is not None else None
    if isinstance(value_range, Mapping):
        ranges.update({int(k): (float(v[0]), float(v[1])) for k, v in value_range.items()})
    elif value_range is not None:
        lo_hi = (float(value_range[0]), float(value_range[1]))
        ranges[-1] = lo_hi
        if c_pos is not None:
            ranges.update(dict.fromkeys(range(job.in_shape[info.channel]), lo_hi))  # type: ignore[index]
    if c_pos is None and -1 not in ranges:
        ranges[-1] = intensity_range(image, job.normalization)

    try:
        runner.size_tiles_by_time()
        for index in np.ndindex(*plane_shape):
            if should_stop is not None and should_stop():
                raise Cancelled("cancelled")
            key = index[c_pos] if c_pos is not None else -1
            if key not in ranges:
                sel = [slice(None)] * len(job.in_shape)
                sel[info.channel] = key  # type: ignore[index]
                ranges[key] = intensity_range(image[tuple(sel)], job.normalization)
            lo, hi = ranges[key]
            if model.cond_channels:
                runner.condition = condition_for(key, job, in_view, lo, hi).as_tensor()
            raw = np.asarray(in_view[index])
            if raw.dtype.kind == "f" and not np.isfinite(raw).all():
                raise ValueError(
                    "the image contains NaN or Inf values; replace them (e.g. np.nan_to_num) before upscaling"
                )
            if info.rgb is None and model.in_channels in (None, 1):
                # one channel: tiles are normalised as they are cut and each finished tile goes
                # straight into the output, so no float copy of the plane exists (flat memory)
                target = out_view[index]

                def sink(y0: int, x0: int, block: torch.Tensor, target=target, lo=lo, hi=hi) -> None:
                    # the block is the runner's own output: denormalised in place, cast while stored
                    values = block[0].numpy()
                    check_finite_output(values, model)
                    _denormalize_into(values, target[y0 : y0 + values.shape[0], x0 : x0 + values.shape[1]], lo, hi)

                def prepare(tiles: np.ndarray, lo=lo, hi=hi) -> torch.Tensor:
                    return torch.from_numpy(normalize(tiles, lo, hi))

                runner.run_plane(raw[None], 1, sink=sink, prepare=prepare)
                continue
            plane = normalize(raw, lo, hi)
            if info.rgb is None:
                plane = plane[None]
            result = _upscale_plane(plane, model, job.scale, runner)
            check_finite_output(result, model)
            result = result if info.rgb is not None else result[0]
            out_view[index] = denormalize(result, lo, hi, job.out_dtype)
    finally:
        runner.release()
    if progress is not None:
        progress(runner.total, runner.total)
    return out


#: At most this many planes of a stack are looked at to estimate its degradation (evenly spread).
ESTIMATE_PLANES = 3


def condition_for(key: int, job: UpscaleJob, in_view: Any, lo: float, hi: float) -> DegradationCondition:
    """The condition of channel ``key`` (-1: the image), resolved once and kept in ``job.conditions``.

    ``in_view``: the image transposed to ``job.axes.order`` (numpy or dask).  The estimate reads the
    centre crop (:data:`~napari_superres.engine.nets.conditioning.ESTIMATE_CROP` px per side) of up to
    :data:`ESTIMATE_PLANES` planes of that channel, evenly spread, normalised by ``(lo, hi)`` as the
    network sees them (RGB: luminance).  An estimated blur is never wider than the model was trained on
    (:func:`~.blur_check.within_trained_blur`).  An adapted model whose caller states no blur is told the blur it was
    adapted with (:func:`~.blur_check.adapted_condition`: a stated one as it is, an estimated one as the floor of
    the estimate, then checked).
    """
    if key not in job.conditions:
        planes: list[np.ndarray] = []

        def estimate_planes() -> list[np.ndarray]:
            planes.extend(_estimate_planes(key, job, in_view, lo, hi))
            return planes

        condition = job.degradation.resolve(estimate_planes)
        stated = False
        if job.degradation.estimate and "blur_sigma" not in job.degradation.fixed:
            condition, stated = adapted_condition(job.model, within_trained_blur(job.model, condition))
        job.conditions[key] = _checked_blur(condition, planes, job) if planes and not stated else condition
    return job.conditions[key]


def _checked_blur(condition: DegradationCondition, planes: list[np.ndarray], job: UpscaleJob) -> DegradationCondition:
    """``condition`` after :func:`~.blur_check.checked_condition` on the middle of the estimate's ``planes``, where
    the blur was estimated and the model is a one-channel torch network of a scale in
    :data:`~.blur_check.CHECK_SCALES` whose training says what blur it keeps."""
    net = getattr(job.model, "net", None)
    target_blur = recorded_target_blur(job.model)
    if "blur_sigma" in job.degradation.fixed or target_blur is None or not isinstance(net, torch.nn.Module):
        return condition
    if int(getattr(job.model, "in_channels", 0) or 0) != 1 or int(job.scale) not in CHECK_SCALES:
        return condition
    plane = planes[len(planes) // 2]
    max_blur = recorded_max_blur(job.model)
    return checked_condition(net, plane, condition, scale=int(job.scale), target_blur=target_blur, max_blur=max_blur)


def _estimate_planes(key: int, job: UpscaleJob, in_view: Any, lo: float, hi: float) -> list[np.ndarray]:
    info = job.axes
    shape = tuple(job.in_shape[a] for a in info.plane_axes)
    c_pos = info.plane_axes.index(info.channel) if info.channel is not None else None
    if c_pos is not None:  # the other plane axes, at channel ``key``
        shape = shape[:c_pos] + shape[c_pos + 1 :]
    n = int(np.prod(shape))
    starts = [max((job.in_shape[ax] - ESTIMATE_CROP) // 2, 0) for ax in (info.y, info.x)]
    crop = tuple(slice(start, start + ESTIMATE_CROP) for start in starts)  # read alone (dask: one region)
    out = []
    for flat in dict.fromkeys(int(round(f)) for f in np.linspace(0, n - 1, min(ESTIMATE_PLANES, n))):
        where = tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()
        if c_pos is not None:
            where = (*where[:c_pos], key, *where[c_pos:])
        plane = normalize(np.asarray(in_view[(*where, Ellipsis, *crop)]), lo, hi)
        out.append(rgb_to_ycbcr(plane[:3])[0] if info.rgb is not None else plane)  # (S, Y, X): luminance
    return out


def job_condition(image: Any, job: UpscaleJob) -> DegradationCondition | None:
    """The condition a conditioned network gets for ``image`` under ``job`` (its first channel along a
    ``C`` axis), resolved now and kept in ``job.conditions`` so :func:`run_upscale` reuses it;
    ``None`` for a blind network.  What the Upscale widget shows before it runs."""
    if not job.model.cond_channels:
        return None
    info = job.axes
    key, sub = -1, image
    if info.channel is not None:
        key, sub = 0, np.take(image, 0, axis=info.channel)
    lo, hi = intensity_range(sub, job.normalization)
    return condition_for(key, job, image.transpose(info.order), lo, hi)


def _upscale_plane(plane: np.ndarray, model: SRModel, scale: int, runner: _Runner) -> np.ndarray:
    """``(C, H, W)`` normalised -> ``(C, sH, sW)``; RGB split into what the model takes."""
    c = plane.shape[0]
    if model.in_channels is None or (model.in_channels == c and c == 1):
        return runner.run_plane(plane, c)
    if c == 1:  # a 3-channel model on grayscale was rejected in planning
        raise ValueError("internal: channel mismatch")
    color, alpha = plane[:3], plane[3:]
    if model.in_channels == 1:  # luminance through the net, chroma bicubic
        ycc = rgb_to_ycbcr(color)
        y = runner.run_plane(ycc[:1], 1)
        cbcr = _bicubic(ycc[1:], scale)
        rgb = ycbcr_to_rgb(np.concatenate([y, cbcr]))
    else:
        rgb = runner.run_plane(color, 3)
    if alpha.shape[0]:
        rgb = np.concatenate([rgb, _bicubic(alpha, scale)])
    return rgb


def run(
    image: Any,
    job: UpscaleJob,
    *,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Execute a planned job in memory: the tiled pipeline (:func:`run_upscale`), or whole planes for a
    model that normalises and tiles them itself (``job.model.own_pipeline``, see :mod:`.planes`)."""
    if job.model.own_pipeline:
        from .planes import run_planes

        return run_planes(image, job, progress=progress, should_stop=should_stop)
    return run_upscale(image, job, progress=progress, should_stop=should_stop)
