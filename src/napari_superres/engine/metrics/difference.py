"""Where and how much image A differs from the reference B, stage by stage: figures, pixel maps, VGG-16 maps.

What the napari *Feature difference* dock computes, without a viewer: :func:`difference_stages`
yields each stage's maps as soon as they are made (the dock shows them while the next stage
runs), checks ``should_stop()`` between maps and VGG tiles, and raises
:class:`~napari_superres.engine.errors.Cancelled` when asked to stop.  A of another pixel grid
is first resampled onto B's (:func:`~.grids.resample_onto`).

>>> import numpy as np
>>> b = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
>>> [kind for kind, _maps, _figures in difference_stages(b * 0.9, b, axes="YX")]
['pixel']
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import Cancelled, VGGWeightsUnavailable
from . import features, pixel
from .grids import GridMatch, resample_onto, yx_axes
from .ssim import SSIM_WINDOW

#: One stage's output: ``(kind, payload, figures so far)``; see :func:`difference_stages`.
Stage = tuple[str, Any, dict[str, Any]]


def _never() -> bool:
    return False


def difference_stages(
    a: Any,
    b: Any,
    *,
    axes: str | None = None,
    rgb: bool = False,
    match: GridMatch | None = None,
    pixel_map: bool = True,
    ssim_map: bool = True,
    layers: tuple[str, ...] = (),
    per_layer: bool = False,
    engine: Any = None,
    device: Any = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    status: Callable[[str], None] | None = None,
) -> Iterator[Stage]:
    """Compare ``a`` with the reference ``b`` (same layout, ``axes`` of ``b``; RGB last when ``rgb``).

    ``match``: A's grid relative to B's when their Y, X sizes differ (A is resampled onto B's
    grid, cubic spline).  Yields, in order:

    * ``("pixel", maps, figures)``: ``maps`` holds ``"pixel"`` (|A−B|, float32, B's shape) and/or
      ``"ssim"`` (the local SSIM map) as asked; ``figures`` has ``psnr`` (dB), ``ssim`` (``None``
      when an image is under the SSIM window) and ``psnr_y`` (dB on luminance, RGB only);
    * when ``layers`` (VGG-16 layer names) are given, then either
      ``("features", (fmap, per_layer_maps), figures)`` with ``figures["perceptual"]`` the mean
      of ``fmap`` (``per_layer_maps`` empty unless ``per_layer``), or, without the ImageNet
      weights, ``("offline", how_to_get_them, figures)``.

    ``progress(done, total)`` counts VGG tiles; ``status(text)`` names the stage.  Raises
    ``ValueError`` for NaN/Inf values and :class:`~napari_superres.engine.errors.Cancelled`
    when ``should_stop()`` turns true.
    """
    stop = should_stop or _never

    def check() -> None:
        if stop():
            raise Cancelled("the comparison was cancelled")

    say = status or (lambda _text: None)
    say("reading and checking A and B…")
    b = np.asarray(b)
    y, x = yx_axes(b.ndim, rgb)
    if match is not None:
        a = resample_onto(np.asarray(a), match, (b.shape[y], b.shape[x]), y, x)
    a = np.asarray(a)
    for name, img in (("A", a), ("B", b)):
        if img.dtype.kind == "f" and not np.isfinite(img).all():
            raise ValueError(f"image {name} contains NaN or Inf values; replace them (e.g. np.nan_to_num)")
    check()
    say("PSNR and SSIM…")
    figures: dict[str, Any] = {"psnr": pixel.psnr(a, b)}
    figures["ssim"] = pixel.ssim(a, b, axes=axes) if min(b.shape[y], b.shape[x]) >= SSIM_WINDOW else None
    figures["psnr_y"] = pixel.psnr_y(a, b) if rgb else None
    maps: dict[str, np.ndarray] = {}
    check()
    if pixel_map:
        say("|A−B| map…")
        maps["pixel"] = pixel.absolute_error_map(a, b, axes=axes)
        check()
    if ssim_map:
        say("SSIM map…")
        maps["ssim"] = pixel.ssim_map(a, b, axes=axes)
        check()
    yield "pixel", maps, dict(figures)
    if not layers:
        return
    say("VGG-16 features: loading the network…")
    try:
        fmap, per = features.feature_difference(
            a, b, layers=layers, per_layer=True, engine=engine, device=device, axes=axes,
            progress=progress, should_stop=should_stop,
        )  # fmt: skip
    except VGGWeightsUnavailable as exc:
        yield "offline", str(exc), dict(figures)
        return
    check()
    figures["perceptual"] = float(np.mean(fmap, dtype=np.float64))
    yield "features", (fmap, per if per_layer else {}), figures
