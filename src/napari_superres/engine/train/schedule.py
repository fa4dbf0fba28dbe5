"""Learning-rate schedules and the training time budget.

A schedule is a factor of the initial learning rate at step ``t`` of ``total`` steps
(:class:`Schedule`, used through ``torch.optim.lr_scheduler.LambdaLR``).  With a time
budget (``TrainConfig.seconds``) the number of steps is not known in advance:
:class:`TimeBudget` measures the seconds spent and re-estimates the total from the
speed so far, and :func:`retarget` stretches the schedule to it, so a cosine schedule
decays over the budget whatever the machine's speed.
"""

from __future__ import annotations

import math
import time

import torch

#: Final learning rate of the cosine schedule, as a fraction of the initial one.
COSINE_MIN_FACTOR = 0.01
#: Milestones (fractions of the run) and factor of the step schedule.
STEP_MILESTONES = (0.5, 0.75)
STEP_GAMMA = 0.5


class Schedule:
    """Learning-rate factor of step ``t`` (no pickling needed: its ``__dict__`` is its state).

    ``floor``: the cosine schedule's final factor (default :data:`COSINE_MIN_FACTOR`).
    """

    def __init__(self, kind: str, total: int, floor: float = COSINE_MIN_FACTOR) -> None:
        self.kind = kind
        self.total = max(1, int(total))
        self.floor = float(floor)

    def __call__(self, t: int) -> float:
        if self.kind == "cosine":
            frac = min(1.0, t / self.total)
            return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * frac))
        if self.kind == "step":
            return STEP_GAMMA ** sum(t >= int(m * self.total) for m in STEP_MILESTONES)
        return 1.0


def scheduler(opt: torch.optim.Optimizer, kind: str, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over ``total`` steps of the schedule ``kind`` (``"cosine"``, ``"step"``, ``"constant"``)."""
    return torch.optim.lr_scheduler.LambdaLR(opt, Schedule(kind, total))


def retarget(sched: torch.optim.lr_scheduler.LambdaLR, opt: torch.optim.Optimizer, total: int) -> None:
    """Stretch ``sched`` to ``total`` steps and set the optimiser's current learning rate accordingly."""
    schedule = sched.lr_lambdas[0]
    schedule.total = max(1, int(total))  # type: ignore[attr-defined]
    for group, base in zip(opt.param_groups, sched.base_lrs):
        group["lr"] = base * schedule(sched.last_epoch)


class TimeBudget:
    """Seconds of training (wall clock, validation included) against an optional budget.

    ``elapsed`` carries over a resumed run (it is stored in checkpoints).  ``estimate_total``
    is the number of steps the budget allows at the speed measured so far.
    """

    def __init__(self, seconds: float | None, elapsed: float = 0.0) -> None:
        self.seconds = None if seconds is None else float(seconds)
        self.elapsed = float(elapsed)
        self._since: float | None = None

    def start(self) -> None:
        self._since = time.perf_counter()

    def tick(self) -> None:
        """Add the time since :meth:`start` (or the last tick) to ``elapsed``."""
        now = time.perf_counter()
        if self._since is not None:
            self.elapsed += now - self._since
        self._since = now

    @property
    def spent(self) -> bool:
        return self.seconds is not None and self.elapsed >= self.seconds

    @property
    def remaining(self) -> float | None:
        return None if self.seconds is None else max(0.0, self.seconds - self.elapsed)

    def estimate_total(self, steps_done: int, cap: int) -> int:
        """Steps the budget allows (at least ``steps_done + 1`` until it is spent, at most ``cap``)."""
        if self.seconds is None or steps_done <= 0 or self.elapsed <= 0:
            return int(cap)
        if self.spent:
            return int(steps_done)
        guess = math.ceil(steps_done * self.seconds / self.elapsed)
        return int(min(cap, max(steps_done + 1, guess)))


__all__ = ["COSINE_MIN_FACTOR", "Schedule", "TimeBudget", "retarget", "scheduler"]
