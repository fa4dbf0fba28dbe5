"""Degradation-conditioned networks: the image's noise and blur are estimated once and told to the network
(issue 21: a built-in model that knows the microscope)."""

from __future__ import annotations

import math
from dataclasses import replace

import dask.array as da
import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from napari_superres import upscale
from napari_superres.engine import Engine, SRModel, SRNet, SRNetConfig, load_model, save_model
from napari_superres.engine.blur import gaussian_blur as torch_blur
from napari_superres.engine.infer.blur_check import (
    checked_condition,
    recorded_max_blur,
    trained_blur_ceiling,
    within_trained_blur,
)
from napari_superres.engine.infer.conditioning import DegradationRequest, describe_condition
from napari_superres.engine.infer.lazy import global_value_ranges
from napari_superres.engine.infer.pipeline import bounded_forward
from napari_superres.engine.nets.conditioning import (
    CLEAN,
    COND_CHANNELS,
    NOISE_MAP_GAIN,
    PIXEL_BLUR_SIGMA,
    DegradationCondition,
    condition_maps,
    estimate_condition,
    inference_condition,
    low_res_condition,
)
from napari_superres.engine.nets.srnet import conditioned_copy
from napari_superres.engine.noise import MAX_BLUR_SIGMA, estimate_blur
from napari_superres.engine.normalization import NETWORK_INPUT_RANGE, fill_value, intensity_range, normalize
from napari_superres.engine.samples import bin_image, gaussian_blur, synthetic_object
from napari_superres.engine.train.data import make_pair_source
from napari_superres.engine.train.degradation import DegradationConfig
from napari_superres.engine.train.estimate import estimate_image
from napari_superres.engine.train.trainer import TrainConfig, Trainer

PERCENTILE = {"mode": "percentile", "low": 1.0, "high": 99.8}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small networks (see conftest.one_torch_thread)."""


def conditioned_model(seed: int = 0) -> SRModel:
    """A tiny conditioned x2 network whose map weights are not zero (so the condition matters)."""
    torch.manual_seed(seed)
    net = SRNet(SRNetConfig(scale=2, channels=8, blocks=1, cond_channels=COND_CHANNELS)).eval()
    return SRModel("tiny conditioned", net, 2, 1, normalization=dict(PERCENTILE))


def acquire(clean: np.ndarray, seed: int = 0, photons: float = 300.0) -> np.ndarray:
    """A uint16 camera acquisition (offset 100 counts, read noise 2) of ``clean`` (0 to 1)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.poisson(clean * photons) + 100 + rng.normal(0, 2, clean.shape), 0, 65535).astype(np.uint16)


def camera_image(seed: int = 0, shape=(128, 128), psf: float = 2.0, photons: float = 300.0) -> np.ndarray:
    """A blurred, noisy uint16 acquisition (offset 100 counts) of a synthetic fluorescence field."""
    clean = gaussian_blur(synthetic_object(shape, seed), psf)
    return acquire(clean / clean.max(), seed, photons)


def normalised(image: np.ndarray) -> np.ndarray:
    return normalize(image, *intensity_range(image, PERCENTILE))


# --- the network ------------------------------------------------------------------------------------
def test_a_conditioned_copy_starts_as_the_blind_network():
    torch.manual_seed(0)
    blind = SRNet(SRNetConfig(scale=2, channels=8, blocks=2)).eval()
    cond = conditioned_copy(blind).eval()
    x = torch.rand(2, 1, 24, 24)
    noisy = DegradationCondition(noise_gain=0.01, noise_offset=1e-4, blur_sigma=1.5).as_tensor()
    with torch.no_grad():
        assert torch.allclose(cond(x, noisy), blind(x), atol=1e-6)  # the maps' weights start at zero
    assert cond.config.cond_channels == COND_CHANNELS and cond.head[0].in_channels == 1 + COND_CHANNELS


def test_the_condition_changes_what_a_conditioned_network_computes():
    net = conditioned_model().net
    x = torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        clean = net(x)  # no condition: clean and sharp
        assert torch.equal(clean, net(x, CLEAN.as_tensor()))
        blurred = net(x, DegradationCondition(blur_sigma=1.5).as_tensor())
    assert not torch.allclose(clean, blurred)


