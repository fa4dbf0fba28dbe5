"""The settings of a training run: :class:`TrainConfig` (stored in checkpoints and model files).

Split out of :mod:`~napari_superres.engine.train.trainer`, which re-exports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InvalidRequestError
from ..nets.discriminator import DISCRIMINATORS
from ..nets.srnet import SRNetConfig
from ..nets.vgg import DEFAULT_LAYERS
from ..normalization import default_normalization
from ..options import SCHEDULES, TRAIN_DEFAULTS, known_settings
from .degradation import DegradationConfig
from .losses import GAN_LOSSES, LOSS_PRESETS, resolve_weights
from .warm_start import check_init


class TrainSettingError(InvalidRequestError):
    """A :class:`TrainConfig` setting that cannot work; ``setting`` is the field's name.

    The message names the setting (usually first: ``"steps must be at least 1 ..."``) and the
    fix; a front end may call the setting by its own name (a command-line flag) with :meth:`named`.
    """

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting

    def named(self, name: str) -> TrainSettingError:
        """The same error with the setting called ``name`` (e.g. ``"--batch-size"`` for ``batch_size``)."""
        text = str(self)
        if text.startswith(self.setting + " "):
            text = name + text[len(self.setting) :]
        else:
            text = f"{name}: {text}"
        return TrainSettingError(text, self.setting)


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in checkpoints and model files).

    Attributes
    ----------
    scale : upscaling factor (2, 3, 4 or 8); must match the data.
    preset : loss recipe: ``"psnr"`` (L1), ``"perceptual"`` (L1 + L2 + SSIM + VGG) or
        ``"gan"`` (ESRGAN-like: L1 1e-2 + VGG 1 + adversarial 5e-3 after pixel pre-training).
    weights : overrides of the preset's weights, keys ``l1``, ``l2``, ``ssim``, ``perceptual``, ``gan``.
    gan_loss : ``"vanilla"``, ``"lsgan"``, ``"hinge"`` or ``"ragan"`` (relativistic average).
    d_steps : discriminator updates per generator update.
    pretrain_steps : pixel-only steps before the perceptual and adversarial terms switch on;
        ``None``: ``steps // 4`` for the ``gan`` preset, else 0.
    steps, batch_size : optimisation steps and patches per step.
    seconds : time budget in wall-clock seconds (validation included) or ``None``: training stops at
        ``steps`` or ``seconds``, whichever comes first; the schedule stretches over the budget.
    init : start from ``"builtin"`` (the built-in model of the scale, unless ``net`` is given),
        ``"none"`` (a new network) or a model file (:mod:`~napari_superres.engine.train.warm_start`).
    patch_size : high-res patch edge in px (a multiple of ``scale``); must match the data.
    lr : initial Adam learning rate (generator; the discriminator uses ``d_lr`` or this).
    schedule : ``"cosine"`` (to 1 % of ``lr``), ``"step"`` (halved at 50 % and 75 %) or ``"constant"``.
    grad_clip : maximum gradient norm, or ``None``.
    ema : decay of the exponential moving average of the generator weights (``None`` = off);
        the EMA weights are validated and saved.  Warm-up: ``min(ema, (1+t)/(10+t))``.
    seed : seeds network initialisation and patch sampling.
    device : ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
    val_every : validate every N steps (and at the end); 0 = only at the end.
    checkpoint_every : write a checkpoint every N steps (0 = only at the end / on stop).
    checkpoint_path : where checkpoints go (``None`` = no checkpoints).
    net : :class:`SRNetConfig` overrides (``channels``, ``blocks``, ``upsampling``...): a dict of the
        settings given, or an :class:`SRNetConfig` (stored as its settings);
        :meth:`net_config` gives the typed network config.
    normalization : intensity normalisation spec; must match the data's.  Default: per-image
        percentiles 1 / 99.8 (CSBDeep-style), stored in the model file and repeated at inference.
    degradation : :class:`DegradationConfig` kwargs for high-res-only data (must match the data's),
        or a :class:`DegradationConfig` (stored as its settings, its scale being this config's);
        :meth:`degradation_config` gives the typed degradation.
    discriminator : ``{"kind": "patchgan" | "unet", "channels": 64}``.
    d_lr : discriminator learning rate (default ``lr``).
    perceptual_layers, perceptual_criterion : VGG-16 layers and ``"l1"``/``"l2"`` distance.
    mixed_precision : bf16 autocast on CUDA.
    cpu_bf16 : bf16 autocast of the training step on the CPU too (CPUs with native bf16, e.g.
        AVX-512 BF16 / AMX: ~1.3x the steps per CPU-second with channels_last; see
        ``benchmarks/training_speed.py --compare-precision``); validation stays float32.  On a CPU
        without native bf16 it runs emulated, about 10x slower than float32, and the Trainer warns.
    channels_last : NHWC memory format for the networks and batches (faster convolutions on
        CUDA tensor cores and, modestly, on CPU; the weights are the same).
    """

    # defaults written once, in engine/options.py (the CLI's --help reads them there without torch)
    scale: int = TRAIN_DEFAULTS.scale
    preset: str = TRAIN_DEFAULTS.preset
    weights: dict[str, float] | None = None
    gan_loss: str = TRAIN_DEFAULTS.gan_loss
    d_steps: int = TRAIN_DEFAULTS.d_steps
    pretrain_steps: int | None = None
    steps: int = TRAIN_DEFAULTS.steps
    seconds: float | None = TRAIN_DEFAULTS.seconds
    init: str | None = TRAIN_DEFAULTS.init
    batch_size: int = TRAIN_DEFAULTS.batch_size
    patch_size: int = TRAIN_DEFAULTS.patch_size
    lr: float = TRAIN_DEFAULTS.learning_rate
    schedule: str = TRAIN_DEFAULTS.schedule
    grad_clip: float | None = TRAIN_DEFAULTS.grad_clip
    ema: float | None = TRAIN_DEFAULTS.ema
    seed: int = TRAIN_DEFAULTS.seed
    device: str = TRAIN_DEFAULTS.device
    val_every: int = TRAIN_DEFAULTS.val_every
    checkpoint_every: int = TRAIN_DEFAULTS.checkpoint_every
    checkpoint_path: str | None = None
    net: dict[str, Any] = field(default_factory=dict)
    normalization: dict[str, Any] = field(default_factory=default_normalization)
    degradation: dict[str, Any] | None = None
    discriminator: dict[str, Any] = field(default_factory=lambda: {"kind": "patchgan", "channels": 64})
    d_lr: float | None = None
    perceptual_layers: tuple[str, ...] = DEFAULT_LAYERS
    perceptual_criterion: str = "l1"
    mixed_precision: bool = True
    channels_last: bool = True
    cpu_bf16: bool = False

    def __post_init__(self) -> None:
        # typed sub-configs are held as their JSON-able settings (what checkpoints and model files store)
        if isinstance(self.net, SRNetConfig):
            self.net = self.net.to_dict()
        if isinstance(self.degradation, DegradationConfig):
            self.degradation = {k: v for k, v in self.degradation.to_dict().items() if k != "scale"}

    def net_config(self, **fixed: Any) -> SRNetConfig:
        """The network to train as an :class:`SRNetConfig`: ``net`` over the defaults at this config's
        scale, ``fixed`` (e.g. the data's ``in_channels``) on top; ``ValueError`` for bad settings."""
        return SRNetConfig.from_dict({"scale": int(self.scale), **(self.net or {}), **fixed})

    def degradation_config(self, scale: int | None = None) -> DegradationConfig | None:
        """The synthetic degradation as a :class:`DegradationConfig` (at ``scale``, default this config's),
        or ``None``; ``ValueError`` for bad settings."""
        if self.degradation is None:
            return None
        return DegradationConfig.from_dict({"scale": int(scale or self.scale), **self.degradation})

    def validate(self) -> None:
        """Raise :class:`TrainSettingError` (a ``ValueError``) naming the setting and the fix for the first
        setting that cannot work (checks in :data:`_CHECKS` order)."""
        for setting, check in _CHECKS:
            try:
                problem = check(self)
            except ValueError as e:  # the checks of other modules (losses, networks, degradations)
                raise TrainSettingError(str(e), setting) from e
            if problem:
                raise TrainSettingError(problem, setting)

    def resolved_weights(self) -> dict[str, float]:
        return resolve_weights(self.preset, self.weights)

    def resolved_pretrain_steps(self) -> int:
        if self.pretrain_steps is not None:
            return int(self.pretrain_steps)
        return int(self.steps) // 4 if "gan" in resolve_weights(self.preset, self.weights) else 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["perceptual_layers"] = list(self.perceptual_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = known_settings(cls, d, "training config keys")
        if "perceptual_layers" in d:
            d["perceptual_layers"] = tuple(d["perceptual_layers"])
        return cls(**d)


