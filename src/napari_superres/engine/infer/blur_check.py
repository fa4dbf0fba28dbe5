"""The forward model of an acquisition, fitted to a network's own output: does the network sharpen enough?

A super-resolution network's output, blurred by the rest of the microscope's PSF and area-binned back to the
image's pixels, should give the image again.  The blur estimate (:mod:`~napari_superres.engine.noise`) can read
an image's optics too narrow; a conditioned network told too little blur then under-sharpens, and its output needs
less further blur to explain the image than its told blur implies.  :func:`best_forward_sigma` fits that further
blur by least squares; :func:`raised_blur` tells the network more blur (1.1, 1.2 ... :data:`REFIT_MAX` times)
until its output needs the share of the forward blur its told blur implies (:data:`REFIT_SHARE`): at once where
the output needed almost none (under :data:`FIT_FLOOR`), and under the share only where told 1.1x the output
needs a larger share (a network that sharpens enough needs a smaller share of a wider told blur).  ``upscale``
uses it as a check of its estimate (:func:`checked_condition`); adapt's blind-spot fine-tune fits its forward blur
with the same functions (:func:`~napari_superres.engine.train.blind_spot.fit_forward_blur`).

Units: blurs told to the network (``blur_sigma``) are Gaussian sigmas in the image's own pixels, the pixel's
integration included (as the estimate gives them); forward blurs in output pixels.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..blur import gaussian_blur
from ..nets.conditioning import PIXEL_BLUR_SIGMA, DegradationCondition, with_condition

#: :func:`best_forward_sigma`: forward blurs tried (output px) are multiples of this ...
FIT_STEP = 0.1
#: ... searched coarse to fine: every ``FIT_COARSE``-th first, then those around the best of them ...
FIT_COARSE = 5
#: ... on the centre of the plane, at most this many low-res px per side ...
FIT_CROP = 128
#: ... leaving this many low-res px at each border out of the comparison (the output's blur reaches past the crop).
FIT_BORDER = 4
#: A forward blur fitted under this share of what the told blur implies means the network's output needed
#: (almost) no blur to explain the image: it was told too little blur and under-sharpened.  adapt's blind spot
#: never takes a forward blur below it.  HeLa 2 of the your-data set reads 0.87 px (its PSF is >= 1.19), the fit
#: gives 0.20 output px against 1.42 implied and ~2.0 true; adapt's default lost 0.61 dB to the built-in there,
#: 0.44 with this floor, 0.23 with a floor of 0.8.  But a blur estimate that over-reads (smooth content, or a
#: mildly blurred image: the quality benchmark's microscope protocol, 0.58 px read as 1.0) implies too much while
#: the fit finds the truth (0.80 / 0.70 output px against 0.87 true, 1.66 implied): there a floor of 0.8 cost
#: 3-4 dB (synthetic field 1000: -3.57 against +0.71 unfloored), this one 0.08 / 0.16 dB.  Microscope protocol,
#: six held-out images, gain of adapt over the built-in: +0.63 / +1.85 / -0.22 / +0.26 / +0.06 / -0.44
#: (unfloored +0.71 / +2.01 / -0.22 / +0.26 / -0.01 / -0.44).
FIT_FLOOR = 0.5
#: A fit under the floor is repeated with the network told 1.1, 1.2 ... up to ``REFIT_MAX`` times the blur, and
#: the first told blur whose fit reaches ``REFIT_SHARE`` of what it implies is taken (at their estimates the
#: held-out low-photon images fit 0.62-0.97 of it).  On HeLa 2 (reads 0.87 px, PSF >= 1.19) the built-in told 1.2x
#: fits 1.5 output px (truth ~2.0), and adapt's blind spot through that forward blur went from -0.44 dB under the
#: built-in to +0.01 (with a PSF of sigma 1.4 / 1.7 low-res px: -0.48 -> -0.09, -0.57 -> -0.27); on the other
#: images and protocols measured (x2 low-photon with PSF sigma 0.5, 0.8, 1.15, 1.4 and 1.7, the microscope
#: protocol, 29 of the built-in's training planes; x4) no search succeeded or it was not needed: where the blur
#: reads too wide, a network told more only over-sharpens and never fits that share.
REFIT_MAX = 1.5
REFIT_SHARE = 0.75
#: Over the floor (a share that grows when told more, :func:`raised_blur`) the search stops at this many times the
#: blur: the raises measured were 1.2x and 1.3x (HeLa 0 binned 2x and 3x), and each further step is one more
#: forward pass and fit (a 512² upscale whose share grew without reaching the share took 1.41x the time of one
#: without the check with the search to 1.5x, 1.36x with this cap).
RISE_MAX = 1.3
#: ``upscale`` checks its blur estimate (:func:`checked_condition`) for models of these scales.  At x4 the check
#: raised the blur on no microscopy image of the quality benchmark (51 cases) and on two natural photographs under
#: the microscope protocol, which lost 0.02 and 0.32 dB; it also costs more there (a 512 px forward pass: ~0.45 s
#: against ~1.2 s for the whole upscale of a 512² image).
CHECK_SCALES = (2,)


def forward_sigma(blur_sigma: float, scale: int, target_blur: float = 0.0) -> float:
    """Gaussian sigma (output px) that takes the network's output to the low-res image before binning.

    ``blur_sigma``: the image's effective blur in its own pixels (pixel integration included, as the
    estimate and :class:`~napari_superres.engine.nets.conditioning.DegradationCondition` give it);
    ``target_blur``: the share of the optical blur the network was trained to keep
    (``DegradationConfig.target_blur``; the built-ins: ``1 / scale``).  The optics are
    ``sigma_d = scale * sqrt(blur_sigma^2 - 1/12)`` output px wide, the output keeps
    ``target_blur * sigma_d`` of it, the rest is ``sigma_d * sqrt(1 - target_blur^2)``.
    """
    s = int(scale)
    sigma_d = s * math.sqrt(max(float(blur_sigma) ** 2 - PIXEL_BLUR_SIGMA**2, 0.0))
    return sigma_d * math.sqrt(max(1.0 - float(target_blur) ** 2, 0.0))


def recorded_target_blur(model: Any) -> float | None:
    """The share of the optical blur an :class:`~napari_superres.engine.SRModel` was trained to keep (its training
    degradation's ``target_blur``; 0: trained towards sharp fields); ``None`` where its metadata does not say."""
    degradation = ((getattr(model, "metadata", None) or {}).get("config") or {}).get("degradation") or {}
    value = degradation.get("target_blur")
    return None if value is None else float(value)


def recorded_max_blur(model: Any) -> float | None:
    """The widest blur an :class:`~napari_superres.engine.SRModel` was trained on, as it is told one (low-res px,
    the pixel's integration included): its training degradation's largest ``blur_sigma`` (high-res px) over its
    scale; the pixel's own blur where it was trained without blur; ``None`` where its metadata does not say."""
    config = (getattr(model, "metadata", None) or {}).get("config") or {}
    degradation = config.get("degradation")
    scale = getattr(model, "scale", None) or config.get("scale")
    if not isinstance(degradation, dict) or not scale:
        return None
    blur = degradation.get("blur_sigma") or 0.0
    widest = float(max(blur)) if isinstance(blur, (list, tuple)) else float(blur)
    return math.sqrt((widest / float(scale)) ** 2 + PIXEL_BLUR_SIGMA**2)


def trained_blur_ceiling(model: Any) -> float | None:
    """The widest blur an estimate may tell ``model`` (low-res px, the pixel's integration included): the widest
    its training synthesized (:func:`recorded_max_blur`), for a model trained on synthesized optical blur;
    ``None`` (no ceiling) for one trained on measured pairs (whose conditions were estimates of real images, of
    any width), without optical blur, or whose metadata does not say."""
    metadata = getattr(model, "metadata", None) or {}
    if (metadata.get("data") or {}).get("paired"):
        return None
    degradation = (metadata.get("config") or {}).get("degradation")
    if not isinstance(degradation, dict) or not degradation.get("blur_sigma") or not degradation.get("blur_prob", 1):
        return None
    blur = degradation["blur_sigma"]
    if float(max(blur) if isinstance(blur, (list, tuple)) else blur) <= 0:
        return None
    return recorded_max_blur(model)


#: An estimate with a ``blur_sigma`` field: a :class:`DegradationCondition` or training's ``ImageEstimate``.
Estimate = TypeVar("Estimate")


def within_trained_blur(model: Any, condition: Estimate) -> Estimate:
    """An *estimated* ``condition`` (a dataclass with a ``blur_sigma`` field: a :class:`DegradationCondition`, or
    adapt's ``ImageEstimate`` for its self-pairs) with its blur no wider than ``model`` was trained on
    (:func:`trained_blur_ceiling`); ``condition`` itself where it is within, or the model has no ceiling.

    The estimate reads very noisy or very smooth planes as :data:`~napari_superres.engine.noise.MAX_BLUR_SIGMA`
    (6 px: no band of their spectrum rises clear of the noise) and smooth content wider than its optics; a network
    told a blur it never saw deblurs past anything it learned.  Measured (the low-photon protocol, PSF sigma 1.15
    low-res px, 14 held-out images: four fluorescence, four synthetic fields, the four generator cells, two EM; at
    800, 100, 50, 30 and 10 photons peak, x2 and x4): the estimate read wider than the built-ins' 1.72 px in 40 of
    the 140 cases (6 px in 17), told 1.72 instead they gained +0.23 dB on average (-0.03 to +1.06; 6 px cases
    +0.31).  A blur the caller states is never changed.
    """
    ceiling = trained_blur_ceiling(model)
    if ceiling is None or condition.blur_sigma <= ceiling:  # type: ignore[attr-defined]
        return condition
    return replace(condition, blur_sigma=ceiling)  # type: ignore[type-var]


#: ``metadata["adapt"]`` key of an adapted model: ``{"blur_sigma": low-res px, "stated": bool}``, the blur its
#: fine-tune told the network (:func:`recorded_adapted_blur`).
ADAPTED_BLUR_KEY = "told_blur"


def recorded_adapted_blur(model: Any) -> tuple[float, bool] | None:
    """``(blur_sigma, stated)``: the blur (low-res px, the pixel's integration included) an adapted model's fine-tune
    told it (``metadata["adapt"]["told_blur"]``), stated by adapt's caller or estimated (after the check); ``None``
    for a model adapt did not fine-tune told a blur."""
    adapt = (getattr(model, "metadata", None) or {}).get("adapt")
    told = adapt.get(ADAPTED_BLUR_KEY) if isinstance(adapt, dict) else None
    if not isinstance(told, dict) or told.get("blur_sigma") is None:
        return None
    return float(told["blur_sigma"]), bool(told.get("stated", False))


def adapted_condition(model: Any, condition: DegradationCondition) -> tuple[DegradationCondition, bool]:
    """``(condition, stated)``: an estimated ``condition`` with the blur ``model`` was adapted told
    (:func:`recorded_adapted_blur`): a stated one in place of the estimate's (``stated`` True: nothing to check), an
    estimated one as its floor; ``condition`` itself (``stated`` False) for other models.

    An adapted network was fine-tuned to be consistent with the image through that blur; told less it
    under-sharpens.  Measured (x2, low-photon protocol, 17 held-out images, the default adapt): the check alone
    told HeLa 0 binned 2x its raw estimate, 0.90 px, where adapt was told 1.08 (the built-in's check raised it):
    -0.14 dB under the built-in; from the floor +0.22; the other sixteen images within 0.02 dB.
    """
    recorded = recorded_adapted_blur(model)
    if recorded is None:
        return condition, False
    blur, stated = recorded
    return replace(condition, blur_sigma=blur if stated else max(blur, condition.blur_sigma)), stated


def best_forward_sigma(
    net: nn.Module, plane: np.ndarray, condition: torch.Tensor | None, *, scale: int, implied: float
) -> float:
    """The forward blur (output px) that best takes ``net``'s output on ``plane`` back to ``plane``.

    ``plane``: a normalised 2-D low-res plane (its centre, :data:`FIT_CROP` px per side, is used); ``condition``:
    the ``(3,)`` condition ``net`` is told (``None``: a blind network); ``implied``: the forward blur that
    condition's blur implies (:func:`forward_sigma`).  The output is blurred by multiples of :data:`FIT_STEP` up
    to ``max(1.5 * implied, scale)`` (coarse to fine, :data:`FIT_COARSE`), area-binned and compared with the
    plane (mean squared error, :data:`FIT_BORDER` px borders left out).  ``net`` runs in eval mode, without
    gradients, float32 on the device of its parameters; its mode is kept.
    """
    h, w = plane.shape
    top, left = max((h - FIT_CROP) // 2, 0), max((w - FIT_CROP) // 2, 0)
    crop = np.ascontiguousarray(plane[top : top + FIT_CROP, left : left + FIT_CROP], dtype=np.float32)
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    x = torch.from_numpy(crop)[None, None].to(device)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(x if condition is None else with_condition(x, condition.to(device))).float()
    finally:
        net.train(was_training)
    b = FIT_BORDER
    target = x[..., b:-b, b:-b]

    errors: dict[int, float] = {}

    def error(i: int) -> float:  # of candidate i: sigma i * FIT_STEP
        if i not in errors:
            predicted = F.avg_pool2d(gaussian_blur(out, i * FIT_STEP), int(scale))[..., b:-b, b:-b]
            errors[i] = float(((predicted - target) ** 2).mean())
        return errors[i]

    last = int(round(max(1.5 * float(implied), float(scale)) / FIT_STEP))
    # coarse to fine: every FIT_COARSE-th candidate, then all those within FIT_COARSE of the best of them (the
    # error falls, then rises, with the blur: the best of all, in a third of the evaluations)
    coarse = min(range(0, last + 1, FIT_COARSE), key=error)
    best = min(range(max(coarse - FIT_COARSE, 0), min(coarse + FIT_COARSE, last) + 1), key=error)
    return best * FIT_STEP


def raised_blur(
    net: nn.Module,
    plane: np.ndarray,
    condition: torch.Tensor,
    *,
    scale: int,
    target_blur: float,
    max_blur: float | None = None,
    fitted: float | None = None,
) -> tuple[float, float] | None:
    """``(told blur, its forward blur)`` for a network that under-sharpens when told ``condition``'s blur.

    ``None`` when told ``condition`` its output needs at least :data:`REFIT_SHARE` of the forward blur the
    condition implies (nothing to raise); or at least :data:`FIT_FLOOR` of it and, told 0.1 times the blur more, no
    larger share of what that implies (the network sharpens as told; most images fit 0.62-0.97 at their estimate,
    and their share falls as they are told more; the search ends at the first share that does not grow, and at
    :data:`RISE_MAX` times the blur); or when no told blur up to :data:`REFIT_MAX` times it (and up to
    ``max_blur``, the widest the network was trained on, :func:`recorded_max_blur`) reaches :data:`REFIT_SHARE`
    of its own implied forward blur (told more, it only over-sharpens).  A condition already at ``max_blur`` or
    wider is not looked at.  ``condition``: the ``(3,)`` tensor ``(noise gain, noise offset, blur sigma)``;
    ``target_blur``: as :func:`forward_sigma` takes it; ``fitted``: :func:`best_forward_sigma` at ``condition``
    where the caller has it.
    """
    told = float(condition[2])
    factors = [f for f in np.arange(1.1, REFIT_MAX + 1e-6, 0.1) if max_blur is None or told * f <= max_blur]
    if not factors:
        return None
    implied = forward_sigma(told, scale, target_blur)
    if fitted is None:
        fitted = best_forward_sigma(net, plane, condition, scale=scale, implied=implied)
    if fitted >= REFIT_SHARE * implied:
        return None
    share = fitted / implied if implied > 0 else 0.0
    rising = share >= FIT_FLOOR  # over the floor: told more, the share must keep growing
    for factor in factors:
        if rising and factor > RISE_MAX + 1e-6:
            return None
        raised = condition.clone()
        raised[2] = told * float(factor)
        implied_raised = forward_sigma(float(raised[2]), scale, target_blur)
        refit = best_forward_sigma(net, plane, raised, scale=scale, implied=implied_raised)
        if refit >= REFIT_SHARE * implied_raised:
            return float(raised[2]), refit
        if rising and refit <= share * implied_raised:
            return None  # told more, the output needs no larger share: the network sharpens as told
        share = refit / implied_raised
    return None


def checked_condition(
    net: nn.Module,
    plane: np.ndarray,
    condition: DegradationCondition,
    *,
    scale: int,
    target_blur: float,
    max_blur: float | None = None,
) -> DegradationCondition:
    """``condition`` with its blur raised where ``net`` told it under-sharpens (:func:`raised_blur`, never past
    ``max_blur``), else itself.

    What ``upscale`` tells a conditioned network whose training says what blur it keeps, when the blur was
    estimated (a blur the caller states is never changed), for models of the scales in :data:`CHECK_SCALES`.
    Measured (``benchmarks/quality.py`` at x2: 17 held-out microscopy images under three protocols, 25 natural
    ones under two): it raises the blur on one, HeLa 2 of the low-photon set (reads 0.87 px, PSF >= 1.19), told
    1.2x: the built-in's gain over bicubic +4.34 -> +4.61 dB; every other image is told its estimate as before.
    The rising-share rule above the floor changed no microscopy image there (nor with the low-photon PSF at 0.8
    or 1.7 low-res px) and one natural photograph under the microscope protocol (T91 tt8, -0.11 dB); on HeLa 0
    area-binned 2x and 3x before the protocol (its blur reads 0.90 and 0.95 px, truth 1.19) it told 1.2x and
    1.3x: +2.15 -> +2.58 and +1.57 -> +1.79 dB.  Of 35 fluorescence planes (held-out and training files, binned 1x
    to 3x, one noise draw) only the 3x HeLa 0 changed; in that draw the 2x one reads 0.87 px and is not raised.
    """
    raised = raised_blur(net, plane, condition.as_tensor(), scale=scale, target_blur=target_blur, max_blur=max_blur)
    return condition if raised is None else replace(condition, blur_sigma=raised[0])


__all__ = [
    "ADAPTED_BLUR_KEY",
    "CHECK_SCALES",
    "FIT_BORDER",
    "FIT_COARSE",
    "FIT_CROP",
    "FIT_FLOOR",
    "FIT_STEP",
    "REFIT_MAX",
    "REFIT_SHARE",
    "RISE_MAX",
    "adapted_condition",
    "best_forward_sigma",
    "checked_condition",
    "forward_sigma",
    "raised_blur",
    "recorded_adapted_blur",
    "recorded_max_blur",
    "recorded_target_blur",
    "trained_blur_ceiling",
    "within_trained_blur",
]
