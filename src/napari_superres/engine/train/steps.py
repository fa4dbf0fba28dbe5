"""Step strategies: what one optimisation step of a training method does.

The fit loop (:mod:`~napari_superres.engine.train.loop`) is the same for every method;
what differs is the step, so each method is a small class with one :meth:`~StepStrategy.step`
that owns its optimiser(s), learning-rate schedule(s) and loss evaluation (as BasicSR's
per-method ``optimize_parameters`` over one training loop):

* :class:`PixelStep`: generator forward -> weighted pixel (and perceptual) terms -> Adam step
  with gradient clipping -> schedule step.  The first ``pretrain_steps`` steps use the pixel
  terms only.
* :class:`GANStep`: a :class:`PixelStep` whose generator also minimises an adversarial term
  once pixel pre-training is over, followed by ``d_steps`` discriminator updates; it reports
  the discriminator's accuracy on real and fake patches.

A custom method is any object with the :class:`StepStrategy` methods, e.g. a subclass of
:class:`PixelStep` overriding :meth:`PixelStep.terms`, as
:class:`~napari_superres.engine.train.blind_spot.BlindSpotStep` does.

>>> step = PixelStep(net, lr=1e-3, schedule=Schedule("cosine", 100), weights={"l1": 1.0})  # doctest: +SKIP
>>> outcome = step.step(low_res_batch, high_res_batch, index=0)                              # doctest: +SKIP
>>> outcome.losses                                                                           # doctest: +SKIP
{'l1': 0.21, 'total': 0.21}
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from .distributed import unwrap
from .losses import (
    PIXEL_TERMS,
    PerceptualLoss,
    discriminator_accuracy,
    discriminator_loss,
    generator_loss,
    pixel_losses,
    weighted_sum,
)
from .schedule import Schedule, retarget

#: Adam betas (as ESRGAN / Real-ESRGAN).
ADAM_BETAS = (0.9, 0.99)


@dataclass
class StepOutcome:
    """What one step reports: unweighted loss terms (with ``"total"``, and ``"d"`` for a
    discriminator), the discriminator's accuracy ``(real, fake)`` or ``None``, and the phase
    (``"pretrain"``: pixel terms only, or ``"train"``)."""

    losses: dict[str, float]
    d_acc: tuple[float, float] | None = None
    phase: str = "train"


class StepStrategy(Protocol):
    """One training method's step, as the fit loop calls it."""

    def step(self, lq: torch.Tensor, gt: torch.Tensor, index: int) -> StepOutcome:
        """Optimise on one batch (``lq`` ``(B, C, h, w)``, ``gt`` ``(B, C', H, W)`` float32);
        ``index``: steps done before this one."""
        ...

    def lr(self) -> float:
        """The generator's current learning rate."""
        ...

    def retarget(self, total: int) -> None:
        """Stretch the learning-rate schedule(s) to ``total`` steps."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Optimiser and schedule state (and any network only the step owns), for checkpoints."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def _optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, net: nn.Module, grad_clip: float) -> None:
    """One update of ``net`` by ``optimizer`` from ``loss``, gradients clipped to ``grad_clip`` (0: no clipping)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(unwrap(net).parameters(), grad_clip)
    optimizer.step()