def _positive_or_none(value: float | None) -> bool:
    return value is None or (math.isfinite(value) and value > 0)


def _pretrain_problem(c: TrainConfig) -> str:
    pre = c.resolved_pretrain_steps()
    if pre < 0:
        return f"pretrain_steps must be >= 0, got {pre}"
    weights = resolve_weights(c.preset, c.weights)
    if ("gan" in weights or "perceptual" in weights) and pre >= int(c.steps):
        return (
            f"pretrain_steps ({pre}) must be smaller than steps ({c.steps}), or the perceptual/adversarial "
            "terms never switch on"
        )
    return ""


def _patch_problem(c: TrainConfig) -> str:
    weights = resolve_weights(c.preset, c.weights)
    p, s = int(c.patch_size), int(c.scale)
    if p < 2 * s or p % s:
        return f"patch_size {c.patch_size} must be a multiple of the scale {c.scale} (and at least {2 * s})"
    if "ssim" in weights and p < 11:
        return f"the SSIM loss needs patches of at least 11 px, got {p}"
    if "gan" in weights and p < 16:
        return f"adversarial training needs patches of at least 16 px, got {p}"
    return ""


def _delegated(check: Callable[[TrainConfig], Any]) -> Callable[[TrainConfig], str]:
    """A check of another module (raising ``ValueError`` naming the fix) as a check returning no problem."""

    def run(c: TrainConfig) -> str:
        check(c)
        return ""

    return run


