"""A network that upsamples 2D slices along one axis only, and its model file.

:class:`AxialNet` maps ``(N, 1, H, W)`` to ``(N, 1, factor * H, W)``: the first image
axis (H) is the coarsely sampled one (Z of an XZ or YZ slice), the second (W) keeps its
size.  Layout (an :class:`~napari_superres.engine.nets.srnet.SRNet` with a per-axis scale)::

    head conv -> residual blocks on the coarse grid
              -> linear upsampling of the features along H -> conv
              -> residual blocks on the fine grid -> output conv
              + cubic(input) along H                    (global skip: the net learns a residual)

Sampling grid: coarse row ``k`` sits on fine row ``k * factor`` (plane ``k`` of a stack is
plane ``k * factor`` of the result); the last ``factor - 1`` fine rows lie beyond the
last coarse row and are extrapolated (edge rows repeated before the convolutions).

The model file is the same container as 2D models (one ``.safetensors`` file, JSON in
the header) with ``format = "napari-superres-axial"`` so that neither loader mistakes
one kind for the other; :func:`load_axial_model` reads it without unpickling.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelFileError
from ..options import ACTIVATIONS, known_settings
from .model_file import FORMAT_NAME, MODEL_SUFFIX, atomic_write_bytes
from .srnet import ResidualBlock

AXIAL_FORMAT_NAME = "napari-superres-axial"
AXIAL_FORMAT_VERSION = "1"
#: Largest axial factor an AxialNet is built for.
MAX_FACTOR = 16
INTERPOLATIONS = ("linear", "cubic")


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)


def _activation(name: str, channels: int) -> nn.Module:
    """The activation of a residual block of the same name (so both always agree)."""
    return ResidualBlock(channels, "none", name, False).act1


def upsample_axis(x: torch.Tensor, factor: int, mode: str = "cubic") -> torch.Tensor:
    """Interpolate ``(N, C, H, W)`` along H to ``factor * H`` rows; row ``k`` -> row ``k * factor``.

    ``mode``: ``"linear"`` or ``"cubic"`` (Keys, a = -0.75, as torch's bicubic); W is untouched
    (sampled at its own integer positions).  Rows past the last input row repeat the edge.
    """
    if mode not in INTERPOLATIONS:
        raise ValueError(f"mode must be one of {INTERPOLATIONS}, got {mode!r}")
    h, w = x.shape[-2:]
    if factor == 1:
        return x
    padded = F.pad(x, (0, 0, 0, 1), mode="replicate")  # one more row: h * factor + 1 output rows end on it
    size = (h * factor + 1, w)
    y = F.interpolate(padded, size=size, mode="bilinear" if mode == "linear" else "bicubic", align_corners=True)
    return y[..., : h * factor, :]


@dataclass
class AxialNetConfig:
    """Everything needed to rebuild an :class:`AxialNet` (stored as JSON in model files).

    Attributes
    ----------
    factor : upsampling factor along H (2 .. 16).
    channels : feature width.
    blocks : residual blocks on the coarse grid.
    fine_blocks : residual blocks after upsampling (on the fine grid).
    activation : one of ``relu``, ``leaky_relu``, ``prelu``, ``silu``, ``gelu``.
    """

    factor: int = 4
    channels: int = 32
    blocks: int = 4
    fine_blocks: int = 0
    activation: str = "relu"

    def __post_init__(self) -> None:
        self.factor = int(self.factor)
        if not 2 <= self.factor <= MAX_FACTOR:
            raise ValueError(f"axial factor must be an integer in [2, {MAX_FACTOR}], got {self.factor}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.channels < 1 or self.blocks < 0 or self.fine_blocks < 0:
            raise ValueError("channels must be >= 1 and block counts >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AxialNetConfig:
        return cls(**known_settings(cls, d, "AxialNet config keys"))


class AxialNet(nn.Module):
    """Residual CNN upsampling ``(N, 1, H, W)`` to ``(N, 1, factor * H, W)`` (float32, values about [0, 1])."""

    def __init__(self, config: AxialNetConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        if config is None:
            config = AxialNetConfig(**overrides)
        elif overrides:
            config = AxialNetConfig.from_dict({**config.to_dict(), **overrides})
        self.config = c = config
        self.head = nn.Sequential(_conv3x3(1, c.channels), _activation(c.activation, c.channels))
        self.body = nn.Sequential(*(ResidualBlock(c.channels, "none", c.activation, False) for _ in range(c.blocks)))
        self.up_conv = nn.Sequential(_conv3x3(c.channels, c.channels), _activation(c.activation, c.channels))
        self.fine = nn.Sequential(
            *(ResidualBlock(c.channels, "none", c.activation, False) for _ in range(c.fine_blocks))
        )
        self.tail = _conv3x3(c.channels, 1)
        nn.init.zeros_(self.tail.weight)  # starts as the cubic interpolation
        nn.init.zeros_(self.tail.bias)

    @property
    def factor(self) -> int:
        return self.config.factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.config.factor
        y = self.body(self.head(x))
        y = self.up_conv(upsample_axis(y, f, "linear"))
        y = self.tail(self.fine(y))
        return y + upsample_axis(x, f, "cubic")

    def receptive_field(self) -> int:
        """Radius along W (pixels) of the input region one output pixel depends on (rounded up)."""
        c = self.config
        return 1 + 2 * c.blocks + 1 + 2 * c.fine_blocks + 1 + 2

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


@dataclass
class AxialModel:
    """A trained :class:`AxialNet` plus what it was trained for.

    Attributes
    ----------
    net : the network (its ``config.factor`` is the axial factor).
    psf_ratio : axial / lateral PSF width the training degradation assumed.
    metadata : free-form training record (steps, losses, blur sigma, noise model, source shape).
    source : ``"session"`` or the file it was loaded from.
    """

    net: AxialNet
    psf_ratio: float
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = "session"

    @property
    def factor(self) -> int:
        return self.net.config.factor

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model to ``path`` (``.safetensors`` added when missing), atomically; returns the path."""
        return save_axial_model(path, self)


def save_axial_model(path: str | os.PathLike, model: AxialModel) -> Path:
    """Save an :class:`AxialModel` as one safetensors file (weights + JSON config), atomically."""
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != MODEL_SUFFIX:
        path = path.with_name(path.name + MODEL_SUFFIX)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.net.state_dict().items()}
    meta = {
        "format": AXIAL_FORMAT_NAME,
        "format_version": AXIAL_FORMAT_VERSION,
        "config": json.dumps(model.net.config.to_dict()),
        "psf_ratio": json.dumps(float(model.psf_ratio)),
        "training": json.dumps(model.metadata or {}, default=str),
    }
    atomic_write_bytes(path, save(tensors, metadata=meta))
    return path


def load_axial_model(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> AxialModel:
    """Load a file written by :func:`save_axial_model` (no unpickling); :class:`ModelFileError` if it is not one."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"axial model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path} is not a readable safetensors file ({e})") from e
    kind = raw.get("format")
    if kind != AXIAL_FORMAT_NAME:
        hint = " (a 2D super-resolution model: load it with load_model)" if kind == FORMAT_NAME else ""
        raise ModelFileError(f"{path} is not an axial (Z) upsampling model: format {kind!r}{hint}")
    try:
        config = AxialNetConfig.from_dict(json.loads(raw["config"]))
        psf_ratio = float(json.loads(raw.get("psf_ratio", "null")) or config.factor)
        training = json.loads(raw.get("training", "{}"))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: damaged axial model metadata ({e})") from e
    net = AxialNet(config)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelFileError(f"{path}: weights do not match the config ({e})") from e
    net.eval().to(device)
    return AxialModel(net=net, psf_ratio=psf_ratio, metadata=training, source=str(path))


__all__ = [
    "AXIAL_FORMAT_NAME",
    "AxialModel",
    "AxialNet",
    "AxialNetConfig",
    "load_axial_model",
    "save_axial_model",
    "upsample_axis",
]
