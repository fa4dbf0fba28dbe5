"""Training losses: pixel (L1, L2, SSIM), perceptual (VGG-16 features) and adversarial.

All image losses take ``(N, C, H, W)`` float tensors with values in ``[0, 1]`` (the
super-resolved batch ``sr`` and the ground-truth high-resolution batch ``hr``) and
return a scalar tensor.  Terms are combined by name with non-negative weights:

===============  =====================================================================
``l1``           mean absolute error
``l2``           mean squared error
``ssim``         ``1 - SSIM`` (Gaussian window 11, sigma 1.5, differentiable)
``perceptual``   weighted distance between VGG-16 activations (:class:`PerceptualLoss`)
``gan``          adversarial generator term (generator only; see :func:`generator_loss`)
===============  =====================================================================

:data:`LOSS_PRESETS` gives the recipes (``psnr``, ``perceptual``, ``gan``); every weight
can be overridden with :func:`resolve_weights`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics.ssim import SSIM_SIGMA, SSIM_WINDOW, ssim_map
from ..options import GAN_LOSSES, LOSS_TERMS

#: Terms that only compare pixels (used alone during the pixel pre-training of the GAN recipe).
PIXEL_TERMS = ("l1", "l2", "ssim")

#: Loss recipes: term -> weight.  ``gan`` follows ESRGAN (L1 1e-2, perceptual 1,
#: adversarial 5e-3, after pixel-only pre-training).
LOSS_PRESETS: dict[str, dict[str, float]] = {
    "psnr": {"l1": 1.0},
    "perceptual": {"l1": 1.0, "l2": 1.0, "ssim": 1.0, "perceptual": 1.0},
    "gan": {"l1": 1e-2, "perceptual": 1.0, "gan": 5e-3},
}


def resolve_weights(preset: str, overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """The preset's weights with ``overrides`` applied; zero-weight terms are dropped.

    Raises ``ValueError`` for an unknown preset or term, or a negative / non-finite weight.
    """
    if preset not in LOSS_PRESETS:
        raise ValueError(f"unknown loss preset {preset!r}; choose one of {sorted(LOSS_PRESETS)}")
    weights = dict(LOSS_PRESETS[preset])
    for name, value in (overrides or {}).items():
        if name not in LOSS_TERMS:
            raise ValueError(f"unknown loss term {name!r} in weights; terms are {list(LOSS_TERMS)}")
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"loss weight {name}={value} must be a finite number >= 0")
        weights[name] = value
    weights = {k: v for k, v in weights.items() if v > 0}
    if not weights:
        raise ValueError("all loss weights are zero; give at least one term (e.g. weights={'l1': 1.0}) a weight > 0")
    return weights


# --- pixel losses --------------------------------------------------------------------------------
def l1_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    return F.l1_loss(sr.float(), hr.float())


def l2_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Mean squared error."""
    return F.mse_loss(sr.float(), hr.float())


