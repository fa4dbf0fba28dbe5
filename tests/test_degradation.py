"""Synthetic low-res images: shapes, per-patch randomisation, methods that differ."""

from __future__ import annotations

import pytest
import torch

from napari_superres.engine.train.degradation import DOWNSAMPLING_METHODS, DegradationConfig, degrade, downsample


@pytest.fixture
def hr() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 1, 24, 24, generator=g)


@pytest.mark.parametrize("method", DOWNSAMPLING_METHODS)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_every_method_gives_the_low_res_shape(hr, method, scale):
    cfg = DegradationConfig(scale=scale, methods=(method,), blur_sigma=None)
    lr = degrade(hr, cfg, torch.Generator().manual_seed(0))
    assert lr.shape == (6, 1, 24 // scale, 24 // scale)
    assert lr.dtype == hr.dtype and 0.0 <= float(lr.min()) and float(lr.max()) <= 1.0


def test_area_is_block_mean_and_nearest_differs(hr):
    area = downsample(hr, 2, "area")
    assert torch.allclose(area[0, 0, 0, 0], hr[0, 0, :2, :2].mean())
    nearest = downsample(hr, 2, "nearest")
    assert not torch.allclose(area, nearest, atol=1e-3)
    assert nearest[0, 0, 0, 0] == hr[0, 0, 1, 1]  # the pixel at the block centre


def test_degradation_is_randomised_per_patch_and_seeded():
    same = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(1)).expand(16, -1, -1, -1)
    cfg = DegradationConfig(scale=2, blur_sigma=(0.0, 2.0), blur_prob=0.5, noise_gaussian=(0.0, 0.05), noise_prob=0.5)
    lr, params = degrade(same, cfg, torch.Generator().manual_seed(0), return_params=True)
    # the same high-res patch gets different low-res versions
    distinct = {tuple(lr[i].flatten()[:8].tolist()) for i in range(16)}
    assert len(distinct) > 8
    assert len({p["method"] for p in params}) > 1
    assert any("blur_sigma" in p for p in params) and not all("blur_sigma" in p for p in params)
    again = degrade(same, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(lr, again)  # seeded: reproducible
    other = degrade(same, cfg, torch.Generator().manual_seed(1))
    assert not torch.equal(lr, other)


def test_poisson_noise_grows_as_photons_fall():
    flat = torch.full((8, 1, 32, 32), 0.5)
    few = degrade(flat, DegradationConfig(scale=2, methods=("area",), blur_sigma=None, noise_poisson=(10, 10), noise_prob=1),
                  torch.Generator().manual_seed(0))  # fmt: skip
    many = degrade(flat, DegradationConfig(scale=2, methods=("area",), blur_sigma=None, noise_poisson=(1e4, 1e4), noise_prob=1),
                   torch.Generator().manual_seed(0))  # fmt: skip
    assert float(few.std()) > 5 * float(many.std())
    assert float(few.mean()) == pytest.approx(0.5, abs=0.05)


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="unknown downsampling"):
        DegradationConfig(methods=("lanczos",))
    with pytest.raises(ValueError, match="blur_sigma"):
        DegradationConfig(blur_sigma=(2.0, 1.0))
    with pytest.raises(ValueError, match="blur_prob"):
        DegradationConfig(blur_prob=2.0)
    with pytest.raises(ValueError, match="multiple of the scale"):
        downsample(torch.zeros(1, 1, 9, 9), 2, "area")


def test_percentile_normalised_training_keeps_bright_structures_above_one():
    """Inference sees percentile-normalised values above 1 unclipped, so training inputs keep them too;
    dtype-normalised data (a camera's full scale) is clipped to [0, 1]."""
    import numpy as np

    from napari_superres.engine.train.trainer import make_pair_source

    rng = np.random.default_rng(0)
    plane = rng.integers(100, 200, size=(64, 64)).astype(np.uint16)
    plane[10:60:25, 10:60:25] = 4000  # four bright 1-px spots (0.1 % of pixels), far above the 99.8th percentile
    common = dict(scale=2, patch_size=32, val_fraction=0.0, seed=0, degradation={"blur_sigma": None})

    percentile = make_pair_source([plane], normalization="percentile", **common)
    assert percentile.degradation.clip is False
    dtype = make_pair_source([plane], normalization="dtype", **common)
    assert dtype.degradation.clip is True

    lr, hr = percentile.sample(32)
    assert float(hr.max()) > 2.0 and float(lr.max()) > 2.0  # the spot reaches the network unclipped
    lr, hr = dtype.sample(32)
    assert float(lr.max()) <= 1.0


def test_shot_noise_keeps_values_below_the_percentile_range():
    below = torch.full((4, 1, 16, 16), -0.05)
    cfg = DegradationConfig(
        scale=2, methods=("area",), blur_sigma=None, noise_poisson=(100, 100), noise_prob=1, clip=False
    )
    lr = degrade(below, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(lr, torch.full_like(lr, -0.05))  # no photons to count: no shot noise, offset kept


def test_target_blur_gives_blurred_patches_a_finer_optics_target(hr):
    """``target_blur``: a patch blurred by sigma gets a target blurred by ``target_blur * sigma``;
    unblurred patches keep the sharp high-res patch."""
    from napari_superres.engine.train.degradation import blurred_target, gaussian_blur

    cfg = DegradationConfig(scale=2, blur_sigma=(1.0, 3.0), blur_prob=0.5, target_blur=0.5)
    _, params = degrade(hr, cfg, torch.Generator().manual_seed(3), return_params=True)
    assert {"blur_sigma" in p for p in params} == {True, False}  # both kinds in this batch
    target = blurred_target(hr, params, cfg)
    for i, p in enumerate(params):
        expected = gaussian_blur(hr[i : i + 1], 0.5 * p["blur_sigma"])[0] if "blur_sigma" in p else hr[i]
        assert torch.allclose(target[i], expected)
    # the default (0) trains towards the sharp patch
    assert blurred_target(hr, params, DegradationConfig(scale=2)) is hr
    with pytest.raises(ValueError, match="target_blur"):
        DegradationConfig(target_blur=1.5)
