"""VGG-16 feature-difference maps: shape, symmetry, layer weights, tiling, layouts, offline behaviour.

The VGG-16 here has RANDOM weights, loaded through the real torch-hub-cache path from a
fake checkpoint: the tests check structure and properties, never pretrained values.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_superres.engine.infer.tiling import Cancelled
from napari_superres.engine.metrics.features import (
    feature_difference,
    layer_weights,
    perceptual_distance,
    vgg_geometry,
)
from napari_superres.engine.nets.vgg import VGG16_LAYERS, VGGWeightsUnavailable
from napari_superres.engine.registry import Engine
from napari_superres.engine.samples import synthetic_pair

#: Shallow layers keep the CPU tests fast; the default four are exercised once on the sample pair.
SHALLOW = ("relu1_2", "relu2_2", "relu3_3")


@pytest.fixture(scope="module")
def engine(vgg_hub_dir):
    """One engine whose VGG-16 was loaded (once for the module) from the random-weight hub cache."""
    old_dir = torch.hub.get_dir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(vgg_hub_dir.parent))
        torch.hub.set_dir(str(vgg_hub_dir))
        try:
            eng = Engine(device="cpu", builtins=False)
            eng.vgg_features()  # loads now, through the real path
        finally:
            torch.hub.set_dir(old_dir)
    return eng


@pytest.fixture(scope="module")
def pair():
    """A small uint16 pair: a noisy, blurred ``a`` against the reference ``b``."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:56, :64]
    b = 2000 + 20000 * (np.sin(yy / 3.0) * np.cos(xx / 4.0) > 0.2) + rng.normal(0, 500, (56, 64))
    a = (b + np.roll(b, 1, axis=1)) / 2 + rng.normal(0, 1500, b.shape)
    return np.clip(a, 0, 65535).astype(np.uint16), np.clip(b, 0, 65535).astype(np.uint16)


def test_sample_pair_map_is_a_yx_float32_map(engine):
    lr, hr = synthetic_pair((64, 64), scale=2, seed=0)
    sr = np.kron(lr, np.ones((2, 2), lr.dtype))  # a crude "result" on the reference grid
    fmap = feature_difference(sr, hr, engine=engine)  # the four default layers
    assert fmap.shape == hr.shape and fmap.dtype == np.float32
    assert 0 <= fmap.min() and fmap.max() <= 4 and fmap.max() > 0


def test_identical_images_give_an_all_zero_map(engine, pair):
    _, b = pair
    fmap = feature_difference(b, b.copy(), layers=SHALLOW, engine=engine)
    assert np.abs(fmap).max() <= 1e-6
    assert perceptual_distance(b, b, layers=SHALLOW, engine=engine) == pytest.approx(0, abs=1e-7)


def test_map_is_symmetric_in_a_and_b(engine, pair):
    a, b = pair
    np.testing.assert_allclose(
        feature_difference(a, b, layers=SHALLOW, engine=engine),
        feature_difference(b, a, layers=SHALLOW, engine=engine),
        atol=1e-6,
    )


def test_weighted_per_layer_maps_sum_to_the_combined_map(engine, pair):
    a, b = pair
    weights = {"relu1_2": 3.0, "relu2_2": 1.0, "relu3_3": 0.0}
    fmap, per = feature_difference(a, b, layers=SHALLOW, weights=weights, per_layer=True, engine=engine)
    assert list(per) == list(SHALLOW)
    assert all(m.shape == b.shape and m.dtype == np.float32 for m in per.values())
    np.testing.assert_allclose(fmap, 0.75 * per["relu1_2"] + 0.25 * per["relu2_2"], atol=1e-6)
    assert per["relu3_3"].max() > 0  # computed even with weight 0


@pytest.mark.parametrize(("layers", "size", "tile"), [(("relu1_2", "relu2_2"), (56, 64), 8), (SHALLOW, (96, 100), 32)])
def test_tiled_map_equals_untiled_map(engine, layers, size, tile):
    rng = np.random.default_rng(2)
    b = rng.random(size, dtype=np.float32)
    a = np.clip(b + rng.normal(0, 0.1, size).astype(np.float32), 0, 1)
    calls = []
    whole = feature_difference(a, b, layers=layers, engine=engine)
    tiled = feature_difference(a, b, layers=layers, engine=engine, tile=tile, progress=lambda d, t: calls.append(t))
    assert calls[-1] > 1 and len(calls) == calls[-1]  # really tiled, one progress report per tile
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_one_range_for_both_images_from_the_reference_dtype(engine, pair):
    a, b = pair
    as_uint16 = feature_difference(a, b, layers=SHALLOW, engine=engine)
    as_unit_float = feature_difference(a / 65535.0, b / 65535.0, layers=SHALLOW, engine=engine)
    np.testing.assert_allclose(as_unit_float, as_uint16, atol=1e-5)


def test_stacks_are_mapped_plane_by_plane_and_rgb_gives_one_map(engine, pair):
    a, b = pair
    stack_a, stack_b = np.stack([a, b, a]), np.stack([b, b, b])
    maps = feature_difference(stack_a, stack_b, layers=SHALLOW, engine=engine)
    assert maps.shape == (3, *b.shape)
    np.testing.assert_allclose(maps[0], feature_difference(a, b, layers=SHALLOW, engine=engine), atol=1e-6)
    assert np.abs(maps[1]).max() <= 1e-6
    rgb_a = np.stack([a, a // 2, b], axis=-1)
    rgb_b = np.stack([b, b // 2, b], axis=-1)
    assert feature_difference(rgb_a, rgb_b, layers=SHALLOW, engine=engine).shape == b.shape


def test_cancel_stops_between_tiles(engine, pair):
    a, b = pair
    with pytest.raises(Cancelled):
        feature_difference(a, b, layers=SHALLOW, engine=engine, should_stop=lambda: True)


def test_bad_inputs_raise_with_the_fix(engine, pair):
    a, b = pair
    with pytest.raises(ValueError, match=r"\(28, 32\).*\(56, 64\).*resample"):
        feature_difference(a[::2, ::2], b, engine=engine)
    with pytest.raises(ValueError, match="unknown VGG-16 layers"):
        layer_weights(["relu9_9"])
    with pytest.raises(ValueError, match="not all zero"):
        layer_weights(SHALLOW, [0, 0, 0])


def test_layer_weights_default_to_equal_and_sum_to_one():
    assert layer_weights(SHALLOW) == pytest.approx(dict.fromkeys(SHALLOW, 1 / 3))
    assert sum(layer_weights(SHALLOW, [1, 2, 5]).values()) == pytest.approx(1.0)


def test_halo_covers_the_receptive_field(engine):
    features = engine.vgg_features()
    rf, stride, halo = vgg_geometry(features, VGG16_LAYERS["relu4_3"])
    assert (rf, stride) == (92, 8)  # the textbook VGG-16 conv4_3 receptive field
    assert halo % stride == 0 and halo >= rf // 2 + stride


def test_offline_raises_the_download_instructions(no_vgg_cache, monkeypatch, pair):
    monkeypatch.setenv("NAPARI_SUPERRES_OFFLINE", "1")
    a, b = pair
    with pytest.raises(VGGWeightsUnavailable, match="vgg16-397923af.pth"):
        feature_difference(a, b, engine=Engine(device="cpu", builtins=False))