def ssim_loss(sr: torch.Tensor, hr: torch.Tensor, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """``1 - mean SSIM`` (data range 1); 0 for identical images, differentiable.

    Images must be at least ``window`` px on each side.
    """
    return 1.0 - ssim_map(sr.float(), hr.float(), data_range=1.0, window=window, sigma=sigma).mean()


class PerceptualLoss(nn.Module):
    """Distance between VGG-16 activations of ``sr`` and ``hr`` (Johnson et al. 2016).

    Parameters
    ----------
    vgg : a :class:`~napari_superres.engine.nets.vgg.VGGFeatures` whose layers include ``layers``
        (ImageNet normalisation and gray -> 3 channels happen inside it).  One per engine:
        ``Engine.vgg(layers)``.
    layers : VGG-16 ReLU names.
    layer_weights : one weight per layer (default: equal weights summing to 1).
    criterion : ``"l1"`` or ``"l2"`` between activations.

    ``forward(sr, hr)`` -> scalar; the VGG is frozen, gradients flow to ``sr`` only.
    """

    def __init__(
        self,
        vgg: nn.Module,
        layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
        layer_weights: Sequence[float] | None = None,
        criterion: str = "l1",
    ) -> None:
        super().__init__()
        self.layers = tuple(layers)
        missing = [name for name in self.layers if name not in getattr(vgg, "layers", self.layers)]
        if missing:
            raise ValueError(f"the VGG feature extractor does not compute layers {missing}")
        if layer_weights is None:
            layer_weights = [1.0 / len(self.layers)] * len(self.layers)
        if len(layer_weights) != len(self.layers):
            raise ValueError(f"need one weight per layer ({len(self.layers)}), got {len(layer_weights)}")
        if criterion not in ("l1", "l2"):
            raise ValueError(f"criterion must be 'l1' or 'l2', got {criterion!r}")
        self.vgg = vgg
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.criterion = criterion

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        distance = F.l1_loss if self.criterion == "l1" else F.mse_loss
        feats_sr = self.vgg(sr)
        with torch.no_grad():
            feats_hr = self.vgg(hr)
        total = sr.new_zeros((), dtype=torch.float32)
        for name, weight in zip(self.layers, self.layer_weights):
            total = total + weight * distance(feats_sr[name].float(), feats_hr[name].float())
        return total


def pixel_losses(sr: torch.Tensor, hr: torch.Tensor, terms: Sequence[str]) -> dict[str, torch.Tensor]:
    """The requested pixel terms (``l1``, ``l2``, ``ssim``) of ``sr`` against ``hr``."""
    out: dict[str, torch.Tensor] = {}
    for name in terms:
        if name == "l1":
            out[name] = l1_loss(sr, hr)
        elif name == "l2":
            out[name] = l2_loss(sr, hr)
        elif name == "ssim":
            out[name] = ssim_loss(sr, hr)
    return out


def weighted_sum(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """``sum(weights[k] * terms[k])`` over the terms present in both."""
    total: torch.Tensor | None = None
    for name, value in terms.items():
        if name in weights:
            part = weights[name] * value
            total = part if total is None else total + part
    if total is None:
        raise ValueError(f"no weighted term among {list(terms)} (weights: {dict(weights)})")
    return total


# --- adversarial losses --------------------------------------------------------------------------
def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _check_kind(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ValueError(f"unknown GAN loss {kind!r}; choose one of {list(GAN_LOSSES)}")


def discriminator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator term from its raw outputs on real (``hr``) and fake (``sr``) batches.

    ``vanilla``: BCE with logits; ``lsgan``: least squares to 1 / 0; ``hinge``:
    ``relu(1 - real) + relu(1 + fake)``; ``ragan``: relativistic average (ESRGAN), real
    judged against the mean fake and vice versa.  Lower is a better discriminator.
    """
    _check_kind(kind)
    real, fake = real.float(), fake.float()
    if kind == "vanilla":
        return 0.5 * (_bce(real, 1.0) + _bce(fake, 0.0))
    if kind == "lsgan":
        return 0.5 * (F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake)))
    if kind == "hinge":
        return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
    return 0.5 * (_bce(real - fake.mean(), 1.0) + _bce(fake - real.mean(), 0.0))


def generator_loss(kind: str, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """Generator's adversarial term from the discriminator's outputs (lower = fools it more).

    ``real`` (outputs on the ``hr`` batch, detached) is needed by ``ragan`` only.
    """
    _check_kind(kind)
    fake = fake.float()
    if kind == "vanilla":
        return _bce(fake, 1.0)
    if kind == "lsgan":
        return F.mse_loss(fake, torch.ones_like(fake))
    if kind == "hinge":
        return -fake.mean()
    if real is None:
        raise ValueError("the 'ragan' generator loss needs the discriminator's outputs on real images")
    real = real.float()
    return 0.5 * (_bce(real - fake.mean(), 0.0) + _bce(fake - real.mean(), 1.0))


def discriminator_accuracy(kind: str, real: torch.Tensor, fake: torch.Tensor) -> tuple[float, float]:
    """Fractions of real and of fake outputs the discriminator classifies correctly.

    The decision threshold is 0 on logits (0.5 for ``lsgan``); ``ragan`` judges each
    output relative to the other batch's mean.  Both near 1: the discriminator wins
    outright (the generator gets little signal); both near 0.5: balanced.
    """
    _check_kind(kind)
    real, fake = real.detach().float(), fake.detach().float()
    if kind == "ragan":
        real_rel, fake_rel = real - fake.mean(), fake - real.mean()
        return float((real_rel > 0).float().mean()), float((fake_rel < 0).float().mean())
    threshold = 0.5 if kind == "lsgan" else 0.0
    return float((real > threshold).float().mean()), float((fake < threshold).float().mean())


__all__ = [
    "GAN_LOSSES",
    "LOSS_PRESETS",
    "LOSS_TERMS",
    "PIXEL_TERMS",
    "PerceptualLoss",
    "discriminator_accuracy",
    "discriminator_loss",
    "generator_loss",
    "l1_loss",
    "l2_loss",
    "pixel_losses",
    "resolve_weights",
    "ssim_loss",
    "weighted_sum",
]