def test_noise_map_follows_shot_noise_and_blur_map_is_constant():
    x = torch.tensor([[[[0.0, 0.25], [1.0, 4.0]]]])
    maps = condition_maps(x, DegradationCondition(noise_gain=0.01, noise_offset=0.0004, blur_sigma=1.2).as_tensor())
    expected = torch.sqrt(0.01 * x + 0.0004) * NOISE_MAP_GAIN
    assert torch.allclose(maps[:, :1], expected)
    assert torch.unique(maps[:, 1]).numel() == 1


def test_a_conditioned_model_file_round_trips(tmp_path):
    model = conditioned_model()
    path = save_model(tmp_path / "cond.safetensors", model.net, normalization=PERCENTILE)
    loaded = load_model(path)
    assert loaded.cond_channels == COND_CHANNELS
    x = torch.rand(1, 1, 16, 16)
    c = DegradationCondition(noise_gain=0.02, blur_sigma=1.0).as_tensor()
    with torch.no_grad():
        assert torch.allclose(loaded.net(x, c), model.net(x, c))


# --- conditions of images ------------------------------------------------------------------------------
@pytest.mark.parametrize("added_blur, photons", [(0.0, None), (2.0, 500.0), (3.0, 100.0)])
def test_training_conditions_predict_what_the_estimator_reads(added_blur, photons):
    """The condition a training patch is labelled with (from what was drawn) is what inference will estimate."""
    hr = gaussian_blur(synthetic_object((512, 512), 7), 1.0)
    hr = hr / hr.max()
    own = estimate_condition([hr])
    lr = bin_image(gaussian_blur(hr, added_blur) if added_blur else hr, 2)
    params: dict[str, float] = {"blur_sigma": added_blur}
    if photons:
        lr = np.random.default_rng(0).poisson(np.clip(lr, 0, None) * photons) / photons
        params["poisson_peak"] = photons
    predicted = low_res_condition(own, params, 2)
    measured = estimate_condition([lr])
    assert measured.blur_sigma == pytest.approx(predicted.blur_sigma, rel=0.2)
    if photons:
        assert measured.peak_photons == pytest.approx(photons, rel=0.3)
    else:
        assert measured.noise_gain < 1e-3


def test_training_batches_carry_the_maps_of_the_drawn_degradation():
    hr = (gaussian_blur(synthetic_object((192, 192), 1), 1.0) * 4000).astype(np.uint16)
    noisy = {"methods": ("area",), "blur_sigma": None, "noise_poisson": (30.0, 30.0), "noise_prob": 1.0}
    clean = {"methods": ("area",), "blur_sigma": None, "noise_prob": 0.0}
    batches = {}
    for name, degradation in (("noisy", noisy), ("clean", clean)):
        source = make_pair_source([hr], scale=2, patch_size=32, degradation=degradation, condition=True, seed=0)
        lr, gt = source.sample(4)
        assert lr.shape == (4, 1 + COND_CHANNELS, 16, 16) and gt.shape == (4, 1, 32, 32)
        batches[name] = lr
    assert batches["noisy"][:, 1].mean() > 3 * batches["clean"][:, 1].mean()  # the noise map says "noisy"
    region_lr, region_hr = make_pair_source([hr], scale=2, patch_size=32, condition=True).validation()[0]
    assert region_lr.shape[0] == 1 + COND_CHANNELS and region_hr.shape[0] == 1


def test_the_trainer_feeds_a_conditioned_network_its_maps():
    hr = (gaussian_blur(synthetic_object((128, 128), 2), 1.0) * 4000).astype(np.uint16)
    config = TrainConfig(scale=2, steps=2, batch_size=2, patch_size=32, val_every=2, device="cpu", init="none")
    source = make_pair_source([hr], scale=2, patch_size=32)  # built for a blind network
    trainer = Trainer(config, source, net=conditioned_model().net.train())
    assert source.cond_channels == COND_CHANNELS  # the data now gives what the network reads
    result = trainer.run()
    assert result.steps_done == 2 and result.final_validation is not None
    Trainer(config, source, net=SRNet(SRNetConfig(scale=2, channels=8, blocks=1)))
    assert source.cond_channels == 0 and source.sample(1)[0].shape[1] == 1


