"""Choices and defaults of the engine, importable without torch or numpy.

The command line builds its ``--help`` from these names (so ``napari-superres --help``
starts in a fraction of a second), the widgets fill their combo boxes from them, and
the torch modules that implement each choice import their tuple from here, so every
list of choices and every default value is written once.

>>> from napari_superres.engine.options import TRAIN_DEFAULTS, SUPPORTED_SCALES
>>> TRAIN_DEFAULTS.scale in SUPPORTED_SCALES
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


def known_settings(cls: type, settings: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``dict(settings)`` once every key is a field of the dataclass ``cls``.

    The one "from_dict with unknown-key check" of the config dataclasses (``SRNetConfig``,
    ``TrainConfig``, ``DegradationConfig``): an unknown key is a ``ValueError`` naming it
    and the known ones, e.g. ``unknown SRNet config keys ['chanels']; known: [...]`` for
    ``what="SRNet config keys"``.
    """
    if not isinstance(settings, Mapping):
        raise ValueError(f"{what} must be given as a mapping, got {type(settings).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {sorted(known)}")
    return dict(settings)


# --- devices --------------------------------------------------------------------------------------
#: Values a ``device`` argument accepts (``"auto"``: CUDA, then Apple MPS, then the CPU).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_DEVICE = "auto"
#: CPU arithmetic of ``upscale(..., precision=)``: see :mod:`napari_superres.engine.infer.precision`.
PRECISIONS = ("fp32", "bf16", "int8", "auto")

# --- networks -------------------------------------------------------------------------------------
#: Upscaling factors an SRNet is built for (x3 in one stage, others in x2 stages).
SUPPORTED_SCALES = (2, 3, 4, 8)
#: How an SRNet upsamples its features.
UPSAMPLING_MODES = ("bilinear", "pixelshuffle", "transposed")
#: Normalisation *layers* inside an SRNet (not intensity normalisation: see NORMALIZATION_MODES).
NORM_LAYERS = ("none", "batch")
#: Activation functions an SRNet may use.
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "silu", "gelu")

# --- intensity normalisation ----------------------------------------------------------------------
#: Intensity normalisation modes (see :mod:`napari_superres.engine.normalization`).
NORMALIZATION_MODES = ("dtype", "percentile")
#: Low / high percentiles of the ``"percentile"`` mode (as CSBDeep).
DEFAULT_PERCENTILES = (1.0, 99.8)
#: What training uses unless told otherwise (stored in the model file, repeated at inference).
#: Copy it with :func:`default_normalization` before changing it.
DEFAULT_NORMALIZATION: dict[str, Any] = {
    "mode": "percentile",
    "low": DEFAULT_PERCENTILES[0],
    "high": DEFAULT_PERCENTILES[1],
}


def default_normalization() -> dict[str, Any]:
    """A fresh copy of :data:`DEFAULT_NORMALIZATION` (percentile 1 / 99.8)."""
    return dict(DEFAULT_NORMALIZATION)


# --- training -------------------------------------------------------------------------------------
#: Loss recipes (the weights of each are ``engine.train.losses.LOSS_PRESETS``).
LOSS_PRESET_NAMES = ("psnr", "perceptual", "gan")
#: Every loss term a weight may be given for.
LOSS_TERMS = ("l1", "l2", "ssim", "perceptual", "gan")
#: Adversarial losses.
GAN_LOSSES = ("vanilla", "lsgan", "hinge", "ragan")
#: Learning-rate schedules.
SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class TrainDefaults:
    """Default values of :class:`~napari_superres.engine.train.trainer.TrainConfig` fields
    (and of the training data's ``val_fraction``) that front ends show in their help.

    ``TrainConfig`` takes its field defaults from :data:`TRAIN_DEFAULTS`, so this is the
    one place they are written.
    """

    scale: int = 2
    preset: str = "psnr"
    gan_loss: str = "vanilla"
    d_steps: int = 1
    steps: int = 1000
    batch_size: int = 16
    #: high-res patch edge in pixels
    patch_size: int = 96
    #: initial Adam learning rate
    learning_rate: float = 2e-4
    schedule: str = "cosine"
    grad_clip: float | None = 1.0
    ema: float | None = 0.999
    seed: int = 0
    device: str = DEFAULT_DEVICE
    val_every: int = 100
    checkpoint_every: int = 0
    #: fraction of each image's columns held out for validation
    val_fraction: float = 0.2


TRAIN_DEFAULTS = TrainDefaults()

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_DEVICE",
    "DEFAULT_NORMALIZATION",
    "DEFAULT_PERCENTILES",
    "DEVICE_CHOICES",
    "GAN_LOSSES",
    "LOSS_PRESET_NAMES",
    "LOSS_TERMS",
    "NORMALIZATION_MODES",
    "NORM_LAYERS",
    "SCHEDULES",
    "SUPPORTED_SCALES",
    "TRAIN_DEFAULTS",
    "TrainDefaults",
    "UPSAMPLING_MODES",
    "default_normalization",
    "known_settings",
]
