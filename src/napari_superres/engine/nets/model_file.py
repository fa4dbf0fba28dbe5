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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import InvalidRequestError, ModelFileError
from ..files import atomic_write_bytes
from ..normalization import check_normalization
from ..options import Normalization
from .srnet import SRNet, SRNetConfig, upsampling_factors

FORMAT_NAME = "napari-superres"
FORMAT_VERSION = "1"
MODEL_SUFFIX = ".safetensors"
#: Folder of the model files shipped inside the package.
BUILTIN_MODEL_DIR = Path(__file__).resolve().parents[2] / "models"


#: A model's companion file of int8 fine-tuned weights (``engine.train.int8_tuning``): not a model.
INT8_SUFFIX = ".int8.safetensors"


def builtin_model_files() -> list[Path]:
    """The model files (``.safetensors``) shipped with the package, sorted by name (int8 companions excluded)."""
    if not BUILTIN_MODEL_DIR.is_dir():
        return []
    return sorted(p for p in BUILTIN_MODEL_DIR.glob(f"*{MODEL_SUFFIX}") if not p.name.endswith(INT8_SUFFIX))


#: Bounds on a network described by a model file, checked before anything is allocated.
#: (The built-in models have 32-48 channels, 4-8 blocks, under 1 M parameters.)
MAX_CHANNELS = 1024
MAX_BLOCKS = 256
MAX_PARAMETERS = 200_000_000
#: Largest magnitude a weight may have.  Trained networks stay far below (the built-in models:
#: under 10); a weight of 1e30 is finite but overflows every activation to Inf/NaN, which a
#: uint16 cast turns into a silently black image.
MAX_ABS_WEIGHT = 1e6


def estimate_parameters(config: dict[str, Any]) -> int:
    """Parameter count of an :class:`SRNet` described by a config dict, without building it.

    An upper estimate (3x3 convolutions with biases, pixel-shuffle stages at their
    widest); raises ``ValueError`` for sizes that are not positive integers.
    """

    def size(key: str, default: int, minimum: int = 1) -> int:
        value = config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")
        return value

    c_in, c_out = size("in_channels", 1), size("out_channels", 1)
    c, blocks = size("channels", 32), size("blocks", 4, 0)
    up_blocks = size("upsample_blocks", 0, 0)
    factors = upsampling_factors(config.get("scale", 2))
    widths = config.get("upsample_channels") or [c] * len(factors)
    if not isinstance(widths, (list, tuple)) or not all(isinstance(w, int) and w >= 1 for w in widths):
        raise ValueError(f"upsample_channels must be a list of positive integers, got {widths!r}")

    def conv(a: int, b: int) -> int:  # one 3x3 convolution with bias
        return 9 * a * b + b

    c_cond = size("cond_channels", 0, 0)
    total = conv(c_in + c_cond, c) + blocks * 2 * conv(c, c)
    prev = c
    for f, w in zip(factors, widths):
        total += conv(prev, w * f * f) + up_blocks * 2 * conv(w, w)
        prev = w
    return total + 2 * conv(prev, prev) + conv(prev, c_out)


def check_config_size(
    config: dict[str, Any],
    path: str | os.PathLike = "model",
    hint: str = "the file is damaged or not a napari-superres model",
) -> None:
    """Raise :class:`ModelFileError` (a ``ValueError``) for a network config too large to be sensible,
    before anything is allocated; ``path`` and ``hint`` start and end the message."""
    try:
        n = estimate_parameters(config)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: invalid network config ({e})") from e
    width = max([config.get("channels", 32), *(config.get("upsample_channels") or [])])
    blocks = max(config.get("blocks", 4), config.get("upsample_blocks", 0))
    if width > MAX_CHANNELS or blocks > MAX_BLOCKS or n > MAX_PARAMETERS:
        raise ModelFileError(
            f"{path}: the network config asks for {width} channels, {blocks} blocks, ~{n:,} parameters; "
            f"at most {MAX_CHANNELS} channels, {MAX_BLOCKS} blocks and {MAX_PARAMETERS:,} parameters are "
            f"accepted ({hint})"
        )


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
    normalization: dict[str, Any] = field(default_factory=lambda: Normalization().to_dict())
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # "builtin", "session", a file path
    #: the engine's tiled pipeline normalises and tiles images for this model (see ``infer.predictor.Predictor``)
    own_pipeline: ClassVar[bool] = False

    @property
    def receptive_field(self) -> int:
        return int(self.net.receptive_field())  # type: ignore[operator]

    @property
    def cond_channels(self) -> int:
        """Degradation maps the network reads after the image channels (0: a blind network)."""
        return int(getattr(getattr(self.net, "config", None), "cond_channels", 0) or 0)

    def predict(self, batch: Any, device: torch.device | str = "cpu", *, tile: int | None = None) -> Any:
        """The network on normalised ``(N, C, H, W)`` float32 tiles -> ``(N, C_out, sH, sW)`` float32 (numpy).

        The reference forward pass (:class:`~napari_superres.engine.infer.predictor.Predictor`); the
        tiled pipeline runs the same network through ONNX Runtime, bf16 or ``torch.compile`` when
        planned so.  ``net`` must live on ``device`` (see ``Engine.prepare``); ``tile`` is unused.
        """
        x = torch.as_tensor(batch, dtype=torch.float32).to(device)
        with torch.inference_mode():
            return self.net(x).float().cpu().numpy()

    def describe(self) -> str:
        scale = f"x{self.scale}" if self.scale else "any scale"
        ch = f"{self.in_channels}-channel" if self.in_channels else "any channels"
        return f"{self.name} ({scale}, {ch})"


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
        "normalization": json.dumps(Normalization.parse(normalization).to_dict()),
        "training": json.dumps(training or {}, default=str),
    }
    atomic_write_bytes(path, save(tensors, metadata=metadata))
    return path