# --- the request ---------------------------------------------------------------------------------------
def test_degradation_requests_read_every_accepted_form():
    assert DegradationRequest.parse(None).needs_image and DegradationRequest.parse("auto").needs_image
    assert not DegradationRequest.parse("clean").needs_image
    override = DegradationRequest.parse({"blur_sigma": 1.2, "peak_photons": 400})
    assert override.fixed == {"blur_sigma": 1.2, "noise_gain": 1 / 400} and override.needs_image  # read noise estimated
    fixed = DegradationRequest.parse(DegradationCondition(noise_gain=0.01, blur_sigma=1.0))
    assert fixed.resolve(lambda: pytest.fail("a fixed condition looks at no image")).blur_sigma == 1.0
    from_config = DegradationRequest.parse(
        DegradationConfig(scale=2, methods=("area",), blur_sigma=(2.0, 2.0), blur_prob=1)
    )
    assert from_config.resolve(list).blur_sigma == pytest.approx(math.sqrt((0.29**2 + 4) / 4 + 3 / 48), rel=0.02)
    for bad, match in (("blurry", "auto"), ({"sigma": 1}, "unknown degradation keys"), ({"peak_photons": 0}, "> 0")):
        with pytest.raises(ValueError, match=match):
            DegradationRequest.parse(bad)


def test_upscale_estimates_the_degradation_once_and_takes_overrides():
    engine = Engine(device="cpu", builtins=False)
    model = conditioned_model()
    image = camera_image()
    estimate = engine.estimate_degradation(image, model)
    assert estimate is not None and estimate.peak_photons is not None
    assert "blur σ" in describe_condition(estimate)
    auto = upscale(image, model, engine=engine)
    assert np.array_equal(auto, upscale(image, model, engine=engine, degradation=estimate))
    overridden = upscale(image, model, engine=engine, degradation={"blur_sigma": 0.3})
    assert not np.array_equal(auto, overridden)
    blind = SRModel("blind", SRNet(SRNetConfig(scale=2, channels=8, blocks=1)).eval(), 2, 1, dict(PERCENTILE))
    assert engine.estimate_degradation(image, blind) is None
    assert np.array_equal(
        upscale(image, blind, engine=engine), upscale(image, blind, engine=engine, degradation="clean")
    )


def test_a_network_that_under_sharpens_at_the_estimate_is_told_more_blur(sharpens_when_told):
    field = torch.from_numpy(synthetic_object((128, 128), 5).astype(np.float32))[None, None]
    plane = torch.nn.functional.avg_pool2d(torch_blur(field, 1.5), 2)[0, 0].numpy()  # optics 1.5 output px
    estimate = DegradationCondition(noise_gain=1e-3, blur_sigma=0.8)  # read too narrow
    # told 0.8 px it explains the image with no further blur: told 1.2x (0.96 px) it sharpens, and is told that
    start = sharpens_when_told(field, enough=0.95, forward=1.5)
    assert checked_condition(start, plane, estimate, scale=2, target_blur=0.5).blur_sigma == pytest.approx(0.96)
    # one that sharpens at the estimate already, and one that never does, are told the estimate
    for enough in (0.5, 10.0):
        net = sharpens_when_told(field, enough=enough, forward=1.5)
        assert checked_condition(net, plane, estimate, scale=2, target_blur=0.5) == estimate
    # never past the widest blur the network was trained on (a built-in's: its training's widest, in low-res px)
    trained = SRModel("x2", start, 2, 1, metadata={"config": {"degradation": {"blur_sigma": [1.8, 3.4]}}})
    assert recorded_max_blur(trained) == pytest.approx(math.sqrt(1.7**2 + 1 / 12))
    assert checked_condition(start, plane, estimate, scale=2, target_blur=0.5, max_blur=0.9) == estimate


def test_a_network_that_half_sharpens_is_told_more_only_if_more_blur_told_asks_for_more(sharpens_when_told):
    """Between the floor and the share: the output of a network told 0.8 px keeps 1.25 of the 1.5 output px of
    optics, so it needs 0.83 px of the 1.29 its told blur implies (0.64, over the floor of 0.5)."""
    field = torch.from_numpy(synthetic_object((128, 128), 5).astype(np.float32))[None, None]
    plane = torch.nn.functional.avg_pool2d(torch_blur(field, 1.5), 2)[0, 0].numpy()
    estimate = DegradationCondition(noise_gain=1e-3, blur_sigma=0.8)
    # told 1.1x (0.88 px) it sharpens: its output then needs the share its told blur implies, so that is told
    start = sharpens_when_told(field, enough=0.85, forward=1.25)
    assert checked_condition(start, plane, estimate, scale=2, target_blur=0.5).blur_sigma == pytest.approx(0.88)
    # told 1.1x it still keeps the same blur, a smaller share of a larger implied blur: not under-sharpening, so
    # the estimate stays (told 1.2x it would sharpen, but the search ends at the first step)
    net = sharpens_when_told(field, enough=0.95, forward=1.25)
    assert checked_condition(net, plane, estimate, scale=2, target_blur=0.5) == estimate


