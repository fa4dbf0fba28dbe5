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
the starting network's own output on the image back to the image (:func:`fit_forward_blur`): that
follows what the network was told, not the raw estimate; where the start was told too little blur (its
output needs almost none to explain the image) it is fitted again from the start told more, or floored.

Where the blur is stated, the noise is kept out of the loss by recorruption instead of masking
(Recorrupted-to-Recorrupted, Pang et al., CVPR 2021, at the image's own scale: ``BlindSpotPatches(...,
recorrupt=(noise_gain, noise_offset))`` with ``BlindSpotStep(..., loss="l2")``): every pixel enters the loss, and
the network sees the whole image, a little noisier (:data:`RECORRUPT_ALPHA`).

>>> patches = BlindSpotPatches([normalised_plane], condition, patch=32)           # doctest: +SKIP
>>> step = BlindSpotStep(net, forward_sigma=1.99, scale=2, lr=5e-5, schedule=Schedule("cosine", 150))  # doctest: +SKIP
>>> FitLoop(step, lambda: patches.sample(8)).run(150)                         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..blur import gaussian_blur
from ..infer.blur_check import (
    FIT_FLOOR,
    REFIT_MAX,
    REFIT_SHARE,
    best_forward_sigma,
    forward_sigma,
    raised_blur,
)
from ..nets.conditioning import DegradationCondition, with_condition
from .schedule import Schedule
from .steps import PixelStep

#: Masked input pixels: one per ``MASK_GRID x MASK_GRID`` block (random phase per patch).
MASK_GRID = 3
#: Low-res pixels at each patch border left out of the loss (the output's blur reaches past the patch).
LOSS_BORDER = 4
#: Recorruption strength: the input patch gets ``alpha * z`` added and the target ``z / alpha`` subtracted, ``z`` drawn
#: from the image's noise model (:func:`recorrupt_batch`).  Measured (``adapt(..., blur_sigma=)`` told the low-photon
#: protocol's PSF, 200 steps of 4 patches, float32; four fluorescence images, binned HeLa 0, two synthetic fields;
#: gain over the built-in): masked +0.877 dB on average (fluorescence +0.325), alpha 0.3 +0.861 (+0.341), 0.5 +0.957
#: (+0.409), **1.0 +1.006 (+0.453)**, 1.5 +0.959 (+0.414), 2.0 +0.861 (+0.335).  Telling the network the image's own
#: noise instead of the input's (alpha 0.5): +0.964.  In the default route, through the forward blur fitted to the
#: start's output, it scored lower than masking (alpha 0.5: +0.465 against +0.560; HeLa 2 -0.53 against +0.17).
RECORRUPT_ALPHA = 1.0
#: Replaces a masked pixel: the mean of its four neighbours.
_NEIGHBOURS = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]]).view(1, 1, 3, 3)


def fit_forward_blur(
    net: nn.Module,
    plane: np.ndarray,
    condition: torch.Tensor | None,
    *,
    scale: int,
    implied: float,
    target_blur: float | None = None,
    max_blur: float | None = None,
) -> tuple[float, float | None]:
    """``(forward blur, raised told blur)`` for blind-spot fine-tuning of ``net`` on ``plane``: the forward blur
    (output px) that best takes ``net``'s output back to ``plane``
    (:func:`~napari_superres.engine.infer.blur_check.best_forward_sigma`), never less than :data:`FIT_FLOOR`
    ``* implied``; the told blur is ``None`` unless it was raised.

    ``plane``: a normalised 2-D low-res plane; ``condition``: the ``(3,)`` condition ``net`` is told (``None``: a
    blind network); ``implied``: the forward blur the condition's blur implies (:func:`forward_sigma`).  With
    ``target_blur`` (the start's, as :func:`forward_sigma` takes it) and a condition, a fit under
    :data:`REFIT_SHARE` is checked as ``upscale`` checks its estimate
    (:func:`~napari_superres.engine.infer.blur_check.raised_blur`: under the floor, or with a share that grows
    when the start is told 1.1x the blur, the start is told more, up to ``max_blur``), and the first fit that
    reaches :data:`REFIT_SHARE` of what its own told blur implies is returned with that told blur.  On HeLa 0
    area-binned 2x / 3x before the low-photon protocol (blur read 0.90 / 0.95 px, truth 1.19) adapt was told
    1.08 / 1.23 px: +2.08 -> +2.74 and +1.68 -> +2.05 dB over bicubic (360 steps).
    """
    best = best_forward_sigma(net, plane, condition, scale=scale, implied=implied)
    raised = None
    if condition is not None and target_blur is not None:
        raised = raised_blur(
            net, plane, condition, scale=scale, target_blur=target_blur, max_blur=max_blur, fitted=best
        )
    return (max(best, FIT_FLOOR * float(implied)), None) if raised is None else (raised[1], raised[0])


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