def check_weights(
    state: dict[str, torch.Tensor], path: str | os.PathLike = "model", expected: dict[str, torch.Tensor] | None = None
) -> None:
    """:class:`ModelFileError` unless every weight is floating point, finite and within :data:`MAX_ABS_WEIGHT`.

    ``expected``: the network's own state dict; its integer buffers (batch-norm step counters)
    are left to their dtype.
    """
    for key, t in state.items():
        if expected is not None and key in expected and not expected[key].is_floating_point():
            continue  # a counter, not a weight
        if not t.is_floating_point():
            raise ModelFileError(
                f"{path}: weight {key!r} is {str(t.dtype).removeprefix('torch.')}, not a float dtype: "
                "napari-superres model files hold float weights (the file is damaged or was not written by "
                "save_model)"
            )
        if not bool(torch.isfinite(t).all()):
            raise ModelFileError(
                f"{path}: the weights hold NaN or Inf values (first in {key!r}): the training diverged or the "
                "file is damaged; use an earlier checkpoint or retrain (e.g. with a lower learning rate)"
            )
        if t.numel() and float(t.abs().max()) > MAX_ABS_WEIGHT:
            raise ModelFileError(
                f"{path}: weight {key!r} reaches {float(t.abs().max()):.3g}, beyond the {MAX_ABS_WEIGHT:g} any "
                "trained network stays under: the training diverged or the file is damaged; use an earlier "
                "checkpoint or retrain (e.g. with a lower learning rate)"
            )


def read_model_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Return the decoded JSON metadata of a model file without building the network."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.glob(f"*{MODEL_SUFFIX}"))[:3]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise ModelFileError(f"{path} is a folder, not a model file; pass a {MODEL_SUFFIX} file{hint}")
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
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
        meta = {
            "format_version": raw.get("format_version"),
            "config": json.loads(raw["config"]),
            "normalization": Normalization.parse(_stored_normalization(raw)).to_dict(),
            "training": json.loads(raw.get("training", "{}")),
        }
    except (KeyError, json.JSONDecodeError, RecursionError, InvalidRequestError, TypeError) as e:
        # RecursionError: absurdly nested JSON
        raise ModelFileError(f"{path}: damaged model metadata ({type(e).__name__}: {e})") from e
    try:
        meta["normalization"] = check_normalization(meta["normalization"])
    except ValueError as e:
        raise ModelFileError(f"{path}: damaged model metadata: {e}") from e
    if not isinstance(meta["training"], dict):
        raise ModelFileError(f"{path}: damaged model metadata: 'training' is not a JSON object")
    return meta


def _stored_normalization(raw: dict[str, Any]) -> Any:
    """The header's normalization JSON: ``None`` when absent or empty (the default), else as stored."""
    value = json.loads(raw.get("normalization", "{}"))
    if not isinstance(value, dict):
        raise TypeError(f"'normalization' is not a JSON object ({type(value).__name__})")
    return value or None


def load_model(path: str | os.PathLike, *, name: str | None = None, device: str | torch.device = "cpu") -> SRModel:
    """Load a model file written by :func:`save_model` (no unpickling) into an :class:`SRModel`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_model_metadata(path)
    if not isinstance(meta["config"], dict):
        raise ModelFileError(f"{path}: invalid network config (not a JSON object)")
    check_config_size(meta["config"], path)
    try:
        config = SRNetConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: invalid network config ({e})") from e
    net = SRNet(config)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path}: cannot read weights ({e}); the file is damaged or truncated") from e
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
    check_weights(state, path, expected)
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
