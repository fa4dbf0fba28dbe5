"""Estimate an image's noise and blur, and the synthetic degradation that matches them.

Used by :func:`~napari_superres.engine.train.adapt.adapt` (self-supervised adaptation to one
image) and :func:`estimate_degradation` (calibrating high-res-only training to an
unpaired low-res example, as PSSR2 fits its crappifier).  Everything is measured on the
image normalised as training sees it (percentiles 1 / 99.8 by default), so the numbers
plug straight into :class:`~napari_superres.engine.train.degradation.DegradationConfig`.

**Noise** (:func:`estimate_noise`): a Poisson-Gaussian model ``var(v) = a * v + b`` of the
variance at intensity ``v`` (Foi et al. 2008, "Practical Poissonian-Gaussian noise
modeling and fitting for single-image raw-data"; also the model CSBDeep's and PSSR's
noise generators use), fitted by :func:`napari_superres.engine.noise.estimate_noise`: a
high-pass residual (a fourth difference along Y and along X) isolates the noise, pixels
are binned by their local mean, a robust (MAD) variance per bin, and a least-squares line
through the bins gives ``a`` (clipped to >= 0) and ``b``.  ``a`` is the inverse of the photon
count at intensity 1 (``peak_photons = 1 / a``), ``sqrt(b)`` the Gaussian (read) noise sigma.
Measured on synthetic fluorescence (blur sigma 1-2.5 px, 30-1000 photons): peak photons
within ~30 % (tests/test_adapt.py); on the quality benchmark's synthetic microscope images
(x2, PSF sigma ~1 low-res px, 400 photons) within ~15 %.  Structure sharper than about a
pixel still leaks into the residual and over-estimates the noise (a 4-neighbour Laplacian
residual, used before, read 2.5-3x the true shot noise on those images, and adapt then
learned to denoise too hard).

**Blur** (:func:`estimate_blur`): the width of a Gaussian PSF, in the image's pixels, from
its radially averaged power spectrum.  For an object whose spectrum falls as a power law
``f^-alpha`` (points alpha ~ 0, filaments ~ 1, edges ~ 2) blurred by a Gaussian of sigma
``s`` and sampled with white noise, ``P(f) = C f^-alpha exp(-4 pi^2 s^2 f^2) + N``.  The
noise floor ``N`` is known from the noise estimate (``N = mean noise variance``), so
``log(P - N)`` is fitted by linear least squares in ``(1, log f, f^2)`` over the band where
the signal clearly exceeds the floor; ``s`` comes from the ``f^2`` coefficient.  The result
is clipped to ``[0, MAX_BLUR_SIGMA]``.  It is the *effective* blur including the pixel's
own integration (a box of one pixel has sigma ``sqrt(1/12) = 0.29`` px).

**Degradation to train with** (:func:`degradation_for`): a high-res patch of the image is
blurred by ``sigma_d``, area-downsampled by ``scale`` (a camera with larger pixels) and
given Poisson-Gaussian noise, choosing

* ``sigma_d`` so that the synthetic low-res image has the same blur, in its own pixels,
  as the example: ``sigma_img^2 = (sigma_hr^2 + sigma_d^2) / s^2 + (s^2 - 1) / (12 s^2)``
  with ``sigma_hr`` the measured blur of the high-res data (:func:`estimate_degradation`).
  For :func:`~napari_superres.engine.train.adapt.adapt` the high-res blur is unknown; it
  assumes the *same optics* with smaller pixels (:func:`same_optics_source`), which gives
  ``sigma_d = 0`` (area binning only).  The ZSSR / KernelGAN scale-recurrence assumption
  instead (``sigma_hr = sigma_img`` in the finer pixels, so
  ``sigma_d^2 = (s^2 - 1)(sigma_img^2 - 1/12)``) asks the network to sharpen the optics
  by ``s``: measured on the quality benchmark's synthetic microscope image (x2, built-in
  start, 100 steps) it gave +1.1 dB over bicubic against +3.3 dB for same optics (the
  built-in model alone: +2.7 dB);
* noise so that the synthetic low-res image has the example's noise: area binning
  divides the high-res data's own noise variance by ``s^2``; the rest is added (a
  range of +-30 % around the estimate, so the model is robust to the estimate's error).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..normalization import intensity_range, normalize, outliers_as_local_median, without_fill_border
from ..options import TRAINING_NORMALIZATION, Normalization
from .degradation import DegradationConfig

log = logging.getLogger(__name__)

#: Relative spread of the noise levels drawn around the estimate in training.
NOISE_SPREAD = 0.3
#: Relative spread of the blur drawn around the estimate in training.
BLUR_SPREAD = 0.15


@dataclass
class NoiseEstimate:
    """``var(v) = poisson * v + gaussian_var`` in normalised units (see the module docstring)."""

    poisson: float
    gaussian_var: float
    bins: int

    @property
    def peak_photons(self) -> float | None:
        """Photons at intensity 1 (``1 / poisson``), ``None`` without a Poisson part."""
        return 1.0 / self.poisson if self.poisson > 0 else None

    @property
    def gaussian_sigma(self) -> float:
        return math.sqrt(max(self.gaussian_var, 0.0))

    def variance(self, value: float | np.ndarray) -> float | np.ndarray:
        return np.maximum(self.poisson * np.asarray(value) + self.gaussian_var, 0.0)


@dataclass
class ImageEstimate:
    """What :func:`estimate_image` measured: noise model, blur sigma (px), normalised mean."""

    noise: NoiseEstimate
    blur_sigma: float
    mean: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["noise"]["peak_photons"] = self.noise.peak_photons
        d["noise"]["gaussian_sigma"] = self.noise.gaussian_sigma
        return d


def _planes(image: np.ndarray, axes: str | None = None) -> list[np.ndarray]:
    """2-D float64 planes of ``image`` (any layout :func:`parse_axes` reads; RGB as luminance)."""
    from ..layout import parse_axes

    image = np.asarray(image)
    info = parse_axes(tuple(image.shape), axes)
    view = np.moveaxis(image, (info.y, info.x), (-2, -1))
    if info.rgb is not None:
        rgb_axis = info.rgb - sum(1 for a in (info.y, info.x) if a < info.rgb)
        view = np.moveaxis(view, rgb_axis, 0)
        view = 0.299 * view[0] + 0.587 * view[1] + 0.114 * view[2]
    flat = view.reshape(-1, *view.shape[-2:])
    return [np.asarray(p, dtype=np.float64) for p in flat]


def estimate_noise(planes: list[np.ndarray]) -> NoiseEstimate:
    """Poisson-Gaussian fit of normalised 2-D planes: :func:`napari_superres.engine.noise.estimate_noise`."""
    from ..noise import estimate_noise as fit_noise

    shapes = {p.shape for p in planes}
    stack = np.stack(planes) if len(shapes) == 1 else np.concatenate([p.ravel() for p in planes])[None]
    model = fit_noise(stack)
    return NoiseEstimate(poisson=float(model.gain), gaussian_var=float(model.offset), bins=0)


def estimate_blur(planes: list[np.ndarray], noise: NoiseEstimate) -> float:
    """Gaussian blur sigma (px) of normalised 2-D planes from their power spectra (module docstring;
    :func:`napari_superres.engine.noise.estimate_blur` with this noise model's floor)."""
    from ..noise import estimate_blur as fit_blur

    return fit_blur(planes, noise.variance)


def normalized_planes(
    image: np.ndarray, axes: str | None = None, normalization: dict[str, Any] | None = None
) -> list[np.ndarray]:
    """The image's 2-D planes normalised once per image as training does (default: percentiles), pixels outside
    what a network is shown (a camera's hot pixels) as their 3 x 3 median
    (:func:`~napari_superres.engine.normalization.outliers_as_local_median`): what adapt fine-tunes on and
    the estimates read."""
    spec = Normalization.parse(normalization, TRAINING_NORMALIZATION)
    lo, hi = intensity_range(np.asarray(image), spec)
    return [outliers_as_local_median(normalize(p, lo, hi).astype(np.float64)) for p in _planes(image, axes)]


def estimate_image(
    image: np.ndarray, axes: str | None = None, normalization: dict[str, Any] | None = None
) -> ImageEstimate:
    """Noise model and blur of ``image`` (any layout; normalised as ``normalization``, default percentiles)."""
    return estimate_planes(normalized_planes(image, axes, normalization))


def estimate_planes(planes: list[np.ndarray]) -> ImageEstimate:
    """Noise model and blur of an image's normalised 2-D planes (:func:`normalized_planes`), without border strips
    of fill (:func:`~napari_superres.engine.normalization.without_fill_border`, as upscale's estimate reads them)."""
    planes = [without_fill_border(p) for p in planes]
    noise = estimate_noise(planes)
    blur = estimate_blur(planes, noise)
    mean = float(np.mean([p.mean() for p in planes]))
    log.info("estimated noise var = %.3g * v + %.3g, blur sigma %.2f px", noise.poisson, noise.gaussian_var, blur)
    return ImageEstimate(noise=noise, blur_sigma=blur, mean=mean)


def same_optics_source(image: ImageEstimate, scale: int) -> ImageEstimate:
    """The high-res estimate of the *same optics* imaged with pixels ``scale`` times smaller.

    The optical blur is fixed in physical units: ``sigma_img`` px (optics plus one pixel's
    integration, ``1/12`` in variance) becomes ``scale * sqrt(sigma_img^2 - 1/12)`` optical px
    plus the finer pixel's own integration.  With it :func:`degradation_for` adds no blur:
    pure area binning reproduces the image from its high-res version.  The noise is kept.
    """
    s = int(scale)
    optical_sq = max(image.blur_sigma**2 - 1.0 / 12.0, 0.0)
    return ImageEstimate(noise=image.noise, blur_sigma=math.sqrt(s * s * optical_sq + 1.0 / 12.0), mean=image.mean)


def degradation_for(
    target: ImageEstimate,
    scale: int,
    source: ImageEstimate | None = None,
    *,
    recorrupted: float = 1.0,
) -> DegradationConfig:
    """The degradation that turns high-res data (``source``) into images like ``target``.

    ``target``: the low-res example's estimate (its blur in low-res px, its noise).
    ``source``: the high-res data's estimate (blur in high-res px, own noise); ``None``
    means the target itself (the ZSSR scale-recurrence assumption: blur scales with the
    pixel).  :func:`adapt` passes :func:`same_optics_source` instead.
    See the module docstring for the formulas.
    """
    s = int(scale)
    source = source or target
    sigma_img, sigma_hr = target.blur_sigma, source.blur_sigma
    sigma_d_sq = s * s * (sigma_img**2 - (s * s - 1) / (12.0 * s * s)) - sigma_hr**2
    sigma_d = math.sqrt(max(sigma_d_sq, 0.0))
    blur = (sigma_d * (1 - BLUR_SPREAD), sigma_d * (1 + BLUR_SPREAD)) if sigma_d > 0.05 else None

    # noise still to add after binning averaged the source's own noise over s*s pixels
    # (``recorrupted``: the source's noise variance was multiplied by this before binning, see self_pairs.SelfPairs)
    poisson = max(target.noise.poisson - recorrupted * source.noise.poisson / (s * s), 0.0)
    gauss_var = max(target.noise.gaussian_var - recorrupted * source.noise.gaussian_var / (s * s), 0.0)
    noise_poisson = None
    if poisson > 1e-6:
        peak = 1.0 / poisson
        noise_poisson = (peak * (1 - NOISE_SPREAD), peak * (1 + NOISE_SPREAD))
    noise_gaussian = None
    if gauss_var > 1e-10:
        sigma = math.sqrt(gauss_var)
        noise_gaussian = (sigma * (1 - NOISE_SPREAD), sigma * (1 + NOISE_SPREAD))
    return DegradationConfig(
        scale=s,
        methods=("area",),
        blur_sigma=blur,
        blur_prob=1.0,
        noise_poisson=noise_poisson,
        noise_gaussian=noise_gaussian,
        noise_prob=1.0,
        clip=False,
    )


def estimate_degradation(
    low_res_example: np.ndarray,
    scale: int,
    *,
    high_res: np.ndarray | list[np.ndarray] | None = None,
    axes: str | None = None,
    normalization: dict[str, Any] | None = None,
) -> DegradationConfig:
    """Fit the synthetic degradation's blur and noise to an unpaired low-res example.

    Parameters
    ----------
    low_res_example : a low-res acquisition (any layout ``axes`` describes; a different field of
        view than the high-res training images is fine).
    scale : the training scale.
    high_res : the high-res training images, whose own blur and noise are taken into account
        (blur added = what the example has beyond the high-res blur; noise added = what binning
        leaves missing).  ``None``: the high-res data is taken as sharp (blur of the pixel
        integration only) and noise-free.
    axes, normalization : layout of the images and the training normalisation (default percentiles).

    Returns a :class:`DegradationConfig` for ``make_pair_source(..., degradation=...)`` /
    ``TrainConfig(degradation=config.to_dict())`` (area downsampling, Gaussian blur and
    Poisson-Gaussian noise drawn in a narrow range around the fitted values).
    """
    target = estimate_image(low_res_example, axes, normalization)
    source = None
    if high_res is not None:
        images = high_res if isinstance(high_res, (list, tuple)) else [high_res]
        estimates = [estimate_image(im, axes, normalization) for im in images]
        source = ImageEstimate(
            noise=NoiseEstimate(
                float(np.mean([e.noise.poisson for e in estimates])),
                float(np.mean([e.noise.gaussian_var for e in estimates])),
                min(e.noise.bins for e in estimates),
            ),
            blur_sigma=float(np.median([e.blur_sigma for e in estimates])),
            mean=float(np.mean([e.mean for e in estimates])),
        )
    else:
        source = ImageEstimate(NoiseEstimate(0.0, 0.0, 0), math.sqrt(1 / 12.0), target.mean)
    return degradation_for(target, scale, source)


__all__ = [
    "ImageEstimate",
    "NoiseEstimate",
    "degradation_for",
    "estimate_blur",
    "estimate_degradation",
    "estimate_image",
    "estimate_planes",
    "estimate_noise",
    "same_optics_source",
]
