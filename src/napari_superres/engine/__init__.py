"""The napari-superres engine: torch + numpy only (no Qt, no napari).

Networks (:mod:`.arch`), model files (:mod:`.model_io`), tiled inference
(:mod:`.tiling`, :mod:`.inference`), the model registry (:mod:`.engine`), and the
VGG-16 features (:mod:`.vgg`) shared by losses and difference maps.
"""

from .arch import PRESETS, Bicubic, SRNet, SRNetConfig, build_preset, receptive_field_radius
from .device import resolve_device
from .engine import BICUBIC, Engine, default_engine, upscale
from .model_io import ModelFileError, SRModel, load_model, read_model_metadata, save_model
from .tiling import Cancelled
from .vgg import VGGFeatures, VGGWeightsUnavailable

__all__ = [
    "BICUBIC",
    "PRESETS",
    "Bicubic",
    "Cancelled",
    "Engine",
    "ModelFileError",
    "SRModel",
    "SRNet",
    "SRNetConfig",
    "VGGFeatures",
    "VGGWeightsUnavailable",
    "build_preset",
    "default_engine",
    "load_model",
    "read_model_metadata",
    "receptive_field_radius",
    "resolve_device",
    "save_model",
    "upscale",
]