def recorrupt_batch(
    patches: torch.Tensor,
    noise_gain: float,
    noise_offset: float,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input, target)`` = ``(patches + alpha z, patches - z / alpha)`` (``alpha``: :data:`RECORRUPT_ALPHA`, which
    :class:`BlindSpotPatches` also tells the network) for ``patches`` ``(N, 1, h, w)``
    (normalised units): ``z`` Gaussian with the image's Poisson-Gaussian variance ``noise_gain * signal +
    noise_offset``, the signal read as each pixel's 3 x 3 mean.  The two copies' noises are uncorrelated, so an L2
    loss against ``target`` is, in expectation, the loss against the clean image plus a constant; the input's noise
    variance is ``1 + alpha**2`` times the image's."""
    signal = F.avg_pool2d(F.pad(patches, (1, 1, 1, 1), mode="reflect"), 3, stride=1).clamp(min=0.0)
    std = (float(noise_gain) * signal + float(noise_offset)).clamp(min=0.0).sqrt()
    z = torch.from_numpy(rng.standard_normal(tuple(patches.shape)).astype(np.float32)) * std
    return patches + RECORRUPT_ALPHA * z, patches - z / RECORRUPT_ALPHA


class BlindSpotPatches:
    """Random masked (or recorrupted) patches of normalised 2-D planes (one image's, all the same shape), with the
    network's condition maps.

    ``sample(n)`` returns ``(lq, gt)``: ``lq`` ``(n, 1 + COND_CHANNELS, p, p)`` (masked patch and its
    maps under ``condition``; ``None``: a blind network, no maps), ``gt`` ``(n, 2, p, p)`` (the unmasked patch and
    the mask), rotated by random multiples of 90 degrees.  With ``recorrupt=(noise_gain, noise_offset)`` (the
    image's noise model, normalised units): ``lq`` is the recorrupted patch (:func:`recorrupt_batch`), its maps
    telling the input's noise (``1 + RECORRUPT_ALPHA**2`` times the condition's), and ``gt`` the recorrupted target
    with a mask of ones.
    """

    def __init__(
        self,
        planes: list[np.ndarray],
        condition: DegradationCondition | None,
        *,
        patch: int,
        seed: int = 0,
        recorrupt: tuple[float, float] | None = None,
    ) -> None:
        self.planes = [torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32)) for p in planes]
        if not self.planes or len({tuple(p.shape) for p in self.planes}) != 1:
            raise ValueError("blind-spot patches need one or more 2-D planes of the same shape")
        h, w = self.planes[0].shape
        self.patch = int(min(patch, h, w))
        if self.patch < 2 * LOSS_BORDER + MASK_GRID:
            raise ValueError(f"the image ({h} x {w} px) is too small for blind-spot fine-tuning")
        self.recorrupt = recorrupt
        if recorrupt is not None and condition is not None:  # the input's noise: 1 + alpha^2 times the image's
            condition = condition.with_noise_variance_times(1.0 + RECORRUPT_ALPHA**2)
        self.maps = None if condition is None else condition.as_tensor()  # (3,): what the network is told
        self.rng = np.random.default_rng(seed)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        p, (h, w) = self.patch, self.planes[0].shape
        ks = self.rng.integers(0, len(self.planes), n)
        ys, xs = self.rng.integers(0, h - p + 1, n), self.rng.integers(0, w - p + 1, n)
        batch = torch.stack([self.planes[k][y : y + p, x : x + p] for k, y, x in zip(ks, ys, xs)])[:, None]
        batch = torch.rot90(batch, int(self.rng.integers(4)), (2, 3))
        if self.recorrupt is None:
            lq, mask = mask_batch(batch, self.rng)
        else:
            lq, batch = recorrupt_batch(batch, *self.recorrupt, self.rng)
            mask = torch.ones_like(batch)
        lq = lq if self.maps is None else with_condition(lq, self.maps)
        return lq, torch.cat([batch, mask], dim=1)


class BlindSpotStep(PixelStep):
    """A :class:`PixelStep` whose ``"blind_spot"`` term compares the output, blurred by ``forward_sigma``
    (output px) and area-binned by ``scale``, with the image at the masked pixels (``gt`` as
    :class:`BlindSpotPatches` gives it), ``loss`` ``"l1"`` (masked patches) or ``"l2"`` (recorrupted ones: only
    the squared error is unbiased there), borders of :data:`LOSS_BORDER` px left out.  ``autocast``: a
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
        loss: str = "l1",
    ) -> None:
        if loss not in ("l1", "l2"):
            raise ValueError(f"loss must be 'l1' or 'l2', got {loss!r}")
        extra = {} if autocast is None else {"autocast": autocast}
        super().__init__(net, lr=lr, schedule=schedule, weights={"blind_spot": 1.0}, **extra)
        self.forward_sigma = float(forward_sigma)
        self.scale = int(scale)
        self.loss = loss

    def terms(self, sr: torch.Tensor, gt: torch.Tensor, weights: Any) -> dict[str, torch.Tensor]:
        predicted = F.avg_pool2d(gaussian_blur(sr, self.forward_sigma), self.scale)
        b = LOSS_BORDER
        target, mask = gt[:, :1, b:-b, b:-b], gt[:, 1:, b:-b, b:-b]
        difference = predicted[..., b:-b, b:-b] - target
        error = (difference.abs() if self.loss == "l1" else difference.square()) * mask
        return {"blind_spot": error.sum() / mask.sum().clamp(min=1.0)}


__all__ = [
    "FIT_FLOOR",
    "LOSS_BORDER",
    "MASK_GRID",
    "RECORRUPT_ALPHA",
    "REFIT_MAX",
    "REFIT_SHARE",
    "BlindSpotPatches",
    "BlindSpotStep",
    "fit_forward_blur",
    "forward_sigma",
    "mask_batch",
    "recorrupt_batch",
]
