"""Qt-free planning for the Train widget: one run's plan, the worker body, pre-start checks.

Nothing here imports Qt or napari; torch is imported only inside the functions (the
widget calls them after PyTorch has been loaded off the GUI thread).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..engine import Engine
    from ..engine.train.data import PairSource
    from ..engine.train.trainer import TrainConfig, Trainer, TrainResult

#: Data with more pixels than this (or lazy data) is prepared in the worker, not on the GUI thread.
MAX_GUI_PREPARE_PIXELS = 1 << 22
#: Loss terms that need the VGG-16 ImageNet weights.
VGG_TERMS = ("perceptual",)


@dataclass
class Plan:
    """One run, gathered and validated on the GUI thread; the worker only executes it."""

    name: str
    config: TrainConfig | None  # None: resume with the checkpoint's config
    steps: int
    hr: Any
    lr: Any | None
    axes: str
    data: PairSource | None  # built on the GUI thread when cheap, else in the worker
    checkpoint: Path
    resume: bool
    hr_scale: tuple[float, ...]
    hr_translate: tuple[float, ...]
    colormap: Any
    #: steps already done when this run starts (a resumed run registers only if it adds steps)
    started_at: int = 0
    #: ``(*plane index, y, x)`` in high-res px where the preview crop starts (from the data source)
    preview_origin: tuple[int, ...] | None = None
    #: an unpaired low-res acquisition whose blur and noise the synthetic degradation should match
    degradation_example: Any | None = None
    #: time budget of a resumed run (seconds of training in all, as 'steps'), or None: the checkpoint's
    seconds: float | None = None

    def use_data(self, data: PairSource) -> PairSource:
        """Remember where the data's preview crop lies and return ``data``."""
        origin = data.preview_origin()
        self.preview_origin = None if origin is None else tuple(int(v) for v in origin)
        return data


@dataclass
class Outcome:
    """What a finished (or stopped) run hands back; the model is already registered when ``registered``."""

    trainer: Trainer
    result: TrainResult
    registered: bool


def build_data(plan: Plan, config: TrainConfig) -> PairSource:
    """The :class:`PairSource` of ``plan`` with ``config``'s scale, patch size and normalisation."""
    from ..engine.train.data import make_pair_source

    hr = np.asarray(plan.hr)
    lr = None if plan.lr is None else np.asarray(plan.lr)
    return make_pair_source(
        [hr], None if lr is None else [lr], scale=int(config.scale), axes=plan.axes,
        patch_size=int(config.patch_size), degradation=None if lr is not None else config.degradation,
        normalization=config.normalization, seed=int(config.seed),
    )  # fmt: skip


def run_plan(plan: Plan, engine: Engine, report: Callable[[Any], None], should_stop: Callable[[], bool],
             status: Callable[[str], None] = lambda _: None) -> Outcome:  # fmt: skip
    """Worker body: build the data and the trainer (or resume it), train until done or stopped, register.

    The model is registered in ``engine`` here, in the worker, whenever the run added steps:
    a run stopped by closing the widget or napari keeps its partly trained model.
    """
    from ..engine.train.trainer import TrainConfig, Trainer

    status("preparing the training data…")
    if plan.resume:
        config = plan.config
        if config is None:
            state = Trainer.read_checkpoint(plan.checkpoint)
            config = TrainConfig.from_dict(json.loads(state["config"]))
        data = plan.use_data(plan.data if plan.data is not None else build_data(plan, config))
        status("resuming from the checkpoint…")
        budget = {} if plan.seconds is None else {"seconds": plan.seconds}
        trainer = Trainer.resume(plan.checkpoint, data, engine=engine, steps=plan.steps, **budget)
        trainer.config.checkpoint_path = str(plan.checkpoint)
        if trainer.step >= trainer.config.steps:
            raise ValueError(
                f"the checkpointed run is already at step {trainer.step} of {trainer.config.steps}; "
                f"raise 'steps' above {trainer.step} to train longer"
            )
        if trainer.budget.spent:
            raise ValueError(
                f"the checkpointed run has used its time budget ({trainer.budget.elapsed:.0f} s of "
                f"{trainer.config.seconds:g} s); raise 'time budget' to train longer"
            )
    else:
        assert plan.config is not None
        if plan.degradation_example is not None:
            from ..engine.train.estimate import estimate_degradation

            status("estimating the degradation from the low-res example…")
            fitted = estimate_degradation(
                np.asarray(plan.degradation_example), int(plan.config.scale), high_res=np.asarray(plan.hr),
                axes=plan.axes, normalization=plan.config.normalization,
            )  # fmt: skip
            plan.config.degradation = {k: v for k, v in fitted.to_dict().items() if k != "scale"}
            plan.data = None  # built below with the fitted degradation
        data = plan.use_data(plan.data if plan.data is not None else build_data(plan, plan.config))
        if should_stop():
            raise InterruptedError("stopped before training started")
        status("building the network…")
        trainer = Trainer(plan.config, data, engine=engine)
    status("first training step…")
    result = trainer.run(callback=report, should_stop=should_stop)
    registered = result.steps_done > plan.started_at
    if registered:
        engine.register(trainer.model(plan.name), plan.name)
    return Outcome(trainer, result, registered)


def needs_vgg(weights: dict[str, float]) -> bool:
    """Whether a run with these loss weights uses the VGG-16 perceptual loss."""
    return any(float(weights.get(term, 0.0)) > 0 for term in VGG_TERMS)


def vgg_weights_problem(weights: dict[str, float], reachable: bool | None = None) -> str | None:
    """A message when these weights need the VGG-16 ImageNet weights and they are not on disk.

    Only the torch hub cache is looked at (nothing is downloaded).  ``reachable``: whether the
    weights' host answered a probe (``None``: not known yet); the message says what Start will
    do: download them, or refuse (offline).
    """
    if not needs_vgg(weights):
        return None
    from ..engine.nets.vgg import vgg16_weights_path

    path = vgg16_weights_path()
    if path.is_file():
        return None
    lead = f"The perceptual loss needs the VGG-16 ImageNet weights, not found at {path}"
    if offline() or reachable is False:
        why = "this machine is set offline (NAPARI_SUPERRES_OFFLINE)" if offline() else "their host cannot be reached"
        return (f"{lead}; {why}, so Start will refuse. Copy {path.name} there from a machine with internet "
                "access, or use the psnr preset (perceptual weight 0).")  # fmt: skip
    if reachable is None:
        return f"{lead}; checking whether they can be downloaded…"
    return f"{lead}; Start will download them there first (about 530 MB)."


def offline() -> bool:
    return os.environ.get("NAPARI_SUPERRES_OFFLINE", "") not in ("", "0")


def cheap(hr: Any, lr: Any | None) -> bool:
    """Whether the data are in-memory numpy arrays small enough to prepare on the GUI thread."""
    arrays = [a for a in (hr, lr) if a is not None]
    return all(isinstance(a, np.ndarray) for a in arrays) and sum(a.size for a in arrays) <= MAX_GUI_PREPARE_PIXELS


def safe_file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
