"""Blind-spot consistency: fine-tune a super-resolution network on one noisy image at its own scale.

The network's output, blurred by the rest of the microscope's PSF and area-binned back to the
image's pixels, must predict pixels it did not see (Noise2Self, Batson & Royer 2019; the
J-invariant masking of Noise2Void, Krull et al. 2019, applied through the forward model of the
acquisition as in Noise2SR, Tang et al. 2022).  A grid of input pixels is replaced by the mean
of its four neighbours; the loss is the L1 difference between the re-degraded output and the
image at those pixels only, so the network cannot copy their noise and learns this image's
content under its noise.  It needs the PSF: with a wrong one the output drifts sharper or
blurrier than the reference (30 % too wide measured -5 to -7 dB), and a blur *estimated* from the
image reads smooth content as optics.  So the forward blur is either the one the caller states
(``adapt(image, blur_sigma=...)``: :func:`forward_sigma` of it) or, by default, the one that takes
the starting network's own output on the image back to the image (:func:`fit_forward_sigma`): that
follows what the network was told, not the raw estimate; where the start was told too little blur (its
output needs almost none to explain the image) it is fitted again from the start told more, or floored.

>>> patches = BlindSpotPatches([normalised_plane], condition, patch=32)           # doctest: +SKIP
>>> step = BlindSpotStep(net, forward_sigma=1.99, scale=2, lr=5e-5, schedule=Schedule("cosine", 150))  # doctest: +SKIP
>>> FitLoop(step, lambda: patches.sample(8)).run(150)                         # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nets.conditioning import PIXEL_BLUR_SIGMA, with_condition
from .degradation import gaussian_blur
from .schedule import Schedule
from .steps import PixelStep

#: Masked input pixels: one per ``MASK_GRID x MASK_GRID`` block (random phase per patch).
MASK_GRID = 3
#: Low-res pixels at each patch border left out of the loss (the output's blur reaches past the patch).
LOSS_BORDER = 4
#: :func:`fit_forward_sigma`: forward blurs tried (output px) are multiples of this ...
FIT_STEP = 0.1
#: ... on the centre of the plane, at most this many low-res px per side ...
FIT_CROP = 128
#: ... and the result is never below this share of the forward blur the image's condition implies.  A start told
#: much too little blur under-sharpens and its output then implies too little: HeLa 2 of the your-data set reads
#: 0.87 px (its PSF is >= 1.19), the fit gives 0.20 output px against 1.42 implied and ~2.0 true; adapt's default
#: lost 0.61 dB to the built-in there, 0.44 with this floor, 0.23 with a floor of 0.8.  But a blur estimate that
#: over-reads (smooth content, or a mildly blurred image: the quality benchmark's microscope protocol, 0.58 px
#: read as 1.0) implies too much while the fit finds the truth (0.80 / 0.70 output px against 0.87 true, 1.66
#: implied): there a floor of 0.8 cost 3-4 dB (synthetic field 1000: -3.57 against +0.71 unfloored), this one
#: 0.08 / 0.16 dB.  Microscope protocol, six held-out images, gain over the built-in: +0.63 / +1.85 / -0.22 /
#: +0.26 / +0.06 / -0.44 (unfloored +0.71 / +2.01 / -0.22 / +0.26 / -0.01 / -0.44).
FIT_FLOOR = 0.5
#: A fit under the floor means the start's output needed (almost) no blur to explain the image: the start was
#: told too little blur and under-sharpened.  Then the fit is repeated with the start told 1.1, 1.2 ... up to
#: ``REFIT_MAX`` times the blur, and the first forward blur that reaches ``REFIT_SHARE`` of what its own told blur
#: implies is taken (at their estimates the held-out low-photon images fit 0.62-0.97 of it).  On HeLa 2 (reads 0.87
#: px, PSF >= 1.19) the start told 1.2x fits 1.5 output px (truth ~2.0) and adapt went from -0.44 dB under the
#: built-in to +0.01 (with a PSF of sigma 1.4 / 1.7 low-res px: -0.48 -> -0.09, -0.57 -> -0.27); on the other
#: images and protocols measured (x2 low-photon with PSF sigma 0.5, 0.8, 1.15, 1.4 and 1.7, the microscope protocol,
#: 29 of the built-in's training planes; x4) no search succeeded or it was not needed, and nothing changed: where
#: the blur reads too wide, a start told more only over-sharpens and never fits that share.
REFIT_MAX = 1.5
REFIT_SHARE = 0.75
#: Replaces a masked pixel: the mean of its four neighbours.
_NEIGHBOURS = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]]).view(1, 1, 3, 3)


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


def fit_forward_sigma(
    net: nn.Module,
    plane: np.ndarray,
    condition: torch.Tensor | None,
    *,
    scale: int,
    implied: float,
    target_blur: float | None = None,
) -> float:
    """The forward blur (output px) that best takes ``net``'s output on ``plane`` back to ``plane``.

    ``plane``: a normalised 2-D low-res plane (its centre, :data:`FIT_CROP` px per side, is used);
    ``condition``: the ``(3,)`` condition ``net`` is told (``None``: a blind network); ``implied``: the
    forward blur the condition's blur implies (:func:`forward_sigma`).  The output is blurred by each
    multiple of :data:`FIT_STEP` up to ``max(1.5 * implied, scale)``, area-binned and compared with the plane
    (mean squared error, :data:`LOSS_BORDER` px borders left out); the best is returned, but never less than
    :data:`FIT_FLOOR` ``* implied``.  With ``target_blur`` (the start's, as :func:`forward_sigma` takes it) and a
    condition, a fit under that floor is repeated with the start told more blur (:data:`REFIT_MAX`,
    :data:`REFIT_SHARE`).  ``net`` is run in eval mode, without gradients; its mode is kept.
    """
    best = _best_forward_sigma(net, plane, condition, scale=scale, implied=implied)
    floor = FIT_FLOOR * float(implied)
    if best >= floor or condition is None or target_blur is None:
        return max(best, floor)
    told = float(condition[2])
    for factor in np.arange(1.1, REFIT_MAX + 1e-6, 0.1):
        raised = condition.clone()
        raised[2] = told * float(factor)
        implied_raised = forward_sigma(float(raised[2]), scale, target_blur)
        refit = _best_forward_sigma(net, plane, raised, scale=scale, implied=implied_raised)
        if refit >= REFIT_SHARE * implied_raised:
            return refit
    return floor


def _best_forward_sigma(
    net: nn.Module, plane: np.ndarray, condition: torch.Tensor | None, *, scale: int, implied: float
) -> float:
    """:func:`fit_forward_sigma`'s least-squares fit, without the floor."""
    h, w = plane.shape
    top, left = max((h - FIT_CROP) // 2, 0), max((w - FIT_CROP) // 2, 0)
    crop = np.ascontiguousarray(plane[top : top + FIT_CROP, left : left + FIT_CROP], dtype=np.float32)
    x = torch.from_numpy(crop)[None, None]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(x if condition is None else with_condition(x, condition))
    finally:
        net.train(was_training)
    b = LOSS_BORDER
    target = x[..., b:-b, b:-b]

    def error(sigma: float) -> float:
        predicted = F.avg_pool2d(gaussian_blur(out, sigma), int(scale))[..., b:-b, b:-b]
        return float(((predicted - target) ** 2).mean())

    candidates = np.arange(0.0, max(1.5 * float(implied), float(scale)) + FIT_STEP / 2, FIT_STEP)
    return float(min(candidates, key=error))


def mask_batch(
    patches: torch.Tensor, rng: np.random.Generator, grid: int = MASK_GRID
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(masked, mask)`` for ``patches`` ``(N, 1, h, w)``: one pixel per ``grid x grid`` block (random phase
    per patch) replaced by its four neighbours' mean; ``mask`` is 1 there, else 0."""
    mask = torch.zeros_like(patches)
    for i in range(patches.shape[0]):
        oy, ox = (int(v) for v in rng.integers(grid, size=2))
        mask[i, :, oy::grid, ox::grid] = 1.0
    neighbours = F.conv2d(F.pad(patches, (1, 1, 1, 1), mode="reflect"), _NEIGHBOURS.to(patches.dtype))
    return patches * (1.0 - mask) + neighbours * mask, mask


class BlindSpotPatches:
    """Random masked patches of normalised 2-D planes (one image's, all the same shape), with the
    network's condition maps.

    ``sample(n)`` returns ``(lq, gt)``: ``lq`` ``(n, 1 + COND_CHANNELS, p, p)`` (masked patch and its
    maps under ``condition``, a ``(3,)`` tensor; ``None``: a blind network, no maps), ``gt`` ``(n, 2, p, p)`` (the unmasked patch and the
    mask), rotated by random multiples of 90 degrees.
    """

    def __init__(self, planes: list[np.ndarray], condition: torch.Tensor | None, *, patch: int, seed: int = 0) -> None:
        self.planes = [torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32)) for p in planes]
        if not self.planes or len({tuple(p.shape) for p in self.planes}) != 1:
            raise ValueError("blind-spot patches need one or more 2-D planes of the same shape")
        h, w = self.planes[0].shape
        self.patch = int(min(patch, h, w))
        if self.patch < 2 * LOSS_BORDER + MASK_GRID:
            raise ValueError(f"the image ({h} x {w} px) is too small for blind-spot fine-tuning")
        self.condition = condition
        self.rng = np.random.default_rng(seed)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        p, (h, w) = self.patch, self.planes[0].shape
        ks = self.rng.integers(0, len(self.planes), n)
        ys, xs = self.rng.integers(0, h - p + 1, n), self.rng.integers(0, w - p + 1, n)
        batch = torch.stack([self.planes[k][y : y + p, x : x + p] for k, y, x in zip(ks, ys, xs)])[:, None]
        batch = torch.rot90(batch, int(self.rng.integers(4)), (2, 3))
        masked, mask = mask_batch(batch, self.rng)
        lq = masked if self.condition is None else with_condition(masked, self.condition)
        return lq, torch.cat([batch, mask], dim=1)


class BlindSpotStep(PixelStep):
    """A :class:`PixelStep` whose ``"blind_spot"`` term compares the output, blurred by ``forward_sigma``
    (output px) and area-binned by ``scale``, with the image at the masked pixels (``gt`` as
    :class:`BlindSpotPatches` gives it), L1, borders of :data:`LOSS_BORDER` px left out.  ``autocast``: a
    context-manager factory for the network's forward (e.g. bf16 on the CPU); the loss is float32."""

    def __init__(
        self,
        net: nn.Module,
        *,
        forward_sigma: float,
        scale: int,
        lr: float,
        schedule: Schedule,
        autocast: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        extra = {} if autocast is None else {"autocast": autocast}
        super().__init__(net, lr=lr, schedule=schedule, weights={"blind_spot": 1.0}, **extra)
        self.forward_sigma = float(forward_sigma)
        self.scale = int(scale)

    def terms(self, sr: torch.Tensor, gt: torch.Tensor, weights: Any) -> dict[str, torch.Tensor]:
        predicted = F.avg_pool2d(gaussian_blur(sr, self.forward_sigma), self.scale)
        b = LOSS_BORDER
        target, mask = gt[:, :1, b:-b, b:-b], gt[:, 1:, b:-b, b:-b]
        error = (predicted[..., b:-b, b:-b] - target).abs() * mask
        return {"blind_spot": error.sum() / mask.sum().clamp(min=1.0)}


__all__ = [
    "FIT_FLOOR",
    "LOSS_BORDER",
    "MASK_GRID",
    "REFIT_MAX",
    "REFIT_SHARE",
    "BlindSpotPatches",
    "BlindSpotStep",
    "fit_forward_sigma",
    "forward_sigma",
    "mask_batch",
]
