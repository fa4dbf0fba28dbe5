"""LPIPS with its calibrated linear weights: the number equals LPIPS's own formula (and the ``lpips`` package's
network when it is installed); without the weights there is no LPIPS number, only the VGG feature distance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_superres.engine.metrics import lpips_metric
from napari_superres.engine.metrics.compare import compare
from napari_superres.engine.metrics.lpips_metric import (
    LPIPS_LAYERS,
    LPIPSWeightsUnavailable,
    load_lpips_weights,
    lpips,
)
from napari_superres.engine.nets.vgg import VGGFeatures

#: LPIPS's input scaling (lpips.ScalingLayer, applied to images in [-1, 1]) and its VGG-16 slices.
SHIFT, SCALE = (-0.030, -0.088, -0.188), (0.458, 0.448, 0.450)
SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))


@pytest.fixture
def lin_weights(tmp_path):
    """A file laid out as the lpips package's ``weights/v0.1/vgg.pth``, with random non-negative weights."""
    gen = torch.Generator().manual_seed(3)
    state = {
        f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen) for i, c in enumerate((64, 128, 256, 512, 512))
    }
    path = tmp_path / "vgg.pth"
    torch.save(state, path)
    return path


def reference_lpips(a01: np.ndarray, b01: np.ndarray, features: torch.nn.Sequential, lin_path) -> float:
    """LPIPS written out as the paper and the lpips package compute it, for (H, W) images in [0, 1]."""
    lin = torch.load(lin_path, weights_only=True)
    shift, scale = torch.tensor(SHIFT).view(1, 3, 1, 1), torch.tensor(SCALE).view(1, 3, 1, 1)
    ha, hb = ((2 * torch.from_numpy(x).float().expand(1, 3, *x.shape) - 1 - shift) / scale for x in (a01, b01))
    total = 0.0
    with torch.no_grad():
        for i, (start, stop) in enumerate(SLICES):
            ha, hb = features[start:stop](ha), features[start:stop](hb)
            na, nb = (h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) for h in (ha, hb))
            total += float(((na - nb) ** 2 * lin[f"lin{i}.model.1.weight"]).sum(1).mean())
    return total


def _vgg16_features(weights_path) -> torch.nn.Sequential:
    from torchvision.models import vgg16

    model = vgg16(weights=None)
    model.load_state_dict(torch.load(weights_path, weights_only=True))
    return model.features.eval()


def _pair(rng, noise=0.05, shape=(48, 64)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    b = 0.5 + 0.3 * np.sin(yy / 5.0) * np.cos(xx / 7.0)
    a = np.clip(b + rng.normal(0, noise, shape), 0, 1)
    return (a * 65535).astype(np.uint16), (b * 65535).astype(np.uint16)


@pytest.mark.slow
def test_lpips_is_lpips_formula_with_the_calibrated_weights(fake_vgg_cache, lin_weights, rng):
    features = _vgg16_features(fake_vgg_cache)
    vgg = VGGFeatures(LPIPS_LAYERS, features=features)
    a, b = _pair(rng)
    ours = lpips(a, b, weights_path=lin_weights, vgg=vgg)
    assert ours == pytest.approx(reference_lpips(a / 65535.0, b / 65535.0, features, lin_weights), rel=1e-4)
    assert lpips(b, b, weights_path=lin_weights, vgg=vgg) == 0.0
    assert lpips(_pair(rng, noise=0.2)[0], b, weights_path=lin_weights, vgg=vgg) > ours  # more noise, farther


@pytest.mark.slow
def test_without_the_calibrated_weights_there_is_no_lpips_number(fake_vgg_cache, monkeypatch, rng):
    monkeypatch.setattr(lpips_metric, "lpips_weights_path", lambda: None)
    a, b = _pair(rng)
    with pytest.raises(LPIPSWeightsUnavailable, match=r"napari-deep-superres\[lpips\]"):
        lpips(a, b)
    figures = compare(a, b)
    assert figures["lpips"] is None and "lpips" in figures["lpips_note"]
    assert figures["perceptual"] > 0  # the uncalibrated VGG feature distance keeps its own name


def test_weights_that_are_not_lpips_are_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"lin0.model.1.weight": torch.rand(1, 3, 1, 1)}, path)
    with pytest.raises(LPIPSWeightsUnavailable, match="lin0"):
        load_lpips_weights(path)


@pytest.mark.slow
def test_the_lpips_package_gives_the_same_number(fake_vgg_cache, rng):
    """The installed lpips package's weights, and its own network given the same VGG-16 weights."""
    lpips_package = pytest.importorskip("lpips")
    weights = load_lpips_weights()
    assert [w.numel() for w in weights.values()] == [64, 128, 256, 512, 512] and list(weights) == list(LPIPS_LAYERS)
    net = lpips_package.LPIPS(net="vgg", version="0.1", pnet_rand=True, verbose=False).eval()
    features = _vgg16_features(fake_vgg_cache)
    for piece in (net.net.slice1, net.net.slice2, net.net.slice3, net.net.slice4, net.net.slice5):
        piece.load_state_dict({k: v for k, v in features.state_dict().items() if k.split(".")[0] in piece._modules})
    a, b = _pair(rng)
    with torch.no_grad():
        theirs = float(
            net(*(torch.from_numpy(x / 65535.0).float().expand(1, 3, *x.shape) for x in (a, b)), normalize=True)
        )
    assert lpips(a, b, vgg=VGGFeatures(LPIPS_LAYERS, features=features)) == pytest.approx(theirs, rel=1e-4)
