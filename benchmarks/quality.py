"""Quality benchmark: PSNR / SSIM of the built-in models against bicubic and Lanczos.

For every high-res image (held out from training) and scale, a low-res image is made
in two ways:

* ``bicubic`` - the SR literature's protocol: antialiased bicubic downsampling
  (``torch.nn.functional.interpolate(mode="bicubic", antialias=True)``, whose kernel
  is the a = -0.5 cubic of MATLAB ``imresize`` and PIL), rounded to the image's dtype;
* ``microscope`` - a camera with larger pixels: Gaussian blur (sigma = 0.5 x scale
  high-res px, a PSF wider than one low-res pixel) -> area (block-mean) downsampling ->
  Poisson-Gaussian noise (``MICROSCOPE_PEAK_PHOTONS`` photons at the image's maximum,
  Gaussian read noise of ``MICROSCOPE_READ_NOISE`` x its range), rounded to the dtype;
  the noise is seeded per image, so every run makes the same low-res images.

Each low-res image is upscaled back by

* ``bicubic`` and ``Lanczos`` - PIL ``Image.resize`` on float images (mode ``"F"``,
  bicubic a = -0.5, Lanczos-3), per channel;
* every model of that scale, through the plugin's own inference
  (:meth:`napari_superres.engine.Engine.upscale`: its normalisation, tiling, and for
  RGB the luminance through the model with chroma bicubic).

Metrics, as in the literature: RGB images are compared on Y (ITU-R BT.601 studio
range, MATLAB ``rgb2ycbcr``) with a data range of 255; grayscale / microscopy
images on their own values with ``data_range = max - min`` of the high-res image.
``scale`` pixels are cropped at every border.  PSNR and SSIM come from
:mod:`napari_superres.engine.metrics.pixel` (SSIM: Wang et al., Gaussian window 11, sigma 1.5,
population covariance, equal to scikit-image's ``structural_similarity(gaussian_weights=True,
use_sample_covariance=False)``).
The perceptual (VGG-16 feature) distance needs the ImageNet VGG-16 weights, which
cannot be downloaded offline: when they are not in the torch hub cache it is reported
as ``n/a (no VGG weights offline)``.

The held-out sets (``scripts/prepare_data.py`` ``heldout_sets``): natural, EM and fluorescence images
of the data folder, then two generated sets: "synthetic" (filaments and puncta,
``engine.samples``) and "cells" (nuclei + membranes + vesicles, nuclei alone, membranes +
vesicles, and an EM-like tissue, ``engine.samples_cells``), each a noise-free, PSF-blurred uint16
high-res field of held-out seeds.

Usage::

    python benchmarks/quality.py --data ../shared/data            # the held-out sets, built-in models
    python benchmarks/quality.py --folder my_hr_images --scales 2 --model my.safetensors

It writes ``benchmarks/results/quality.json`` and ``quality.md`` (``--out`` changes the stem).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

from prepare_data import Image, heldout_sets, read_image  # noqa: E402

PROTOCOLS = ("bicubic", "microscope", "lowphoton")
BASELINES = ("bicubic", "Lanczos")
#: Microscope protocol: PSF sigma per unit of scale (high-res px), photons at the image maximum, read noise.
MICROSCOPE_BLUR_PER_SCALE = 0.5
MICROSCOPE_PEAK_PHOTONS = 400.0
MICROSCOPE_READ_NOISE = 0.004
#: Low-photon, wide-PSF protocol (a camera acquisition of a realistic kind, grayscale sets only):
#: PSF sigma in low-res px, photons at the image maximum, camera offset and read noise (counts);
#: the reference is the same field with a narrower PSF (sigma per unit of scale, high-res px) and
#: more photons.  Scored as CARE does: reference normalised by percentiles, prediction affine-fitted.
LOWPHOTON_BLUR_LR = 1.15
LOWPHOTON_PEAK_PHOTONS = 800.0
LOWPHOTON_OFFSET = 100.0
LOWPHOTON_READ_NOISE = 3.0
LOWPHOTON_REF_BLUR_PER_SCALE = 0.5
LOWPHOTON_REF_PHOTONS = 8000.0
#: CARE's reference normalisation (CSBDeep ``normalize(gt, 0.1, 99.9)``).
CARE_PERCENTILES = (0.1, 99.9)
PERCEPTUAL_NA = "n/a (no VGG weights offline)"
IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")


# --- low-res protocols ---------------------------------------------------------------------------
def _channels_first(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` -> ``(1, H, W)``; ``(H, W, 3)`` -> ``(3, H, W)``; float64."""
    a = np.asarray(image, dtype=np.float64)
    return a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)


