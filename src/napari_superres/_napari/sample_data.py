"""napari sample data: a synthetic fluorescence low-res / high-res pair (no download).

``File ▸ Open Sample ▸ Synthetic fluorescence pair (low-res, high-res) (Super-resolution)``
(napari lists a plugin's only sample as ``<sample> (<plugin>)``) adds two layers
that overlay in world coordinates: the high-res ground truth (pixel size 1) and the
low-res acquisition of the same field with ``SCALE``-times larger pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: High-res field of view (pixels) and pixel-size ratio of the sample pair.
SHAPE = (512, 512)
SCALE = 2
SEED = 0
COLORMAP = "magma"


def low_res_translate(scale: int) -> float:
    """World offset of a low-res pixel centre: it covers high-res pixels ``0..s-1``, centred at ``(s-1)/2``."""
    return (scale - 1) / 2


def synthetic_fluorescence_pair(
    shape: tuple[int, int] = SHAPE, scale: int = SCALE, seed: int = SEED
) -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """napari ``LayerData`` tuples ``[(high-res, kwargs, "image"), (low-res, kwargs, "image")]``.

    Both ``uint16`` (see :func:`napari_superres.engine.samples.synthetic_pair`), with
    the same contrast limits; the low-res layer is on top (added last).
    """
    from ..engine.samples import OFFSET, synthetic_pair

    lr, hr = synthetic_pair(shape, scale=scale, seed=seed)
    limits = (float(OFFSET), float(np.percentile(hr, 99.9)))
    t = low_res_translate(scale)
    common = {"colormap": COLORMAP, "contrast_limits": limits, "blending": "translucent"}
    info = {"synthetic": {"seed": seed, "scale": scale, "hr_shape": tuple(shape)}}
    return [
        (hr, {"name": "high-res", "scale": (1.0, 1.0), "translate": (0.0, 0.0), "metadata": info, **common}, "image"),
        (lr, {"name": f"low-res (×{scale})", "scale": (float(scale),) * 2, "translate": (t, t), "metadata": info, **common}, "image"),
    ]  # fmt: skip
