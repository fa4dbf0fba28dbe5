"""Degradation conditioning: what a network is told about its input's blur and noise.

A conditioned :class:`~napari_superres.engine.nets.srnet.SRNet` (``cond_channels > 0``) reads,
next to the image, maps that describe how the image was degraded, as SRMD (Zhang et al. 2018:
degradation maps as extra input channels) and FFDNet (a noise-level map) do.  So one network
serves clean and very noisy, sharp and blurred data: it is told which it is looking at instead
of guessing from content (a blind network cannot tell a blurred input from a smooth scene).

The condition of one image is three numbers, in the units the network sees (the image
normalised to roughly ``[0, 1]``):

* ``noise_gain`` ``a`` and ``noise_offset`` ``b``: the Poisson-Gaussian noise model
  ``var(v) = a * v + b`` (``a = 1 / photons at intensity 1``, ``sqrt(b)`` the read noise);
* ``blur_sigma``: the effective Gaussian blur of the image in its own pixels (optics plus the
  pixel's own integration, ``sqrt(1/12) = 0.29`` px for a perfectly sharp image), as
  :func:`~napari_superres.engine.train.estimate.estimate_blur` measures it.

:func:`condition_maps` turns them into ``COND_CHANNELS`` maps: the per-pixel noise standard
deviation ``sqrt(a * max(v, 0) + b)`` (so the map follows shot noise, which is brighter where
the signal is) and the constant blur.  The same function builds the maps in training (from
the degradation that was drawn) and at inference (from the estimate of the image), tile by
tile, since a map at a pixel depends only on that pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from ..noise import MAX_BLUR_SIGMA, PIXEL_BLUR_SIGMA, estimate_blur, estimate_noise
from ..normalization import outliers_as_local_median, without_fill_border

#: Maps a conditioned network reads after the image channels: noise std, blur sigma.
COND_CHANNELS = 2
#: The noise map is ``NOISE_MAP_GAIN * std`` and the blur map ``BLUR_MAP_GAIN * sigma``, so both
#: reach about 1 over the range users meet (std up to ~0.15, sigma up to ~3 low-res px).
NOISE_MAP_GAIN = 10.0
BLUR_MAP_GAIN = 0.5


@dataclass(frozen=True)
class DegradationCondition:
    """How one image was degraded, in normalised units (see the module docstring).

    Attributes
    ----------
    noise_gain : shot-noise variance per unit of signal (``1 / photons at intensity 1``); >= 0.
    noise_offset : variance at zero signal (read noise squared); >= 0.
    blur_sigma : effective Gaussian blur, in the image's own pixels; >= 0.
    """

    noise_gain: float = 0.0
    noise_offset: float = 0.0
    blur_sigma: float = PIXEL_BLUR_SIGMA

    def __post_init__(self) -> None:
        for name in ("noise_gain", "noise_offset", "blur_sigma"):
            value = float(getattr(self, name))
            if not value >= 0.0 or value == float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)

    @property
    def peak_photons(self) -> float | None:
        """Photons at intensity 1 (``1 / noise_gain``); ``None`` without shot noise."""
        return 1.0 / self.noise_gain if self.noise_gain > 0 else None

    @property
    def read_noise(self) -> float:
        """Read-noise standard deviation (``sqrt(noise_offset)``), normalised units."""
        return self.noise_offset**0.5

    def with_noise_variance_times(self, factor: float) -> DegradationCondition:
        """The same blur with ``factor`` times the noise variance (shot and read): e.g. a recorrupted image's."""
        return replace(self, noise_gain=self.noise_gain * factor, noise_offset=self.noise_offset * factor)

    def as_tensor(self) -> torch.Tensor:
        """``(3,)`` float32: ``[noise_gain, noise_offset, blur_sigma]``."""
        return torch.tensor([self.noise_gain, self.noise_offset, self.blur_sigma], dtype=torch.float32)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "peak_photons": self.peak_photons, "read_noise": self.read_noise}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DegradationCondition:
        return cls(**{k: d[k] for k in ("noise_gain", "noise_offset", "blur_sigma") if k in d})


