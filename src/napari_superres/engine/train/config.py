"""The settings of a training run: :class:`TrainConfig` (stored in checkpoints and model files).

Split out of :mod:`~napari_superres.engine.train.trainer`, which re-exports it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..nets.discriminator import DISCRIMINATORS
from ..nets.srnet import SRNetConfig
from ..nets.vgg import DEFAULT_LAYERS
from ..normalization import default_normalization
from ..options import SCHEDULES, TRAIN_DEFAULTS, known_settings
from .degradation import DegradationConfig
from .losses import GAN_LOSSES, LOSS_PRESETS, resolve_weights
from .warm_start import check_init


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
    net : :class:`SRNetConfig` overrides (``channels``, ``blocks``, ``upsampling``...).
    normalization : intensity normalisation spec; must match the data's.  Default: per-image
        percentiles 1 / 99.8 (CSBDeep-style), stored in the model file and repeated at inference.
    degradation : :class:`DegradationConfig` kwargs for high-res-only data (must match the data's).
    discriminator : ``{"kind": "patchgan" | "unet", "channels": 64}``.
    d_lr : discriminator learning rate (default ``lr``).
    perceptual_layers, perceptual_criterion : VGG-16 layers and ``"l1"``/``"l2"`` distance.
    mixed_precision : bf16 autocast on CUDA.
    cpu_bf16 : bf16 autocast of the training step on the CPU too (CPUs with native bf16, e.g.
        AVX-512 BF16 / AMX: ~1.3x the steps per CPU-second with channels_last; see
        ``benchmarks/training_speed.py --compare-precision``); validation stays float32.
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

    def validate(self) -> None:
        """Raise ``ValueError`` with the fix for any inconsistent setting."""

        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(msg)

        need(int(self.steps) >= 1, f"steps must be at least 1 (got {self.steps}); train for e.g. steps=1000")
        need(self.seconds is None or (math.isfinite(self.seconds) and self.seconds > 0),
             f"seconds must be a positive number or None (no time limit), got {self.seconds}")  # fmt: skip
        check_init(self.init)
        need(int(self.batch_size) >= 1, f"batch_size must be at least 1 (got {self.batch_size})")
        need(self.preset in LOSS_PRESETS, f"unknown preset {self.preset!r}; choose one of {sorted(LOSS_PRESETS)}")
        need(self.gan_loss in GAN_LOSSES, f"unknown gan_loss {self.gan_loss!r}; choose one of {list(GAN_LOSSES)}")
        need(self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}; choose one of {list(SCHEDULES)}")
        need(
            math.isfinite(self.lr) and self.lr > 0,
            f"learning rate must be a positive number (got {self.lr}); 2e-4 is a good start",
        )
        need(self.d_lr is None or (math.isfinite(self.d_lr) and self.d_lr > 0), f"d_lr must be > 0, got {self.d_lr}")
        need(int(self.d_steps) >= 1, f"d_steps must be at least 1, got {self.d_steps}")
        need(
            self.grad_clip is None or self.grad_clip > 0,
            f"grad_clip must be > 0 or None (no clipping), got {self.grad_clip}",
        )
        need(self.ema is None or 0.0 <= self.ema < 1.0, f"ema must be in [0, 1) or None (off), got {self.ema}")
        need(int(self.val_every) >= 0, f"val_every must be >= 0 (0 = only at the end), got {self.val_every}")
        need(int(self.checkpoint_every) >= 0, f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        need(
            int(self.patch_size) >= 2 * int(self.scale) and int(self.patch_size) % int(self.scale) == 0,
            f"patch_size {self.patch_size} must be a multiple of the scale {self.scale} (and at least {2 * self.scale})",
        )
        need(self.perceptual_criterion in ("l1", "l2"), "perceptual_criterion must be 'l1' or 'l2'")
        kind = (self.discriminator or {}).get("kind", "patchgan")
        need(kind in DISCRIMINATORS, f"unknown discriminator {kind!r}; choose one of {list(DISCRIMINATORS)}")
        weights = resolve_weights(self.preset, self.weights)
        pre = self.resolved_pretrain_steps()
        need(pre >= 0, f"pretrain_steps must be >= 0, got {pre}")
        if "gan" in weights or "perceptual" in weights:
            need(
                pre < int(self.steps),
                f"pretrain_steps ({pre}) must be smaller than steps ({self.steps}), or the perceptual/adversarial "
                f"terms never switch on",
            )
        if "ssim" in weights:
            need(int(self.patch_size) >= 11, f"the SSIM loss needs patches of at least 11 px, got {self.patch_size}")
        if "gan" in weights:
            need(
                int(self.patch_size) >= 16,
                f"adversarial training needs patches of at least 16 px, got {self.patch_size}",
            )
        SRNetConfig.from_dict({"scale": int(self.scale), **(self.net or {})})  # raises for bad net overrides
        if self.degradation is not None:
            DegradationConfig.from_dict({"scale": int(self.scale), **self.degradation})

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


__all__ = ["TrainConfig"]