def test_the_search_over_the_floor_stops_at_rise_max_and_under_it_does_not(sharpens_when_told, monkeypatch):
    from napari_superres.engine.infer import blur_check

    field = torch.from_numpy(synthetic_object((128, 128), 5).astype(np.float32))[None, None]
    plane = torch.nn.functional.avg_pool2d(torch_blur(field, 1.5), 2)[0, 0].numpy()
    estimate = DegradationCondition(noise_gain=1e-3, blur_sigma=0.8)
    monkeypatch.setattr(blur_check, "RISE_MAX", 1.0)  # no step over the floor
    half = sharpens_when_told(field, enough=0.85, forward=1.25)  # raised to 0.88 px with the default cap
    assert checked_condition(half, plane, estimate, scale=2, target_blur=0.5) == estimate
    none = sharpens_when_told(field, enough=0.85, forward=1.5)  # under the floor: searched up to REFIT_MAX
    assert checked_condition(none, plane, estimate, scale=2, target_blur=0.5).blur_sigma == pytest.approx(0.88)


def test_upscale_checks_an_estimated_blur_only_for_models_that_say_what_blur_they_keep(monkeypatch):
    from napari_superres.engine.infer import pipeline

    calls = []

    def raise_blur(net, plane, condition, *, scale, target_blur, max_blur):
        calls.append(target_blur)
        return replace(condition, blur_sigma=1.234)

    monkeypatch.setattr(pipeline, "checked_condition", raise_blur)
    engine = Engine(device="cpu", builtins=False)
    image = camera_image()
    keeps_half = conditioned_model()
    keeps_half.metadata["config"] = {"degradation": {"target_blur": 0.5}}
    assert engine.estimate_degradation(image, keeps_half).blur_sigma == 1.234 and calls == [0.5]
    # upscale tells the network what estimate_degradation reports
    assert np.array_equal(
        upscale(image, keeps_half, engine=engine),
        upscale(image, keeps_half, engine=engine, degradation={"blur_sigma": 1.234}),
    )
    # a blur the caller states is never changed; a model whose training does not say is told the estimate
    assert engine.estimate_degradation(image, keeps_half, degradation={"blur_sigma": 0.7}).blur_sigma == 0.7
    assert engine.estimate_degradation(image, conditioned_model()).blur_sigma != 1.234
    assert len(calls) == 2  # (the upscale with the estimate)


def test_a_dask_image_gets_the_same_condition_in_every_chunk():
    da = pytest.importorskip("dask.array")
    engine = Engine(device="cpu", builtins=False)
    model = conditioned_model()
    stack = np.stack([camera_image(seed=s, shape=(96, 96)) for s in range(3)])
    condition = engine.estimate_degradation(da.from_array(stack, chunks=(1, 48, 48)), model)
    lazy = upscale(
        da.from_array(stack, chunks=(1, 48, 48)), model, engine=engine, degradation=condition, backend="torch"
    )
    whole = upscale(stack, model, engine=engine, degradation=condition, backend="torch")
    assert np.abs(lazy.compute().astype(int) - whole).max() <= 1  # (chunk borders: float rounding)


