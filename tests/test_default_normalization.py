"""Training with default settings works on real intensity ranges (issue 9, item 1).

Microscopy data rarely fills its dtype: the pair used here is uint16 with the signal in
about 3000 counts above a camera offset.  The training default (per-image percentile
normalisation, the low-res range carried over to the high-res image) must learn from it,
and validation figures must be on the data's own range.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_superres.engine import Engine
from napari_superres.engine.metrics.pixel import psnr, ssim
from napari_superres.engine.normalization import DEFAULT_NORMALIZATION, matched_range, normalize
from napari_superres.engine.samples import bin_image, gaussian_blur, synthetic_object
from napari_superres.engine.train.trainer import TrainConfig, Trainer, make_pair_source

#: The only non-default settings: a small network and a short run, so the test takes seconds.
SMALL = dict(steps=300, batch_size=8, patch_size=64, net={"channels": 16, "blocks": 2}, val_every=0, device="cpu")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Tiny networks (see conftest.one_torch_thread)."""


def dim_pair(seed: int, shape=(192, 256), scale=2, span=3000, offset=400) -> tuple[np.ndarray, np.ndarray]:
    """uint16 ``(lq, gt)``: gt = object * PSF 1.5; lq = wider PSF (2.5), binned, Poisson-Gaussian noise.

    Both on one intensity scale: ``offset + span * value`` (signal within ~3000 of 65535 counts).
    """
    obj = synthetic_object(shape, seed)
    rng = np.random.default_rng(seed)
    gt = gaussian_blur(obj, 1.5)
    lq = bin_image(gaussian_blur(obj, 2.5), scale)
    photons = 30.0
    lq = rng.poisson(np.clip(lq, 0, None) * photons) / photons + rng.normal(0.0, 0.02, lq.shape)

    def to_uint16(a: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(offset + span * a), 0, 65535).astype(np.uint16)

    return to_uint16(lq), to_uint16(gt)


def bicubic(image: np.ndarray, scale: int = 2) -> np.ndarray:
    x = torch.from_numpy(image.astype(np.float32))[None, None]
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)[0, 0].double().numpy()


def test_default_training_on_a_dim_uint16_pair_beats_bicubic_on_a_held_out_image():
    lq, gt = dim_pair(seed=0)
    assert gt.max() - gt.min() < 4000  # a sliver of the uint16 range
    data = make_pair_source([gt], [lq], scale=2, patch_size=SMALL["patch_size"])  # default normalization
    trainer = Trainer(TrainConfig(**SMALL), data)  # default normalization, loss, schedule, EMA
    trainer.run()
    model = trainer.model("dim x2")
    assert model.normalization == DEFAULT_NORMALIZATION

    test_lq, test_gt = dim_pair(seed=5)  # another field of view, never trained on
    out = Engine(device="cpu", builtins=False).upscale(test_lq, model)
    assert out.dtype == np.uint16 and out.shape == test_gt.shape
    ref = test_gt.astype(np.float64)
    data_range = float(ref.max() - ref.min())
    gain = psnr(out.astype(np.float64), ref, data_range=data_range) - psnr(bicubic(test_lq), ref, data_range=data_range)
    assert gain > 2.0, gain  # measured +3.8 dB
    assert (
        ssim(out.astype(np.float64), ref, data_range=data_range)
        > ssim(bicubic(test_lq), ref, data_range=data_range) + 0.2
    )


def test_validation_figures_are_on_the_data_range_not_the_dtype_range():
    lq, gt = dim_pair(seed=1)
    # dtype normalisation: values in a sliver of [0, 1]; the old report said ~56 dB for anything
    data = make_pair_source([gt], [lq], scale=2, patch_size=32, normalization="dtype")
    trainer = Trainer(TrainConfig(**{**SMALL, "steps": 1, "patch_size": 32, "normalization": {"mode": "dtype"}}), data)
    report = trainer.validate()
    expected = []
    for lq_region, gt_region in data.validation():
        raw_gt = gt_region[0].astype(np.float64) * 65535
        raw_bicubic = bicubic(lq_region[0] * 65535)
        expected.append(psnr(raw_bicubic, raw_gt, data_range=float(raw_gt.max() - raw_gt.min())))
    assert report.bicubic_psnr == pytest.approx(np.mean(expected), abs=0.05)
    assert report.bicubic_psnr < 35  # what a microscopist expects for blurred, noisy data
    assert "data_range" in report.to_dict()

    # the figures do not depend on the normalisation: percentile data scores bicubic the same way
    data_p = make_pair_source([gt], [lq], scale=2, patch_size=32)
    report_p = Trainer(TrainConfig(**{**SMALL, "steps": 1, "patch_size": 32}), data_p).validate()
    assert report_p.bicubic_psnr == pytest.approx(report.bicubic_psnr, abs=0.5)


@pytest.mark.parametrize(
    "dtype, low, high",
    [
        (np.uint8, 10, 250),  # bright 8-bit
        (np.uint8, 2, 30),  # dim 8-bit
        (np.uint16, 100, 4095),  # 12-bit camera stored as uint16
        (np.uint16, 400, 3400),  # dim 16-bit
        (np.uint16, 1000, 60000),  # bright 16-bit
        (np.float32, 0.001, 0.02),  # float, small values
        (np.float32, -5.0, 1e4),  # float, arbitrary units
    ],
)
def test_default_normalization_maps_any_intensity_range_to_unit_scale(dtype, low, high):
    obj = gaussian_blur(synthetic_object((96, 96), seed=2), 1.5)
    obj = obj / obj.max()
    gt = (low + (high - low) * obj).astype(dtype)
    lq = (low + (high - low) * bin_image(obj, 2)).astype(dtype)
    data = make_pair_source([gt], [lq], scale=2, patch_size=32, val_fraction=0.0)
    lq_b, gt_b = data.sample(16)
    for batch in (lq_b, gt_b):
        top = float(torch.quantile(batch.flatten(), 0.995))
        assert 0.3 < top < 1.5, (dtype, low, high, top)
        assert float(batch.min()) > -0.5


def test_pairs_on_different_intensity_scales_share_one_normalised_scale():
    lq, gt = dim_pair(seed=3)
    darker = (0.3 * lq.astype(np.float64) + 50).astype(np.uint16)  # another exposure and offset
    lq_range = (float(np.percentile(darker, 1)), float(np.percentile(darker, 99.8)))
    gt_range = matched_range(gt, darker, 2, lq_range)
    assert gt_range is not None
    norm_gt = normalize(bin_image(gt.astype(np.float64), 2), *gt_range)
    norm_lq = normalize(darker, *lq_range)
    assert float(norm_gt.mean()) == pytest.approx(float(norm_lq.mean()), abs=0.02)
    background = bin_image(gt.astype(np.float64), 2) <= np.quantile(bin_image(gt.astype(np.float64), 2), 0.2)
    assert float(norm_gt[background].mean()) == pytest.approx(float(norm_lq[background].mean()), abs=0.02)
    assert matched_range(np.full((8, 8), 7.0), np.full((4, 4), 3.0), 2, (0.0, 1.0)) is None  # flat: no fit
