"""Axial (Z) super-resolution of anisotropic stacks, self-supervised from the stack itself.

Confocal and light-sheet stacks are sampled and blurred more coarsely along Z than in Y
and X.  The lateral planes show what finer sampling looks like, so (as CARE's isotropic
reconstruction, Weigert et al. 2017/2018) :func:`upscale_z`

1. normalises the stack (percentiles 1 / 99.8) and fits its noise (Poisson-Gaussian);
2. trains an :class:`~napari_superres.engine.nets.axial_net.AxialNet` on lateral patches
   degraded along one axis the way Z is (:mod:`napari_superres.engine.train.axial_data`:
   blur widening the PSF by ``psf_ratio``, keep every ``factor``-th row, noise put back);
3. applies it to the XZ and YZ slices and averages the two
   (:mod:`napari_superres.engine.infer.axial`), then maps back to the input's units and dtype.

Why not the 2D :class:`~napari_superres.engine.train.trainer.Trainer`: it trains an
:class:`SRNet` (same scale on both axes, factors 2/3/4/8) on image pairs with a 2D
degradation and validates against 2D bicubic; here the scale is along one axis only, the
factor is any integer, the degradation is a 1-D PSF elongation and the data are the
stack's own planes.  The training itself is the Trainer's: :func:`train_axial` runs the
shared fit loop (:class:`~napari_superres.engine.train.loop.FitLoop`) with a pixel step
(:class:`~napari_superres.engine.train.steps.PixelStep`: L1 loss, Adam, cosine schedule,
gradient clipping) on the stack's own patches.

Assumptions: the stack's axes are Z, Y, X with Y and X sampled alike and finely (about
Nyquist); the axial PSF is about ``psf_ratio`` times wider than the lateral one (default
``factor``: Z sampled as finely, relative to its PSF, as X and Y); structures look
statistically alike seen from the side and from above (no strongly oriented sample, as
CARE also assumes); noise is independent between voxels.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .device import resolve_device
from .errors import Cancelled
from .infer.axial import upsample_volume
from .nets.axial_net import MAX_FACTOR, AxialModel, AxialNet, AxialNetConfig, load_axial_model
from .noise import estimate_noise
from .normalization import default_normalization, denormalize, intensity_range, normalize
from .train.axial_data import DEFAULT_LATERAL_SIGMA, AxialDegradation, AxialPairSampler, axial_blur_sigma
from .train.loop import FitLoop
from .train.reports import StepReport
from .train.schedule import Schedule
from .train.steps import PixelStep

log = logging.getLogger(__name__)

#: Default optimisation steps, batch size, patch edge (px) and learning rate.
DEFAULT_STEPS = 400
DEFAULT_BATCH = 8
DEFAULT_PATCH = 64
DEFAULT_LEARNING_RATE = 1e-3
#: Built-in starts, one per factor (``axial-x<factor>.safetensors``, ``scripts/train_axial_builtin.py``):
#: ``upscale_z`` fine-tunes one of them on the stack instead of training from scratch.
BUILTIN_AXIAL_DIR = Path(__file__).resolve().parent.parent / "models" / "axial"
#: Fine-tuning of a built-in start: steps, patch edge (px) and learning rate.
FINETUNE_STEPS = 60
FINETUNE_PATCH = 32
FINETUNE_LEARNING_RATE = 3e-4
#: A built-in start is used when the PSF ratio asked for is within this relative distance of its own.
_PSF_RATIO_MATCH = 0.25
#: Cosine schedule ends at this fraction of the learning rate.
_COSINE_MIN = 0.02
_GRAD_CLIP = 1.0
#: A non-integer Z/Y scale ratio is rounded; beyond this distance from an integer it is logged as a warning.
_RATIO_TOLERANCE = 0.05

ProgressCallback = Callable[[int, int], None]


@dataclass
class AxialResult:
    """What :func:`upscale_z` returns; unpacks as ``volume, model = upscale_z(...)``.

    Attributes
    ----------
    volume : the upscaled stack, the input's dtype and axes, ``factor`` times as many Z planes
        (plane ``k`` of the input is plane ``k * factor`` of the result; the last
        ``factor - 1`` planes extrapolate past the last input plane).
    model : the trained (or given) :class:`AxialModel`; ``model.save(path)`` writes it and
        ``upscale_z(other, model=path_or_model)`` reuses it on other stacks of the instrument.
    factor : the axial factor used.
    scale : voxel size of the result (the given ``scale`` with Z divided by ``factor``), or ``None``.
    losses : training loss (L1, normalised units) per step; empty if no training ran.
    seconds : wall time of training and of inference.
    """

    volume: np.ndarray
    model: AxialModel
    factor: int
    scale: tuple[float, ...] | None = None
    losses: list[float] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        yield self.volume
        yield self.model


def factor_from_scale(scale: Sequence[float], axes: str = "ZYX") -> int:
    """Axial factor from a voxel size ``scale`` (one value per axis of ``axes``): ``round(z / y)``.

    Raises ``ValueError`` when Z is not coarser than Y by at least 1.5 (nothing to upsample).
    """
    axes = axes.upper()
    if len(scale) != len(axes):
        raise ValueError(f"scale needs one voxel size per axis of {axes!r} ({len(axes)}), got {tuple(scale)}")
    z, y = float(scale[axes.index("Z")]), float(scale[axes.index("Y")])
    if not (math.isfinite(z) and math.isfinite(y) and z > 0 and y > 0):
        raise ValueError(f"voxel sizes must be positive numbers, got Z {z}, Y {y}")
    ratio = z / y
    factor = int(round(ratio))
    if factor < 2:
        raise ValueError(
            f"Z is sampled {ratio:.2f}x as coarsely as Y: nothing to upsample along Z (pass factor= to force one)"
        )
    if abs(ratio - factor) > _RATIO_TOLERANCE * factor:
        log.warning("Z/Y voxel-size ratio %.3f is not an integer: using factor %d", ratio, factor)
    return min(factor, MAX_FACTOR)


def _check_volume(volume: Any, axes: str) -> tuple[np.ndarray, str]:
    arr = np.asarray(volume)
    axes = (axes or "").upper()
    if len(axes) != arr.ndim:
        raise ValueError(f"axes {axes!r} has {len(axes)} letters but the volume has {arr.ndim} dimensions {arr.shape}")
    for letter in "ZYX":
        if axes.count(letter) != 1:
            raise ValueError(f"axes {axes!r} needs exactly one Z, one Y and one X (e.g. 'ZYX', 'CZYX', 'TZYX')")
    if "S" in axes:
        raise ValueError("RGB stacks are not supported by upscale_z: split the colour channels first (axes 'CZYX')")
    if len(set(axes)) != len(axes):
        raise ValueError(f"axes {axes!r} repeats a letter")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"upscale_z needs an integer or float volume, got dtype {arr.dtype}")
    if 0 in arr.shape:
        sizes = ", ".join(f"{a}={n}" for a, n in zip(axes, arr.shape))
        raise ValueError(f"the volume is empty ({sizes}): every axis needs at least one element (Z at least 2)")
    if arr.shape[axes.index("Z")] < 2:
        raise ValueError(f"the volume has {arr.shape[axes.index('Z')]} Z plane(s): axial upsampling needs at least 2")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError("the volume contains NaN or Inf values; replace them (e.g. np.nan_to_num) first")
    return arr, axes


def _stacks(arr: np.ndarray, axes: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """Move the other axes first and Z, Y, X last: ``(n_stacks, Z, Y, X)`` view, and the transpose used."""
    rest = [i for i, a in enumerate(axes) if a not in "ZYX"]
    order = tuple(rest + [axes.index("Z"), axes.index("Y"), axes.index("X")])
    moved = arr.transpose(order)
    return moved.reshape(-1, *moved.shape[-3:]), order


def builtin_axial_model(factor: int, psf_ratio: float | None = None) -> AxialModel | None:
    """A fresh copy of the built-in axial model for ``factor``, or ``None`` (none shipped, or made for
    another PSF ratio than ``psf_ratio``: more than 25 % away)."""
    path = BUILTIN_AXIAL_DIR / f"axial-x{int(factor)}.safetensors"
    if not path.is_file():
        return None
    model = load_axial_model(path)
    if psf_ratio is not None and abs(float(psf_ratio) - model.psf_ratio) > _PSF_RATIO_MATCH * model.psf_ratio:
        return None
    model.source = "session"
    model.metadata = {**model.metadata, "start": path.stem}
    return model


def train_axial(
    net: AxialNet,
    sampler: AxialPairSampler,
    steps: int,
    *,
    device: torch.device,
    batch_size: int = DEFAULT_BATCH,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    progress: Callable[[int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[float]:
    """Train ``net`` in place for ``steps`` steps (L1 loss, Adam, cosine schedule); returns the losses.

    ``progress(step, loss)`` after each step; ``should_stop()`` before each step
    (:class:`~napari_superres.engine.errors.Cancelled` when it returns True).
    """
    net.to(device).train()
    step = PixelStep(net, lr=learning_rate, schedule=Schedule("cosine", steps, floor=_COSINE_MIN),
                     weights={"l1": 1.0}, grad_clip=_GRAD_CLIP)  # fmt: skip
    losses: list[float] = []

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        x, y = sampler.sample(batch_size)
        return x.to(device), y.to(device)

    def record(report: StepReport) -> None:
        losses.append(report.losses["l1"])
        if progress is not None:
            progress(report.step, losses[-1])

    if FitLoop(step, batch).run(steps, callback=record, should_stop=should_stop):
        raise Cancelled("axial training cancelled")
    net.eval()
    return losses


def _model_and_factor(
    model: AxialModel | str | Any | None, factor: int | None, scale: Sequence[float] | None, axes: str
) -> tuple[AxialModel | None, int]:
    """The model to reuse (loaded when given as a path; ``None`` to train one) and the checked integer
    axial factor (from ``factor``, else the model's, else ``scale``); raises ``ValueError`` / ``TypeError``
    naming the fix."""
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = load_axial_model(model)  # type: ignore[arg-type]
    if model is not None and not isinstance(model, AxialModel):
        raise TypeError(f"model must be an AxialModel or the path of a saved one, got {type(model).__name__}")
    if factor is None:
        if model is not None:
            factor = model.factor
        elif scale is not None:
            factor = factor_from_scale(scale, axes)
        else:
            raise ValueError(
                "upscale_z needs the axial factor: pass factor= (e.g. 4 for Z steps 4x the pixel size) "
                "or scale= (the voxel size per axis, e.g. layer.scale)"
            )
    if isinstance(factor, float) and not float(factor).is_integer():
        raise ValueError(f"factor must be an integer, got {factor}; round it (the result has factor x as many planes)")
    factor = int(factor)
    if not 2 <= factor <= MAX_FACTOR:
        raise ValueError(f"factor must be an integer in [2, {MAX_FACTOR}], got {factor}")
    if model is not None and model.factor != factor:
        raise ValueError(f"the model upsamples x{model.factor} but factor={factor} was asked; train a new model")
    return model, factor


def _training_settings(
    model: AxialModel | None,
    start: AxialModel | None,
    steps: int | None,
    patch_size: int | None,
    learning_rate: float | None,
) -> tuple[int, int, float]:
    """``(steps, patch_size, learning_rate)`` with their defaults filled in: reuse a given model as is
    (0 steps), fine-tune a built-in ``start``, or train from scratch; checks the steps."""
    if steps is None:
        steps = 0 if model is not None else FINETUNE_STEPS if start is not None else DEFAULT_STEPS
    if patch_size is None:
        patch_size = FINETUNE_PATCH if start is not None else DEFAULT_PATCH
    if learning_rate is None:
        learning_rate = FINETUNE_LEARNING_RATE if start is not None else DEFAULT_LEARNING_RATE
    steps = int(steps)
    if steps < 0 or (model is None and start is None and steps < 1):
        raise ValueError(f"steps must be >= 1 to train a new model (got {steps}); or pass a trained model=")
    return steps, patch_size, learning_rate


def _train_on_stacks(
    model: AxialModel,
    normed: list[np.ndarray],
    steps: int,
    *,
    factor: int,
    psf_ratio: float,
    lateral_sigma: float,
    noise: bool,
    patch_size: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    device: torch.device,
    report: Callable[[int], None],
    should_stop: Callable[[], bool] | None,
    source: tuple[list[int], str],
    seconds: dict[str, float],
) -> list[float]:
    """Train ``model.net`` for ``steps`` on the lateral planes of the normalised ``(Z, Y, X)`` stacks,
    degraded as the Z axis is (blur of ``psf_ratio``, optional noise); record the run in the model's
    metadata (``source``: the input's shape and axes) and its time in ``seconds["train"]``; return the
    per-step L1 losses."""
    blur = axial_blur_sigma(psf_ratio, lateral_sigma)
    noise_model = estimate_noise(np.concatenate([n.reshape(-1, *n.shape[-2:]) for n in normed])) if noise else None
    degradation = AxialDegradation(factor=factor, blur_sigma=blur, noise=noise_model)
    sampler = AxialPairSampler(normed, degradation, patch_size=patch_size, seed=seed)
    t0 = time.perf_counter()
    losses = train_axial(
        model.net, sampler, steps, device=device, batch_size=batch_size, learning_rate=learning_rate,
        progress=lambda step, loss: report(1), should_stop=should_stop,
    )  # fmt: skip
    seconds["train"] = time.perf_counter() - t0
    log.info("axial x%d: %d steps in %.1f s, final L1 %.4f", factor, steps, seconds["train"], np.mean(losses[-20:]))
    model.psf_ratio = psf_ratio
    model.source = "session"
    model.metadata = {
        **model.metadata,
        "steps": int(model.metadata.get("steps", 0)) + steps,
        "psf_ratio": psf_ratio,
        "lateral_sigma": float(lateral_sigma),
        "blur_sigma": blur,
        "noise": noise_model.to_dict() if noise_model else None,
        "patch_size": sampler.patch,
        "batch_size": batch_size,
        "final_l1": float(np.mean(losses[-20:])),
        "source_shape": source[0],
        "source_axes": source[1],
    }
    return losses


def _upsample_stacks(
    model: AxialModel,
    normed: list[np.ndarray],
    ranges: list[tuple[float, float]],
    arr: np.ndarray,
    order: tuple[int, ...],
    *,
    device: torch.device,
    fuse: str,
    backend: str,
    report: Callable[[int], None],
    should_stop: Callable[[], bool] | None,
) -> np.ndarray:
    """Upsample each normalised stack along Z, back to ``arr``'s intensities and dtype, and reassemble
    them in ``arr``'s axis order (``order``: how :func:`_stacks` moved the axes)."""
    outs = []
    for s, (lo, hi) in zip(normed, ranges):
        up = upsample_volume(
            model.net, s, device=device, fuse=fuse, progress=report, should_stop=should_stop, backend=backend
        )
        outs.append(denormalize(up, lo, hi, arr.dtype))
    moved_shape = tuple(arr.shape[i] for i in order)
    out = np.stack(outs).reshape(*moved_shape[:-3], *outs[0].shape)
    out = out.transpose(np.argsort(order))
    return out


def _progress_counter(progress: ProgressCallback | None, total: int) -> Callable[[int], None]:
    """A ``report(n)`` that counts ``n`` more units done (steps or slices) and calls ``progress(done, total)``."""
    done = 0

    def report(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    return report


def _output_scale(scale: Sequence[float], axes: str, factor: int) -> tuple[float, ...]:
    """The voxel size of the result: ``scale`` (per axis of ``axes``) with Z divided by ``factor``."""
    return tuple(float(v) / factor if a == "Z" else float(v) for a, v in zip(axes, scale))


def upscale_z(
    volume: Any,
    factor: int | None = None,
    *,
    axes: str = "ZYX",
    scale: Sequence[float] | None = None,
    psf_ratio: float | None = None,
    lateral_sigma: float = DEFAULT_LATERAL_SIGMA,
    steps: int | None = None,
    model: AxialModel | str | Any | None = None,
    net: dict[str, Any] | None = None,
    batch_size: int = DEFAULT_BATCH,
    patch_size: int | None = None,
    learning_rate: float | None = None,
    noise: bool = True,
    fuse: str = "mean",
    seed: int = 0,
    device: str | torch.device = "auto",
    pretrained: bool = True,
    backend: str = "auto",
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> AxialResult:
    """Upsample a stack along Z by ``factor`` with a network trained on the stack's own lateral planes.

    Parameters
    ----------
    volume : array with axes ``axes`` (``"ZYX"``; other letters such as ``C`` or ``T`` are
        looped over, each 3D stack normalised on its own, one network for all), integer or float.
    factor : planes in the result per input plane (integer 2 .. 16).  ``None``: from ``scale``,
        ``round(z / y)``; one of the two must be given.
    scale : voxel size per axis of ``axes`` (any one unit, e.g. µm), e.g. napari's ``layer.scale``.
    psf_ratio : axial / lateral PSF width (FWHM ratio).  Default: the model's when ``model`` is
        given, else ``factor`` (Z sampled as finely, relative to its PSF, as Y and X).  Too small
        leaves the result soft; too large over-sharpens (ringing along Z).
    lateral_sigma : lateral PSF sigma in pixels (default 1.0, a Nyquist-sampled image).
    steps : training steps.  Default: :data:`FINETUNE_STEPS` when starting from a built-in model
        (seconds on 2 CPU cores), :data:`DEFAULT_STEPS` from scratch (minutes); with ``model``
        given the default is 0 (reuse as is), ``steps > 0`` fine-tunes the given model on this stack.
    model : an :class:`AxialModel` or the path of a saved one, to reuse.
    net : :class:`AxialNetConfig` overrides (``channels``, ``blocks``, ``fine_blocks``) for a new net
        (a network from scratch: no built-in start).
    batch_size, patch_size, learning_rate : training batch, target patch edge (px), Adam step size.
        Defaults: 32 px and 3e-4 fine-tuning a built-in start, 64 px and 1e-3 from scratch.
    noise : put back the noise the training blur removes (see ``train.axial_data``).
    fuse : ``"mean"`` of the XZ and YZ passes, or ``"xz"`` / ``"yz"`` (one pass, half the time).
    seed : seeds the network initialisation and the patches.
    device : ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` or a torch device.
    progress : ``progress(done, total)`` over training steps plus slices processed.
    should_stop : checked before every step and slice batch; True raises ``Cancelled``.
    pretrained : without ``model``, start from the built-in model of this factor when one is
        shipped for a PSF ratio within 25 % of ``psf_ratio`` (:func:`builtin_axial_model`) and
        fine-tune it on the stack; ``False`` (or none shipped): train a network from scratch.
    backend : what runs the XZ/YZ passes: ``"auto"`` (ONNX Runtime on the CPU when installed,
        as :func:`napari_superres.upscale`), ``"torch"`` or ``"onnxruntime"``.

    Returns
    -------
    :class:`AxialResult` (``.volume``, ``.model``, ``.factor``, ``.scale``, ``.losses``);
    unpacks as ``volume, model``.
    """
    arr, axes = _check_volume(volume, axes)
    model, factor = _model_and_factor(model, factor, scale, axes)
    if psf_ratio is None:
        psf_ratio = model.psf_ratio if model is not None else float(factor)
    start = builtin_axial_model(factor, psf_ratio) if model is None and pretrained and not net else None
    steps, patch_size, learning_rate = _training_settings(model, start, steps, patch_size, learning_rate)
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)

    stacks, order = _stacks(arr, axes)
    ranges = [intensity_range(s, default_normalization()) for s in stacks]
    normed = [normalize(s, lo, hi) for s, (lo, hi) in zip(stacks, ranges)]
    n_slices = sum(s.shape[1] + s.shape[2] if fuse == "mean" else s.shape[1 if fuse == "xz" else 2] for s in stacks)
    report = _progress_counter(progress, steps + n_slices)

    torch.manual_seed(seed)
    if model is None:
        model = start or AxialModel(
            net=AxialNet(AxialNetConfig(factor=factor, **(net or {}))), psf_ratio=float(psf_ratio)
        )
    model.net.to(dev)
    seconds: dict[str, float] = {}
    losses: list[float] = []
    if steps:
        losses = _train_on_stacks(
            model, normed, steps, factor=factor, psf_ratio=float(psf_ratio), lateral_sigma=lateral_sigma,
            noise=noise, patch_size=patch_size, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
            device=dev, report=report, should_stop=should_stop, source=(list(arr.shape), axes), seconds=seconds,
        )  # fmt: skip

    t0 = time.perf_counter()
    out = _upsample_stacks(model, normed, ranges, arr, order, device=dev, fuse=fuse, backend=backend,
                           report=report, should_stop=should_stop)  # fmt: skip
    seconds["infer"] = time.perf_counter() - t0
    out_scale = None if scale is None else _output_scale(scale, axes, factor)
    return AxialResult(volume=np.ascontiguousarray(out), model=model, factor=factor, scale=out_scale,
                       losses=losses, seconds=seconds)  # fmt: skip


__all__ = ["DEFAULT_STEPS", "FINETUNE_STEPS", "AxialResult", "builtin_axial_model", "factor_from_scale", "train_axial",
           "upscale_z"]  # fmt: skip
