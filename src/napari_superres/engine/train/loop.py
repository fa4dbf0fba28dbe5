"""The fit loop every trainer runs: :class:`FitLoop` steps a
:class:`~napari_superres.engine.train.steps.StepStrategy` on batches until the step count, the
time budget or a stop request, and handles what is common to every training method.

After each step it updates the EMA weights (:class:`EMA`, when given), stretches the
learning-rate schedule to the steps the time budget allows, validates every ``val_every``
steps (and after the last), measures the speed and the time left, records a
:class:`~napari_superres.engine.train.reports.StepReport`, writes a checkpoint every
``checkpoint_every`` steps (and after the last, and on stop) and calls the callback.

The 2D :class:`~napari_superres.engine.train.trainer.Trainer` and the axial trainer
(:func:`napari_superres.engine.axial.train_axial`) both run it::

    loop = FitLoop(PixelStep(net, lr=1e-3, schedule=Schedule("cosine", 100), weights={"l1": 1.0}),
                   batches=lambda: sampler.sample(8))
    stopped = loop.run(100, callback=lambda report: print(report.step, report.losses["total"]))
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..device import is_out_of_memory, out_of_memory_error
from .reports import StepReport, ValidationReport
from .schedule import TimeBudget
from .steps import StepOutcome, StepStrategy

#: Steps over which it/s is averaged.
SPEED_WINDOW = 20

Batch = tuple[torch.Tensor, torch.Tensor]


class EMA:
    """Exponential moving average of a network's weights, into ``ema_net`` (a copy of it).

    Decay at step ``t`` (steps done before): ``min(decay, (1 + t) / (10 + t))`` (warm-up);
    buffers are copied.
    """

    def __init__(self, ema_net: nn.Module, source: Callable[[], nn.Module], decay: float) -> None:
        self.net = ema_net
        self.source = source  # the optimised network (unwrapped from DDP)
        self.decay = float(decay)

    @torch.no_grad()
    def update(self, t: int) -> None:
        decay = min(self.decay, (1.0 + t) / (10.0 + t))
        src = self.source()
        for e, p in zip(self.net.parameters(), src.parameters()):
            e.lerp_(p.detach(), 1.0 - decay)
        for e, b in zip(self.net.buffers(), src.buffers()):
            e.copy_(b)


class FitLoop:
    """Runs a :class:`StepStrategy` on ``batches()`` (``(low-res, high-res)`` tensors on the device).

    State kept across :meth:`run` calls (and in checkpoints): ``step`` (steps done),
    ``history`` (one :meth:`StepReport.to_dict` per step) and ``budget`` (seconds spent
    against ``seconds``, validation included).

    Parameters
    ----------
    strategy : the training method's step.
    batches : draws the next batch.
    seconds : time budget or ``None``.
    ema : weight averaging updated after every step, or ``None``.
    agree : turns this process's stop flag into the decision of all processes (DDP); identity by default.
    memory_hint : ``memory_hint(step)``: what ran out of memory and what to reduce, for the error raised.
    train_step : the whole step, batch included (default: ``strategy.step(*batches(), step)``), for a
        trainer that runs its strategy its own way.
    """

    def __init__(
        self,
        strategy: StepStrategy,
        batches: Callable[[], Batch],
        *,
        seconds: float | None = None,
        ema: EMA | None = None,
        agree: Callable[[bool], bool] = bool,
        memory_hint: Callable[[int], str] | None = None,
        train_step: Callable[[], StepOutcome] | None = None,
    ) -> None:
        self.strategy = strategy
        self.batches = batches
        self.ema = ema
        self.agree = agree
        self.train_step = train_step or (lambda: self.strategy.step(*self.batches(), self.step))
        self.memory_hint = memory_hint or (lambda step: f"training step {step}: use a smaller batch or patch size")
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.budget = TimeBudget(seconds)
        self._durations: deque[float] = deque(maxlen=SPEED_WINDOW)
        self._val_seconds = 0.0

    def _one_step(self) -> StepOutcome:
        """Draw a batch and run the strategy's step; out-of-memory becomes the error naming what to reduce."""
        try:
            outcome = self.train_step()
        except (MemoryError, RuntimeError) as e:
            if not is_out_of_memory(e):
                raise
            raise out_of_memory_error(e, self.memory_hint(self.step + 1)) from e
        if self.ema is not None:
            self.ema.update(self.step)
        return outcome

    def _eta(self, total: int, val_every: int) -> tuple[float, float]:
        """``(it/s, seconds left)`` at the speed of the last steps (validations included)."""
        it_s = len(self._durations) / max(sum(self._durations), 1e-9)
        remaining = max(0, total - self.step)
        n_val = remaining // val_every if val_every else 0
        eta = remaining / it_s + (n_val + (1 if remaining else 0)) * self._val_seconds
        return it_s, eta if self.budget.remaining is None else min(eta, self.budget.remaining)

    def run(
        self,
        steps: int,
        *,
        val_every: int = 0,
        validate: Callable[[], ValidationReport | None] | None = None,
        checkpoint_every: int = 0,
        checkpoint: Callable[[], Any] | None = None,
        callback: Callable[[StepReport], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Step until ``steps`` steps are done, the budget is spent or ``should_stop()``; True if stopped.

        ``validate()`` runs every ``val_every`` steps and after the last; ``checkpoint()`` (which
        returns the path written) every ``checkpoint_every`` steps, after the last and on stop.
        """
        stopped = False
        self.budget.start()
        while self.step < steps and not self.budget.spent:
            if self.agree(bool(should_stop is not None and should_stop())):
                stopped = True
                break
            t0 = time.perf_counter()
            outcome = self._one_step()
            self.step += 1
            self._durations.append(time.perf_counter() - t0)
            self.budget.tick()
            total = self.budget.estimate_total(self.step, int(steps))  # fewer when time runs out
            if self.budget.seconds is not None:
                self.strategy.retarget(total)  # the schedule follows the budget
            validation = None
            if validate is not None and ((val_every and self.step % val_every == 0) or self.step >= total):
                v0 = time.perf_counter()
                validation = validate()
                self._val_seconds = time.perf_counter() - v0
                self.budget.tick()
            it_s, eta = self._eta(total, val_every)
            acc = outcome.d_acc
            report = StepReport(
                step=self.step, total_steps=total, losses=outcome.losses, d_acc_real=acc[0] if acc else None,
                d_acc_fake=acc[1] if acc else None, lr=self.strategy.lr(), it_per_s=it_s, eta_s=eta,
                validation=validation, phase=outcome.phase,
            )  # fmt: skip
            self.history.append(report.to_dict())
            if checkpoint is not None and (
                (checkpoint_every and self.step % checkpoint_every == 0) or self.step >= total
            ):
                report.checkpoint = str(checkpoint())
                self.history[-1]["checkpoint"] = report.checkpoint
            if callback is not None:
                callback(report)
        if stopped and checkpoint is not None:
            checkpoint()
        return stopped


__all__ = ["EMA", "SPEED_WINDOW", "FitLoop"]
