"""The built-in models ship inside the package and work offline: ``upscale(image)`` needs nothing else."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from napari_superres.engine import Engine, load_model, read_model_metadata
from napari_superres.engine.registry import BUILTIN_MODEL_DIR, builtin_model_files

MAX_PARAMETERS = 600_000
MAX_TOTAL_BYTES = 10 * 1024 * 1024


def _builtin(tag: str):
    files = [p for p in builtin_model_files() if tag in p.stem]
    assert len(files) == 1, f"expected one built-in {tag} model in {BUILTIN_MODEL_DIR}, found {files}"
    return files[0]


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_x2_and_x4_files_are_small_single_channel_models():
    total = 0
    for tag, scale in (("x2", 2), ("x4", 4)):
        path = _builtin(tag)
        total += path.stat().st_size
        model = load_model(path)
        assert model.scale == scale
        assert model.in_channels == 1 and model.net.out_channels == 1
        assert model.net.num_parameters() <= MAX_PARAMETERS
        assert model.net.config.global_skip and model.net.config.upsampling == "bilinear"
        assert model.cond_channels == 2  # told each image's noise and blur (engine/nets/conditioning.py)
        assert model.normalization == {"mode": "percentile", "low": 1.0, "high": 99.8}  # CSBDeep-style, per image
        meta = read_model_metadata(path)["training"]
        assert meta["steps"] >= 1  # a trained file, with its training record
        card = path.with_suffix(".md")
        assert card.is_file(), "every built-in model has a model card"
        assert "photons at the normalised intensity 1" in card.read_text()  # the training degradation ranges
    assert total <= MAX_TOTAL_BYTES


def test_engine_default_is_the_builtin_x2_model():
    engine = Engine(device="cpu")
    assert engine.default_model == _builtin("x2").stem
    assert _builtin("x4").stem in engine.names()


def test_upscale_without_a_model_uses_the_builtin_x2_offline(offline):
    from napari_superres.engine.samples import synthetic_pair

    lr, _ = synthetic_pair(shape=(96, 96), scale=2, seed=3)  # uint16 camera image (48, 48)
    engine = Engine(device="cpu")
    out = engine.upscale(lr)
    assert out.shape == (96, 96) and out.dtype == np.uint16
    builtin = engine.upscale(lr, _builtin("x2").stem)
    np.testing.assert_array_equal(out, builtin)
    bicubic = engine.upscale(lr, "bicubic", scale=2)
    assert np.abs(out.astype(np.int64) - bicubic.astype(np.int64)).mean() > 1.0  # a network, not bicubic


def test_package_level_upscale_uses_the_default_engine(offline):
    import napari_superres

    image = (np.arange(40 * 40, dtype=np.float64).reshape(40, 40) % 97).astype(np.uint8)
    out = napari_superres.upscale(image, device="cpu")
    assert out.shape == (80, 80) and out.dtype == np.uint8


def test_x4_model_upscales_rgb_through_luminance():
    rng = np.random.default_rng(0)
    rgb = (rng.random((24, 20, 3)) * 255).astype(np.uint8)
    out = Engine(device="cpu").upscale(rgb, _builtin("x4").stem)
    assert out.shape == (96, 80, 3) and out.dtype == np.uint8
