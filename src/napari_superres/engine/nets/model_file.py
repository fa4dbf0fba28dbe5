"""Model files: safetensors weights with the JSON config in the metadata header.

One ``.safetensors`` file holds everything: the tensors of the network's state dict
and, in the header's string metadata,

* ``format`` = ``"napari-superres"`` and ``format_version``,
* ``config``: the :class:`~napari_superres.engine.nets.srnet.SRNetConfig` as JSON,
* ``normalization``: how inputs were normalised in training (JSON, see
  :mod:`napari_superres.engine.normalization`), repeated at inference,
* ``training``: free-form training metadata (JSON: data, recipe, steps, metrics).

Loading never unpickles; a file of another format, a corrupt file, or weights that
do not match the config raise :class:`ModelFileError` with what is wrong.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelFileError
from .srnet import SRNet, SRNetConfig

FORMAT_NAME = "napari-superres"
FORMAT_VERSION = "1"
MODEL_SUFFIX = ".safetensors"


@dataclass
class SRModel:
    """A network plus what inference needs to know about it.

    ``net`` maps ``(N, in_channels, H, W)`` to ``(N, out_channels, scale*H, scale*W)``;
    ``in_channels is None`` means any channel count (the bicubic baseline), and
    ``scale is None`` means any scale (the caller chooses).
    """

    name: str
    net: nn.Module
    scale: int | None
    in_channels: int | None
    normalization: dict[str, Any] = field(default_factory=lambda: {"mode": "dtype"})
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # "builtin", "session", a file path

    @property
    def receptive_field(self) -> int:
        return int(self.net.receptive_field())  # type: ignore[operator]

    def describe(self) -> str:
        scale = f"x{self.scale}" if self.scale else "any scale"
        ch = f"{self.in_channels}-channel" if self.in_channels else "any channels"
        return f"{self.name} ({scale}, {ch})"


def _default_file_mode() -> int:
    """``0o666`` less the process umask: the mode ``open(path, "w")`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _default_file_mode())  # mkstemp makes 0600; give the file the usual umask mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_model(
    path: str | os.PathLike,
    net: SRNet,
    *,
    normalization: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Save ``net`` (weights + config + metadata) as one safetensors file, atomically.

    Returns the path written.  The suffix ``.safetensors`` is added when missing.
    """
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != MODEL_SUFFIX:
        path = path.with_name(path.name + MODEL_SUFFIX)
    if not isinstance(net, SRNet):
        raise TypeError(f"save_model needs an SRNet, got {type(net).__name__}")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(net.config.to_dict()),
        "normalization": json.dumps(normalization or {"mode": "dtype"}),
        "training": json.dumps(training or {}, default=str),
    }
    atomic_write_bytes(path, save(tensors, metadata=metadata))
    return path


def read_model_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Return the decoded JSON metadata of a model file without building the network."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(
            f"{path} is not a readable safetensors model file ({e}). napari-superres model files are "
            f"'.safetensors' files written by napari_superres.engine.save_model or the Train widget."
        ) from e
    if raw.get("format") != FORMAT_NAME:
        raise ModelFileError(
            f"{path} is a safetensors file but not a napari-superres model (metadata 'format' is "
            f"{raw.get('format')!r}, expected {FORMAT_NAME!r})."
        )
    try:
        return {
            "format_version": raw.get("format_version"),
            "config": json.loads(raw["config"]),
            "normalization": json.loads(raw.get("normalization", "{}")) or {"mode": "dtype"},
            "training": json.loads(raw.get("training", "{}")),
        }
    except (KeyError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: damaged model metadata ({e})") from e


def load_model(path: str | os.PathLike, *, name: str | None = None, device: str | torch.device = "cpu") -> SRModel:
    """Load a model file written by :func:`save_model` (no unpickling) into an :class:`SRModel`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_model_metadata(path)
    try:
        config = SRNetConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: invalid network config ({e})") from e
    net = SRNet(config)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise ModelFileError(f"{path}: cannot read weights ({e})") from e
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if unexpected:
            details.append(f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        if wrong:
            k = wrong[0]
            details.append(f"shape mismatch at {k}: file {tuple(state[k].shape)} vs config {tuple(expected[k].shape)}")
        raise ModelFileError(f"{path}: weights do not match the config: " + "; ".join(details))
    net.load_state_dict(state, strict=True)
    net.eval().to(device)
    return SRModel(
        name=name or path.stem,
        net=net,
        scale=config.scale,
        in_channels=config.in_channels,
        normalization=meta["normalization"],
        metadata=meta["training"],
        source=str(path),
    )
