"""Reference-free consistency map: re-degrade the output, compare with the input at its noise level."""

from __future__ import annotations

import numpy as np
import pytest

from napari_superres.engine.metrics.consistency import INCONSISTENT_LEVEL, consistency, redegrade
from napari_superres.engine.noise import estimate_noise
from napari_superres.engine.samples import synthetic_pair

BLOB = (60, 190)  # where the invented object goes (high-res px), in an empty part of the field


@pytest.fixture(scope="module")
def pair():
    return synthetic_pair((256, 256), 2, seed=0)  # (low_res, high_res) uint16, area-binned, noisy


def _blob(shape, amplitude, sigma=3.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return amplitude * np.exp(-((yy - BLOB[0]) ** 2 + (xx - BLOB[1]) ** 2) / (2 * sigma**2))


def test_noise_fit_recovers_poisson_gaussian_parameters():
    rng = np.random.default_rng(0)
    clean = np.repeat(np.linspace(10, 500, 256)[None], 256, axis=0)  # smooth ramp of expected photons
    image = rng.poisson(clean) + rng.normal(0, 3.0, clean.shape)  # gain 1, read noise variance 9
    noise = estimate_noise(image)
    assert noise.gain == pytest.approx(1.0, rel=0.15)
    assert noise.offset == pytest.approx(9.0, abs=6.0)
    assert noise.sigma(400.0) == pytest.approx(np.sqrt(409.0), rel=0.1)


def test_true_high_res_is_consistent_at_the_noise_level(pair):
    low, high = pair
    result = consistency(low, high)
    assert result.map.shape == high.shape and result.map.dtype == np.float32
    assert result.settings == {"scale": 2, "method": "area", "blur_sigma": 0.0, "smooth": 1.0}
    assert result.rms == pytest.approx(1.0, abs=0.25)  # the residual is the input's noise
    assert abs(result.psnr - result.noise_psnr) < 1.5
    assert np.percentile(result.map, 99.9) < INCONSISTENT_LEVEL
    assert result.inconsistent_fraction < 1e-3
    assert "consistent with the input" in result.summary()


def test_bicubic_upscale_is_consistent(pair):
    import torch
    import torch.nn.functional as F

    low, _ = pair
    up = F.interpolate(torch.from_numpy(low.astype(np.float32))[None, None], scale_factor=2, mode="bicubic")[0, 0]
    result = consistency(low, up.numpy(), 2)
    assert result.map.max() < INCONSISTENT_LEVEL
    assert result.psnr > result.noise_psnr  # it even reproduces the noise


def test_an_invented_object_lights_up_only_where_it_is(pair):
    low, high = pair
    amplitude = float(np.percentile(high, 99.5) - np.median(high))
    wrong = high.astype(np.float32) + _blob(high.shape, amplitude)
    result = consistency(low, wrong)
    m = result.map
    at_object = m[BLOB[0] - 4 : BLOB[0] + 5, BLOB[1] - 4 : BLOB[1] + 5]
    elsewhere = np.ones(m.shape, bool)
    elsewhere[BLOB[0] - 16 : BLOB[0] + 17, BLOB[1] - 16 : BLOB[1] + 17] = False
    assert at_object.max() > 2 * INCONSISTENT_LEVEL
    assert np.percentile(m[elsewhere], 99.9) < INCONSISTENT_LEVEL
    assert np.unravel_index(np.argmax(m), m.shape) == pytest.approx(BLOB, abs=6)
    assert "NOT fully supported" in result.summary()


def test_degradation_settings_and_stacks(pair):
    low, high = pair
    stack_low, stack_high = np.stack([low, low]), np.stack([high, high]).astype(np.float32)
    r = consistency(stack_low, stack_high, degradation={"methods": ["bicubic", "area"], "blur_sigma": [0.5, 1.5]})
    assert r.map.shape == stack_high.shape and r.settings["method"] == "area" and r.settings["blur_sigma"] == 1.0
    r = consistency(low, high, degradation="bicubic", blur_sigma=0.0, smooth=0)
    assert r.settings["method"] == "bicubic"
    assert redegrade(np.ones((4, 6), np.float32), 2, "bilinear").shape == (2, 3)


def test_clear_errors(pair):
    low, high = pair
    with pytest.raises(ValueError, match="multiple"):
        consistency(low, high[:-1])
    with pytest.raises(ValueError, match="exactly scale"):
        consistency(low, high, 4)
    with pytest.raises(ValueError, match="unknown re-degradation"):
        consistency(low, high, degradation="lanczos")
    with pytest.raises(ValueError, match="NaN"):
        consistency(low, np.full(high.shape, np.nan, np.float32))
    with pytest.raises(ValueError, match="same leading axes"):
        consistency(low, high[None])