# --- front ends --------------------------------------------------------------------------------------------
def test_cli_reports_and_overrides_the_estimate(tmp_path, capsys):
    zarr = pytest.importorskip("zarr")
    from napari_superres.cli import main

    model = save_model(tmp_path / "cond.safetensors", conditioned_model().net, normalization=PERCENTILE)
    tifffile = pytest.importorskip("tifffile")
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, camera_image(shape=(96, 96)))
    assert main(["upscale", str(src), str(tmp_path / "auto.zarr"), "--model", str(model)]) == 0
    assert "degradation: blur σ" in capsys.readouterr().err
    auto = zarr.open(str(tmp_path / "auto.zarr"), mode="r").attrs["napari_superres"]["degradation"]
    assert auto["peak_photons"] > 0
    assert main(["upscale", str(src), str(tmp_path / "set.zarr"), "--model", str(model), "--blur", "1.5", "-q"]) == 0
    fixed = zarr.open(str(tmp_path / "set.zarr"), mode="r").attrs["napari_superres"]["degradation"]
    assert fixed["blur_sigma"] == 1.5 and fixed["noise_gain"] == pytest.approx(
        auto["noise_gain"]
    )  # noise still estimated
    assert main(["upscale", str(src), str(tmp_path / "bad.zarr"), "--model", str(model), "--noise", "-3"]) != 0
    assert "--noise must be a number > 0" in capsys.readouterr().err
    assert not (tmp_path / "bad.zarr").exists()


def test_a_flat_image_is_told_clean_and_sharp_and_comes_back_flat():
    """Nothing to read from one value: told a 6 px blur (the spectrum's empty band), the built-in printed a
    pattern of +-0.06 into a flat float image at x2 (+-0.19 at x4)."""
    engine = Engine(device="cpu")
    for flat in (np.full((64, 64), 5.0, np.float32), np.zeros((64, 64), np.float32)):
        assert engine.estimate_degradation(flat) == DegradationCondition()  # clean, the pixel's own blur
        assert estimate_image(flat).blur_sigma == PIXEL_BLUR_SIGMA  # adapt's and training's estimate too
        for model in ("superres-x2", "superres-x4"):
            assert np.abs(upscale(flat, model, engine=engine) - flat.flat[0]).max() < 0.005


def test_no_image_reads_sharper_than_its_pixels():
    """The estimate is the effective blur, the pixel's integration included; a fit with no Gaussian falloff (white
    noise measured against a floor of 0) read 0 px before, and the built-ins told 0 sharpened low-photon images
    0.3-0.9 dB less well than told the pixel's own blur."""
    rng = np.random.default_rng(0)
    white = [rng.normal(0.5, 0.1, (64, 64)) for _ in range(3)]
    assert estimate_blur(white, lambda mean: 0.0) == pytest.approx(PIXEL_BLUR_SIGMA)


