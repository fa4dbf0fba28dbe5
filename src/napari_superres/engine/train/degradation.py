"""Synthetic low-resolution images from high-resolution ones, randomised per patch.

Why randomised: a network trained on pairs made by one interpolation learns to invert
exactly that operator.  Given low-resolution images made another way (a different
resize kernel, an optical blur, a camera's noise) it fails -- typically it sharpens
the wrong frequencies or amplifies aliasing, and can do worse than plain bicubic.
(The seed project's report hit this: a model trained on area-downsampled pairs was
tested on bicubic-downsampled inputs.)  Drawing the downsampling method, a Gaussian
blur and noise independently for every training patch makes the model robust to the
unknown degradation of real data.

``degrade(hr, cfg, generator)`` takes ``(N, C, H, W)`` float in ``[0, 1]`` with ``H``
and ``W`` multiples of ``cfg.scale`` and returns ``(N, C, H/scale, W/scale)``.
The order is: blur (optional) -> downsample -> Poisson noise -> Gaussian noise -> clip.
Random numbers come from ``generator`` only (a CPU ``torch.Generator``), so a seeded
generator gives the same degradations again.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from ..blur import gaussian_blur, gaussian_kernel1d
from ..options import TRAINING_NORMALIZATION, Normalization, known_settings

#: Downsampling methods.  ``bicubic`` and ``bilinear`` are antialiased (as PIL and
#: MATLAB ``imresize``); ``area`` averages each ``scale x scale`` block (a camera
#: binning pixels); ``nearest`` keeps one pixel per block (aliasing decimation).
DOWNSAMPLING_METHODS = ("area", "bicubic", "bilinear", "nearest")


@dataclass
class DegradationConfig:
    """How to make a low-resolution patch; every random choice is made per patch.

    Attributes
    ----------
    scale : downsampling factor (the model's upscaling factor).
    methods : downsampling methods drawn uniformly per patch (see :data:`DOWNSAMPLING_METHODS`).
    blur_sigma : ``(min, max)`` Gaussian blur sigma in high-res px before downsampling, or ``None``.
    blur_prob : probability that a patch is blurred at all.
    noise_poisson : ``(min, max)`` photon count that intensity 1.0 corresponds to
        (lower = noisier; e.g. ``(30, 1000)``), drawn log-uniformly, or ``None``.
    noise_gaussian : ``(min, max)`` Gaussian read-noise sigma in normalised units
        (e.g. ``(0.0, 0.02)``), or ``None``.
    noise_prob : probability that a patch gets noise (each enabled kind).
    target_blur : fraction of a patch's drawn blur that its training *target* keeps
        (:func:`blurred_target`): ``0`` (the default) trains towards the sharp high-res patch;
        ``1 / scale`` towards the same field seen through optics ``scale`` times finer (the
        high-res reference of a microscope: a narrower PSF, not none), so the network does not
        deconvolve an optical blur further than a finer acquisition would resolve.
    clip : clip the high-res input and the result to ``[0, 1]`` (a camera's full scale).  ``None``
        (the default) decides from the data's normalisation (:meth:`for_normalization`): clip for
        ``dtype`` normalisation, where ``[0, 1]`` is the dtype's range, and not for percentile
        normalisation, where bright structures lie above 1 and inference sees them unclipped (a
        network trained on clipped inputs learns to push values near 1 upwards and overshoots
        bright spots); :func:`degrade` treats an unresolved ``None`` as ``True``.
    """

    scale: int = 2
    methods: tuple[str, ...] = DOWNSAMPLING_METHODS
    blur_sigma: tuple[float, float] | None = (0.0, 1.5)
    blur_prob: float = 0.5
    noise_poisson: tuple[float, float] | None = None
    noise_gaussian: tuple[float, float] | None = None
    noise_prob: float = 0.5
    target_blur: float = 0.0
    clip: bool | None = None

    def __post_init__(self) -> None:
        self.scale = int(self.scale)
        if self.scale < 1:
            raise ValueError(f"degradation scale must be >= 1, got {self.scale}")
        if isinstance(self.methods, str):
            self.methods = (self.methods,)
        self.methods = tuple(self.methods)
        bad = [m for m in self.methods if m not in DOWNSAMPLING_METHODS]
        if bad or not self.methods:
            raise ValueError(
                f"unknown downsampling methods {bad or '(none)'}; choose from {list(DOWNSAMPLING_METHODS)}"
            )
        self.blur_sigma = _range("blur_sigma", self.blur_sigma, minimum=0.0)
        self.noise_poisson = _range("noise_poisson", self.noise_poisson, minimum=1e-6)
        self.noise_gaussian = _range("noise_gaussian", self.noise_gaussian, minimum=0.0)
        for name in ("blur_prob", "noise_prob"):
            p = float(getattr(self, name))
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
            setattr(self, name, p)
        self.target_blur = float(self.target_blur)
        if not 0.0 <= self.target_blur <= 1.0:
            raise ValueError(f"target_blur must be in [0, 1], got {self.target_blur}")
        if self.clip is not None:
            self.clip = bool(self.clip)

    def for_normalization(self, normalization: dict[str, Any] | None) -> DegradationConfig:
        """This config with ``clip`` resolved for data normalised by ``normalization`` (a spec dict;
        ``None``: the training default, percentile)."""
        if self.clip is not None:
            return self
        mode = Normalization.parse(normalization, TRAINING_NORMALIZATION).mode
        return replace(self, clip=mode == "dtype")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("methods", "blur_sigma", "noise_poisson", "noise_gaussian"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DegradationConfig:
        """Build from keyword settings; unknown keys are a ``ValueError`` naming the known ones."""
        return cls(**known_settings(cls, d, "degradation settings"))


def _range(name: str, value: Any, minimum: float) -> tuple[float, float] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = (value, value)
    lo, hi = (float(v) for v in value)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < minimum or hi < lo:
        raise ValueError(f"{name} must be a (min, max) range with {minimum} <= min <= max, got {value}")
    return lo, hi


def downsample(x: torch.Tensor, scale: int, method: str) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, C, H/scale, W/scale)`` with one of :data:`DOWNSAMPLING_METHODS`."""
    h, w = x.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"patch size {h}x{w} is not a multiple of the scale {scale}")
    if scale == 1:
        return x
    size = (h // scale, w // scale)
    if method == "area":
        return F.avg_pool2d(x, scale)
    if method == "nearest":
        # the pixel nearest each block centre (torch's "nearest" takes the top-left one)
        off = scale // 2
        return x[..., off::scale, off::scale]
    if method in ("bicubic", "bilinear"):
        return F.interpolate(x, size=size, mode=method, align_corners=False, antialias=True)
    raise ValueError(f"unknown downsampling method {method!r}; choose from {list(DOWNSAMPLING_METHODS)}")


def _uniform(generator: torch.Generator | None, lo: float, hi: float) -> float:
    u = float(torch.rand((), generator=generator))
    return lo + (hi - lo) * u


def degrade(
    hr: torch.Tensor,
    cfg: DegradationConfig,
    generator: torch.Generator | None = None,
    *,
    return_params: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[dict[str, Any]]]:
    """Low-resolution versions of the high-resolution batch ``hr`` ``(N, C, H, W)`` in ``[0, 1]``.

    Method, blur and noise are drawn independently for every patch from ``generator``
    (a CPU ``torch.Generator``; noise is drawn on the CPU and moved to ``hr``'s device).
    With ``return_params=True`` also returns what was drawn for each patch.
    """
    if hr.ndim != 4:
        raise ValueError(f"degrade needs a (N, C, H, W) batch, got shape {tuple(hr.shape)}")
    out = []
    params: list[dict[str, Any]] = []
    for i in range(hr.shape[0]):
        x = hr[i : i + 1].float()
        p: dict[str, Any] = {}
        method = cfg.methods[int(torch.randint(len(cfg.methods), (), generator=generator))]
        p["method"] = method
        if cfg.blur_sigma is not None and float(torch.rand((), generator=generator)) < cfg.blur_prob:
            sigma = _uniform(generator, *cfg.blur_sigma)
            x = gaussian_blur(x, sigma)
            p["blur_sigma"] = sigma
        x = downsample(x, cfg.scale, method)
        if cfg.noise_poisson is not None and float(torch.rand((), generator=generator)) < cfg.noise_prob:
            lo, hi = cfg.noise_poisson
            peak = math.exp(_uniform(generator, math.log(lo), math.log(hi)))
            # shot noise on the non-negative part; values below 0 (under a percentile range's low
            # end) keep their offset
            positive = x.clamp(min=0.0)
            rate = (positive.detach().cpu() * peak).contiguous()
            x = x - positive + torch.poisson(rate, generator=generator).to(x.device) / peak
            p["poisson_peak"] = peak
        if cfg.noise_gaussian is not None and float(torch.rand((), generator=generator)) < cfg.noise_prob:
            sigma = _uniform(generator, *cfg.noise_gaussian)
            noise = torch.randn(x.shape, generator=generator) * sigma
            x = x + noise.to(x.device)
            p["gaussian_sigma"] = sigma
        if cfg.clip is not False:
            x = x.clamp(0.0, 1.0)
        out.append(x)
        params.append(p)
    lq = torch.cat(out).to(hr.dtype)
    return (lq, params) if return_params else lq


def blurred_target(hr: torch.Tensor, params: list[dict[str, Any]], cfg: DegradationConfig) -> torch.Tensor:
    """The training targets of a degraded batch: ``hr`` ``(N, C, H, W)`` with each patch blurred by
    ``cfg.target_blur`` times the blur :func:`degrade` drew for it (``params``); ``hr`` itself when
    ``target_blur`` is 0 or no patch was blurred."""
    if cfg.target_blur <= 0 or not any("blur_sigma" in p for p in params):
        return hr
    out = [
        gaussian_blur(hr[i : i + 1], cfg.target_blur * p["blur_sigma"]) if "blur_sigma" in p else hr[i : i + 1]
        for i, p in enumerate(params)
    ]
    return torch.cat(out)


__all__ = [
    "DOWNSAMPLING_METHODS",
    "DegradationConfig",
    "blurred_target",
    "degrade",
    "downsample",
    "gaussian_blur",
    "gaussian_kernel1d",
]
