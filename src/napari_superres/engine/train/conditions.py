"""Degradation conditions of training patches (for conditioned networks, ``cond_channels > 0``).

A conditioned network is told each input's noise and blur
(:class:`~napari_superres.engine.nets.conditioning.DegradationCondition`).  At inference the
condition is *estimated* from the image (:func:`estimate_condition`); in training it is what
the estimator would read on the synthesized low-res patch, computed from what was drawn:

* blur, in low-res px: the high-res plane's own blur ``sigma_hr`` (estimated once per plane,
  high-res px), the drawn blur ``sigma_d`` and the binning by ``s`` combine as
  ``sigma_lr^2 = (sigma_hr^2 + sigma_d^2) / s^2 + (s^2 - 1) / (12 s^2)``
  (:mod:`~napari_superres.engine.train.estimate`'s formula);
* noise: the drawn Poisson-Gaussian noise plus the high-res plane's own noise divided by the
  ``s^2`` pixels a low-res pixel averages.

Training conditions are jittered (log-normal, :data:`NOISE_JITTER`, :data:`BLUR_JITTER`) so the
network tolerates the estimator's error at inference.  For low-res images given as pairs the
condition is the estimate of each low-res plane.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..nets.conditioning import DegradationCondition, estimate_condition, low_res_condition

#: Log-normal spread of the training conditions around the true values (estimator error).
NOISE_JITTER = 0.25
BLUR_JITTER = 0.1


def jittered(conditions: Sequence[DegradationCondition], generator: np.random.Generator) -> torch.Tensor:
    """``(N, 3)`` condition tensor with log-normal jitter (training only)."""
    rows = []
    for c in conditions:
        n = np.exp(generator.normal(0.0, NOISE_JITTER, size=2))
        b = math.exp(generator.normal(0.0, BLUR_JITTER))
        rows.append([c.noise_gain * n[0], c.noise_offset * n[1], c.blur_sigma * b])
    return torch.tensor(rows, dtype=torch.float32)


def stacked(conditions: Sequence[DegradationCondition]) -> torch.Tensor:
    """``(N, 3)`` condition tensor, as is."""
    return torch.stack([c.as_tensor() for c in conditions])


__all__ = ["BLUR_JITTER", "NOISE_JITTER", "estimate_condition", "jittered", "low_res_condition", "stacked"]
