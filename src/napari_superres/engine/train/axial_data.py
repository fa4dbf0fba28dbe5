"""Self-supervised training pairs for axial upsampling: lateral planes degraded like Z.

A stack's lateral (Y, X) planes are sampled finely; its Z axis is sampled every
``factor``-th fine step and blurred by a PSF ``psf_ratio`` times wider than the lateral
one.  :class:`AxialPairSampler` cuts patches from the lateral planes and degrades one
of their axes (Y or X, drawn per patch, then turned to be the first axis) the way Z is
degraded:

1. Gaussian blur along that axis with ``sigma = lateral_sigma * sqrt(psf_ratio**2 - 1)``
   (the blur that widens a lateral PSF of ``lateral_sigma`` px to the axial width);
2. keep every ``factor``-th row (row ``k`` of the input = row ``k * factor`` of the target);
3. add back the noise the blur removed: the blur averages the plane's own noise away,
   while real Z slices are as noisy as the lateral planes, so Gaussian noise of std
   ``sigma(mu) * sqrt(1 - sum(g**2))`` is added (``sigma`` from a Poisson-Gaussian fit
   of the stack, ``g`` the blur kernel).

The target is the untouched patch.  Random flips of both axes augment the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..noise import NoiseModel
from .degradation import gaussian_kernel1d

#: Lateral PSF sigma (px) assumed when the caller does not give one: a Nyquist-sampled
#: microscope image (PSF FWHM of about 2.4 px).
DEFAULT_LATERAL_SIGMA = 1.0


def axial_blur_sigma(psf_ratio: float, lateral_sigma: float = DEFAULT_LATERAL_SIGMA) -> float:
    """Extra blur (px) that widens a Gaussian PSF of ``lateral_sigma`` by ``psf_ratio`` (0 if ``psf_ratio <= 1``)."""
    if not math.isfinite(psf_ratio) or psf_ratio <= 0:
        raise ValueError(f"psf_ratio must be a positive number (axial / lateral PSF width), got {psf_ratio}")
    return float(lateral_sigma) * math.sqrt(max(psf_ratio**2 - 1.0, 0.0))


@dataclass
class AxialDegradation:
    """How lateral patches are made to look like axial slices (see the module docstring)."""

    factor: int
    blur_sigma: float
    noise: NoiseModel | None = None

    def kernel(self) -> torch.Tensor:
        """The 1-D blur kernel (float32; ``[1.0]`` when there is no blur)."""
        if self.blur_sigma <= 0:
            return torch.ones(1)
        return gaussian_kernel1d(self.blur_sigma)

    @property
    def halo(self) -> int:
        """Rows of context the blur needs on each side of a patch."""
        return (self.kernel().numel() - 1) // 2

    def apply(self, padded: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Degrade ``(N, 1, H + 2 * halo, W)`` along H to ``(N, 1, H / factor, W)``.

        ``H`` must be a multiple of ``factor``; the halo rows are context for the blur only.
        """
        g = self.kernel().to(padded.device, padded.dtype)
        x = F.conv2d(padded, g.view(1, 1, -1, 1)) if g.numel() > 1 else padded
        x = x[:, :, :: self.factor, :]
        if self.noise is not None and g.numel() > 1:
            kept = float(torch.sum(g.double() ** 2))  # variance left of i.i.d. noise after the blur
            std = torch.from_numpy(self.noise.sigma(x.detach().cpu().numpy())) * math.sqrt(max(1.0 - kept, 0.0))
            x = x + (torch.randn(x.shape, generator=generator) * std).to(x.device)
        return x


class AxialPairSampler:
    """Random (input, target) patch pairs from the lateral planes of normalised stacks.

    Parameters
    ----------
    volumes : ``(Z, Y, X)`` float32 arrays (normalised to about [0, 1]); all are sampled.
    degradation : :class:`AxialDegradation`.
    patch_size : target patch edge (px) along the degraded axis, a multiple of ``factor``;
        the other edge is the same.  Shrunk to fit planes smaller than it.
    seed : seeds the patch positions, flips and added noise.
    """

    def __init__(
        self, volumes: list[np.ndarray], degradation: AxialDegradation, patch_size: int = 64, seed: int = 0
    ) -> None:
        f = degradation.factor
        self.volumes = volumes
        self.degradation = degradation
        halo = degradation.halo
        small = min(min(v.shape[1:]) for v in volumes)
        longest = small - 2 * halo  # room along the degraded axis for the patch and its blur context
        if longest < 2 * f:
            raise ValueError(
                f"lateral planes of {small} px are too small to learn a x{f} axial upsampling with a blur of "
                f"sigma {degradation.blur_sigma:.2f} px: they need at least {2 * f + 2 * halo} px (Y and X)"
            )
        self.patch = min(int(patch_size), longest) // f * f
        self.halo = halo
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        weights = np.array([v.shape[0] for v in volumes], dtype=np.float64)
        self._volume_p = weights / weights.sum()

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs (N, 1, P / factor, P), targets (N, 1, P, P))`` float32 CPU tensors."""
        p, h = self.patch, self.halo
        crops = []
        for _ in range(batch_size):
            vol = self.volumes[int(self.rng.choice(len(self.volumes), p=self._volume_p))]
            plane = vol[int(self.rng.integers(vol.shape[0]))]
            if self.rng.random() < 0.5:  # degrade X instead of Y: turn it to be the first axis
                plane = plane.T
            y0 = int(self.rng.integers(plane.shape[0] - (p + 2 * h) + 1))
            x0 = int(self.rng.integers(plane.shape[1] - p + 1))
            crop = plane[y0 : y0 + p + 2 * h, x0 : x0 + p]
            if self.rng.random() < 0.5:
                crop = crop[::-1]
            if self.rng.random() < 0.5:
                crop = crop[:, ::-1]
            crops.append(np.ascontiguousarray(crop))
        padded = torch.from_numpy(np.stack(crops)[:, None]).float()
        target = padded[:, :, h : h + p, :]
        return self.degradation.apply(padded, self.generator), target.contiguous()


__all__ = ["DEFAULT_LATERAL_SIGMA", "AxialDegradation", "AxialPairSampler", "axial_blur_sigma"]