#: A clean, sharp image: what an unconditioned call means.
CLEAN = DegradationCondition()


def condition_maps(image: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
    """The ``(N, COND_CHANNELS, H, W)`` maps of ``image`` ``(N, C, H, W)`` under ``condition``.

    ``condition``: ``(3,)`` for the whole batch or ``(N, 3)`` per sample, as
    :meth:`DegradationCondition.as_tensor`.  The noise map uses the mean over ``C`` as the signal.
    """
    cond = condition.to(device=image.device, dtype=image.dtype)
    if cond.ndim == 1:
        cond = cond.expand(image.shape[0], -1)
    gain, offset, blur = (cond[:, i].view(-1, 1, 1, 1) for i in range(3))
    # one channel (the built-ins): no reduction, so the exported graph has no ReduceMean (whose keepdims
    # attribute the lowest supported onnxscript cannot serialise)
    signal = (image if image.shape[1] == 1 else image.mean(dim=1, keepdim=True)).clamp(min=0.0)
    noise = torch.sqrt((gain * signal + offset).clamp(min=0.0)) * NOISE_MAP_GAIN
    return torch.cat([noise, (blur * BLUR_MAP_GAIN).expand_as(noise)], dim=1)


def with_condition(image: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
    """``image`` with its condition maps appended: ``(N, C + COND_CHANNELS, H, W)``."""
    return torch.cat([image, condition_maps(image, condition)], dim=1)


# --- conditions of images ------------------------------------------------------------------
#: Noise variances below this (normalised units) count as no noise.
_MIN_VARIANCE = 1e-8
#: Largest crop (px per side) the estimate looks at: the centre of larger planes.
ESTIMATE_CROP = 1024


def _centre_crop(plane: np.ndarray, edge: int = ESTIMATE_CROP) -> np.ndarray:
    h, w = plane.shape[-2:]
    y0, x0 = max((h - edge) // 2, 0), max((w - edge) // 2, 0)
    return plane[..., y0 : y0 + edge, x0 : x0 + edge]


def _estimated_region(plane: np.ndarray) -> np.ndarray:
    """What the estimate reads of a normalised plane: its centre crop without border strips of fill (a mosaic's
    padding, whose step edge reads as a sharp image and whose flat fill as no noise), hot pixels as their local
    median."""
    return outliers_as_local_median(_centre_crop(without_fill_border(plane)))


def estimate_condition(planes: Sequence[np.ndarray]) -> DegradationCondition:
    """The condition of normalised 2-D planes (float, same normalisation as the network's input).

    Noise: the Poisson-Gaussian fit of :func:`~napari_superres.engine.noise.estimate_noise`;
    blur: :func:`~napari_superres.engine.noise.estimate_blur` (planes smaller than
    32 px per side give the sharp pixel blur).  At most :data:`ESTIMATE_CROP` px per side of each
    plane (its centre) are looked at, without border strips of fill
    (:func:`~napari_superres.engine.normalization.without_fill_border`), pixels outside what the network is shown (a
    camera's hot pixels) as their 3 x 3 median (:func:`~napari_superres.engine.normalization.outliers_as_local_median`).
    """
    crops = [_estimated_region(np.asarray(p, dtype=np.float64)) for p in planes]
    crops = [c for c in crops if min(c.shape) >= 5]
    if not crops:
        return DegradationCondition()
    shapes = {c.shape for c in crops}
    stack = np.stack(crops) if len(shapes) == 1 else np.concatenate([c.ravel() for c in crops])[None]
    noise = estimate_noise(stack)
    try:
        blur = estimate_blur(crops, noise.sigma_squared)
    except ValueError:  # too small for a spectrum
        blur = PIXEL_BLUR_SIGMA
    return DegradationCondition(
        noise_gain=max(noise.gain, 0.0),
        noise_offset=max(noise.offset, 0.0),
        blur_sigma=min(max(blur, 0.0), MAX_BLUR_SIGMA),
    )


#: Blur readings up to this (low-res px) come from a clean image's own content as often as from its
#: optics: a merely downsampled smooth scene (HeLa, synthetic fields) reads 0.5-0.9 px.  The built-in
#: recipe adds blur only beyond it (``scripts/train_builtin.py``, ``BLUR_RANGE_PER_SCALE``).
CONTENT_BLUR = 0.9
#: A noise std below this at mid-range (normalised intensity 0.5) counts as a clean image.  Noise-free
#: images read 0.002-0.02 (fine texture, e.g. chromatin in nuclei after x4 downsampling, reads as noise),
#: camera images of the benchmark 0.021 and up.  Measured (held-out, bicubic protocol; 0.01 -> 0.02): x4
#: nuclei scene -0.56 -> +1.43 dB over bicubic, x4 natural +0.92 -> +0.93, x2 natural +2.08 -> +2.10, x2
#: fluorescence +3.07 -> +3.15; microscope and low-photon images unchanged (a threshold of 0.03 would
#: tell some noisy natural ones "sharp": x4 microscope +0.76 -> +0.65).
CLEAN_NOISE_STD = 0.02


def is_clean(condition: DegradationCondition) -> bool:
    """Whether ``condition``'s noise std at mid-range (normalised intensity 0.5) is below :data:`CLEAN_NOISE_STD`."""
    return math.sqrt(max(0.5 * condition.noise_gain + condition.noise_offset, 0.0)) < CLEAN_NOISE_STD


def inference_condition(estimated: DegradationCondition) -> DegradationCondition:
    """What a conditioned network is told about an image from its estimate.

    A clean image (noise std below :data:`CLEAN_NOISE_STD` at mid-range) whose blur reads no more
    than :data:`CONTENT_BLUR` is taken as well sampled: the network is told it is sharp (the pixel's
    own blur), since its reading is its content's smoothness, not optics; measured on held-out HeLa
    channels downsampled bicubically (250-1000-step probes of the x2 recipe), telling the estimate
    sharpened them 2-5 dB below what telling "sharp" gives.  Noisy images keep their reading: a camera
    acquisition whose PSF is about a pixel wide is common, and the estimate is what undoes it.
    """
    if is_clean(estimated) and estimated.blur_sigma <= CONTENT_BLUR:
        return DegradationCondition(estimated.noise_gain, estimated.noise_offset, PIXEL_BLUR_SIGMA)
    return estimated


def low_res_condition(source: DegradationCondition, params: dict[str, Any], scale: int) -> DegradationCondition:
    """The condition of a patch that :func:`~napari_superres.engine.train.degradation.degrade` made
    from high-res data whose own condition is ``source`` (high-res px), with the drawn ``params``."""
    s = float(scale)
    sigma_d = float(params.get("blur_sigma", 0.0))
    blur_sq = (source.blur_sigma**2 + sigma_d**2) / (s * s) + (s * s - 1.0) / (12.0 * s * s)
    peak = params.get("poisson_peak")
    read = float(params.get("gaussian_sigma", 0.0))
    gain = (1.0 / float(peak) if peak else 0.0) + source.noise_gain / (s * s)
    offset = read * read + source.noise_offset / (s * s)
    return DegradationCondition(
        noise_gain=gain if gain > _MIN_VARIANCE else 0.0,
        noise_offset=offset if offset > _MIN_VARIANCE else 0.0,
        blur_sigma=math.sqrt(blur_sq),
    )


__all__ = [
    "ESTIMATE_CROP",
    "CLEAN_NOISE_STD",
    "CONTENT_BLUR",
    "estimate_condition",
    "inference_condition",
    "is_clean",
    "low_res_condition",
    "BLUR_MAP_GAIN",
    "CLEAN",
    "COND_CHANNELS",
    "DegradationCondition",
    "NOISE_MAP_GAIN",
    "PIXEL_BLUR_SIGMA",
    "condition_maps",
    "with_condition",
]
