"""What a training run reports: per-step :class:`StepReport`, :class:`ValidationReport` and the
final :class:`TrainResult`.

Split out of :mod:`~napari_superres.engine.train.trainer`, which re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..nets.srnet import SRNet


#: How validation PSNR / SSIM are computed (stored in logs next to the figures).
VALIDATION_RANGE = (
    "on the data's own range: data_range = max - min of the high-res validation region (per region, "
    "as the quality benchmark); no clipping of predictions; bicubic = torch bicubic upsampling of the low-res region"
)


@dataclass
class ValidationReport:
    """Scores on the validation region, on the data's own intensity range.

    PSNR and SSIM use ``data_range = max - min`` of the high-res (ground-truth) region
    (:data:`VALIDATION_RANGE`).  Both are invariant to the affine intensity normalisation,
    so the figures are those of the raw data in its own units: a uint16 image whose
    signal spans 3000 counts is scored on 3000, not 65535 (which would give ~56 dB for
    anything).  ``bicubic_*`` score torch bicubic upsampling of the same low-res region:
    the number to beat.

    ``preview`` is the super-resolved fixed crop, ``(H, W)`` float32 in [0, 1] for
    1-channel models (``(H, W, 3)`` for RGB models); ``preview_lr`` / ``preview_hr`` the
    matching low-res and ground-truth crops.
    """

    step: int
    psnr: float
    ssim: float
    bicubic_psnr: float
    bicubic_ssim: float
    preview: np.ndarray | None = None
    preview_lr: np.ndarray | None = None
    preview_hr: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """Scores only (no arrays), for JSON logs."""
        return {
            "step": self.step,
            "psnr": self.psnr,
            "ssim": self.ssim,
            "bicubic_psnr": self.bicubic_psnr,
            "bicubic_ssim": self.bicubic_ssim,
            "data_range": VALIDATION_RANGE,
        }


@dataclass
class StepReport:
    """What the callback gets after every step.

    ``losses`` holds every active term (unweighted), ``"total"`` (the weighted sum the
    generator minimised) and ``"d"`` (discriminator loss) once adversarial training runs.
    ``d_acc_real`` / ``d_acc_fake``: fractions of real / fake patches the discriminator
    classified correctly this step (``None`` without a discriminator).
    """

    step: int
    total_steps: int
    losses: dict[str, float]
    d_acc_real: float | None
    d_acc_fake: float | None
    lr: float
    it_per_s: float
    eta_s: float
    validation: ValidationReport | None = None
    phase: str = "train"  # "pretrain" (pixel losses only) or "train"
    checkpoint: str | None = None  # path of the checkpoint written after this step, if any

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "total_steps": self.total_steps,
            "losses": dict(self.losses),
            "d_acc_real": self.d_acc_real,
            "d_acc_fake": self.d_acc_fake,
            "lr": self.lr,
            "it_per_s": self.it_per_s,
            "eta_s": self.eta_s,
            "phase": self.phase,
            "checkpoint": self.checkpoint,
            "validation": self.validation.to_dict() if self.validation else None,
        }


@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.run`; ``steps_done`` counts all steps so far (resumed ones included)."""

    steps_done: int
    stopped: bool
    history: list[dict[str, Any]]
    final_validation: ValidationReport | None
    net: SRNet


__all__ = ["VALIDATION_RANGE", "StepReport", "TrainResult", "ValidationReport"]
