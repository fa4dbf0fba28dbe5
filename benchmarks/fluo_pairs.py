"""Paired uint16 fluorescence benchmark data (x2) and CARE's metric, numpy + scipy only.

The pairs imitate a low-photon camera acquisition next to a better high-res reference:

* **object**: synthetic filaments and puncta (:func:`napari_superres.engine.samples.synthetic_object`)
  or a real fluorescence image (``../shared/data/microscopy/fluorescence``) taken as the
  object, percentile-normalised to ``[0, 1]``;
* **low-res** (256 x 256): Gaussian PSF of sigma ``LR_PSF`` low-res px (1.0 - 1.3, drawn per
  pair), area (2 x 2 block-mean) sampling, Poisson shot noise with ``LR_PEAK`` photons at the
  object's maximum, ``OFFSET`` counts camera offset, Gaussian read noise of ``READ_NOISE``
  counts, rounded to uint16;
* **high-res** (512 x 512): the same object through a PSF half as wide (same sigma in
  high-res px as the low-res PSF in low-res px, i.e. a PSF narrower in microns),
  ``HR_PEAK`` photons, same offset and read noise.

:data:`TRAIN` and :data:`HELD_OUT` list 4 training pairs and 6 held-out pairs from several
content types (synthetic filaments, actin, mitochondria, nuclei, HeLa channels, plant
tissue); training and held-out pairs never share a field of view.

The metric is the one CARE reports (CSBDeep ``normalize`` + ``normalize_minmse``):
the reference is percentile-normalised (0.1 / 99.9), the prediction gets the affine map
(least squares) that brings it closest to that reference, and PSNR / SSIM are computed
with a data range of 1 (SSIM: Gaussian window 11, sigma 1.5, as scikit-image with
``gaussian_weights=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Upscaling factor of the pairs.
SCALE = 2
#: High-res edge (px).
HR_EDGE = 512
#: Camera offset (counts) and read noise (counts, rms).
OFFSET = 100.0
READ_NOISE = 3.0
#: Expected photons (= counts) at the object's brightest point, low-res and high-res.
LR_PEAK = 800.0
HR_PEAK = 8000.0
#: Background in object units (autofluorescence: adds shot noise).
BACKGROUND = 0.03
#: Range of the low-res PSF's Gaussian sigma, in low-res pixels.
LR_PSF = (1.0, 1.3)
#: Percentiles of the reference normalisation (CSBDeep evaluation).
METRIC_PERCENTILES = (0.1, 99.9)


@dataclass(frozen=True)
class PairSpec:
    """One pair: ``source`` is ``"synthetic"`` or a file name in the fluorescence folder."""

    name: str
    source: str
    seed: int
    channel: int | None = None
    y0: int = 0
    x0: int = 0


TRAIN = (
    PairSpec("synthetic-a", "synthetic", 101),
    PairSpec("actin-left", "BPAE_actin.tif", 102, y0=0, x0=0),
    PairSpec("mito-left", "BPAE_mito.tif", 103, y0=168, x0=0),
    PairSpec("hela-ch2-left", "hela-cells.tif", 104, channel=2, x0=0),
)
HELD_OUT = (
    PairSpec("synthetic-b", "synthetic", 201),
    PairSpec("actin-right", "BPAE_actin.tif", 202, y0=168, x0=588),
    PairSpec("mito-right", "BPAE_mito.tif", 203, y0=0, x0=588),
    PairSpec("nuclei-mid", "BPAE_nuclei.tif", 204, y0=84, x0=294),
    PairSpec("hela-ch1-right", "hela-cells.tif", 205, channel=1, x0=160),
    PairSpec("maize", "maize_clsm.tif", 206, y0=64, x0=64),
)


def _object(spec: PairSpec, folder: Path | None) -> np.ndarray:
    """The object, float64 ``(HR_EDGE, HR_EDGE)`` in ``[0, 1]``."""
    if spec.source == "synthetic":
        from napari_superres.engine.samples import synthetic_object

        return synthetic_object((HR_EDGE, HR_EDGE), seed=spec.seed).astype(np.float64)
    if folder is None:
        raise ValueError(f"{spec.name} needs the fluorescence folder (../shared/data/microscopy/fluorescence)")
    import tifffile

    image = np.asarray(tifffile.imread(folder / spec.source), dtype=np.float64)
    if spec.channel is not None:
        image = image[..., spec.channel] if image.shape[-1] <= 4 else image[spec.channel]
    crop = image[spec.y0 : spec.y0 + HR_EDGE, spec.x0 : spec.x0 + HR_EDGE]
    if crop.shape != (HR_EDGE, HR_EDGE):
        raise ValueError(f"{spec.name}: crop {crop.shape} of {spec.source} {image.shape} is not {HR_EDGE}^2")
    lo, hi = np.percentile(crop, (1.0, 99.9))
    return np.clip((crop - lo) / max(hi - lo, 1e-9), 0.0, 1.0)


def _camera(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    counts = rng.poisson(expected).astype(np.float64) + rng.normal(0.0, READ_NOISE, expected.shape)
    return np.clip(np.rint(OFFSET + counts), 0, 65535).astype(np.uint16)


def make_pair(spec: PairSpec, folder: Path | None) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """``(low_res uint16 (256, 256), high_res uint16 (512, 512), parameters)`` of one pair (seeded)."""
    from scipy.ndimage import gaussian_filter

    obj = _object(spec, folder)
    rng = np.random.default_rng(spec.seed)
    sigma_lr = float(rng.uniform(*LR_PSF))  # low-res px
    lr_blur = gaussian_filter(obj, sigma_lr * SCALE, mode="reflect")  # in high-res px
    lr_blur = lr_blur.reshape(HR_EDGE // SCALE, SCALE, HR_EDGE // SCALE, SCALE).mean(axis=(1, 3))
    hr_blur = gaussian_filter(obj, sigma_lr, mode="reflect")  # the same sigma in the finer pixels
    low = _camera(LR_PEAK * (BACKGROUND + lr_blur), rng)
    high = _camera(HR_PEAK * (BACKGROUND + hr_blur), rng)
    return low, high, {"lr_psf_sigma_lr_px": sigma_lr, "hr_psf_sigma_hr_px": sigma_lr}


def write_pairs(out: Path, folder: Path | None) -> dict[str, Path]:
    """Write ``out/{train,test}/{hr,lr}/<name>.tif``; returns the four folders by key ``"train_hr"``..."""
    import tifffile

    dirs = {}
    for split, specs in (("train", TRAIN), ("test", HELD_OUT)):
        for kind in ("hr", "lr"):
            d = out / split / kind
            d.mkdir(parents=True, exist_ok=True)
            dirs[f"{split}_{kind}"] = d
        for i, spec in enumerate(specs):
            low, high, _ = make_pair(spec, folder)
            stem = f"{i:02d}-{spec.name}.tif"
            tifffile.imwrite(out / split / "lr" / stem, low)
            tifffile.imwrite(out / split / "hr" / stem, high)
    return dirs


# --- CARE's metric -------------------------------------------------------------------------------
def normalize_reference(gt: np.ndarray) -> np.ndarray:
    """CSBDeep ``normalize(gt, 0.1, 99.9)``: float64, 0 and 1 at the two percentiles."""
    lo, hi = np.percentile(gt, METRIC_PERCENTILES)
    return (np.asarray(gt, dtype=np.float64) - lo) / max(hi - lo, 1e-12)


def fit_affine(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """CSBDeep ``normalize_minmse``: ``a * pred + b`` with the least-squares ``a, b`` towards ``target``."""
    x = np.asarray(pred, dtype=np.float64).ravel()
    y = np.asarray(target, dtype=np.float64).ravel()
    cov = np.cov(x, y)
    alpha = cov[0, 1] / max(cov[0, 0], 1e-30)
    beta = y.mean() - alpha * x.mean()
    return alpha * np.asarray(pred, dtype=np.float64) + beta


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.ndimage import gaussian_filter

    c1, c2 = 0.01**2, 0.03**2
    blur = lambda z: gaussian_filter(z, 1.5, truncate=3.5, mode="reflect")  # noqa: E731 - window 11
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    r = 5  # drop the window's half-width at the borders (scikit-image's crop)
    return float(s[r:-r, r:-r].mean())


def care_metric(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """``(PSNR dB, SSIM)`` of ``pred`` against ``gt`` (any dtypes, same shape), CARE style."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and reference {gt.shape} differ in shape")
    ref = normalize_reference(gt)
    fitted = fit_affine(pred, ref)
    mse = float(np.mean((fitted - ref) ** 2))
    return 10.0 * np.log10(1.0 / max(mse, 1e-30)), _ssim(fitted, ref)
