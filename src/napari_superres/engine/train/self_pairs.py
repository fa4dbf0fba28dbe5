"""Self-supervised training pairs from one noisy image (what :func:`~napari_superres.engine.train.adapt.adapt`'s
self-pairs phase fine-tunes on): the image is the high-res target, its degraded copy the input, their noise made
independent by recorruption (Recorrupted-to-Recorrupted, Pang et al., CVPR 2021).

>>> pairs = SelfPairs([image], estimate, scale=2, patch_size=48, degradation=degradation)   # doctest: +SKIP
>>> lq, gt = pairs.sample(8)                                                                  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..nets.conditioning import COND_CHANNELS, DegradationCondition, low_res_condition, with_condition
from .conditions import jittered
from .data import PairSource
from .degradation import degrade
from .estimate import ImageEstimate


def r2r_alpha(scale: int) -> float:
    """Recorruption strength (R2R: input ``+ alpha z``, target ``- z / alpha``) for ``scale``.

    ``sqrt(scale^2 - 1)``: binning the input by ``scale`` leaves exactly the image's own noise
    variance (``(1 + alpha^2) / scale^2 = 1``), and the target's extra noise
    (``1 / alpha^2`` of the image's) is as small as that allows.
    """
    return math.sqrt(max(int(scale) ** 2 - 1, 1))


class SelfPairs(PairSource):
    """Self-supervised pairs from one image, with noise-independent input and target.

    The image is noisy, so a plain ZSSR pair (target = image, input = degraded image) has
    input noise correlated with target noise, and the network learns to reproduce the
    noise.  Recorrupted-to-Recorrupted (Pang et al., CVPR 2021) decorrelates them: with
    ``z`` drawn from the estimated noise model (variance ``a v + b``), the target is
    ``y - z / alpha`` and the input is made from ``y + alpha z``; input and target noise are
    then uncorrelated, and the loss's minimiser is the clean image.  After area binning by
    ``s`` the input's noise variance is ``(1 + alpha^2) var / s^2``; the degradation adds the
    rest up to the image's own noise (so inputs look like the real image).
    """

    def __init__(self, image: Any, estimate: ImageEstimate, *, conditioned: bool = False, **kwargs: Any) -> None:
        super().__init__(image, None, **kwargs)
        self.estimate = estimate
        #: append the synthetic input's degradation maps (for a conditioned network)
        self.conditioned = bool(conditioned)
        self.cond_channels = COND_CHANNELS if conditioned else 0

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        _, hr = super().sample(batch_size)
        noise = self.estimate.noise
        var = (noise.poisson * hr.clamp(min=0.0) + max(noise.gaussian_var, 0.0)).clamp(min=0.0)
        z = torch.randn(hr.shape, generator=self._torch_gen) * var.sqrt()
        assert self.degradation is not None
        alpha = r2r_alpha(self.scale)
        lq, params = degrade(hr + alpha * z, self.degradation, self._torch_gen, return_params=True)  # type: ignore[misc]
        if self.conditioned:
            lq = with_condition(lq, jittered([self.input_condition(p) for p in params], self._rng))
        return lq, hr - z / alpha  # type: ignore[return-value]

    def input_condition(self, params: dict[str, Any]) -> DegradationCondition:
        """The synthetic input's condition: the image's blur and the drawn blur, binned; the image's
        noise, recorrupted (``1 + alpha^2``) and binned, plus the drawn noise."""
        e, s = self.estimate, self.scale
        image = DegradationCondition(max(e.noise.poisson, 0.0), max(e.noise.gaussian_var, 0.0), max(e.blur_sigma, 0.0))
        return low_res_condition(image.with_noise_variance_times(1.0 + r2r_alpha(s) ** 2), params, s)


__all__ = ["SelfPairs", "r2r_alpha"]