#: ``(setting, check)`` in the order they run: a check returns the problem (the message, naming the
#: setting and the fix) or "", or raises ``ValueError`` (the checks of other modules).
_CHECKS: tuple[tuple[str, Callable[[TrainConfig], str]], ...] = (
    ("steps", lambda c: "" if int(c.steps) >= 1 else f"steps must be at least 1 (got {c.steps}); e.g. 1000"),
    ("seconds", lambda c: "" if _positive_or_none(c.seconds)
        else f"seconds must be a positive number (or None: no time limit), got {c.seconds}"),
    ("init", _delegated(lambda c: check_init(c.init))),
    ("batch_size", lambda c: "" if int(c.batch_size) >= 1 else f"batch_size must be at least 1 (got {c.batch_size})"),
    ("preset", lambda c: "" if c.preset in LOSS_PRESETS
        else f"unknown preset {c.preset!r}; choose one of {sorted(LOSS_PRESETS)}"),
    ("gan_loss", lambda c: "" if c.gan_loss in GAN_LOSSES
        else f"unknown gan_loss {c.gan_loss!r}; choose one of {list(GAN_LOSSES)}"),
    ("schedule", lambda c: "" if c.schedule in SCHEDULES
        else f"unknown schedule {c.schedule!r}; choose one of {list(SCHEDULES)}"),
    ("lr", lambda c: "" if c.lr is not None and _positive_or_none(c.lr)
        else f"learning rate must be a positive number (got {c.lr}); 2e-4 is a good start"),
    ("d_lr", lambda c: "" if _positive_or_none(c.d_lr) else f"d_lr must be > 0, got {c.d_lr}"),
    ("d_steps", lambda c: "" if int(c.d_steps) >= 1 else f"d_steps must be at least 1, got {c.d_steps}"),
    ("grad_clip", lambda c: "" if c.grad_clip is None or c.grad_clip > 0
        else f"grad_clip must be > 0 or None (no clipping), got {c.grad_clip}"),
    ("ema", lambda c: "" if c.ema is None or 0.0 <= c.ema < 1.0 else f"ema must be in [0, 1) or None (off), got {c.ema}"),
    ("val_every", lambda c: "" if int(c.val_every) >= 0
        else f"val_every must be >= 0 (0 = only at the end), got {c.val_every}"),
    ("checkpoint_every", lambda c: "" if int(c.checkpoint_every) >= 0
        else f"checkpoint_every must be >= 0, got {c.checkpoint_every}"),
    ("perceptual_criterion", lambda c: "" if c.perceptual_criterion in ("l1", "l2")
        else "perceptual_criterion must be 'l1' or 'l2'"),
    ("discriminator", lambda c: "" if (c.discriminator or {}).get("kind", "patchgan") in DISCRIMINATORS
        else f"unknown discriminator {(c.discriminator or {}).get('kind')!r}; choose one of {list(DISCRIMINATORS)}"),
    ("weights", _delegated(lambda c: resolve_weights(c.preset, c.weights))),
    ("pretrain_steps", _pretrain_problem),
    ("patch_size", _patch_problem),
    ("net", _delegated(TrainConfig.net_config)),
    ("degradation", _delegated(TrainConfig.degradation_config)),
)  # fmt: skip


__all__ = ["TrainConfig", "TrainSettingError"]
