"""Adapt a model to one image, with no high-res data (self-supervised, ZSSR-style).

>>> from napari_superres import adapt, upscale           # doctest: +SKIP
>>> model = adapt(low_res_image, scale=2)                # doctest: +SKIP
>>> high_res = upscale(low_res_image, model=model)       # doctest: +SKIP

What it does (Shocher et al., "Zero-Shot Super-Resolution", CVPR 2018, with the blur and
noise of the degradation estimated from the image instead of assumed):

1. start from a model of that scale: the one given, or the built-in model of the registry;
2. estimate the image's blur (PSF sigma in its own pixels, from its power spectrum) and
   its Poisson-Gaussian noise (from local means and variances) with
   :mod:`~napari_superres.engine.train.estimate`;
3. build training pairs from the image alone: the image is the high-res target, its area
   downsampling by ``scale`` the input (the same optics with larger pixels; the blur
   estimate is recorded, and the alternative that blurs the input further (ZSSR's scale
   recurrence) measured worse, see :mod:`~napari_superres.engine.train.estimate`); the image's
   own noise is split between input and target so that the two are uncorrelated
   (Recorrupted-to-Recorrupted, :class:`~.self_pairs.SelfPairs`), else the network learns to copy noise;
4. fine-tune a copy on random patches of those pairs (L1 loss, a learning rate 4x below the
   training default, cosine schedule, EMA) for :data:`SELF_PAIR_STEPS` steps;
5. fine-tune another copy by blind-spot consistency at the image's own scale
   (:mod:`~napari_superres.engine.train.blind_spot`: masked low-res pixels predicted by the output,
   blurred and binned back) for :data:`BLIND_SPOT_STEPS` steps, through the forward blur that takes the
   start's own output back to the image (floored at half what the blur estimate implies); the
   self-pairs teach the proxy task's smaller scale, the blind spot this image's content under its
   noise at its real scale;
6. return a weight-space average (a model soup, WiSE-FT, Wortsman et al., CVPR / ICML 2022): a
   quarter the start, a quarter the self-pair fine-tune, half the blind-spot one
   (:data:`ADAPT_MIX`, :data:`BLIND_SPOT_SHARE`).  The two fail on different images and the average
   holds up where either fails: measured on the your-data images (x2, low-photon protocol) it gained
   +1.44 dB over the built-in on synthetic fields where self-pairs alone (mixed half with the start,
   the default before) gained +0.96, and lost 0.75 on the nuclei scene where self-pairs lost 1.90
   (figures beside :data:`BLIND_SPOT_SHARE`).
   All within the time budget (``seconds``, by default ``engine.options.ADAPT_SECONDS`` = 30 s, which plans
   the default step counts on 2 CPU cores; another budget plans steps in proportion, :func:`planned_steps`).
   On a CPU with native bf16 (AVX-512 BF16 or AMX) both fine-tunes run their forward passes in bf16 on
   channels-last tensors (:data:`ADAPT_CPU_BF16`): the blind-spot steps run 2.3x faster, and the same
   budget plans twice as many (:data:`BLIND_SPOT_STEPS_BF16`).

When the caller knows the microscope's blur (``adapt(image, blur_sigma=...)``, the CLI's ``--adapt
--blur B``, the widget's blur override), adapt runs the own-scale fine-tune alone, through that PSF, with the
image's noise kept out of the loss by recorruption instead of masking (:data:`TOLD_BLUR_RECORRUPTS`), and returns
it unmixed.  A start with other than one input channel (RGB), and an image whose noise
reads clean (nothing for the blind spot to learn; on clean images it measured 0.3-4 dB worse), are
adapted by self-pairs alone (60 steps), mixed half with the start, as before.

The result is an :class:`~napari_superres.engine.SRModel` with the starting model's
normalisation (so :func:`~napari_superres.engine.upscale` repeats it), usable as
``upscale(image, model=...)`` and registrable with ``Engine.register``.  Its metadata
holds the estimates and the degradation used, and the blur the fine-tune told the network, which ``upscale`` tells
the adapted model unless its caller states another (the stated PSF itself; by default the floor of the estimate):
a network fine-tuned to be consistent with the image through that blur under-sharpens told less.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import Cancelled
from ..infer.blur_check import (
    ADAPTED_BLUR_KEY,
    CHECK_SCALES,
    adapted_condition,
    recorded_max_blur,
    recorded_target_blur,
    within_trained_blur,
)
from ..infer.conditioning import DegradationRequest
from ..layout import parse_axes
from ..nets.conditioning import (
    CONTENT_BLUR,
    DegradationCondition,
    estimate_condition,
    inference_condition,
    is_clean,
)
from ..nets.model_file import SRModel
from ..nets.srnet import SRNet
from ..normalization import data_box
from ..options import ADAPT_SECONDS, reconcile_scale
from .adapt_plan import (
    ADAPT_BATCH,
    ADAPT_CPU_BF16,
    ADAPT_PATCH,
    ADAPT_STEPS,
    BLIND_SPOT_BATCH,
    BLIND_SPOT_BATCH_BF16,
    BLIND_SPOT_PATCH,
    BLIND_SPOT_STEPS,
    BLIND_SPOT_STEPS_BF16,
    SELF_PAIR_STEPS,
    SELF_PAIR_TIME_SHARE,
    blind_spot_batch,
    cpu_bf16,
    planned_steps,
)
from .blind_spot import BlindSpotPatches, BlindSpotStep, fit_forward_blur, forward_sigma
from .estimate import degradation_for, estimate_planes, normalized_planes, same_optics_source
from .loop import FitLoop
from .schedule import Schedule
from .self_pairs import SelfPairs, r2r_alpha
from .steps import import_optimizer_dependencies
from .trainer import TrainConfig, Trainer, TrainResult

if TYPE_CHECKING:
    from ..registry import Engine

log = logging.getLogger(__name__)

#: How the self-supervised input is blurred: ``"auto"`` (the default: what the starting model was trained
#: towards, :func:`self_pair_blur`), ``"same-optics"`` (area binning only: the same optics with larger pixels,
#: the target keeps the image's whole PSF) or ``"recurrence"`` (ZSSR's scale recurrence: the input gets the
#: image's own blur in its own pixels, so input and target have the same PSF in their own pixels, which is
#: what a model trained with ``DegradationConfig.target_blur = 1 / scale`` produces).  Measured, four held-out
#: low-photon fluorescence images, 30 s each (~330 steps on 2 quiet cores), gain over the start:
#: conditioned x2 with sharp targets (1500-step probe) same optics +0.25 / +1.18 / +0.06 dB (synthetic,
#: HeLa, membranes), recurrence -0.74 / +0.75 / +0.14; the built-in trained towards finer optics
#: (``target_blur`` 1/2) same optics -0.37 / -0.24 / +0.04 / -0.43, recurrence +0.32 / +0.13 / 0.00 / +0.19
#: (HeLa 0-2, membranes; mix 1.0: -0.29 / -0.02 / -0.06 / +0.12; rate 1e-4: as 5e-5).  Between the two
#: (recurrence with 0.6 / 0.8 of its added blur, 60 steps, mix 0.5): +0.55 / +0.89 / +0.32 / +0.03 and
#: +0.61 / +0.97 / +0.37 / +0.11 dB against recurrence's +0.68 / +1.22 / +0.35 / +0.10 (two synthetic
#: fields, HeLa 0-1).  Choosing the blur the built-in is told by the same recurrence pairs instead of
#: fine-tuning picked within 0.1 dB of the best on EM and synthetic fields but -2.0 dB on the nuclei
#: scene and -0.5 on HeLa 0: the self-pair task asks for more sharpening than these references have.
#: Blurring the self-pair targets instead (sigma 0.5 / 0.8 px, full recurrence): no better either
#: (mix 0.5: +0.67 / +1.17 / +0.35 / +0.09; mix 1.0, 0.8 px: +0.02 / +0.98 / +0.32 / +0.01).
#: Other formulations measured against these self-pairs (60 steps, mix 0.5: two synthetic fields +0.68 / +1.22,
#: four fluorescence images +0.35 / +0.10 / -0.04 / +0.21, the nuclei scene -1.90): generator fields (the
#: built-ins' training content) degraded with the image's estimated blur and noise, alone or as half of each
#: batch, +0.12 on average (the built-in already knows that degradation); four seeds' fine-tunes averaged: no
#: change; a blind-spot consistency loss at the image's own scale (N2S-style masked low-res pixels predicted by
#: the output blurred and binned again) +1.41 / +1.98 on the synthetic fields but -2.68 on the nuclei scene and
#: -5 to -7 dB when the blur it assumes is 30 % too wide (the same loss with the blur fitted to the start's own
#: output: +0.8 on synthetic fields, -0.64 on HeLa 2), at 2-4x the time; denoising first (generalised
#: Anscombe + non-local means, the built-in told the noisy image's blur): -0.7 to -1.3 dB.  The blind-spot loss
#: for 150 steps with its forward blur fitted to the start's output (mix 1.0): HeLa 0 +0.74 (above paired
#: training), nuclei +0.50, synthetic +1.48 / +1.14, but HeLa 2 -1.10: the forward blur that works differs per
#: image (0.8x to 1.2x the estimate's) and 20 % off costs 1.5-6 dB (docs/design.md).  What bounds all of
#: them on real fluorescence: the same network trained on four matching pairs for 1000 steps gains only
#: +0.19 dB over the built-in there (synthetic fields +2.55), see ``benchmarks/results/your_data.md``.
ADAPT_BLUR = "auto"
#: Fine-tuning learning rate (a quarter of the training default: the start is already good).
ADAPT_LR = 5e-5
#: Share of the fine-tuned weights in a model adapted by self-pairs alone (the rest: the starting weights;
#: WiSE-FT): a start with other than one input channel, where blind-spot patches do not apply, and an image whose
#: noise reads clean (``nets.conditioning.is_clean``), where there is nothing for the blind spot to learn.
SELF_PAIRS_MIX = 0.5
#: The two fine-tunes are averaged in weight space (a model soup, Wortsman et al., ICML 2022), the blind-spot
#: one with this share, and the average mixed with the start (``ADAPT_MIX``): the result is 1/4 start, 1/4
#: self-pairs, 1/2 blind-spot.  The two fail on different images (self-pairs on the smooth nuclei scene, whose
#: smoothness the blur estimate reads as optics; blind-spot where the blur reads too narrow) and the average keeps
#: most of each one's gain.  Measured (``benchmarks/quality.py --your-data``, x2, low-photon protocol, gain over
#: the built-in; self-pairs alone at mix 0.5, the default before, in brackets): synthetic fields +1.49 / +1.73 /
#: +1.53 / +0.99 (+0.68 / +1.22 / +1.18 / +0.76), fluorescence +0.67 / +0.19 / -0.44 / +0.20 (+0.35 / +0.09 /
#: -0.04 / +0.21; paired training on four matching pairs +0.20 / +0.17 / +0.23 / +0.16), EM -0.04 / +0.08 / -0.01 /
#: +0.02 (+0.03 / +0.07 / +0.03 / +0.05); 26 s each on 2 cores (4-6 s before).  Generator cells (experiment
#: script): +0.11 / -0.75 / +0.40 / +0.35 (0.00 / -1.90 / +0.33 / +0.30).  Microscope protocol (mild blur, sharp
#: reference), six held-out images: +0.63 / +1.85 / -0.22 / +0.26 / +0.06 / -0.44 (-0.62 / +1.05 / -0.47 / +0.23 /
#: +0.01 / not run).  Since the forward-blur refit (``blind_spot.REFIT_MAX``), HeLa 2 -0.44 -> 0.00, fluorescence
#: +0.27 on average (your-data table re-run; the other eleven images unchanged); in bf16 with 300 blind-spot
#: steps (``BLIND_SPOT_STEPS_BF16``) +0.73 / +0.20 / +0.06 / +0.27, synthetic +1.53, EM +0.01.  Other weights on twelve
#: low-photon images (a whole-image fit, before the floor): 1/3 each +0.49 on average against +0.53, the two
#: fine-tunes alone (no start) +0.51 with -1.73 on the nuclei scene, blind-spot alone +0.41 with -1.01 on HeLa 2,
#: blind-spot and start half each +0.34.  Re-measured in bf16 with 300 blind-spot steps (the seven low-photon images of
#: ``BLIND_SPOT_STEPS_BF16``; share 0.5 / 0.67 / 0.8 / 1.0 x ``ADAPT_MIX`` 0.6 / 0.75 / 0.9 / 1.0): the defaults +0.307
#: on average (fluorescence +0.315); the best for fluorescence +0.322 (0.67, 0.9), the best on average +0.385 (1.0,
#: 0.9) with fluorescence +0.266: flat, so the defaults stay.  Blind-spot patches of 48 px (135 steps, the same
#: time) scored 0.01 dB under 32 px everywhere.
BLIND_SPOT_SHARE = 2.0 / 3.0
#: Share of the fine-tuned (averaged) weights in the returned model by default; the rest is the start's.
ADAPT_MIX = 0.75
BLIND_SPOT_MIX = 1.0
#: With the microscope's blur stated, the blind-spot phase keeps the image's noise out of its loss by recorruption
#: (every pixel in an L2 loss; :data:`~.blind_spot.RECORRUPT_ALPHA`, measured there: +1.006 dB over the built-in on
#: seven held-out low-photon images against masking's +0.877) instead of masking.  The default route, through a
#: fitted forward blur, keeps masking: recorruption measured lower there.
TOLD_BLUR_RECORRUPTS = True
#: Memory format of the blind-spot fine-tune, in either precision (the self-pair one trains through
#: ``TrainConfig.channels_last``).  In float32 on a 2-core AVX2 CPU without bf16, 80-step runs alternated three
#: times: 4.9 / 4.6 / 6.4 it/s channels-last against 4.3 / 4.4 / 4.5 contiguous (on the AMX machine 8.5 against 6.3).
#: Even so, steps of 8 patches did not fit the budget there (:data:`BLIND_SPOT_BATCH`).  Training only the network's
#: last four body blocks and tail there (1.3-1.6x the steps) scored lower: +0.11 dB on four images against +0.21.
BLIND_SPOT_MEMORY_FORMAT = torch.channels_last


def mix_weights(start: torch.nn.Module, tuned: torch.nn.Module, mix: float) -> torch.nn.Module:
    """``tuned`` with every floating-point parameter and buffer set to ``(1 - mix) * start + mix * tuned``.

    Both modules must have the same architecture (``tuned`` fine-tuned from ``start``); ``start``
    is only read (any device / dtype), ``tuned`` is changed in place and returned.
    """
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be between 0 and 1, got {mix}")
    start_state = start.state_dict()
    mixed = {}
    for name, value in tuned.state_dict().items():
        first = start_state[name].detach().to(device=value.device, dtype=value.dtype)
        mixed[name] = torch.lerp(first, value, mix) if value.is_floating_point() else value
    tuned.load_state_dict(mixed)
    return tuned


def self_pair_blur(model: SRModel, image_blur: float, clean: bool = False) -> str:
    """``ADAPT_BLUR`` resolved for ``model`` and an image whose blur reads ``image_blur`` (its own px) and
    whose noise reads ``clean`` or not.

    Under ``"auto"``: ``"recurrence"`` where the model was trained towards finer optics (its training
    degradation's ``target_blur`` > 0: an optically blurred input comes out with its PSF in output pixels)
    *and* the image reads as optically blurred (above :data:`~..nets.conditioning.CONTENT_BLUR`, where the
    built-ins' blurred training patches start) *and* noisy; else ``"same-optics"`` (sharp images, and models
    trained towards sharp fields, are restored towards the sharp field, which same-optics pairs teach).  A
    clean image's blur reading is its content as often as its optics: measured on clean, bicubic-downsampled
    held-out images (x2, mix 0.5), recurrence against same optics: synthetic fields -22.5 / -22.9 dB against
    -2.7 / -2.5 below the built-in (whose +14-15 dB over bicubic leaves no room), HeLa 0 -3.03 against +0.06,
    HeLa 2 -0.38 / -0.02, the nuclei scene -8.19 / -0.35.
    """
    if ADAPT_BLUR != "auto":
        return ADAPT_BLUR
    finer_optics = trained_target_blur(model) > 0
    return "recurrence" if finer_optics and image_blur > CONTENT_BLUR and not clean else "same-optics"


def trained_target_blur(model: SRModel) -> float:
    """The share of the optical blur ``model`` was trained to keep (its training degradation's
    ``target_blur``; 0: trained towards sharp fields, or not recorded)."""
    return recorded_target_blur(model) or 0.0


def _base_model(model: Any, scale: int, engine: Engine | None) -> SRModel:
    from ..registry import Engine

    engine = engine or Engine(device="cpu", builtins=True)
    if model is None:
        names = [n for n in engine.names() if n.startswith("superres-") and f"x{int(scale)}" in n]
        if not names:
            raise ValueError(
                f"no built-in x{scale} model to start from; pass model=... (a model file, an SRModel or an SRNet)"
            )
        model = names[0]
    resolved = engine.get(model)
    if not isinstance(resolved.net, SRNet):
        raise ValueError(f"adapt fine-tunes a trained network; {resolved.name!r} has none (choose a model file)")
    reconcile_scale(scale, resolved.scale, resolved.name)
    return resolved


#: :func:`_without_fill_border` crops only where the data left is at least this many px per side.
FILL_CROP_MIN = 64


def _without_fill_border(image: np.ndarray, axes: str | None, planes: list[np.ndarray]) -> tuple[Any, list[np.ndarray]]:
    """``(image, planes)`` cropped in Y and X to the union of the planes' data boxes
    (:func:`~napari_superres.engine.normalization.data_box`: border strips of a mosaic's fill left out), so that the
    fine-tune's patches come from the data; as they are where no plane has a fill or the data is small.  Measured
    (a quarter of the image at 0, 800 photons): adapt over the built-in on HeLa 0 +0.51 dB and a synthetic field
    +0.92 with the fill in its patches, against +0.66 and +1.46 on the unpadded images."""
    boxes = [data_box(p) for p in planes]
    if all(b is None for b in boxes):
        return image, planes
    h, w = planes[0].shape
    full = (0, h, 0, w)
    boxes = [full if b is None else b for b in boxes]
    y0, y1 = min(b[0] for b in boxes), max(b[1] for b in boxes)
    x0, x1 = min(b[2] for b in boxes), max(b[3] for b in boxes)
    if min(y1 - y0, x1 - x0) < FILL_CROP_MIN:
        return image, planes
    info = parse_axes(tuple(image.shape), axes)
    crop = [slice(None)] * image.ndim
    crop[info.y], crop[info.x] = slice(y0, y1), slice(x0, x1)
    return image[tuple(crop)], [p[y0:y1, x0:x1] for p in planes]


def _patch_size(image: np.ndarray, axes: str | None, scale: int) -> int:
    info = parse_axes(tuple(np.shape(image)), axes)
    edge = min(image.shape[info.y], image.shape[info.x])
    patch = min(ADAPT_PATCH, (edge // scale) * scale)
    if patch < 4 * scale:
        raise ValueError(
            f"the image ({image.shape[info.y]} x {image.shape[info.x]} px) is too small to adapt a model to; "
            f"it needs at least {4 * scale} px per side (better 64)"
        )
    return patch


def _checked_args(
    image: Any, steps: int | None, seconds: float | None, mix: float | None, blur_sigma: float | None = None
) -> Any:
    """The image as an array (array-likes kept); raises ``ValueError`` for a bad step count, ``mix``,
    ``seconds``, ``blur_sigma`` or image dtype."""
    if blur_sigma is not None and not (math.isfinite(float(blur_sigma)) and float(blur_sigma) > 0):
        raise ValueError(f"blur_sigma must be a positive number of low-res pixels or None, got {blur_sigma}")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if mix is not None and not 0.0 <= float(mix) <= 1.0:
        raise ValueError(f"mix must be between 0 and 1, got {mix}")
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a positive number or None, got {seconds}")
    image = image if hasattr(image, "shape") and hasattr(image, "dtype") else np.asarray(image)
    if np.dtype(image.dtype).kind not in "uifb":
        raise ValueError(f"image has dtype {image.dtype}; adapt needs an integer, float or bool image")
    return image


def _run_until(
    trainer: Trainer,
    deadline: float | None,
    should_stop: Callable[[], bool] | None,
    progress: Callable[[int, int], None] | None,
) -> TrainResult:
    """Run ``trainer`` until its steps are done or ``time.perf_counter()`` reaches ``deadline``, reporting
    ``progress(step, total)``; raises :class:`Cancelled` when ``should_stop()`` said so."""
    cancelled = False

    def stop() -> bool:
        nonlocal cancelled
        if should_stop is not None and should_stop():
            cancelled = True
            return True
        return deadline is not None and time.perf_counter() >= deadline

    def report(r: Any) -> None:
        if progress is not None:
            progress(int(r.step), int(r.total_steps))

    result = trainer.run(callback=report, should_stop=stop)
    if cancelled:
        raise Cancelled("adaptation cancelled")
    return result


def adapt(
    image: Any,
    model: Any = None,
    *,
    scale: int = 2,
    axes: str | None = None,
    steps: int | None = None,
    seconds: float | None = ADAPT_SECONDS,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    engine: Engine | None = None,
    seed: int = 0,
    mix: float | None = None,
    blur_sigma: float | None = None,
) -> SRModel:
    """Fine-tune a model on ``image`` itself (no high-res data needed) and return it.

    Parameters
    ----------
    image : the low-res acquisition, array ``(..., Y, X)`` (any dtype; stacks: every plane
        is a sample; RGB ``(..., Y, X, 3)`` as luminance).  Each side should be at least 64 px.
    model : the starting model: a registry name, model-file path, :class:`SRModel` or
        :class:`SRNet`; ``None``: the built-in model of ``scale``.
    scale : upscaling factor (the starting model's).
    axes : axis letters of ``image`` (default: last two spatial, e.g. ``"ZYX"``, ``"YXS"``).
    steps : optimisation steps in all; default: what ``seconds`` plans (:func:`planned_steps`): for the default
        30 s ``ADAPT_STEPS`` = 260, 60 on self-pairs, then 200 blind-spot of 4 patches (25-30 s on 2 CPU cores at
        any image size: patches), for 60 s 60 + 400; on a CPU with native bf16 (:func:`cpu_bf16`) 60 + 300 of 8
        patches in the same time (``BLIND_SPOT_STEPS_BF16``); with ``blur_sigma``: blind-spot alone (200, bf16 300,
        for 30 s); self-pairs alone (multi-channel starts, images whose noise reads clean): 60, a few seconds.  A
        given count is split 60:200 between self-pairs and blind-spot.
    seconds : the time budget, the estimate included, torch's one-time imports not (default ``ADAPT_SECONDS`` =
        30 s): it plans the default step count and ends training when it runs out (slow or busy machines), whichever
        of the steps and the seconds comes first.  ``None``: the default steps, no time limit.
    progress : ``progress(step_done, total_steps)`` after every step.
    should_stop : checked between steps; returning True raises
        :class:`~napari_superres.engine.errors.Cancelled` (nothing is returned).
    engine : where built-in / registered models are looked up (default: a CPU engine).
    seed : seeds patch sampling and degradation.
    mix : share of the fine-tuned weights in the result, the rest being the starting model's
        (default ``ADAPT_MIX`` = 0.75 of the two fine-tunes' average, a weight-space ensemble; with
        ``blur_sigma``: ``BLIND_SPOT_MIX`` = 1.0, the fine-tuned model alone; self-pairs alone:
        ``SELF_PAIRS_MIX`` = 0.5).
    blur_sigma : the microscope's blur, if you know it: Gaussian PSF sigma in the image's own pixels, pixel
        integration included (what the Upscale widget's estimate line shows; for an optical sigma ``o``:
        ``sqrt(o**2 + 1/12)``).  Given, adapt fine-tunes by consistency at the image's own scale through that PSF
        alone, the noise split by recorruption (:mod:`~napari_superres.engine.train.blind_spot`,
        ``BLIND_SPOT_STEPS`` = 200 steps, bf16 ``BLIND_SPOT_STEPS_BF16`` = 300, 15-25 s on 2 cores): measured
        (float32) +0.45 dB over the built-in on four low-photon fluorescence images (masking instead: +0.33;
        paired training: +0.12), +1.53 on four synthetic fields, +0.25 on EM.  It must be close: 10 % too narrow
        it gains less than the defaults, 20 % too narrow or 25 % too wide it falls under the built-in; its best is
        about 5 % wide (docs/design.md).
        The network is told the image's estimate with this blur in place, and so is the adapted model whenever
        ``upscale`` is not told another blur (below).

    Returns
    -------
    :class:`SRModel` named ``"<start> adapted"`` (source ``"session"``), same normalisation as
    the starting model; ``metadata["adapt"]`` records the estimates, degradation and steps, and for a conditioned
    start ``"told_blur"``: the blur the fine-tune told the network, which ``upscale`` then tells the adapted model
    where its caller states none (:func:`~napari_superres.engine.infer.blur_check.adapted_condition`: a stated blur
    as it is, an estimated one as the floor of the image's estimate).
    """
    image = _checked_args(image, steps, seconds, mix, blur_sigma)
    base = _base_model(model, scale, engine)
    one_channel = int(base.net.in_channels) == 1
    if blur_sigma is not None and not one_channel:
        raise ValueError(
            f"blur_sigma fine-tunes by blind-spot consistency, which needs a one-channel model; {base.name!r} "
            f"takes {base.net.in_channels} channels (leave blur_sigma out to adapt it by self-pairs)"
        )
    import_optimizer_dependencies()  # once per process (5.5 s on 2 cores): not the budget's (the Trainer's neither)
    t0 = time.perf_counter()
    # normalised and estimated once: whether the image reads clean picks the route (with nothing to denoise,
    # the blind-spot fine-tune only costs: see BLIND_SPOT_SHARE) and the self-pairs' blur; the blind spot is
    # told this estimate as upscale() tells it
    image = np.asarray(image)  # read once (a dask array too)
    planes = normalized_planes(image, axes, dict(base.normalization))
    image, planes = _without_fill_border(image, axes, planes)  # patches from the data, not a padding
    estimated = estimate_condition(planes) if blur_sigma is None else None
    both = estimated is not None and one_channel and not is_clean(estimated)
    told = blur_sigma is not None
    bf16 = cpu_bf16()
    if mix is None:
        mix = BLIND_SPOT_MIX if told else ADAPT_MIX if both else SELF_PAIRS_MIX
    if steps is None:
        pair_steps, spot_steps = planned_steps(seconds, self_pairs=not told, blind_spot=told or both, bf16=bf16)
        steps = pair_steps + spot_steps
    else:
        pair_steps = max(1, round(int(steps) * SELF_PAIR_STEPS / ADAPT_STEPS)) if both else 0
    run = _Run(image, base, axes, int(steps), seconds, progress, should_stop, seed, float(mix), t0, planes, estimated,
               int(pair_steps), bf16)  # fmt: skip
    if told:
        return _adapt_blind_spot(run, float(blur_sigma))
    return _adapt_both(run) if both else _adapt_self_pairs(run)


@dataclass(frozen=True)
class _Run:
    """What both ways of adapting take: :func:`adapt`'s checked arguments and the resolved start."""

    image: Any
    base: SRModel
    axes: str | None
    steps: int
    seconds: float | None
    progress: Callable[[int, int], None] | None
    should_stop: Callable[[], bool] | None
    seed: int
    mix: float
    #: ``time.perf_counter()`` at the start (the ``seconds`` budget counts from it)
    t0: float
    #: the image's normalised 2-D planes (:func:`~.estimate.normalized_planes`)
    planes: list[np.ndarray]
    #: their estimated condition (:func:`~..nets.conditioning.estimate_condition`); ``None`` with a stated blur
    estimated: DegradationCondition | None
    #: the default route's self-pair steps (the rest of ``steps`` are blind-spot ones)
    pair_steps: int = 0
    #: fine-tune in bf16 (:func:`cpu_bf16`)
    bf16: bool = False

    def deadline(self) -> float | None:
        """``perf_counter()`` time by which the ``seconds`` budget is spent (``None``: no limit)."""
        return None if self.seconds is None else self.t0 + float(self.seconds)

    def share_of_rest(self, share: float) -> float | None:
        """``perf_counter()`` time by which ``share`` of the budget still left now is spent (``None``: no limit): a
        phase's deadline counted from the end of its set-up, so that a slow set-up (a busy machine) shortens both
        phases, where a deadline counted from the start once left the self-pair phase 0 of its 60 steps."""
        if self.seconds is None:
            return None
        now = time.perf_counter()
        return now + max(self.t0 + float(self.seconds) - now, 0.0) * share

    def reporter(self, offset: int) -> Callable[[int], None] | None:
        """``report(step)`` of a phase whose steps follow ``offset`` done ones: ``progress(offset + step, steps)``."""
        progress = self.progress
        if progress is None:
            return None
        return lambda step: progress(offset + int(step), int(self.steps))

    def adapted_model(self, tuned: torch.nn.Module, metadata: dict[str, Any]) -> SRModel:
        """The result: ``tuned`` mixed with the start (``mix``), named ``"<start> adapted"``."""
        net = mix_weights(self.base.net, copy.deepcopy(tuned), self.mix).eval()
        if self.base.metadata.get("config") is not None:  # the start's training: what blur its output keeps
            metadata = {"config": self.base.metadata["config"], **metadata}
        return SRModel(
            name=f"{self.base.name} adapted",
            net=net,
            scale=int(self.base.scale),  # type: ignore[arg-type]
            in_channels=net.in_channels,
            normalization=dict(self.base.normalization),
            metadata=metadata,
            source="session",
        )


def _self_pairs_phase(
    run: _Run, steps: int, share: float, report: Callable[[int], None] | None
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Fine-tune a copy of the start on self-supervised pairs from the image (module docstring) for ``steps``
    steps or until ``share`` of the time left after its set-up (:meth:`_Run.share_of_rest`) is spent; returns the
    tuned network and what to record of it."""
    image, base, axes, seed = run.image, run.base, run.axes, run.seed
    scale = int(base.scale)  # type: ignore[arg-type]
    patch = _patch_size(image, axes, scale)
    normalization = dict(base.normalization)
    # the planes adapt() normalised once; a blur no wider than the start knows, as upscale tells it
    estimate = within_trained_blur(base, estimate_planes(run.planes))
    conditioned = bool(getattr(base.net.config, "cond_channels", 0))
    # ADAPT_BLUR: pairs whose target has the PSF the starting model was trained to produce (see
    # estimate.degradation_for); a conditioned network is told each synthetic input's condition
    clean = run.estimated is not None and is_clean(run.estimated)
    pair_blur = self_pair_blur(base, estimate.blur_sigma, clean=clean)
    source = None if pair_blur == "recurrence" else same_optics_source(estimate, scale)
    degradation = degradation_for(estimate, scale, source, recorrupted=1.0 + r2r_alpha(scale) ** 2)
    log.info("adapt: %s -> degradation %s", estimate.to_dict(), degradation.to_dict())

    net = copy.deepcopy(base.net).float().cpu().train().requires_grad_(True)  # an EMA copy may be frozen
    data = SelfPairs(
        [image], estimate, scale=scale, axes=axes, patch_size=patch, degradation=degradation, val_fraction=0.0,
        seed=seed, normalization=normalization, in_channels=net.in_channels, conditioned=conditioned,
    )  # fmt: skip
    config = TrainConfig(
        scale=scale, preset="psnr", steps=int(steps), batch_size=ADAPT_BATCH, patch_size=patch, lr=ADAPT_LR,
        val_every=0, device="cpu", seed=seed, net=net.config.to_dict(), normalization=normalization,
        degradation=degradation.to_dict(), cpu_bf16=run.bf16,
    )  # fmt: skip
    trainer = Trainer(config, data, net=net)
    progress = (lambda step, total: report(step)) if report is not None else None
    result = _run_until(trainer, run.share_of_rest(share), run.should_stop, progress)
    record = {
        "steps": int(result.steps_done),
        "estimate": estimate.to_dict(),
        "degradation": degradation.to_dict(),
        "self_pairs": pair_blur,
        "training": trainer.training_metadata(),
    }
    return trainer.trained_net(), record


def _blind_spot_phase(
    run: _Run,
    blur_sigma: float | None,
    steps: int,
    deadline: float | None,
    report: Callable[[int], None] | None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Fine-tune a copy of the start by blind-spot consistency at the image's own scale for ``steps`` steps or
    until ``deadline``; returns the tuned network and what to record of it.

    ``blur_sigma`` stated: the network is told the image's estimate with it in place (what
    ``upscale(image, degradation={"blur_sigma": blur_sigma})`` tells it) and the forward blur is
    :func:`forward_sigma` of it.  ``None``: the network is told the estimate as ``upscale`` tells it by default
    (after its blur check, :func:`~napari_superres.engine.infer.blur_check.checked_condition`) and the forward blur
    is fitted to its own output (:func:`fit_forward_blur`).
    """
    base = run.base
    scale = int(base.scale)  # type: ignore[arg-type]
    planes = run.planes
    stated = blur_sigma is not None
    if blur_sigma is None:
        assert run.estimated is not None
        # as upscale tells the start: an adapted start its own adapted blur (blur_check.adapted_condition)
        estimate, stated = adapted_condition(base, within_trained_blur(base, inference_condition(run.estimated)))
    else:
        estimate = DegradationRequest.parse({"blur_sigma": blur_sigma}).resolve(lambda: planes)
    condition = estimate.as_tensor() if base.net.cond_channels else None
    target_blur = trained_target_blur(base)
    implied = forward_sigma(estimate.blur_sigma, scale, target_blur)
    net = copy.deepcopy(base.net).float().cpu().train().requires_grad_(True)
    if blur_sigma is None:
        plane = planes[len(planes) // 2]
        # where upscale checks its estimate (CHECK_SCALES), the start is told the blur that check tells it
        checked = scale in CHECK_SCALES and not stated
        sigma, raised = fit_forward_blur(
            net, plane, condition, scale=scale, implied=implied, target_blur=None if stated else target_blur,
            max_blur=recorded_max_blur(base) if checked else None,
        )  # fmt: skip
        if raised is not None and checked:
            estimate = replace(estimate, blur_sigma=raised)
            condition = estimate.as_tensor()
            implied = forward_sigma(raised, scale, target_blur)
    else:
        sigma = implied
    record: dict[str, Any] = {
        "steps": 0,
        "forward_sigma": round(sigma, 4),
        "implied_sigma": round(implied, 4),
        "condition": estimate.to_dict() if condition is not None else None,
    }
    if condition is not None:  # what upscale tells the adapted model unless told a blur (blur_check.adapted_condition)
        record[ADAPTED_BLUR_KEY] = {"blur_sigma": float(estimate.blur_sigma), "stated": stated}
    if steps < 1:
        return net, record
    recorrupt = (
        (estimate.noise_gain, estimate.noise_offset) if blur_sigma is not None and TOLD_BLUR_RECORRUPTS else None
    )
    told = estimate if condition is not None else None  # what a conditioned network is told
    patches = BlindSpotPatches(planes, told, patch=BLIND_SPOT_PATCH, seed=run.seed, recorrupt=recorrupt)
    batch_size = blind_spot_batch(run.bf16)
    record.update(batch=batch_size, noise="recorrupted" if recorrupt else "masked")
    memory_format = BLIND_SPOT_MEMORY_FORMAT
    net.to(memory_format=memory_format)
    step = BlindSpotStep(
        net, forward_sigma=sigma, scale=scale, lr=ADAPT_LR, schedule=Schedule("cosine", steps),
        autocast=(lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if run.bf16 else None,
        loss="l2" if recorrupt else "l1",
    )  # fmt: skip

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        lq, gt = patches.sample(batch_size)
        return lq.contiguous(memory_format=memory_format), gt

    remaining = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
    loop = FitLoop(step, batch, seconds=remaining)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed)
        stopped = loop.run(
            int(steps),
            should_stop=run.should_stop,
            callback=(lambda r: report(int(r.step))) if report is not None else None,
        )
    if stopped:
        raise Cancelled("adaptation cancelled")
    record["steps"] = int(loop.step)
    return net.to(memory_format=torch.contiguous_format), record


def _adapt_self_pairs(run: _Run) -> SRModel:
    """:func:`adapt` of a start with other than one input channel, or of an image that reads clean: self-pairs
    alone."""
    tuned, record = _self_pairs_phase(run, run.steps, 1.0, run.reporter(0))
    training = record.pop("training")
    metadata = {"adapt": _record(run, "self-pairs", record["steps"], record), "training": training}
    return run.adapted_model(tuned, metadata)


def _adapt_both(run: _Run) -> SRModel:
    """:func:`adapt` with nothing stated: self-pairs, then blind-spot through the fitted forward blur, averaged
    (:data:`BLIND_SPOT_SHARE`) and mixed with the start (:data:`ADAPT_MIX`)."""
    pair_steps = min(run.pair_steps, run.steps)
    paired, pairs = _self_pairs_phase(run, pair_steps, SELF_PAIR_TIME_SHARE, run.reporter(0))
    spot, blind = _blind_spot_phase(run, None, run.steps - pair_steps, run.deadline(), run.reporter(pairs["steps"]))
    tuned = mix_weights(paired, spot, BLIND_SPOT_SHARE)  # (1 - share) self-pairs + share blind-spot
    training = pairs.pop("training")
    told_blur = {ADAPTED_BLUR_KEY: blind.pop(ADAPTED_BLUR_KEY)} if ADAPTED_BLUR_KEY in blind else {}
    blind_spot = {**blind, "share": round(BLIND_SPOT_SHARE, 4)}
    record = {**pairs, "self_pair_steps": pairs["steps"], "blind_spot": blind_spot, **told_blur}
    metadata = {"adapt": _record(run, "self-pairs + blind-spot", pairs["steps"] + blind["steps"], record)}
    return run.adapted_model(tuned, {**metadata, "training": training})


def _adapt_blind_spot(run: _Run, blur_sigma: float) -> SRModel:
    """:func:`adapt` with the microscope's blur given: blind-spot consistency at the image's own scale."""
    tuned, record = _blind_spot_phase(run, blur_sigma, run.steps, run.deadline(), run.reporter(0))
    metadata = {"adapt": _record(run, "blind-spot", record["steps"], {"blur_sigma": blur_sigma, **record})}
    return run.adapted_model(tuned, metadata)


def _record(run: _Run, method: str, steps: int, details: dict[str, Any]) -> dict[str, Any]:
    """``metadata["adapt"]``: the start, the method, steps done, mix, time spent, normalisation and ``details``."""
    return {
        "from": run.base.name,
        "method": method,
        **details,
        "steps": int(steps),
        "mix": run.mix,
        "precision": "bf16" if run.bf16 else "fp32",
        "seconds": round(time.perf_counter() - run.t0, 2),
        "normalization": dict(run.base.normalization),
    }


__all__ = [
    "ADAPT_CPU_BF16",
    "ADAPT_MIX",
    "ADAPT_SECONDS",
    "ADAPT_STEPS",
    "BLIND_SPOT_BATCH",
    "BLIND_SPOT_BATCH_BF16",
    "BLIND_SPOT_SHARE",
    "BLIND_SPOT_STEPS",
    "BLIND_SPOT_STEPS_BF16",
    "SELF_PAIR_STEPS",
    "SELF_PAIR_TIME_SHARE",
    "SelfPairs",
    "TOLD_BLUR_RECORRUPTS",
    "adapt",
    "blind_spot_batch",
    "cpu_bf16",
    "mix_weights",
    "planned_steps",
    "r2r_alpha",
    "self_pair_blur",
    "trained_target_blur",
]
