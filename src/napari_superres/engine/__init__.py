"""The napari-superres engine: torch + numpy only (no Qt, no napari).

Sub-packages by concern, lowest layer first (each imports only from layers below it)::

    options, errors   torch-free choices, defaults and exception types (the CLI's --help reads these)
    request           UpscaleRequest: every choice of one upscale, typed (torch-free)
    layout, device, normalization, filters, files, samples, ...   base modules (numpy / torch only)
    nets/      SRNet (srnet), discriminators, VGG-16 features, safetensors model files (model_file)
    infer/     plan (request -> job, the one validation), Predictor, tiling, the upscale pipeline, lazy (dask)
    metrics/   SSIM, pixel metrics (PSNR, SSIM maps), VGG feature-difference maps (features), compare
    train/     losses, degradation, training data, Trainer + checkpoints, distributed (DDP)
    registry   Engine: the model registry shared by a viewer's widgets, and upscale()
    axial      upscale_z: axial (Z) upsampling of stacks, trained on the stack itself (trains + infers)

The layering is checked by the import-linter contracts in pyproject.toml (tests/test_layering.py).
Names are imported on first use, so ``import napari_superres.engine.samples`` (numpy
only) does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import errors as _errors  # torch-free

#: public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ["PRESETS", "Bicubic", "SRNet", "SRNetConfig", "build_preset", "receptive_field_radius"], "nets.srnet"
    ),
    "resolve_device": "device",
    **dict.fromkeys(["BICUBIC", "Engine", "default_engine", "upscale"], "registry"),
    **dict.fromkeys(["SRModel", "load_model", "read_model_metadata", "save_model"], "nets.model_file"),
    **dict.fromkeys(_errors.__all__, "errors"),  # the whole exception family, listed once (errors.py)
    "VGGFeatures": "nets.vgg",
    **dict.fromkeys(["TrainConfig", "Trainer", "TrainResult", "StepReport", "ValidationReport"], "train.trainer"),
    "make_pair_source": "train.data",
    "adapt": "train.adapt",
    "estimate_degradation": "train.estimate",
    "feature_difference": "metrics.features",
    **dict.fromkeys(["psnr", "ssim"], "metrics.pixel"),
    "compare": "metrics.compare",
    **dict.fromkeys(["AxialResult", "upscale_z"], "axial"),
    **dict.fromkeys(["AxialModel", "load_axial_model", "save_axial_model"], "nets.axial_net"),
    **dict.fromkeys(["ConsistencyResult", "consistency"], "metrics.consistency"),
    "NoiseModel": "noise",
    "UpscaleRequest": "request",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .axial import AxialResult, upscale_z
    from .device import resolve_device
    from .errors import (
        Cancelled,
        DeviceError,
        DeviceUnavailableError,
        ImageFileError,
        InvalidRequestError,
        MissingResourceError,
        ModelFileError,
        SuperresError,
        VGGWeightsUnavailable,
    )
    from .metrics.compare import compare
    from .metrics.consistency import ConsistencyResult, consistency
    from .metrics.features import feature_difference
    from .metrics.pixel import psnr, ssim
    from .nets.axial_net import AxialModel, load_axial_model, save_axial_model
    from .nets.model_file import SRModel, load_model, read_model_metadata, save_model
    from .nets.srnet import PRESETS, Bicubic, SRNet, SRNetConfig, build_preset, receptive_field_radius
    from .nets.vgg import VGGFeatures
    from .noise import NoiseModel
    from .registry import BICUBIC, Engine, default_engine, upscale
    from .request import UpscaleRequest
    from .train.adapt import adapt
    from .train.data import make_pair_source
    from .train.estimate import estimate_degradation
    from .train.trainer import StepReport, TrainConfig, Trainer, TrainResult, ValidationReport


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
