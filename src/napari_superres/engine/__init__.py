"""The napari-superres engine: torch + numpy only (no Qt, no napari).

Networks (:mod:`.arch`), model files (:mod:`.model_io`), tiled inference
(:mod:`.tiling`, :mod:`.inference`, :mod:`.lazy` for dask), the model registry
(:mod:`.engine`), training (:mod:`.losses`, :mod:`.discriminator`, :mod:`.degradation`,
:mod:`.training_data`, :mod:`.trainer`), image comparison (:mod:`.metrics`,
:mod:`.feature_difference`), and the VGG-16 features (:mod:`.vgg`) shared by the
perceptual loss and the difference maps.

Names are imported on first use, so ``import napari_superres.engine.synthetic`` (numpy
only) does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["PRESETS", "Bicubic", "SRNet", "SRNetConfig", "build_preset", "receptive_field_radius"], "arch"),
    "resolve_device": "device",
    **dict.fromkeys(["BICUBIC", "Engine", "default_engine", "upscale"], "engine"),
    **dict.fromkeys(["ModelFileError", "SRModel", "load_model", "read_model_metadata", "save_model"], "model_io"),
    "Cancelled": "tiling",
    **dict.fromkeys(["VGGFeatures", "VGGWeightsUnavailable"], "vgg"),
    **dict.fromkeys(["TrainConfig", "Trainer", "TrainResult", "StepReport", "ValidationReport"], "trainer"),
    "make_pair_source": "training_data",
    "feature_difference": "feature_difference",
    **dict.fromkeys(["psnr", "ssim", "compare"], "metrics"),
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .arch import PRESETS, Bicubic, SRNet, SRNetConfig, build_preset, receptive_field_radius
    from .device import resolve_device
    from .engine import BICUBIC, Engine, default_engine, upscale
    from .feature_difference import feature_difference
    from .metrics import compare, psnr, ssim
    from .model_io import ModelFileError, SRModel, load_model, read_model_metadata, save_model
    from .tiling import Cancelled
    from .trainer import StepReport, TrainConfig, Trainer, TrainResult, ValidationReport
    from .training_data import make_pair_source
    from .vgg import VGGFeatures, VGGWeightsUnavailable


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
