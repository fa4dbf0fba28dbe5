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

import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .errors import DeviceError, InvalidRequestError


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
#: The devices every machine has (what a device list shows before torch says which accelerators exist).
BASIC_DEVICES = (DEFAULT_DEVICE, "cpu")
#: Every form of device name (:data:`DEVICE_CHOICES` and an indexed GPU), for help texts and messages.
DEVICE_NAMES = tuple(form for name in DEVICE_CHOICES for form in ((name, "cuda:N") if name == "cuda" else (name,)))
_CUDA_NAME = re.compile(r"^cuda(:\d+)?$")


def parse_device_name(device: str | None) -> str:
    """The canonical spelling of a device name (``None`` and ``""``: :data:`DEFAULT_DEVICE`).

    ``" CUDA:1 "`` -> ``"cuda:1"``.  Says nothing about whether this machine has the
    device (:func:`napari_superres.engine.device.resolve_device` checks that); anything
    that is not a device name raises :class:`~napari_superres.engine.errors.DeviceError`
    listing :data:`DEVICE_NAMES`.
    """
    if device is not None and not isinstance(device, str):
        raise DeviceError(f"device must be one of {', '.join(DEVICE_NAMES)} (a string), got {device!r}")
    name = (device or DEFAULT_DEVICE).strip().lower()
    if name not in DEVICE_CHOICES and not _CUDA_NAME.match(name):
        raise DeviceError(f"unknown device {device!r}; use one of {', '.join(DEVICE_NAMES)}")
    return name


# --- requests -------------------------------------------------------------------------------------
#: Upscaling factor when neither the model nor the caller fixes one (the bicubic baseline).
DEFAULT_SCALE = 2
#: ``tile`` value meaning "choose the tile edge from the device's free memory" (``None`` means the same).
AUTO_TILE = 0


def check_scale(scale: Any) -> int | None:
    """``scale`` as an ``int`` (``None`` stays ``None``); :class:`InvalidRequestError` unless a whole number >= 1.

    ``2.0`` is accepted as 2; ``2.5``, ``0``, ``-2``, ``True`` and strings are refused (never rounded).
    """
    if scale is None:
        return None
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise InvalidRequestError(f"scale must be a whole number such as 2, 3 or 4, got {scale!r}")
    if not float(scale).is_integer() or scale < 1:
        raise InvalidRequestError(f"scale must be a whole number >= 1 (e.g. 2, 3 or 4), got {scale!r}")
    return int(scale)


def reconcile_scale(asked: Any, model_scale: int | None, model_name: str) -> int:
    """The factor a request runs at: the model's own (a trained network upscales by one factor;
    asking another is an :class:`InvalidRequestError`), else the asked one (the bicubic baseline,
    ``model_scale=None``: any factor), else :data:`DEFAULT_SCALE`.
    """
    scale = check_scale(asked)
    if model_scale is not None:
        if scale is not None and scale != int(model_scale):
            raise InvalidRequestError(
                f"model {model_name!r} upscales x{model_scale}; it cannot upscale x{scale} "
                f"(ask for x{model_scale} or choose another model)"
            )
        return int(model_scale)
    return DEFAULT_SCALE if scale is None else scale


def tile_or_auto(tile: Any) -> int | None:
    """A tile edge in input pixels, or ``None`` for automatic (``tile`` ``None`` or :data:`AUTO_TILE`).

    Negative or fractional values raise :class:`InvalidRequestError`.
    """
    if tile is None:
        return None
    if isinstance(tile, bool) or not isinstance(tile, numbers.Real) or not float(tile).is_integer() or tile < 0:
        raise InvalidRequestError(f"tile must be a whole number of pixels >= 0 ({AUTO_TILE}: automatic), got {tile!r}")
    return int(tile) if int(tile) != AUTO_TILE else None


#: CPU arithmetic of ``upscale(..., precision=)``: see :mod:`napari_superres.engine.infer.precision`.
PRECISIONS = ("fp32", "bf16", "int8", "auto")
#: What runs a network (``upscale(..., backend=)``): see :func:`napari_superres.engine.infer.planning.resolve_backend`.
BACKENDS = ("auto", "torch", "onnxruntime")
#: ``upscale(..., degradation=)`` when none is given: a conditioned model's blur and noise are estimated
#: from the image (see :mod:`napari_superres.engine.infer.conditioning`).
DEFAULT_DEGRADATION = "auto"

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