def _back(planes: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_channels_first`, rounded and clipped to ``like``'s dtype."""
    out = planes[0] if like.ndim == 2 else np.moveaxis(planes, 0, -1)
    return to_dtype(out, like.dtype)


def to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip to an integer dtype's range (floats are only cast), like a saved image."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return np.asarray(values).astype(dtype)


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop Y and X (the first two axes) to multiples of ``scale``."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def downsample_bicubic(hr: np.ndarray, scale: int) -> np.ndarray:
    """Antialiased bicubic downsampling (MATLAB ``imresize`` kernel), rounded to ``hr``'s dtype."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(_channels_first(hr)).float()[None]
    y = F.interpolate(x, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)
    return _back(y[0].double().numpy(), hr)


def _gaussian_blur(planes: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(p, sigma, mode="reflect") for p in planes])


def block_mean(planes: np.ndarray, factor: int) -> np.ndarray:
    """Area binning of the last two axes of ``planes`` by ``factor`` (means of ``factor x factor`` blocks; the
    rows and columns past the last whole block left out)."""
    h, w = planes.shape[-2] // factor, planes.shape[-1] // factor
    blocks = planes[..., : h * factor, : w * factor].reshape(*planes.shape[:-2], h, factor, w, factor)
    return blocks.mean(axis=(-3, -1))


def downsample_microscope(hr: np.ndarray, scale: int, seed: int) -> np.ndarray:
    """Blur -> area downsampling -> Poisson-Gaussian noise, rounded to ``hr``'s dtype (seeded)."""
    planes = _gaussian_blur(_channels_first(hr), MICROSCOPE_BLUR_PER_SCALE * scale)
    planes = block_mean(planes, scale)
    lo, hi = float(np.min(hr)), float(np.max(hr))
    span = max(hi - lo, 1e-12)
    rng = np.random.default_rng(seed)
    signal = np.clip((planes - lo) / span, 0.0, None)
    noisy = rng.poisson(signal * MICROSCOPE_PEAK_PHOTONS) / MICROSCOPE_PEAK_PHOTONS
    noisy = noisy + rng.normal(0.0, MICROSCOPE_READ_NOISE, size=noisy.shape)
    return _back(noisy * span + lo, hr)


def _unit(hr: np.ndarray) -> np.ndarray:
    a = np.asarray(hr, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / max(hi - lo, 1e-12)


def downsample_lowphoton(hr: np.ndarray, scale: int, seed: int) -> np.ndarray:
    """A low-photon camera image of ``hr``'s field: PSF sigma ``LOWPHOTON_BLUR_LR`` low-res px, area
    binning, Poisson (``LOWPHOTON_PEAK_PHOTONS`` at the maximum), offset and read noise; uint16 counts."""
    planes = _gaussian_blur(_unit(hr)[None], LOWPHOTON_BLUR_LR * scale)
    binned = block_mean(planes[0], scale)
    rng = np.random.default_rng(seed)
    counts = rng.poisson(np.clip(binned, 0, None) * LOWPHOTON_PEAK_PHOTONS) + LOWPHOTON_OFFSET
    counts = counts + rng.normal(0.0, LOWPHOTON_READ_NOISE, size=counts.shape)
    return to_dtype(counts, np.dtype(np.uint16))


def lowphoton_reference(hr: np.ndarray, scale: int, seed: int) -> np.ndarray:
    """The high-res reference of the low-photon protocol: narrower PSF, more photons (float64 counts)."""
    blurred = _gaussian_blur(_unit(hr)[None], LOWPHOTON_REF_BLUR_PER_SCALE * scale)[0]
    rng = np.random.default_rng(seed + 7)
    return rng.poisson(np.clip(blurred, 0, None) * LOWPHOTON_REF_PHOTONS).astype(np.float64) + LOWPHOTON_OFFSET


def set_lowphoton_psf(sigma_lr: float, reference_sigma_per_scale: float) -> None:
    """Set the low-photon protocol's PSF (sigma, low-res px) and its reference's (sigma per unit of scale,
    high-res px) for this process; the results' protocol text follows."""
    global LOWPHOTON_BLUR_LR, LOWPHOTON_REF_BLUR_PER_SCALE
    if not 0 < reference_sigma_per_scale < sigma_lr:
        raise SystemExit("the low-photon reference's PSF must be narrower than the acquisition's")
    LOWPHOTON_BLUR_LR, LOWPHOTON_REF_BLUR_PER_SCALE = float(sigma_lr), float(reference_sigma_per_scale)


def make_low_res(hr: np.ndarray, scale: int, protocol: str, seed: int) -> np.ndarray:
    if protocol == "bicubic":
        return downsample_bicubic(hr, scale)
    if protocol == "microscope":
        return downsample_microscope(hr, scale, seed)
    if protocol == "lowphoton":
        return downsample_lowphoton(hr, scale, seed)
    raise ValueError(f"unknown protocol {protocol!r}; choose from {PROTOCOLS}")


def reference(hr: np.ndarray, scale: int, protocol: str, seed: int) -> np.ndarray:
    """What a protocol scores against: the high-res image itself, or the low-photon reference."""
    return lowphoton_reference(hr, scale, seed) if protocol == "lowphoton" else hr


def care_comparable(sr: np.ndarray, ref: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray, float]:
    """CARE's scoring: ``ref`` normalised by :data:`CARE_PERCENTILES`, ``sr`` affine-fitted to it
    (least squares, CSBDeep ``normalize_minmse``); range 1; border of ``scale`` px cropped."""
    c = scale
    b = np.asarray(ref, np.float64)[c:-c, c:-c]
    lo, hi = np.percentile(b, CARE_PERCENTILES)
    b = (b - lo) / max(hi - lo, 1e-12)
    a = np.asarray(sr, np.float64)[c:-c, c:-c]
    a = a - a.mean()
    gain = float(np.sum(a * (b - b.mean())) / max(np.sum(a * a), 1e-12))
    return gain * a + b.mean(), b, 1.0


# --- upscaling -----------------------------------------------------------------------------------
def upscale_pil(lr: np.ndarray, scale: int, method: str) -> np.ndarray:
    """Bicubic or Lanczos upscaling with PIL on float (mode ``"F"``) planes, rounded to ``lr``'s dtype."""
    from PIL import Image as PILImage

    resample = {"bicubic": PILImage.Resampling.BICUBIC, "Lanczos": PILImage.Resampling.LANCZOS}[method]
    planes = _channels_first(lr).astype(np.float32)
    h, w = planes.shape[1:]
    out = [np.asarray(PILImage.fromarray(p, mode="F").resize((w * scale, h * scale), resample)) for p in planes]
    return _back(np.stack(out).astype(np.float64), lr)


# --- metrics -------------------------------------------------------------------------------------
def y_channel(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` luminance of uint8-range RGB ``(H, W, 3)``: values in [16, 235]."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def comparable(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The planes compared and their data range: Y for RGB (range 255), else values (HR max - min)."""
    if hr.ndim == 3:
        a, b, data_range = y_channel(sr), y_channel(hr), 255.0
    else:
        a, b = np.asarray(sr, np.float64), np.asarray(hr, np.float64)
        data_range = float(b.max() - b.min()) or 1.0
    c = scale
    return a[c:-c, c:-c], b[c:-c, c:-c], data_range


def psnr(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """PSNR (dB) of the compared planes: :func:`napari_superres.engine.metrics.pixel.psnr`."""
    from napari_superres.engine.metrics.pixel import psnr as _psnr

    return _psnr(a, b, data_range=data_range)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """SSIM of the compared planes: :func:`napari_superres.engine.metrics.pixel.ssim` (= scikit-image's
    ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``)."""
    from napari_superres.engine.metrics.pixel import ssim as _ssim

    return _ssim(a, b, data_range=data_range)


class Perceptual:
    """VGG-16 feature distance (mean over relu1_2..relu4_3 of the mean squared feature difference).

    Only available with the ImageNet weights in the torch hub cache; otherwise ``available`` is False.
    """

    def __init__(self) -> None:
        from napari_superres.engine.nets.vgg import vgg16_weights_path

        self.available = vgg16_weights_path().is_file()
        self._vgg = None

    def __call__(self, a: np.ndarray, b: np.ndarray, data_range: float) -> float | None:
        if not self.available:
            return None
        import torch

        from napari_superres.engine.nets.vgg import VGGFeatures

        if self._vgg is None:
            self._vgg = VGGFeatures(("relu1_2", "relu2_2", "relu3_3", "relu4_3")).eval()
        lo = min(a.min(), b.min())
        ta = torch.from_numpy((a - lo) / data_range).float()[None, None]
        tb = torch.from_numpy((b - lo) / data_range).float()[None, None]
        with torch.inference_mode():
            fa, fb = self._vgg(ta), self._vgg(tb)
            return float(np.mean([torch.mean((fa[k] - fb[k]) ** 2).item() for k in fa]))


# --- benchmark -----------------------------------------------------------------------------------
@dataclass
class Method:
    """An upscaler: a PIL baseline (``model is None``) or a model (name/path/SRModel) at its scale."""

    name: str
    model: Any = None
    scale: int | None = None  # None: any scale
    #: further ``upscale`` options of a model (e.g. ``{"self_ensemble": True}``)
    options: dict[str, Any] = field(default_factory=dict)

    def run(self, lr: np.ndarray, scale: int, engine: Any) -> np.ndarray:
        if self.model is None:
            return upscale_pil(lr, scale, self.name)
        return engine.upscale(lr, self.model, scale=scale, rgb=lr.ndim == 3, **self.options)


@dataclass
class Row:
    set: str
    scale: int
    protocol: str
    method: str
    per_image: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def mean(key: str) -> float | None:
            vals = [r[key] for r in self.per_image if r[key] is not None]
            return float(np.mean(vals)) if vals else None

        return {
            "set": self.set,
            "scale": self.scale,
            "protocol": self.protocol,
            "method": self.method,
            "n_images": len(self.per_image),
            "psnr": mean("psnr"),
            "ssim": mean("ssim"),
            "perceptual": mean("perceptual"),
            "per_image": self.per_image,
        }


def model_methods(models: Sequence[str | Path], engine: Any, *, self_ensemble: bool = False) -> list[Method]:
    """``Method`` objects for model files / registry names, each at its own scale; with ``self_ensemble`` each
    model also as ``"<name> x8"``, upscaled with ``self_ensemble=True``."""
    out = []
    for m in models:
        resolved = engine.get(str(m))
        name = Path(str(m)).stem if str(m).endswith(".safetensors") else str(m)
        if name in BASELINES:
            name = f"{name} (torch)"
        out.append(Method(name, resolved, resolved.scale))
        if self_ensemble:
            out.append(Method(f"{name} x8", resolved, resolved.scale, {"self_ensemble": True}))
    return out


def run_benchmark(
    sets: dict[str, list[Image]],
    scales: Sequence[int],
    methods: Sequence[Method],
    *,
    protocols: Sequence[str] = PROTOCOLS,
    engine: Any = None,
    log: Any = print,
) -> dict[str, Any]:
    """Run every set x scale x protocol x method; returns the JSON-able result dict."""
    from napari_superres.engine import Engine

    engine = engine or Engine(device="cpu", builtins=False)
    perceptual = Perceptual()
    rows: list[Row] = []
    t0 = time.perf_counter()
    for set_name, images in sets.items():
        for scale in scales:
            usable = [m for m in methods if m.scale in (None, scale)]
            for protocol in protocols:
                table = {m.name: Row(set_name, scale, protocol, m.name) for m in usable}
                for index, image in enumerate(images):
                    if protocol == "lowphoton" and image.array.ndim == 3:
                        continue  # a camera protocol: grayscale images only
                    hr = modcrop(image.array, scale)
                    lr = make_low_res(hr, scale, protocol, seed=1000 * scale + index)
                    ref = reference(hr, scale, protocol, seed=1000 * scale + index)
                    for m in usable:
                        sr = m.run(lr, scale, engine)
                        if sr.shape != hr.shape:
                            raise RuntimeError(f"{m.name} returned {sr.shape} for {hr.shape} ({image.name})")
                        if protocol == "lowphoton":
                            a, b, data_range = care_comparable(sr, ref, scale)
                        else:
                            a, b, data_range = comparable(sr, hr, scale)
                        table[m.name].per_image.append(
                            {
                                "image": image.name,
                                "psnr": psnr(a, b, data_range),
                                "ssim": ssim(a, b, data_range),
                                "perceptual": perceptual(a, b, data_range),
                            }
                        )
                rows.extend(r for r in table.values() if r.per_image)
                if log and any(r.per_image for r in table.values()):
                    log(
                        f"[{time.perf_counter() - t0:6.1f}s] {set_name} x{scale} {protocol}: "
                        + ", ".join(f"{r.method} {r.summary()['psnr']:.2f} dB" for r in table.values() if r.per_image)
                    )
    return {
        "benchmark": "napari-superres quality",
        "protocols": {
            "bicubic": "antialiased bicubic downsampling (torch interpolate bicubic antialias=True, "
            "a=-0.5 kernel as MATLAB imresize), rounded to the image dtype",
            "microscope": f"Gaussian blur sigma={MICROSCOPE_BLUR_PER_SCALE}*scale HR px, area (block-mean) "
            f"downsampling, Poisson noise ({MICROSCOPE_PEAK_PHOTONS:g} photons at the image maximum) + "
            f"Gaussian read noise ({MICROSCOPE_READ_NOISE:g} of the range), seeded, rounded to the dtype",
            "lowphoton": f"grayscale images only: Gaussian PSF sigma={LOWPHOTON_BLUR_LR} LR px, area downsampling, "
            f"Poisson noise ({LOWPHOTON_PEAK_PHOTONS:g} photons at the image maximum), offset "
            f"{LOWPHOTON_OFFSET:g} counts, read noise {LOWPHOTON_READ_NOISE:g} counts, uint16; reference: PSF "
            f"sigma={LOWPHOTON_REF_BLUR_PER_SCALE}*scale HR px, {LOWPHOTON_REF_PHOTONS:g} photons; scored as CARE "
            f"(reference normalised by percentiles {CARE_PERCENTILES}, prediction affine-fitted, range 1)",
        },
        "metrics": {
            "psnr": "dB; RGB: Y (BT.601 studio range) with range 255; gray: range = HR max - min; "
            "border of `scale` px cropped",
            "ssim": "Gaussian window 11, sigma 1.5 (engine.metrics.ssim = skimage structural_similarity), "
            "same planes/crop",
            "perceptual": "VGG-16 feature MSE" if perceptual.available else PERCEPTUAL_NA,
        },
        "baselines": "PIL Image.resize on float mode 'F' images (BICUBIC a=-0.5, LANCZOS)",
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "seconds": round(time.perf_counter() - t0, 1),
        },
        "sets": {name: [im.name for im in images] for name, images in sets.items()},
        "results": [r.summary() for r in rows],
    }


def markdown(results: dict[str, Any]) -> str:
    """Tables (one per scale): mean PSNR (dB) / SSIM per set and protocol, and the best model's gain."""
    lines = []
    rows = results["results"]
    perceptual = results["metrics"]["perceptual"]
    for scale in sorted({r["scale"] for r in rows}):
        at_scale = [r for r in rows if r["scale"] == scale]
        methods = list(dict.fromkeys(r["method"] for r in at_scale))
        models = [m for m in methods if m not in BASELINES]
        lines.append(f"**x{scale}** - mean PSNR (dB) / SSIM; perceptual distance: {perceptual}")
        lines.append("")
        header = ["held-out set (images)", "low-res made by"] + methods
        if models:
            header.append("model - bicubic")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
        keys = list(dict.fromkeys((r["set"], r["protocol"]) for r in at_scale))
        for set_name, protocol in keys:
            cell = {r["method"]: r for r in at_scale if r["set"] == set_name and r["protocol"] == protocol}
            n = next(iter(cell.values()))["n_images"]
            row = [f"{set_name} ({n})", protocol]
            for m in methods:
                r = cell.get(m)
                row.append(f"{r['psnr']:.2f} / {r['ssim']:.3f}" if r else "-")
            if models:
                gains = [cell[m]["psnr"] - cell["bicubic"]["psnr"] for m in models if m in cell and "bicubic" in cell]
                row.append(", ".join(f"{g:+.2f} dB" for g in gains) if gains else "-")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        lines += _by_source(at_scale, models)
    return "\n".join(lines)


#: Published x2 PSNR (dB, Y channel) of SRCNN and bicubic on the SR literature's test sets, as tabulated by
#: Kim et al. 2016 (VDSR, CVPR), Table 3: set -> (bicubic, SRCNN).  Our held-out natural images are not these
#: sets (Set5/Set14/B100 are not in our data); BSD200 images come from the same BSDS300 as B100.
SRCNN_X2 = {"Set5": (33.66, 36.66), "Set14": (30.24, 32.42), "B100": (29.56, 31.36)}


def _by_source(rows: list[dict[str, Any]], models: list[str]) -> list[str]:
    """Lines giving, for sets whose images come from several source folders, each model's gain per source."""
    lines = []
    for r in rows:
        if r["method"] != "bicubic":
            continue
        sources = list(dict.fromkeys(p["image"].split("/")[0] for p in r["per_image"] if "/" in p["image"]))
        if len(sources) < 2:
            continue
        same = [q for q in rows if q["set"] == r["set"] and q["protocol"] == r["protocol"] and q["method"] in models]
        parts = []
        for source in sources:
            base = [p["psnr"] for p in r["per_image"] if p["image"].startswith(source + "/")]
            gains = []
            for q in same:
                got = [p["psnr"] for p in q["per_image"] if p["image"].startswith(source + "/")]
                gains.append(f"{np.mean(got) - np.mean(base):+.2f}" if got else "n/a")  # (a model that skipped them)
            parts.append(f"{source} ({len(base)}): bicubic {np.mean(base):.2f} dB, model {', '.join(gains)} dB")
        lines.append(f"- {r['set']}, {r['protocol']} protocol, by source: " + "; ".join(parts))
    if lines and rows and rows[0]["scale"] == 2:
        lit = ", ".join(f"{k} {b:.2f} -> {s:.2f} ({s - b:+.2f})" for k, (b, s) in SRCNN_X2.items())
        lines.append(
            f"- for reference, SRCNN x2 as published (bicubic -> SRCNN, Y channel; VDSR paper, Table 3): {lit}"
        )
    return lines + ([""] if lines else [])


def write_results(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``out.json`` and ``out.md`` (atomically); returns both paths."""
    from napari_superres.engine.nets.model_file import atomic_write_bytes

    out = Path(out)
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    atomic_write_bytes(json_path, (json.dumps(results, indent=1, allow_nan=True) + "\n").encode())
    text = "# Quality benchmark\n\n" + _notes(results) + "\n\n" + markdown(results)
    atomic_write_bytes(md_path, text.encode())
    return json_path, md_path


def _notes(results: dict[str, Any]) -> str:
    p, m = results["protocols"], results["metrics"]
    return "\n".join(
        [
            "Generated by `benchmarks/quality.py`. Low-res images:",
            f"- *bicubic*: {p['bicubic']};",
            f"- *microscope*: {p['microscope']};" if "lowphoton" in p else f"- *microscope*: {p['microscope']}.",
            *([f"- *lowphoton*: {p['lowphoton']}."] if "lowphoton" in p else []),
            f"Upscaled by {results['baselines']} and by each model through `Engine.upscale`.",
            f"PSNR: {m['psnr']}. SSIM: {m['ssim']}.",
        ]
    )


# --- "train on your data": built-in vs adapt vs paired training, per kind of microscopy data ----------
#: A kind of the table: the fluorescence planes (held-out and training) area-binned 2x before the protocol, the
#: same specimens sampled with pixels twice as large, so their structures are finer against the pixel and the PSF.
BINNED_FLUORESCENCE = "fluorescence, binned 2x"
#: Kinds of held-out microscopy sets of the table (``heldout_sets`` names, and the binned fluorescence) and their
#: training images.
YOUR_DATA_KINDS = ("synthetic", "fluorescence", BINNED_FLUORESCENCE, "EM")
#: Defaults of the table: held-out images per kind, paired-training images per kind and their crop (px),
#: paired-training steps (everything else TrainConfig's defaults).  The paired route is the one the issue
#: tracker's reference table used ("the same default network trained on 4 matching pairs, 1000 steps"), so
#: the two tables compare; about 3 minutes of training per kind on 2 cores.
YOUR_DATA_IMAGES = 4
YOUR_DATA_TRAIN_IMAGES = 4
YOUR_DATA_TRAIN_CROP = 256
YOUR_DATA_TRAIN_STEPS = 1000
#: ``--own-pair-steps`` (off by default; ~100 s per image on 2 cores): column (d), the built-in fine-tuned on the
#: held-out image's own true pair (its low-res image and its reference, TrainConfig defaults, float32) for this
#: many steps.  No method without the high-res reference can do this; it measures how much a per-image
#: fine-tune could gain at all on the image, the headroom that ``adapt`` works in.  Column (d') fine-tunes the same
#: way on another acquisition of the same field (its own noise, seeds this far from the held-out image's): what
#: knowing the field and the microscope teaches, without learning the held-out acquisition's noise by heart.
YOUR_DATA_OWN_PAIR_STEPS = 300
OWN_FIELD_SEED_OFFSET = 500


def told_blur(protocol: str) -> float | None:
    """The blur a user who knows the protocol's microscope would state (``adapt(..., blur_sigma=)``): the PSF
    sigma in low-res px with the pixel's integration (``sqrt(sigma^2 + 1/12)``); ``None`` for bicubic."""
    optical = {"microscope": MICROSCOPE_BLUR_PER_SCALE, "lowphoton": LOWPHOTON_BLUR_LR}.get(protocol)
    return None if optical is None else float(np.sqrt(optical**2 + 1.0 / 12.0))


def area_binned(image: Image, factor: int = 2) -> Image:
    """``image`` (a 2-D plane) area-binned by ``factor`` (float64 means of ``factor x factor`` blocks), renamed."""
    binned = block_mean(np.asarray(image.array, np.float64), factor)
    return Image(f"{image.name} binned {factor}x", image.kind, binned)


def _training_images_of(kind: str, data: Path | None) -> list[Image]:
    from prepare_data import cell_images, em_images, fluorescence_images, synthetic_images

    if kind == BINNED_FLUORESCENCE:
        return [area_binned(im) for im in _training_images_of("fluorescence", data) if im.array.ndim == 2]
    if kind == "synthetic":
        return synthetic_images("train")
    if kind == "cells":
        return cell_images("train")
    if data is None:
        return []
    return em_images(Path(data), "train") if kind == "EM" else fluorescence_images(Path(data), "train")


def _centre_crop(image: np.ndarray, edge: int, scale: int) -> np.ndarray:
    h, w = image.shape[:2]
    ch, cw = min(h, edge), min(w, edge)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return modcrop(image[y0 : y0 + ch, x0 : x0 + cw], scale)


def your_data_benchmark(
    data: Path | None,
    *,
    scale: int = 2,
    kinds: Sequence[str] = YOUR_DATA_KINDS,
    n_images: int = YOUR_DATA_IMAGES,
    adapt_steps: int | None = None,
    train_steps: int = YOUR_DATA_TRAIN_STEPS,
    n_train: int = YOUR_DATA_TRAIN_IMAGES,
    builtin: str | None = None,
    log: Any = print,
    on_kind: Any = None,
    protocol: str = "lowphoton",
    own_pair_steps: int = 0,
) -> dict[str, Any]:
    """Gain over bicubic (``protocol``, default the low-photon one) of the built-in model, ``adapt`` and
    paired training.

    For every kind: the first ``n_images`` held-out images (gray, ``scale``-cropped) get
    microscope-protocol low-res versions; scored as :func:`run_benchmark` (HR range, border
    ``scale``).  (a) the built-in model of ``scale``; (b) ``napari_superres.adapt`` on the
    low-res image itself (default budget, or ``adapt_steps``); (c) ``TrainConfig`` defaults
    except ``steps=train_steps`` on microscope-protocol pairs of ``n_train`` training images of
    the same kind (centre crops of ``YOUR_DATA_TRAIN_CROP`` px), trained once per kind.
    (d) with ``own_pair_steps``: the built-in fine-tuned for that many steps on the held-out image's own true
    pair (:data:`YOUR_DATA_OWN_PAIR_STEPS`), (d') the same on another acquisition of the image's field.  Times are
    wall-clock seconds in this process.  ``on_kind(results)`` is called after every kind with the results so far
    (to write them as they come).
    """
    import torch

    from napari_superres.engine import Engine
    from napari_superres.engine.train.adapt import (
        ADAPT_MIX,
        ADAPT_SECONDS,
        TOLD_BLUR_RECORRUPTS,
        adapt,
        blind_spot_batch,
        cpu_bf16,
        planned_steps,
    )
    from napari_superres.engine.train.trainer import TrainConfig, Trainer, make_pair_source

    bf16 = cpu_bf16()
    pair_steps, spot_steps = planned_steps(ADAPT_SECONDS, self_pairs=True, blind_spot=True, bf16=bf16)
    adapt_budget = (
        f"{adapt_steps} steps"
        if adapt_steps
        else f"its default {ADAPT_SECONDS:g} s budget: {pair_steps + spot_steps} steps ({pair_steps} on self-pairs, "
        f"{spot_steps} blind-spot of {blind_spot_batch(bf16)} patches, the two fine-tunes "
        f"averaged; {'bf16' if bf16 else 'float32'})"
    )
    log = log or (lambda *_: None)
    engine = Engine(device="cpu", builtins=True)
    builtin = builtin or next((n for n in engine.names() if n.startswith("superres-") and f"x{scale}" in n), None)
    if builtin is None:
        raise SystemExit(f"no built-in x{scale} model to compare with")
    sets = heldout_sets(data, synthetic="synthetic" in kinds or "cells" in kinds)
    if BINNED_FLUORESCENCE in kinds:
        sets[BINNED_FLUORESCENCE] = [area_binned(im) for im in sets.get("fluorescence", []) if im.array.ndim == 2]
    t_start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    psf = {"sigma_lr": LOWPHOTON_BLUR_LR, "reference_sigma_per_scale": LOWPHOTON_REF_BLUR_PER_SCALE}
    psf = {"lowphoton_psf": psf} if protocol == "lowphoton" else {}

    def results() -> dict[str, Any]:
        return {
            "benchmark": "napari-superres train on your data",
            "scale": scale,
            "protocol": protocol,
            **psf,
            "builtin": builtin,
            "adapt_budget": adapt_budget,
            "adapt_mix": ADAPT_MIX,
            "told_noise": "the noise split by recorruption" if TOLD_BLUR_RECORRUPTS else "the noise hidden by masking",
            "paired": f"TrainConfig defaults except steps={train_steps}; up to {n_train} training images of the "
            f"kind, centre crops of {YOUR_DATA_TRAIN_CROP} px, {protocol}-protocol pairs",
            "own_pair": (
                f"the built-in, TrainConfig defaults except steps={own_pair_steps}, on the held-out image's own "
                "low-res image and reference"
            )
            if own_pair_steps
            else None,
            "environment": {
                "python": platform.python_version(),
                "torch_threads": torch.get_num_threads(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                "seconds": round(time.perf_counter() - t_start, 1),
            },
            "results": rows,
        }

    for kind in kinds:
        images = [im for im in sets.get(kind, []) if im.array.ndim == 2][:n_images]
        if not images:
            log(f"{kind}: no held-out images (give --data)")
            continue
        # (c) paired training on other images of the same kind, all defaults but the step budget
        train = [im for im in _training_images_of(kind, data) if im.array.ndim == 2][:n_train]
        hr_train = [_centre_crop(im.array, YOUR_DATA_TRAIN_CROP, scale) for im in train]
        lr_train = [make_low_res(hr, scale, protocol, seed=50_000 + i) for i, hr in enumerate(hr_train)]
        hr_train = [reference(hr, scale, protocol, seed=50_000 + i) for i, hr in enumerate(hr_train)]
        t0 = time.perf_counter()
        config = TrainConfig(scale=scale, steps=train_steps, val_every=0, device="cpu")
        pairs = make_pair_source(hr_train, lr_train, scale=scale, patch_size=config.patch_size)
        trained = None
        if train_steps:
            trainer = Trainer(config, pairs)
            trainer.run()
            trained = trainer.model(f"trained on {len(hr_train)} {kind}")
        train_seconds = time.perf_counter() - t0
        scores: dict[str, list[float]] = {"bicubic": [], "built-in": [], "adapt": [], "adapt x8": [],
                                          "adapt, PSF told": [], "paired": [], "own pair": [], "own field": []}  # fmt: skip
        blur = told_blur(protocol)
        adapt_seconds, told_seconds = [], []
        for index, image in enumerate(images):
            hr = modcrop(image.array, scale)
            lr = make_low_res(hr, scale, protocol, seed=1000 * scale + index)
            ref = reference(hr, scale, protocol, seed=1000 * scale + index)

            def score(sr: np.ndarray, hr: np.ndarray = hr, ref: np.ndarray = ref) -> float:
                if protocol == "lowphoton":
                    a, b, data_range = care_comparable(sr, ref, scale)
                else:
                    a, b, data_range = comparable(sr, hr, scale)
                return psnr(a, b, data_range)

            scores["bicubic"].append(score(upscale_pil(lr, scale, "bicubic")))
            scores["built-in"].append(score(engine.upscale(lr, builtin)))
            t0 = time.perf_counter()
            with torch.random.fork_rng(devices=[]):
                adapted = adapt(lr, builtin, scale=scale, steps=adapt_steps, engine=engine)
            log(f"adapt: {adapted.metadata['adapt']['steps']} steps")
            adapt_seconds.append(time.perf_counter() - t0)
            scores["adapt"].append(score(engine.upscale(lr, adapted)))
            scores["adapt x8"].append(score(engine.upscale(lr, adapted, self_ensemble=True)))
            if blur is not None:
                t1 = time.perf_counter()
                with torch.random.fork_rng(devices=[]):
                    told = adapt(lr, builtin, scale=scale, steps=adapt_steps, engine=engine, blur_sigma=blur)
                told_seconds.append(time.perf_counter() - t1)
                scores["adapt, PSF told"].append(score(engine.upscale(lr, told, degradation={"blur_sigma": blur})))
            if trained is not None:
                scores["paired"].append(score(engine.upscale(lr, trained)))
            if own_pair_steps:
                # (d) this very acquisition and its reference; (d') another acquisition of the same field
                other = OWN_FIELD_SEED_OFFSET + 1000 * scale + index
                other_pair = (reference(hr, scale, protocol, seed=other), make_low_res(hr, scale, protocol, seed=other))
                for key, (gt, lq) in (("own pair", (ref, lr)), ("own field", other_pair)):
                    own = TrainConfig(scale=scale, steps=own_pair_steps, val_every=0, device="cpu", init="builtin")
                    with torch.random.fork_rng(devices=[]):
                        tuner = Trainer(own, make_pair_source([gt], [lq], scale=scale, patch_size=own.patch_size))
                        tuner.run()
                    scores[key].append(score(engine.upscale(lr, tuner.model(f"{key} of {image.name}"))))
            log(
                f"[{time.perf_counter() - t_start:6.0f}s] {kind} {image.name}: bicubic {scores['bicubic'][-1]:.2f} dB, "
                + ", ".join(
                    f"{k} {v[-1] - scores['bicubic'][-1]:+.2f}" for k, v in scores.items() if k != "bicubic" and v
                )
            )
        bic = np.array(scores["bicubic"])
        rows.append(
            {
                "kind": kind,
                "n_images": len(images),
                "images": [im.name for im in images],
                "bicubic_psnr": float(bic.mean()),
                "gain_builtin": float(np.mean(np.array(scores["built-in"]) - bic)),
                "gain_adapt": float(np.mean(np.array(scores["adapt"]) - bic)),
                "gain_adapt_x8": float(np.mean(np.array(scores["adapt x8"]) - bic)),
                "gain_adapt_told": float(np.mean(np.array(scores["adapt, PSF told"]) - bic)) if told_seconds else None,
                "told_blur": blur,
                "adapt_told_seconds": float(np.mean(told_seconds)) if told_seconds else None,
                "gain_paired": float(np.mean(np.array(scores["paired"]) - bic)) if scores["paired"] else None,
                "gain_own_pair": float(np.mean(np.array(scores["own pair"]) - bic)) if scores["own pair"] else None,
                "gain_own_field": float(np.mean(np.array(scores["own field"]) - bic)) if scores["own field"] else None,
                "adapt_seconds": float(np.mean(adapt_seconds)),
                "paired_seconds": train_seconds,
                "paired_train_images": [im.name for im in train],
                "per_image": scores,
            }
        )
        if on_kind is not None:
            on_kind(results())
    return results()


def _psf_text(results: dict[str, Any]) -> str:
    psf = results.get("lowphoton_psf")
    if not psf:
        return ""
    return (
        f" (PSF sigma {psf['sigma_lr']:g} low-res px, reference {psf['reference_sigma_per_scale']:g}*scale high-res px)"
    )


def _cpu_text(results: dict[str, Any]) -> str:
    capability = results["environment"].get("cpu_capability")
    return f"CPU capability {capability}, " if capability else ""


def _own_pair_text(results: dict[str, Any]) -> str:
    if not results.get("own_pair"):
        return "(d) and (d') not run (`--own-pair-steps`)"
    return (
        f"(d) {results['own_pair']} (no method without the high-res reference can do this: the headroom of a "
        "per-image fine-tune), (d') the same on another acquisition of the field (its own noise: what the field and "
        "the microscope teach, without the held-out image's noise learnt by heart)"
    )


def your_data_markdown(results: dict[str, Any]) -> str:
    """The "train on your data" table: PSNR gain over bicubic (dB) and times (s)."""
    lines = [
        f"**Train on your data, x{results['scale']}** - PSNR gain over bicubic (dB) on held-out microscopy images, "
        f"{results['protocol']} protocol{_psf_text(results)}; (a) built-in `{results['builtin']}`, (b) `adapt` on the low-res image itself "
        f"({results.get('adapt_budget', results.get('adapt_steps'))}, no high-res, weights averaged with the start: mix "
        f"{results.get('adapt_mix', 'n/a')}), (b8) the adapted model upscaled with `self_ensemble=True` (x8), "
        f"(b') `adapt(..., blur_sigma=)` told the protocol's PSF (consistency at the image's own scale, "
        f"{results.get('told_noise', 'the noise hidden by masking')}, its default budget), (c) paired training on "
        f"other images of the same kind "
        f"({results['paired']}), {_own_pair_text(results)}. Seconds on this machine "
        f"({_cpu_text(results)}load average "
        f"{', '.join(f'{x:.1f}' for x in results['environment']['load_average'] or [])}).",
        "",
        "| held-out set (images) | bicubic PSNR | (a) built-in | (b) adapt | (b8) adapt, x8 | (b') adapt, PSF told "
        "| (c) paired training | (d) own pair | (d') own field | adapt s / image (b / b') | training s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["results"]:
        paired = f"{r['gain_paired']:+.2f}" if r["gain_paired"] is not None else "-"
        told = f"{r['gain_adapt_told']:+.2f}" if r.get("gain_adapt_told") is not None else "-"
        told_s = f"{r['adapt_told_seconds']:.0f}" if r.get("adapt_told_seconds") is not None else "-"
        x8 = f"{r['gain_adapt_x8']:+.2f}" if r.get("gain_adapt_x8") is not None else "-"
        own = f"{r['gain_own_pair']:+.2f}" if r.get("gain_own_pair") is not None else "-"
        field = f"{r['gain_own_field']:+.2f}" if r.get("gain_own_field") is not None else "-"
        lines.append(
            f"| {r['kind']} ({r['n_images']}) | {r['bicubic_psnr']:.2f} | {r['gain_builtin']:+.2f} | "
            f"{r['gain_adapt']:+.2f} | {x8} | {told} | {paired} | {own} | {field} | {r['adapt_seconds']:.0f} / {told_s} | "
            f"{r['paired_seconds']:.0f} |"
        )
    lines += [
        "",
        "Per image (gain over bicubic, dB: built-in / adapt / adapt x8 / adapt, PSF told / paired / own pair / own field):",
        "",
    ]
    for r in results["results"]:
        per = r.get("per_image") or {}
        for i, name in enumerate(r.get("images", [])):
            gains = [
                f"{per[k][i] - per['bicubic'][i]:+.2f}" if len(per.get(k, [])) > i else "-"
                for k in ("built-in", "adapt", "adapt x8", "adapt, PSF told", "paired", "own pair", "own field")
            ]
            lines.append(f"- {name}: bicubic {per['bicubic'][i]:.2f} dB; {' / '.join(gains)}")
    return "\n".join(lines) + "\n"


def folder_set(folder: Path) -> list[Image]:
    """Every image file of ``folder`` (sorted): RGB kept, other multi-channel files split into planes."""
    out = []
    for path in sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        a = read_image(path)
        if a.ndim == 3 and a.shape[-1] == 3 and a.dtype == np.uint8:
            out.append(Image(path.name, "rgb", a))
        elif a.ndim == 2:
            out.append(Image(path.name, "gray", a))
        else:
            flat = a.reshape(-1, *a.shape[-2:]) if a.shape[-1] > 4 else np.moveaxis(a, -1, 0)
            out.extend(Image(f"{path.name}[{i}]", "gray", np.ascontiguousarray(p)) for i, p in enumerate(flat))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="PSNR/SSIM of built-in models vs bicubic/Lanczos")
    parser.add_argument("--data", type=Path, help="data folder with the held-out sets (../shared/data layout)")
    parser.add_argument("--folder", type=Path, action="append", default=[], help="a folder of high-res images")
    parser.add_argument("--no-synthetic", action="store_true", help="skip the generated synthetic and cells sets")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    parser.add_argument(
        "--model", action="append", default=None, help="model file or name (default: the built-in models)"
    )
    parser.add_argument("--self-ensemble", action="store_true",
                        help="each model also with upscale(..., self_ensemble=True), as '<model> x8'")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality")
    parser.add_argument("--your-data", action="store_true",
                        help="only the 'train on your data' table (built-in vs adapt vs paired training) -> "
                        "results/your_data.{json,md}")  # fmt: skip
    parser.add_argument("--images", type=int, default=YOUR_DATA_IMAGES, help="--your-data: held-out images per kind")
    parser.add_argument("--adapt-steps", type=int, default=None, help="--your-data: adapt budget (default: adapt's)")
    parser.add_argument("--train-steps", type=int, default=YOUR_DATA_TRAIN_STEPS, help="--your-data: paired steps")
    parser.add_argument("--own-pair-steps", type=int, nargs="?", const=YOUR_DATA_OWN_PAIR_STEPS, default=0,
                        help="--your-data: column (d), the built-in fine-tuned on each held-out image's own true pair "
                        f"(default {YOUR_DATA_OWN_PAIR_STEPS} steps; ~100 s per image)")  # fmt: skip
    parser.add_argument("--your-data-protocol", default="lowphoton", choices=PROTOCOLS, help="--your-data: protocol")
    parser.add_argument("--your-data-kinds", nargs="+", default=list(YOUR_DATA_KINDS), help="--your-data: kinds")
    parser.add_argument("--your-data-out", type=Path, default=ROOT / "benchmarks" / "results" / "your_data",
                        help="--your-data: output path without suffix (.json and .md are written)")  # fmt: skip
    parser.add_argument("--lowphoton-sigma", type=float, default=LOWPHOTON_BLUR_LR,
                        help="low-photon protocol: PSF sigma in low-res px (e.g. 0.5 for a FWHM of ~1.2 px)")  # fmt: skip
    parser.add_argument("--lowphoton-ref-sigma", type=float, default=LOWPHOTON_REF_BLUR_PER_SCALE,
                        help="low-photon protocol: the reference's PSF sigma per unit of scale (high-res px)")  # fmt: skip
    args = parser.parse_args(argv)
    set_lowphoton_psf(args.lowphoton_sigma, args.lowphoton_ref_sigma)
    if args.your_data:
        from napari_superres.engine.nets.model_file import atomic_write_bytes

        out = args.your_data_out

        def write(results: dict[str, Any]) -> None:
            atomic_write_bytes(out.with_suffix(".json"), (json.dumps(results, indent=1) + "\n").encode())
            text = "# Train on your data\n\n" + your_data_markdown(results)
            atomic_write_bytes(out.with_suffix(".md"), text.encode())

        results = your_data_benchmark(
            args.data, scale=args.scales[0], kinds=args.your_data_kinds, n_images=args.images, adapt_steps=args.adapt_steps,
            train_steps=args.train_steps, on_kind=write, protocol=args.your_data_protocol,
            own_pair_steps=args.own_pair_steps,
        )  # fmt: skip
        write(results)
        print(your_data_markdown(results))
        print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
        return results

    from napari_superres.engine import Engine
    from napari_superres.engine.registry import builtin_model_files

    engine = Engine(device="cpu", builtins=True)
    models = args.model if args.model is not None else [p.stem for p in builtin_model_files()]
    sets = heldout_sets(args.data, synthetic=not args.no_synthetic) if args.data or not args.folder else {}
    for folder in args.folder:
        sets[folder.name] = folder_set(folder)
    methods = [Method(b) for b in BASELINES] + model_methods(models, engine, self_ensemble=args.self_ensemble)
    results = run_benchmark(sets, args.scales, methods, protocols=args.protocols, engine=engine)
    json_path, md_path = write_results(results, args.out)
    print(markdown(results))
    print(f"wrote {json_path} and {md_path}")
    return results


if __name__ == "__main__":
    main()
