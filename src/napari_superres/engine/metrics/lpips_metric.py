"""LPIPS (Zhang et al. 2018, VGG variant, v0.1) with its calibrated linear-layer weights.

LPIPS compares unit-normalised VGG-16 activations of two images at five layers
(``relu1_2 ... relu5_3``), weights the squared difference of every channel by a learned,
non-negative weight (a 1x1 convolution without bias), averages each layer over space
and sums the layers: 0 for identical images, larger for perceptually more different
ones.  Those channel weights are what make the number LPIPS: they are fitted to human
judgements.  They ship in the ``lpips`` package (BSD-2-Clause; ``weights/v0.1/vgg.pth``,
7 KB; ``pip install "napari-deep-superres[lpips]"``) and are read here as a plain tensor
file with ``torch.load(weights_only=True)``: the package's code is neither imported nor run.
The VGG-16 features are torchvision's ImageNet weights from the torch hub cache (as the
perceptual loss and :mod:`.features`).

Input scaling: LPIPS maps ``[0, 1]`` images to ``[-1, 1]`` and applies
``(x - shift) / scale`` with ``shift = (-0.030, -0.088, -0.188)`` and ``scale = (0.458,
0.448, 0.450)``; that is ``(x01 - 0.485..) / 0.229..``, ImageNet's mean/std, which
:class:`~napari_superres.engine.nets.vgg.VGGFeatures` applies to ``[0, 1]`` input.  Images
go to ``[0, 1]`` with one intensity range for both, from the reference (``"dtype"``: uint8 /
255 as LPIPS users do), grayscale repeated to RGB; a stack's LPIPS is the mean over planes.

Without the calibrated weights there is no LPIPS number (:class:`LPIPSWeightsUnavailable`);
the uncalibrated map of :mod:`.features` keeps its own name (VGG feature distance).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..device import resolve_device
from ..errors import MissingResourceError
from ..layout import PlaneLayout, check_pair
from ..nets.vgg import VGGFeatures
from ..normalization import intensity_range, normalization_spec, normalize

#: The VGG-16 layers LPIPS compares, in order (its ``lin0 ... lin4``).
LPIPS_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
#: Channels of those layers.
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
#: The linear-layer weights inside the ``lpips`` package (version 0.1 of the metric, VGG).
LPIPS_WEIGHTS_FILE = ("weights", "v0.1", "vgg.pth")
#: As LPIPS's ``normalize_tensor``: added to feature norms before dividing.
NORM_EPS = 1e-10


class LPIPSWeightsUnavailable(MissingResourceError):
    """LPIPS's calibrated linear-layer weights are not installed (the ``lpips`` package)."""


def lpips_weights_path() -> Path | None:
    """Path of ``vgg.pth`` inside the installed ``lpips`` package (found without importing it), or ``None``."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*LPIPS_WEIGHTS_FILE)
    return path if path.is_file() else None


def load_lpips_weights(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """``{layer: (C,) float32}`` non-negative channel weights from ``path`` (default: the ``lpips`` package's file).

    Raises :class:`LPIPSWeightsUnavailable` when the file is missing or is not LPIPS's VGG weights.
    """
    path = Path(path) if path is not None else lpips_weights_path()
    if path is None or not path.is_file():
        raise LPIPSWeightsUnavailable(
            "LPIPS needs its calibrated weights: pip install 'napari-deep-superres[lpips]' (the lpips package, "
            "7 KB of weights); without them only the uncalibrated VGG feature distance is available"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    weights: dict[str, torch.Tensor] = {}
    for i, (layer, channels) in enumerate(zip(LPIPS_LAYERS, LPIPS_CHANNELS)):
        w = state.get(f"lin{i}.model.1.weight") if isinstance(state, dict) else None
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != (1, channels, 1, 1) or bool((w < 0).any()):
            raise LPIPSWeightsUnavailable(f"{path} does not hold LPIPS's VGG linear layers (lin{i}: 1x{channels}x1x1)")
        weights[layer] = w.reshape(channels).float()
    return weights


def _unit(f: torch.Tensor) -> torch.Tensor:
    return f / (torch.sqrt((f * f).sum(dim=1, keepdim=True)) + NORM_EPS)


@torch.no_grad()
def lpips_planes(
    pa: torch.Tensor, pb: torch.Tensor, vgg: VGGFeatures, weights: dict[str, torch.Tensor]
) -> torch.Tensor:
    """LPIPS of ``(N, 1 | 3, H, W)`` float tensors in ``[0, 1]``: ``(N,)``, one value per image pair."""
    feats_a, feats_b = vgg(pa), vgg(pb)
    total = torch.zeros(pa.shape[0], dtype=torch.float64)
    for layer in LPIPS_LAYERS:
        d = (_unit(feats_a[layer].float()) - _unit(feats_b[layer].float())) ** 2
        w = weights[layer].to(d.device).view(1, -1, 1, 1)
        total += (d * w).sum(dim=1).mean(dim=(1, 2)).double().cpu()
    return total


def lpips(
    a: Any,
    b: Any,
    *,
    engine: Any = None,
    vgg: VGGFeatures | None = None,
    device: str | torch.device | None = None,
    normalization: str | dict[str, Any] | None = None,
    axes: str | None = None,
    rgb: bool | None = None,
    weights_path: str | Path | None = None,
) -> float:
    """LPIPS (VGG, v0.1) of image ``a`` against the reference ``b``: mean over planes (see module docstring).

    ``a``, ``b``: equal shapes ``(..., Y, X)`` or RGB(A) ``(..., Y, X, 3|4)``, numpy or dask,
    at least 16 px per side (VGG's ``relu5_3`` is 1/16 of the image).  ``engine`` (its
    VGG-16) or ``vgg`` (a :class:`VGGFeatures` with :data:`LPIPS_LAYERS`) may be given;
    otherwise VGG-16 is loaded for this call.  Raises :class:`LPIPSWeightsUnavailable`
    without the calibrated weights and
    :class:`~napari_superres.engine.errors.VGGWeightsUnavailable` without VGG-16's.
    """
    check_pair(a, b)
    weights = load_lpips_weights(weights_path)
    layout = PlaneLayout.of(tuple(b.shape), axes, rgb)
    if min(layout.yx) < 16:
        raise ValueError(f"LPIPS needs images of at least 16x16 px, got {layout.yx}")
    spec = normalization_spec(normalization) if isinstance(normalization, str) else (normalization or {"mode": "dtype"})
    lo, hi = intensity_range(b, spec)
    if vgg is None:
        vgg = engine.vgg(LPIPS_LAYERS, device=device) if engine is not None else VGGFeatures(LPIPS_LAYERS)
        if engine is None:
            vgg = vgg.to(resolve_device(device))
    where = next(vgg.parameters()).device
    values = [
        float(lpips_planes(torch.from_numpy(normalize(pa, lo, hi)[None]).to(where),
                           torch.from_numpy(normalize(pb, lo, hi)[None]).to(where), vgg, weights)[0])
        for pa, pb in zip(layout.planes(a), layout.planes(b))
    ]  # fmt: skip
    return float(np.mean(values))


__all__ = [
    "LPIPS_LAYERS",
    "LPIPSWeightsUnavailable",
    "load_lpips_weights",
    "lpips",
    "lpips_planes",
    "lpips_weights_path",
]