def import_optimizer_dependencies() -> None:
    """Create and drop one Adam optimizer, so that what ``torch.optim`` imports on a process's first optimizer
    (``torch._dynamo``: 5.5 s on 2 AVX2 cores) is loaded; a time budget such as
    :func:`~napari_superres.engine.train.adapt.adapt`'s calls this before its clock starts."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def _no_autocast() -> ContextManager[Any]:
    return contextlib.nullcontext()


class PixelStep:
    """Generator step on weighted pixel terms (``l1``, ``l2``, ``ssim``) and ``perceptual``.

    Parameters
    ----------
    net : the generator (possibly ``DistributedDataParallel``-wrapped).
    lr : Adam learning rate; ``schedule``: its factor per step (:class:`Schedule`).
    weights : term -> weight; ``pretrain_steps``: steps (from 0) that use only the pixel terms.
    perceptual : the VGG loss when ``weights`` has ``"perceptual"``.
    grad_clip : maximum gradient norm or ``None``; ``autocast``: a context-manager factory for the forward.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        lr: float,
        schedule: Schedule,
        weights: Mapping[str, float],
        pretrain_steps: int = 0,
        perceptual: PerceptualLoss | None = None,
        grad_clip: float | None = None,
        autocast: Callable[[], ContextManager[Any]] = _no_autocast,
    ) -> None:
        self.net = net
        self.weights = dict(weights)
        self.pretrain_steps = int(pretrain_steps)
        self.pretrain_weights = {k: v for k, v in self.weights.items() if k in PIXEL_TERMS} or {"l1": 1.0}
        self.perceptual = perceptual
        self.grad_clip = grad_clip
        self.autocast = autocast
        self.opt_g = torch.optim.Adam(unwrap(net).parameters(), lr=lr, betas=ADAM_BETAS)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, schedule)

    # --- what subclasses change ------------------------------------------------------------------
    def terms(self, sr: torch.Tensor, gt: torch.Tensor, weights: Mapping[str, float]) -> dict[str, torch.Tensor]:
        """The unweighted loss terms of the generator's output ``sr`` against ``gt`` (float32)."""
        terms = pixel_losses(sr, gt, [k for k in weights if k in PIXEL_TERMS])
        if "perceptual" in weights and self.perceptual is not None:
            with self.autocast():
                terms["perceptual"] = self.perceptual(sr, gt)
        return terms

    def after_generator(self, sr: torch.Tensor, gt: torch.Tensor, outcome: StepOutcome) -> None:
        """Runs after the generator update of a step past pre-training (e.g. discriminator updates)."""

    # --- the step ----------------------------------------------------------------------------------
    def step(self, lq: torch.Tensor, gt: torch.Tensor, index: int) -> StepOutcome:
        pretraining = index < self.pretrain_steps
        weights = self.pretrain_weights if pretraining else self.weights
        self.net.train()
        with self.autocast():
            sr = self.net(lq)
        sr = sr.float()
        terms = self.terms(sr, gt, weights)
        total = weighted_sum(terms, weights)
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"training diverged at step {index + 1} (loss is {float(total)}); lower the learning rate "
                f"(now {self.lr():.3g}) or enable gradient clipping"
            )
        _optimizer_step(self.opt_g, total, self.net, self.grad_clip)
        self.sched_g.step()
        losses = {k: float(v.detach()) for k, v in terms.items()}
        losses["total"] = float(total.detach())
        outcome = StepOutcome(losses, None, "pretrain" if pretraining and self.pretrain_steps else "train")
        if not pretraining:
            self.after_generator(sr, gt, outcome)
        return outcome

    def lr(self) -> float:
        return float(self.opt_g.param_groups[0]["lr"])

    def retarget(self, total: int) -> None:
        retarget(self.sched_g, self.opt_g, max(1, total))

    def state_dict(self) -> dict[str, Any]:
        return {"opt_g": self.opt_g.state_dict(), "sched_g": self.sched_g.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])


class GANStep(PixelStep):
    """A :class:`PixelStep` plus an adversarial term (after pre-training) and discriminator updates.

    ``disc``: the discriminator (possibly DDP-wrapped), optimised by Adam at ``d_lr`` on its own
    schedule (``d_schedule``, over the steps after pre-training); ``gan_loss``: ``"vanilla"``,
    ``"lsgan"``, ``"hinge"`` or ``"ragan"``; ``d_steps``: discriminator updates per step.
    ``weights`` holds ``"gan"``, the adversarial term's weight.
    """

    def __init__(
        self,
        net: nn.Module,
        disc: nn.Module,
        *,
        d_lr: float,
        d_schedule: Schedule,
        gan_loss: str,
        d_steps: int = 1,
        **pixel: Any,
    ) -> None:
        super().__init__(net, **pixel)
        self.disc = disc
        self.gan_loss = gan_loss
        self.d_steps = int(d_steps)
        self.opt_d = torch.optim.Adam(unwrap(disc).parameters(), lr=d_lr, betas=ADAM_BETAS)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, d_schedule)

    def terms(self, sr: torch.Tensor, gt: torch.Tensor, weights: Mapping[str, float]) -> dict[str, torch.Tensor]:
        terms = super().terms(sr, gt, weights)
        if "gan" in weights:
            d_plain = unwrap(self.disc)
            d_plain.eval().requires_grad_(False)  # frozen, no power-iteration update, no DDP hooks
            with self.autocast():
                fake_out = d_plain(sr)
                real_out = d_plain(gt).detach() if self.gan_loss == "ragan" else None
            terms["gan"] = generator_loss(self.gan_loss, fake_out, real_out)
            d_plain.train().requires_grad_(True)
        return terms

    def after_generator(self, sr: torch.Tensor, gt: torch.Tensor, outcome: StepOutcome) -> None:
        n = gt.shape[0]
        fake_in = sr.detach()
        for _ in range(self.d_steps):
            with self.autocast():
                out = self.disc(torch.cat([gt, fake_in]))  # one forward: real and fake together
            real_out, fake_out = out[:n].float(), out[n:].float()
            d_loss = discriminator_loss(self.gan_loss, real_out, fake_out)
            _optimizer_step(self.opt_d, d_loss, self.disc, self.grad_clip)
        self.sched_d.step()
        outcome.d_acc = discriminator_accuracy(self.gan_loss, real_out, fake_out)
        outcome.losses["d"] = float(d_loss.detach())

    def retarget(self, total: int) -> None:
        super().retarget(total)
        retarget(self.sched_d, self.opt_d, max(1, total - self.pretrain_steps))

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "discriminator": {k: v.detach().cpu().clone() for k, v in unwrap(self.disc).state_dict().items()},
            "opt_d": self.opt_d.state_dict(),
            "sched_d": self.sched_d.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        if state.get("discriminator") is not None:
            unwrap(self.disc).load_state_dict(state["discriminator"])
        if state.get("opt_d") is not None:
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_d.load_state_dict(state["sched_d"])


__all__ = ["ADAM_BETAS", "GANStep", "PixelStep", "StepOutcome", "StepStrategy", "import_optimizer_dependencies"]
