"""Calibration inputs of the int8 graph: network inputs of the kinds ``upscale()`` gives a model.

Static int8 quantization fixes each activation's range from the activations of a few
calibration inputs, so those inputs must look like what the network meets: here, low-res
images of the kinds the built-in models are trained on (synthetic fluorescence fields, clean
and noisy, and optionally natural scenes: scikit-image's bundled sample images, none of them
in the benchmarks' held-out sets, degraded as a low-res acquisition is: bicubic downsampling,
or blur, area sampling and Poisson-Gaussian noise of drawn strength), normalised as the models'
inputs are (percentiles 1, 99.8), and for a conditioned network with the degradation maps
``upscale()`` would append (its own estimate of the image's noise and blur,
:func:`~napari_superres.engine.nets.conditioning.inference_condition`).

Measured on the built-in x2 (loss against fp32; :data:`CALIBRATION_IMAGES` has the figures of
natural content): with the image repeated into the map channels instead of its maps, the loss
was about the same (fluorescence 0.094 against 0.104 dB, EM 0.027 against 0.028 dB, synthetic
0.39 against 0.44 dB): the first convolution, which reads the maps, stays in fp32.
"""

from __future__ import annotations

import numpy as np
import torch

from ..filters import gaussian_blur
from ..normalization import intensity_range, normalize
from ..samples import bin_image, synthetic_pair

#: Synthetic fluorescence fields (seeds disjoint from training and benchmark seeds).
CALIBRATION_SEEDS = tuple(range(5000, 5008))
#: Natural scenes and microscopy images bundled with scikit-image (``skimage.data``, grayscale;
#: none is in a held-out set of the benchmarks) added to the synthetic fields, e.g.
#: ``("camera", "coins", "moon", "astronaut", "coffee", "chelsea", "cell", "grass", "gravel", "brick",
#: "immunohistochemistry", "hubble_deep_field", "retina", "rocket")``.  None by default: measured on the
#: built-in x2 (first and the two output-resolution convolutions in fp32, percentile 99.99; loss
#: against fp32 on fluorescence / synthetic / EM, bicubic protocol): synthetic fields alone
#: 0.104 / 0.44 / 0.028 dB; with those 14 images 0.156 / 0.54 / 0.004 dB; with 5 of them 0.114 / 0.53 /
#: 0.024 dB.  Varied natural content widens the activation ranges, which costs the clean, high-PSNR
#: fluorescence images more than it gains on EM.
CALIBRATION_IMAGES: tuple[str, ...] = ()
#: Low-res side (px) of each calibration input.
CALIBRATION_SIZE = 144
#: Low-res acquisitions drawn in turn: bicubic downsampling, blur + area sampling + noise.
DEGRADATIONS = ("bicubic", "microscope", "lowphoton")
_NORMALIZATION = {"mode": "percentile", "low": 1.0, "high": 99.8}


def _bundled_images() -> list[np.ndarray]:
    """Grayscale float64 images of :data:`CALIBRATION_IMAGES` (none when scikit-image is missing)."""
    try:
        from skimage import data
        from skimage.color import rgb2gray
    except ImportError:  # scikit-image is optional (a testing dependency), and the option is off by default
        return []
    out = []
    for name in CALIBRATION_IMAGES:
        try:
            image = np.asarray(getattr(data, name)())
        except Exception:  # noqa: BLE001 - a missing sample file: calibrate without it
            continue
        if image.ndim == 3:
            image = rgb2gray(image[..., :3])
        out.append(image.astype(np.float64))
    return out


def _crop(image: np.ndarray, edge: int) -> np.ndarray:
    h, w = image.shape
    y0, x0 = max((h - edge) // 2, 0), max((w - edge) // 2, 0)
    return image[y0 : y0 + edge, x0 : x0 + edge]


def degrade(hr: np.ndarray, scale: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A low-res acquisition ``(H // scale, W // scale)`` float64 of ``hr`` (2-D, any range).

    ``"bicubic"``: antialiased bicubic downsampling; ``"microscope"``: Gaussian blur (drawn sigma),
    area sampling and Poisson-Gaussian noise (drawn photons); ``"lowphoton"``: the same, wider and
    dimmer, on a camera offset.
    """
    h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
    unit = hr[:h, :w] - hr.min()
    unit = unit / max(float(unit.max()), 1e-12)
    if kind == "bicubic":
        t = torch.from_numpy(unit.astype(np.float32))[None, None]
        low = torch.nn.functional.interpolate(t, scale_factor=1 / scale, mode="bicubic", antialias=True)
        return low[0, 0].double().numpy()
    wide = kind == "lowphoton"
    sigma = rng.uniform(0.8, 1.5) * scale if wide else rng.uniform(0.0, 0.8) * scale
    binned = bin_image(gaussian_blur(unit, sigma), scale).astype(np.float64)
    photons = rng.uniform(100.0, 1000.0) if wide else rng.uniform(200.0, 5000.0)
    counts = rng.poisson(np.clip(binned, 0.0, None) * photons).astype(np.float64)
    read = rng.uniform(1.0, 4.0) if wide else photons * rng.uniform(0.0, 0.01)
    return counts + rng.normal(0.0, read, size=counts.shape) + (100.0 if wide else 0.0)


def network_input(low: np.ndarray, in_channels: int, cond_channels: int) -> np.ndarray:
    """``(1, in_channels + cond_channels, H, W)`` float32: ``low`` normalised as the built-in models'
    inputs, repeated over ``in_channels``, with the degradation maps ``upscale()`` would append."""
    from ..nets.conditioning import estimate_condition, inference_condition, with_condition

    lo, hi = intensity_range(low, _NORMALIZATION)
    x = normalize(np.asarray(low, dtype=np.float32), lo, hi)
    t = torch.from_numpy(np.repeat(x[None, None], in_channels, axis=1).astype(np.float32))
    if cond_channels:
        t = with_condition(t, inference_condition(estimate_condition([x])).as_tensor())
    return np.ascontiguousarray(t.numpy(), dtype=np.float32)


def calibration_inputs(in_channels: int = 1, cond_channels: int = 0, scale: int = 2) -> list[np.ndarray]:
    """Normalised ``(1, in_channels + cond_channels, S, S)`` float32 calibration inputs (``S`` =
    :data:`CALIBRATION_SIZE`): the low-res acquisitions of :data:`CALIBRATION_SEEDS` synthetic fields
    (every other one noisy), then :data:`CALIBRATION_IMAGES` degraded in turn by each of
    :data:`DEGRADATIONS` (drawn from a fixed seed: the same inputs every time)."""
    rng = np.random.default_rng(5000)
    edge = CALIBRATION_SIZE * scale
    lows = [synthetic_pair(shape=(edge, edge), scale=scale, seed=s, noise=bool(i % 2))[0].astype(np.float64)
            for i, s in enumerate(CALIBRATION_SEEDS)]  # fmt: skip
    natural = [_crop(image, edge) for image in _bundled_images() if min(image.shape) >= edge]
    lows += [degrade(hr, scale, DEGRADATIONS[i % len(DEGRADATIONS)], rng) for i, hr in enumerate(natural)]
    return [network_input(low, in_channels, cond_channels) for low in lows]
