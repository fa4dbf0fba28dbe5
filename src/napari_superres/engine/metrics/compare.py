"""All figures of an image against its reference at once: PSNR, SSIM, PSNR (Y), the VGG feature distance and LPIPS.

Sits above both :mod:`.pixel` (PSNR, SSIM) and :mod:`.features` (VGG-16 feature
differences), so neither imports the other.
"""

from __future__ import annotations

from typing import Any

from ..errors import VGGWeightsUnavailable
from ..layout import PlaneLayout, check_pair
from ..nets.vgg import DEFAULT_LAYERS
from .features import perceptual_distance
from .lpips_metric import LPIPSWeightsUnavailable, lpips
from .pixel import psnr, psnr_y, resolve_data_range, ssim
from .ssim import SSIM_WINDOW


def compare(
    a: Any,
    b: Any,
    *,
    data_range: float | None = None,
    axes: str | None = None,
    rgb: bool | None = None,
    crop_border: int = 0,
    perceptual: bool = True,
    layers: tuple[str, ...] | None = None,
    weights: Any = None,
    engine: Any = None,
    vgg: Any = None,
    normalization: str | dict[str, Any] | None = None,
    tile: int | None = None,
) -> dict[str, Any]:
    """All figures for ``a`` against the reference ``b``.

    Returns a dict: ``psnr`` (dB, ``inf`` for identical images), ``ssim``, ``psnr_y``
    (dB on Y after cropping ``crop_border`` px; RGB only, else ``None``), ``perceptual``
    (the VGG feature distance: mean of the uncalibrated VGG-16 feature-difference map, see
    :func:`~napari_superres.engine.metrics.features.feature_difference`; not LPIPS; ``None``
    when ``perceptual=False`` or the ImageNet weights are unavailable, then
    ``perceptual_note`` says how to get them), ``lpips`` (LPIPS with its calibrated weights,
    :func:`~napari_superres.engine.metrics.lpips_metric.lpips`; ``None`` with a reason in
    ``lpips_note`` when ``perceptual=False``, the ``lpips`` weights are not installed or the
    image is under 16 px), ``data_range`` and ``layers``.

    ``engine`` (its VGG-16 and default device) or ``vgg`` (a ready
    :class:`~napari_superres.engine.nets.vgg.VGGFeatures`) is used for the perceptual
    figure; with neither, VGG-16 is loaded for this call.
    """
    check_pair(a, b)
    layers = tuple(layers or DEFAULT_LAYERS)
    layout = PlaneLayout.of(tuple(b.shape), axes, rgb)
    dr = resolve_data_range(b, data_range)
    result: dict[str, Any] = {
        "psnr": psnr(a, b, dr),
        "ssim": ssim(a, b, dr, axes=axes, rgb=rgb) if min(layout.yx) >= SSIM_WINDOW else None,
        "psnr_y": psnr_y(a, b, crop_border, dr) if layout.is_rgb and layout.info.rgb == len(b.shape) - 1 else None,
        "perceptual": None,
        "perceptual_note": None,
        "lpips": None,
        "lpips_note": None,
        "data_range": dr,
        "layers": list(layers),
    }
    if result["ssim"] is None:
        result["ssim_note"] = f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} px, got {layout.yx}"
    if perceptual:
        try:
            result["perceptual"] = perceptual_distance(
                a, b, layers=layers, weights=weights, engine=engine, vgg=vgg,
                normalization=normalization, axes=axes, rgb=rgb, tile=tile,
            )  # fmt: skip
        except VGGWeightsUnavailable as e:
            result["perceptual_note"] = str(e)
        try:
            result["lpips"] = lpips(a, b, engine=engine, normalization=normalization, axes=axes, rgb=rgb)
        except (LPIPSWeightsUnavailable, VGGWeightsUnavailable, ValueError) as e:
            result["lpips_note"] = str(e)
    else:
        result["lpips_note"] = "perceptual=False"
    return result


__all__ = ["compare"]