@dataclass(frozen=True)
class Normalization:
    """How an image's intensities map to ``[0, 1]`` and back (see :mod:`napari_superres.engine.normalization`).

    ``mode="dtype"``: uint8/uint16 by their dtype range, other images by their min/max;
    ``mode="percentile"``: the image's ``low`` / ``high`` percentiles (0..100) map to 0 and 1.
    Model files and the public API carry it as a JSON-able dict (:meth:`to_dict`);
    :meth:`parse` reads every accepted form.

    >>> Normalization.parse("percentile").to_dict()
    {'mode': 'percentile', 'low': 1.0, 'high': 99.8}
    >>> Normalization.parse(None) == Normalization.parse({}) == Normalization("dtype")
    True
    """

    mode: str = "dtype"
    low: float = DEFAULT_PERCENTILES[0]
    high: float = DEFAULT_PERCENTILES[1]

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZATION_MODES:
            raise InvalidRequestError(f"normalization must be one of {NORMALIZATION_MODES}, got {self.mode!r}")
        try:
            low, high = float(self.low), float(self.high)
        except (TypeError, ValueError):
            raise InvalidRequestError(f"percentiles must be numbers, got {self.low!r}, {self.high!r}") from None
        if self.mode == "percentile" and not 0 <= low < high <= 100:
            raise InvalidRequestError(f"percentiles need 0 <= low < high <= 100, got {low}, {high}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @classmethod
    def parse(
        cls, value: str | Mapping[str, Any] | Normalization | None, default: Normalization | None = None
    ) -> Normalization:
        """A mode name, a spec dict (``{"mode": ..., "low": ..., "high": ...}``; no ``"mode"``:
        ``"dtype"``) or a :class:`Normalization`; ``None`` gives ``default`` (itself by default
        ``Normalization()``, the ``"dtype"`` mode: what a model that records none uses).
        Training passes ``default=TRAINING_NORMALIZATION``.
        """
        if value is None:
            return cls() if default is None else default
        if isinstance(value, Normalization):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"mode", "low", "high"})
            if unknown:
                raise InvalidRequestError(f"unknown normalization keys {unknown}; known: ['high', 'low', 'mode']")
            return cls(**value)
        raise InvalidRequestError(
            f"normalization must be one of {NORMALIZATION_MODES}, a spec dict or None, got {type(value).__name__}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able spec stored in model files: ``{"mode": "dtype"}`` or ``{"mode": "percentile", "low": 1.0, "high": 99.8}``."""
        if self.mode == "percentile":
            return {"mode": self.mode, "low": self.low, "high": self.high}
        return {"mode": self.mode}


#: What training uses unless told otherwise (stored in the model file, repeated at inference).
TRAINING_NORMALIZATION = Normalization("percentile")
#: :data:`TRAINING_NORMALIZATION` as a spec dict; copy it with :func:`default_normalization` before changing it.
DEFAULT_NORMALIZATION: dict[str, Any] = TRAINING_NORMALIZATION.to_dict()


def default_normalization() -> dict[str, Any]:
    """A fresh copy of :data:`DEFAULT_NORMALIZATION` (percentile 1 / 99.8)."""
    return TRAINING_NORMALIZATION.to_dict()


# --- training -------------------------------------------------------------------------------------
#: Time budget (s) of ``adapt`` (fine-tuning on the image itself) when none is given: it plans the steps
#: (``engine.train.adapt.planned_steps``) and ends them.  The API, the command line and the Upscale widget use it.
ADAPT_SECONDS = 30.0
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
    #: time budget in seconds (None: train for ``steps``)
    seconds: float | None = None
    #: starting network: "builtin" (the built-in model of the scale), "none" or a model file
    init: str = "builtin"
    #: 12 patches of 64 px: 1000 steps of the built-in x2 network in about 345 CPU-seconds at 1 thread
    #: (benchmarks/results/train_choices.md)
    batch_size: int = 12
    #: high-res patch edge in pixels
    patch_size: int = 64
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
    val_fraction: float = 0.1


TRAIN_DEFAULTS = TrainDefaults()
#: Steps of a run given only a time budget (``--seconds`` without ``--steps``): the budget ends it first.
TIME_BUDGET_STEP_CAP = 100_000_000

__all__ = [
    "ACTIVATIONS",
    "AUTO_TILE",
    "BACKENDS",
    "BASIC_DEVICES",
    "DEFAULT_DEGRADATION",
    "DEFAULT_DEVICE",
    "DEFAULT_NORMALIZATION",
    "DEFAULT_PERCENTILES",
    "DEFAULT_SCALE",
    "DEVICE_CHOICES",
    "DEVICE_NAMES",
    "GAN_LOSSES",
    "LOSS_PRESET_NAMES",
    "LOSS_TERMS",
    "NORMALIZATION_MODES",
    "NORM_LAYERS",
    "PRECISIONS",
    "SCHEDULES",
    "SUPPORTED_SCALES",
    "TIME_BUDGET_STEP_CAP",
    "TRAINING_NORMALIZATION",
    "TRAIN_DEFAULTS",
    "Normalization",
    "TrainDefaults",
    "UPSAMPLING_MODES",
    "check_scale",
    "default_normalization",
    "known_settings",
    "parse_device_name",
    "reconcile_scale",
    "tile_or_auto",
]
