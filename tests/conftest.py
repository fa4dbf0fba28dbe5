"""Shared fixtures: small deterministic data and a temporary torch hub cache for VGG-16."""

from __future__ import annotations

import os

import numpy as np
import pytest

# Tests run on 2 cores: keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks: intra-op threads cost more than they give (and shared CI cores make them spin)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny random x2 SRNet (4 channels, 1 block, seed 0) saved as a model file; far from equivariant."""
    import torch

    from napari_superres.engine import SRNet, save_model

    torch.manual_seed(0)
    return save_model(tmp_path_factory.mktemp("models") / "tiny", SRNet(scale=2, channels=4, blocks=1))


@pytest.fixture
def engine():
    """An engine on the CPU without the built-in models."""
    from napari_superres.engine import Engine

    return Engine(device="cpu", builtins=False)


@pytest.fixture(scope="session")
def vgg_hub_dir(tmp_path_factory):
    """A torch hub folder holding a *randomly initialised* VGG-16 state dict under torchvision's file name.

    Written once per test session (the file is about 530 MB). Results computed with it are
    NOT pretrained results: tests use it only to exercise the real loading path and structure.
    """
    import torch
    from torchvision.models import VGG16_Weights, vgg16

    hub = tmp_path_factory.mktemp("torch") / "hub"
    path = hub / "checkpoints" / os.path.basename(VGG16_Weights.IMAGENET1K_V1.url)
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(vgg16(weights=None).state_dict(), path)
    return hub


@pytest.fixture
def fake_vgg_cache(vgg_hub_dir, monkeypatch):
    """Point ``TORCH_HOME`` and the torch hub at :func:`vgg_hub_dir`; yields the weights file's path.

    Goes through the real loading path (torchvision weights API file name,
    ``torch.load(weights_only=True)``) without a download.
    """
    import torch

    from napari_superres.engine.nets.vgg import vgg16_weights_path

    old_dir = torch.hub.get_dir()
    monkeypatch.setenv("TORCH_HOME", str(vgg_hub_dir.parent))
    torch.hub.set_dir(str(vgg_hub_dir))
    path = vgg16_weights_path()
    assert path.is_file()
    yield path
    torch.hub.set_dir(old_dir)


@pytest.fixture
def no_vgg_cache(tmp_path, monkeypatch):
    """An empty torch hub cache and no network download: the offline situation."""
    import torch

    old_dir = torch.hub.get_dir()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    monkeypatch.setenv("NAPARI_SUPERRES_OFFLINE", "1")
    torch.hub.set_dir(str(tmp_path / "empty-torch" / "hub"))

    def _no_network(*args, **kwargs):
        raise OSError("no network in tests")

    import torchvision.models._api as tv_api

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", _no_network)
    yield
    torch.hub.set_dir(old_dir)


@pytest.fixture
def sharpens_when_told():
    """The stand-in class for a conditioned network that under-sharpens when told too little blur:
    ``sharpens_when_told(field, enough, forward)`` told at least ``enough`` blur (its blur map's value) returns
    ``field`` (what a network that sharpens gives), else ``field`` through the whole forward blur ``forward``
    (output px), which then needs no further blur to explain the image."""
    import torch

    from napari_superres.engine.blur import gaussian_blur
    from napari_superres.engine.nets.conditioning import BLUR_MAP_GAIN

    class SharpensWhenTold(torch.nn.Module):
        def __init__(self, field: torch.Tensor, enough: float, forward: float) -> None:
            super().__init__()
            self.field, self.enough, self.forward_blur = field, enough, forward

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            told = float(x[0, -1].mean()) / BLUR_MAP_GAIN
            return self.field if told >= self.enough else gaussian_blur(self.field, self.forward_blur)

    return SharpensWhenTold
