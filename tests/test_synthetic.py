"""The synthetic fluorescence generator: deterministic, registered, physically plausible pairs."""

import numpy as np
import pytest

from napari_superres.engine.samples import (
    OFFSET,
    SPAN,
    bin_image,
    gaussian_blur,
    synthetic_object,
    synthetic_pair,
    synthetic_stack,
)


def test_object_is_float_in_unit_range_and_deterministic():
    a = synthetic_object((128, 160), seed=3)
    assert a.shape == (128, 160) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, synthetic_object((128, 160), seed=3))
    assert not np.array_equal(a, synthetic_object((128, 160), seed=4))
    # sparse bright structures on a dim background, not noise or a flat field
    assert np.median(a) < 0.15 and np.percentile(a, 99.9) > 0.5


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_pair_shapes_dtypes_and_seed(scale):
    lr, hr = synthetic_pair((48 * scale, 32 * scale), scale=scale, seed=1)
    assert lr.shape == (48, 32) and hr.shape == (48 * scale, 32 * scale)
    assert lr.dtype == hr.dtype == np.uint16
    lr2, hr2 = synthetic_pair((48 * scale, 32 * scale), scale=scale, seed=1)
    np.testing.assert_array_equal(lr, lr2)
    np.testing.assert_array_equal(hr, hr2)


def test_noise_free_low_res_integrates_high_res_blocks():
    lr, hr = synthetic_pair((128, 128), scale=2, seed=0, noise=False)
    # area sampling: a low-res pixel is the mean of the s x s high-res pixels it covers
    expected = bin_image(hr.astype(np.float32), 2)
    assert np.abs(lr.astype(np.float32) - expected).max() <= 1.0  # rounding only
    # and not point sampling of every other pixel
    assert np.abs(lr.astype(np.float32) - hr[::2, ::2]).max() > 50


def test_noise_is_poisson_like_and_milder_in_high_res():
    lr_clean, hr_clean = synthetic_pair((256, 256), scale=2, seed=5, noise=False)
    lr, hr = synthetic_pair((256, 256), scale=2, seed=5)
    d_lr = lr.astype(np.float64) - lr_clean
    d_hr = hr.astype(np.float64) - hr_clean
    # zero-mean noise, on the same intensity scale
    assert abs(d_lr.mean()) < 0.02 * SPAN and abs(d_hr.mean()) < 0.02 * SPAN
    assert d_hr.std() < d_lr.std()
    # shot noise: brighter pixels are noisier
    bright = lr_clean > np.percentile(lr_clean, 95)
    dim = lr_clean < np.percentile(lr_clean, 50)
    assert d_lr[bright].std() > 1.3 * d_lr[dim].std()
    assert lr.min() >= 0 and np.median(lr) > OFFSET


def test_pair_rejects_scale_that_does_not_divide_shape():
    with pytest.raises(ValueError, match="multiple of scale"):
        synthetic_pair((100, 100), scale=3)
    with pytest.raises(ValueError, match="positive"):
        synthetic_pair((100, 100), scale=0)


def test_blur_preserves_total_intensity_and_smooths():
    img = np.zeros((41, 41), np.float32)
    img[20, 20] = 1.0
    out = gaussian_blur(img, 2.0)
    assert out.sum() == pytest.approx(1.0, rel=1e-4)
    assert out[20, 20] == pytest.approx(1 / (2 * np.pi * 4), rel=0.05)
    np.testing.assert_allclose(out, out.T, atol=1e-7)


def test_stack_planes_are_correlated_neighbours():
    lr, hr = synthetic_stack(6, (128, 128), scale=2, seed=2, noise=False)
    assert lr.shape == (6, 64, 64) and hr.shape == (6, 128, 128) and hr.dtype == np.uint16
    # compare the fine structures (filaments, puncta), not the smooth background
    detail = [h - gaussian_blur(h, 8.0) for h in hr.astype(np.float32)]

    def corr(a, b):
        return np.corrcoef(a.ravel(), b.ravel())[0, 1]

    assert corr(detail[0], detail[1]) > corr(detail[0], detail[5]) + 0.2
    assert corr(detail[2], detail[3]) > corr(detail[2], detail[5]) + 0.2
