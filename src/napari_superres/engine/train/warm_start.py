"""What network training starts from: ``TrainConfig.init``.

* ``"builtin"`` (the default): the built-in model of the training scale (and channel
  count) when the package ships one and no network settings (``TrainConfig.net``) are
  given; otherwise a new network.  On a small paired set this starts from a network that
  already restores blur and noise, so the same steps reach much further than from scratch.
* ``"none"``: a new network from ``TrainConfig.net``.
* a model file path: that file's network, whatever its architecture (its ``SRNetConfig``,
  as stored in the file, is rebuilt); it must upscale by the training scale and take the
  data's channels.

:func:`initial_network` is the one place that turns ``init`` into a network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..nets.model_file import builtin_model_files, load_model, read_model_metadata
from ..nets.srnet import SRNet

#: ``init`` values that are not file paths.
BUILTIN = "builtin"
NONE = "none"


def builtin_model_for(scale: int, in_channels: int = 1) -> Path | None:
    """The shipped model file that upscales by ``scale`` from ``in_channels`` channels, or ``None``."""
    for path in builtin_model_files():
        config = read_model_metadata(path)["config"]
        if int(config.get("scale", 0)) == int(scale) and int(config.get("in_channels", 1)) == int(in_channels):
            return path
    return None


def check_init(init: str | None) -> None:
    """``ValueError`` naming the fix unless ``init`` is ``"builtin"``, ``"none"`` or an existing file."""
    if init is None or init in (BUILTIN, NONE):
        return
    if not isinstance(init, (str, Path)):
        raise ValueError(f"init must be 'builtin', 'none' or a model file path, got {init!r}")
    if not Path(init).is_file():
        raise ValueError(f"init model file not found: {init}; give a .safetensors model file, 'builtin' or 'none'")


def initial_network(
    init: str | None, scale: int, in_channels: int, net: dict[str, Any] | None
) -> tuple[SRNet | None, Path | None]:
    """``(network, its file)`` to start training from (a trainable float32 CPU network), or
    ``(None, None)`` for a new one.

    ``net`` holds the network settings the user gave (``TrainConfig.net``): with
    ``"builtin"`` they ask for a new network of that shape; with a model file they
    contradict it (``ValueError``).
    """
    check_init(init)
    if init is None or init == NONE:
        return None, None
    if init == BUILTIN:
        path = None if net else builtin_model_for(scale, in_channels)
        if path is None:
            return None, None
    else:
        path = Path(init)
        if net:
            raise ValueError(
                f"init={str(init)!r} trains that file's network; drop the network settings {sorted(net)} "
                f"(e.g. --channels/--blocks) or use init='none' for a new network"
            )
    model = load_model(path)
    start = model.net
    if not isinstance(start, SRNet):
        raise ValueError(f"{path} does not hold an SRNet; choose another model file or init='none'")
    if start.scale != int(scale):
        raise ValueError(
            f"{path} upscales x{start.scale} but training is x{scale}; use a x{scale} model or init='none'"
        )
    if start.in_channels != int(in_channels):
        raise ValueError(
            f"{path} takes {start.in_channels}-channel input but the data gives {in_channels} channel(s); "
            f"use a matching model or init='none'"
        )
    return start.float().train().requires_grad_(True), path


__all__ = ["BUILTIN", "NONE", "builtin_model_for", "check_init", "initial_network"]