def _smooth_noisy_field(scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(low_res, truth)``: a smooth field (periods of 31 and 44 low-res px) area-binned ``scale`` x with
    Gaussian noise of 20 counts on a range of 3000; no band of its spectrum rises clear of the noise."""
    n = 96 * scale
    yy, xx = np.mgrid[0:n, 0:n] / scale
    truth = (np.sin(yy / 5.0) * np.cos(xx / 7.0) + 1.0) * 1500.0 + 200.0
    low = truth.reshape(96, scale, 96, scale).mean(axis=(1, 3)) if scale > 1 else truth
    return (low + np.random.default_rng(0).normal(0.0, 20.0, low.shape)).astype(np.float32), truth


def test_a_blur_that_cannot_be_read_is_told_no_wider_than_the_model_was_trained_on():
    """A very noisy or very smooth image reads the largest blur (6 px), which the built-ins never saw in training.
    Measured on held-out images under the low-photon protocol at 10-800 photons, x2 and x4: of 68 cases whose
    told blur changed (with the pixel floor above), 65 gained (up to +1.06 dB), none lost more than 0.03."""
    engine = Engine(device="cpu")
    low, truth = _smooth_noisy_field(scale=2)
    assert estimate_image(low).blur_sigma == MAX_BLUR_SIGMA  # the raw reading: nothing to measure
    model = engine.get("superres-x2")
    ceiling = trained_blur_ceiling(model)
    assert ceiling == pytest.approx(recorded_max_blur(model)) and ceiling < 2.0
    told = engine.estimate_degradation(low, "superres-x2")
    assert told.blur_sigma == pytest.approx(ceiling)
    # the widget's estimate line and the CLI say so
    assert describe_condition(told, ceiling).startswith("blur σ 1.72 px (the widest the model knows), ")
    assert "widest" not in describe_condition(replace(told, blur_sigma=1.0), ceiling)

    def error(**options: object) -> float:
        return float(np.sqrt(np.mean((upscale(low, "superres-x2", engine=engine, **options) - truth) ** 2)))

    assert error() < 0.95 * error(degradation={"blur_sigma": MAX_BLUR_SIGMA})  # 71 against 77 counts
    # a blur the caller states is told as stated
    stated = engine.estimate_degradation(low, "superres-x2", degradation={"blur_sigma": 3.0})
    assert stated.blur_sigma == 3.0


def test_a_cameras_hot_pixels_stay_where_they_are():
    """Hot pixels (here 1 in 2000 at the top of uint16, ~400 times the image's range once normalised) came back as
    blobs and rings over the network's receptive field, and the estimate read the image as sharp: the built-in
    x2 5-12 dB under bicubic 3 px and more away from them on held-out low-photon images.  The network now sees values within
    NETWORK_INPUT_RANGE (the excess is upscaled bicubically), and the estimate reads them as their local median."""
    engine = Engine(device="cpu")
    clean = camera_image(shape=(192, 192))
    hot = clean.copy()
    where = np.random.default_rng(1).choice(hot.size, hot.size // 2000, replace=False)
    hot.flat[where] = 65535
    told_clean = engine.estimate_degradation(clean, "superres-x2")
    told_hot = engine.estimate_degradation(hot, "superres-x2")
    assert told_hot.blur_sigma == pytest.approx(told_clean.blur_sigma, rel=0.05)
    assert told_hot.noise_gain == pytest.approx(told_clean.noise_gain, rel=0.1)
    assert estimate_image(hot).blur_sigma == pytest.approx(estimate_image(clean).blur_sigma, rel=0.05)  # adapt's

    marked = np.zeros(hot.shape, bool)
    marked.flat[where] = True
    away = ~np.kron(binary_dilation(marked, structure=np.ones((7, 7), bool)), np.ones((2, 2), bool))
    difference = np.abs(
        upscale(hot, "superres-x2", engine=engine).astype(float) - upscale(clean, "superres-x2", engine=engine)
    )
    assert np.percentile(difference[away], 99) < 0.05 * np.ptp(clean)  # away from the hot pixels: as without them
    assert upscale(hot, "superres-x2", engine=engine)[np.kron(marked, np.ones((2, 2), bool))].max() > 10_000  # kept


def test_a_mosaics_zero_padding_is_left_out_of_the_normalisation_and_the_estimate():
    """A quarter of a camera image (offset 100 counts) set to 0, as a stitched mosaic or a registered image pads:
    the fill moved the percentile normalisation's low end to 0 and the estimate read "sharp, ~750 photons", and
    the built-in x2 lost 0.3-3.5 dB away from it on held-out low-photon images."""
    engine = Engine(device="cpu")
    image = camera_image(shape=(192, 192))
    padded = image.copy()
    padded[:, :48] = 0
    assert fill_value(padded) == 0 and fill_value(image) is None
    assert intensity_range(padded, PERCENTILE) == pytest.approx(intensity_range(image[:, 48:], PERCENTILE))
    told, told_unpadded = (engine.estimate_degradation(x, "superres-x2") for x in (padded, image[:, 48:]))
    assert told.blur_sigma == pytest.approx(told_unpadded.blur_sigma, rel=0.05)
    assert told.peak_photons == pytest.approx(told_unpadded.peak_photons, rel=0.1)
    # past the network's receptive field (19 low-res px) from the fill's edge: the unpadded image's result
    upscaled, upscaled_unpadded = (upscale(x, "superres-x2", engine=engine) for x in (padded, image[:, 48:]))
    np.testing.assert_allclose(upscaled[:, 2 * (48 + 24) :], upscaled_unpadded[:, 2 * 24 :], atol=1)


def test_a_sparse_fields_content_is_normalised_as_it_would_be_alone():
    """A field in the middle of 8 times its area of empty background (a few cells in a wide field of view): the
    image's 99.8th percentile fell into the content's top few percent, the content reached the network up to 2x
    brighter than it would alone, and the built-in x2 lost 0.4-3.2 dB on held-out fields spread so sparsely.  Empty
    background beyond half the image no longer lowers the percentile normalisation's high end."""
    engine = Engine(device="cpu")
    n, edge = 128, 16
    taper = np.ones(n)
    taper[:edge] = np.hanning(2 * edge)[:edge]
    taper[-edge:] = taper[:edge][::-1]
    field = gaussian_blur(synthetic_object((n, n), 0), 2.0)
    field = field / field.max() * np.outer(taper, taper)  # fading into the background, no step at its border
    wide = np.zeros((3 * n, 3 * n))
    wide[n : 2 * n, n : 2 * n] = field
    alone, sparse = (acquire(x, photons=800.0) for x in (field, wide))

    lo, hi = intensity_range(alone, PERCENTILE)
    lo_sparse, hi_sparse = intensity_range(sparse, PERCENTILE)
    assert hi_sparse - lo_sparse == pytest.approx(hi - lo, rel=0.1)  # the image's own 99.8th: 30 % narrower
    assert global_value_ranges(da.from_array(sparse, chunks=100), PERCENTILE, None)[-1] == (lo_sparse, hi_sparse)
    dense = camera_image(shape=(128, 128), photons=800.0)
    assert intensity_range(dense, PERCENTILE) == tuple(np.percentile(dense, [1.0, 99.8]))  # a dense field: as CSBDeep

    told = {"blur_sigma": 1.0}  # (the same told blur: the normalisation alone is compared)
    upscaled_alone = upscale(alone, "superres-x2", engine=engine, degradation=told).astype(float)
    upscaled_sparse = upscale(sparse, "superres-x2", engine=engine, degradation=told)[2 * n : 4 * n, 2 * n : 4 * n]
    difference = np.abs(upscaled_sparse - upscaled_alone)[2 * edge : -2 * edge, 2 * edge : -2 * edge]
    assert np.percentile(difference, 99) < 0.01 * np.ptp(upscaled_alone)  # was 2.4 %


def test_zeros_that_continue_the_data_are_no_fill():
    """A background subtracted and clipped at 0 has many exact zeros, next to the rest of its values."""
    rng = np.random.default_rng(0)
    subtracted = np.clip(rng.normal(5.0, 10.0, (128, 128)), 0, None)
    subtracted[40:60, 40:60] += 500.0
    assert (subtracted == 0).mean() > 0.2 and fill_value(subtracted) is None


def test_bounded_forward_adds_back_what_it_clips_bicubically():
    def network(x: torch.Tensor) -> torch.Tensor:  # a stand-in network: nearest-neighbour x2
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    inside = torch.rand(1, 1, 16, 16)
    assert torch.equal(bounded_forward(network, inside, 2), network(inside))  # nothing outside: the network alone
    spiky = inside.clone()
    spiky[0, 0, 8, 8] = 400.0
    low, high = NETWORK_INPUT_RANGE
    expected = network(spiky.clamp(low, high)) + torch.nn.functional.interpolate(
        spiky - spiky.clamp(low, high), scale_factor=2, mode="bicubic", align_corners=False
    )
    torch.testing.assert_close(bounded_forward(network, spiky, 2), expected)


def test_a_model_trained_on_measured_pairs_has_no_blur_ceiling():
    """Its conditions were estimates of real images, of any width: nothing to clip them to."""
    engine = Engine(device="cpu")
    builtin = engine.get("superres-x2")
    wide = DegradationCondition(noise_gain=1e-3, noise_offset=1e-4, blur_sigma=4.0)
    assert within_trained_blur(builtin, wide).blur_sigma == pytest.approx(trained_blur_ceiling(builtin))
    paired = replace(builtin, metadata={**builtin.metadata, "data": {"paired": True}})
    assert trained_blur_ceiling(paired) is None and within_trained_blur(paired, wide) == wide
    unblurred = {
        **builtin.metadata["config"],
        "degradation": {**builtin.metadata["config"]["degradation"], "blur_prob": 0.0},
    }
    assert trained_blur_ceiling(replace(builtin, metadata={"config": unblurred})) is None


def test_a_clean_image_is_told_sharp_and_a_camera_image_keeps_its_blur():
    # noise-free nuclei downsampled x4: their texture reads as a little noise (std ~0.018 at mid-range)
    textured = DegradationCondition(noise_gain=6e-4, noise_offset=1.3e-5, blur_sigma=0.76)
    assert inference_condition(textured).blur_sigma == PIXEL_BLUR_SIGMA
    # a low-photon camera image (std ~0.03 at mid-range) with a PSF under a pixel: the estimate is what undoes it
    camera = DegradationCondition(noise_gain=1.6e-3, noise_offset=1e-4, blur_sigma=0.76)
    assert inference_condition(camera) == camera
    # blur beyond what content alone reads is optics, clean or not
    blurred = DegradationCondition(noise_gain=0.0, noise_offset=1e-6, blur_sigma=1.2)
    assert inference_condition(blurred) == blurred
