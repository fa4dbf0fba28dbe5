"""PSNR, SSIM and pixel maps: the figures equal scikit-image's, the maps have the documented layout."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from napari_superres.engine.metrics import pixel as metrics
from napari_superres.engine.metrics.compare import compare
from napari_superres.engine.metrics.pixel import (
    PlaneLayout,
    absolute_error_map,
    psnr,
    psnr_y,
    squared_error_map,
    ssim,
    ssim_map,
)
from napari_superres.engine.registry import Engine

WANG = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


def noisy_pair(rng, shape=(48, 56), dtype=np.uint16, noise=0.05):
    """A smooth reference ``b`` plus mild noise and a noisier ``a``; Y, X first, any trailing axes."""
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    base = (0.5 + 0.3 * np.sin(yy / 5.0) * np.cos(xx / 7.0)).reshape(shape[:2] + (1,) * (len(shape) - 2))
    b = np.broadcast_to(base, shape) + rng.normal(0, 0.02, shape)
    a = b + rng.normal(0, noise, shape)
    return (np.clip(a, 0, 1) * top).astype(dtype), (np.clip(b, 0, 1) * top).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_psnr_equals_scikit_image_with_dtype_range(rng, dtype):
    a, b = noisy_pair(rng, dtype=dtype)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(b, a), abs=1e-3)


def test_psnr_float_with_explicit_data_range_equals_scikit_image(rng):
    a, b = noisy_pair(rng, dtype=np.float32)
    a, b = a * 300 + 20, b * 300 + 20  # float in arbitrary units: pass the range
    assert psnr(a, b, data_range=300) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=300), abs=1e-3)


def test_psnr_is_symmetric_and_infinite_for_identical_images(rng):
    a, b = noisy_pair(rng)
    assert psnr(a, b) == pytest.approx(psnr(b, a), abs=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero warning
        assert psnr(b, b.copy()) == math.inf


def test_psnr_y_is_the_literature_y_channel_with_border_crop(rng):
    a, b = noisy_pair(rng, shape=(40, 44, 3), dtype=np.uint8)
    scale = 2
    ya, yb = rgb2ycbcr(a)[..., 0], rgb2ycbcr(b)[..., 0]  # MATLAB-style Y in [16, 235]
    crop = (slice(scale, -scale), slice(scale, -scale))
    expected = peak_signal_noise_ratio(yb[crop], ya[crop], data_range=255)
    assert psnr_y(a, b, crop_border=scale) == pytest.approx(expected, abs=1e-3)
    assert psnr_y(b, b, crop_border=scale) == math.inf
    with pytest.raises(ValueError, match="RGB"):
        psnr_y(a[..., 0], b[..., 0])


def test_ssim_equals_scikit_image_for_uint16(rng):
    a, b = noisy_pair(rng)
    assert ssim(a, b) == pytest.approx(structural_similarity(a, b, data_range=65535, **WANG), abs=1e-3)


def test_ssim_equals_scikit_image_for_float_with_offset(rng):
    a, b = noisy_pair(rng, dtype=np.float64)
    a, b = a * 50 + 1000, b * 50 + 1000  # a large offset: float64 keeps the variances exact
    expected = structural_similarity(a, b, data_range=50, **WANG)
    assert ssim(a, b, data_range=50) == pytest.approx(expected, abs=1e-3)


def test_ssim_of_rgb_averages_channels_like_scikit_image(rng):
    a, b = noisy_pair(rng, shape=(40, 44, 3), dtype=np.uint8)
    expected = structural_similarity(a, b, channel_axis=-1, data_range=255, **WANG)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-3)  # RGB guessed as napari does
    assert ssim(a, b, channel_axis=-1) == pytest.approx(expected, abs=1e-3)


def test_ssim_map_is_scikit_image_full_map_with_input_shape(rng):
    a, b = noisy_pair(rng)
    mean, full = structural_similarity(a, b, data_range=65535, full=True, **WANG)
    smap = ssim_map(a, b)
    assert smap.shape == b.shape and smap.dtype == np.float32
    np.testing.assert_allclose(smap, full, atol=1e-4)
    assert smap[5:-5, 5:-5].mean() == pytest.approx(mean, abs=1e-4)
    np.testing.assert_allclose(ssim_map(b, b), 1.0, atol=1e-5)


def test_pixel_error_maps_are_in_intensity_units(rng):
    a, b = noisy_pair(rng)
    abs_map, sq_map = absolute_error_map(a, b), squared_error_map(a, b)
    assert abs_map.shape == sq_map.shape == b.shape
    assert abs_map.dtype == sq_map.dtype == np.float32
    np.testing.assert_array_equal(abs_map, np.abs(a.astype(np.float32) - b.astype(np.float32)))
    assert sq_map.mean(dtype=np.float64) == pytest.approx(metrics.mse(a, b), rel=1e-5)
    np.testing.assert_array_equal(absolute_error_map(b, a), abs_map)  # symmetric


def test_rgb_maps_drop_the_colour_axis_and_stacks_keep_leading_axes(rng):
    a, b = noisy_pair(rng, shape=(24, 28, 3), dtype=np.uint8)
    assert absolute_error_map(a, b).shape == (24, 28)
    assert ssim_map(a, b).shape == (24, 28)
    stack_a, stack_b = noisy_pair(rng, shape=(24, 28, 3), dtype=np.uint16)  # read as a Z stack below
    zyx_a, zyx_b = np.moveaxis(stack_a, -1, 0), np.moveaxis(stack_b, -1, 0)
    maps = ssim_map(zyx_a, zyx_b)
    assert maps.shape == (3, 24, 28)
    np.testing.assert_allclose(maps[1], ssim_map(zyx_a[1], zyx_b[1]))
    # an axes string puts the map in the input's own axis order
    yxz = absolute_error_map(stack_a, stack_b, axes="YXZ")
    assert yxz.shape == (24, 28, 3)
    np.testing.assert_array_equal(yxz[..., 2], absolute_error_map(zyx_a[2], zyx_b[2]))


def test_plane_layout_round_trip():
    layout = PlaneLayout.of((2, 5, 6, 3), axes="TYXS")
    image = np.arange(2 * 5 * 6 * 3).reshape(2, 5, 6, 3)
    planes = list(layout.planes(image))
    assert len(planes) == 2 and planes[1].shape == (3, 5, 6)
    np.testing.assert_array_equal(planes[1][2], image[1, :, :, 2])
    maps = layout.empty_maps()
    maps[:] = np.arange(2)[:, None, None]
    assert layout.assemble(maps).shape == (2, 5, 6)


def test_mismatched_shapes_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(8, 8\).*\(16, 16\)"):
        psnr(np.zeros((8, 8)), np.zeros((16, 16)))


def test_compare_gives_every_figure_and_no_perceptual_offline(rng, no_vgg_cache, monkeypatch):
    monkeypatch.setenv("NAPARI_SUPERRES_OFFLINE", "1")
    a, b = noisy_pair(rng)
    figures = compare(a, b, engine=Engine(device="cpu", builtins=False))
    assert figures["psnr"] == pytest.approx(peak_signal_noise_ratio(b, a), abs=1e-3)
    assert figures["ssim"] == pytest.approx(structural_similarity(a, b, data_range=65535, **WANG), abs=1e-3)
    assert figures["psnr_y"] is None  # grayscale
    assert figures["perceptual"] is None
    assert "vgg16-397923af.pth" in figures["perceptual_note"]


def test_compare_perceptual_with_random_vgg_is_a_non_negative_mean(rng, fake_vgg_cache):
    """Random (not pretrained) weights: only the structure is checked."""
    a, b = noisy_pair(rng, shape=(32, 32))
    engine = Engine(device="cpu", builtins=False)
    figures = compare(a, b, engine=engine, layers=("relu1_2", "relu2_2"))
    assert figures["perceptual"] > 0
    assert compare(b, b, engine=engine, layers=("relu1_2", "relu2_2"))["perceptual"] == pytest.approx(0, abs=1e-7)
