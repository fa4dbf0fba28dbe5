"""Frozen VGG-16 feature extractor (torchvision weights), shared by losses and difference maps.

The ImageNet weights come through torchvision's weights API
(``VGG16_Weights.IMAGENET1K_V1``), i.e. from the torch hub cache
(``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``), downloaded once where there is
a network.  Offline with no cached file, :class:`VGGWeightsUnavailable` says which
file to put where.  The checkpoint is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import socket
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import VGGWeightsUnavailable

log = logging.getLogger(__name__)

#: Index of each named ReLU in ``torchvision.models.vgg16().features``.
VGG16_LAYERS: dict[str, int] = {
    "relu1_1": 1, "relu1_2": 3,
    "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15,
    "relu4_1": 18, "relu4_2": 20, "relu4_3": 22,
    "relu5_1": 25, "relu5_2": 27, "relu5_3": 29,
}  # fmt: skip
DEFAULT_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
#: Set to 1 to never try to download weights.
OFFLINE_ENV = "NAPARI_SUPERRES_OFFLINE"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg16_weights_path() -> Path:
    """Where torchvision keeps (or would download) the VGG-16 ImageNet checkpoint."""
    from torchvision.models import VGG16_Weights

    filename = os.path.basename(VGG16_Weights.IMAGENET1K_V1.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def offline_message() -> str:
    from torchvision.models import VGG16_Weights

    url = VGG16_Weights.IMAGENET1K_V1.url
    return (
        "The VGG-16 ImageNet weights (needed by the perceptual loss and the feature-difference map) "
        f"are not available offline. Download {url} on a machine with internet access and put it at "
        f"{vgg16_weights_path()} (set TORCH_HOME to use another cache folder), or run once with a "
        "network so torchvision downloads it there."
    )


def _download_host_reachable(url: str, timeout: float = 3.0) -> bool:
    """Quick TCP probe of the weights host, so offline machines fail in seconds, not after a long time-out.

    ``NAPARI_SUPERRES_OFFLINE=1`` skips any network access.
    """
    if os.environ.get(OFFLINE_ENV, "").lower() in ("1", "true", "yes"):
        return False
    host = urllib.parse.urlparse(url).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError as e:
        log.info("VGG-16 weights host %s not reachable (%s): treating this machine as offline", host, e)
        return False


def weights_host_reachable(timeout: float = 3.0) -> bool:
    """Whether the VGG-16 weights could be downloaded now (a TCP probe of their host; ``False`` offline)."""
    from torchvision.models import VGG16_Weights

    return _download_host_reachable(VGG16_Weights.IMAGENET1K_V1.url, timeout)


def load_vgg16_features(max_index: int = 30) -> nn.Sequential:
    """Return ``vgg16().features[:max_index]`` with ImageNet weights, frozen and in eval mode.

    Raises :class:`VGGWeightsUnavailable` when the weights are neither cached nor downloadable.
    """
    from torchvision.models import VGG16_Weights, vgg16

    weights = VGG16_Weights.IMAGENET1K_V1
    path = vgg16_weights_path()
    if path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # corrupt or foreign file
            raise VGGWeightsUnavailable(f"cannot read VGG-16 weights at {path}: {e}. {offline_message()}") from e
    else:
        if not _download_host_reachable(weights.url):
            raise VGGWeightsUnavailable(offline_message())
        log.info("downloading VGG-16 ImageNet weights (528 MB) to %s", path)
        try:  # the real torchvision path: downloads into the hub cache
            state = weights.get_state_dict(progress=False, check_hash=True)
        except Exception as e:  # no network, blocked host, partial download
            raise VGGWeightsUnavailable(offline_message()) from e
    model = vgg16(weights=None)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise VGGWeightsUnavailable(f"{path} does not hold VGG-16 weights ({e}). {offline_message()}") from e
    features = model.features[:max_index].eval()
    for p in features.parameters():
        p.requires_grad_(False)
    return features


class VGGFeatures(nn.Module):
    """Named VGG-16 activations of images in ``[0, 1]``.

    ``forward(x)`` takes ``(N, 1 | 3, H, W)`` float (grayscale is repeated to RGB),
    applies ImageNet mean/std and returns ``{layer_name: (N, C_l, H_l, W_l)}`` for the
    requested layers.  Parameters are frozen; gradients flow to the input.
    """

    def __init__(self, layers: Sequence[str] = DEFAULT_LAYERS, features: nn.Sequential | None = None) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in VGG16_LAYERS]
        if unknown:
            raise ValueError(f"unknown VGG-16 layers {unknown}; choose from {list(VGG16_LAYERS)}")
        self.layers = tuple(layers)
        last = max(VGG16_LAYERS[name] for name in self.layers)
        if features is None:
            features = load_vgg16_features(last + 1)
        self.features = features[: last + 1]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._index_to_name = {VGG16_LAYERS[name]: name for name in self.layers}

    def train(self, mode: bool = True) -> VGGFeatures:  # always frozen in eval mode
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ValueError(f"VGG features need 1 or 3 channels, got {x.shape[1]}")
        h = (x - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self._index_to_name:
                out[self._index_to_name[i]] = h
                if len(out) == len(self.layers):
                    break
        return out
