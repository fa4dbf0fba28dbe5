"""Blind-spot consistency (engine.train.blind_spot) and ``adapt(..., blur_sigma=)``, which uses it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_superres import adapt, upscale
from napari_superres.engine import Engine, SRModel, SRNet, SRNetConfig
from napari_superres.engine.errors import Cancelled
from napari_superres.engine.nets.conditioning import DegradationCondition, condition_maps
from napari_superres.engine.samples import synthetic_pair
from napari_superres.engine.train.blind_spot import (
    FIT_FLOOR,
    LOSS_BORDER,
    RECORRUPT_ALPHA,
    BlindSpotPatches,
    BlindSpotStep,
    fit_forward_blur,
    forward_sigma,
    mask_batch,
    recorrupt_batch,
)
from napari_superres.engine.train.degradation import gaussian_blur
from napari_superres.engine.train.schedule import Schedule


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small networks (see conftest.one_torch_thread)."""


def tiny_model(cond_channels: int = 2) -> SRModel:
    torch.manual_seed(0)
    net = SRNet(SRNetConfig(scale=2, channels=8, blocks=1, cond_channels=cond_channels)).eval()
    return SRModel("tiny", net, 2, 1, normalization={"mode": "percentile", "low": 1.0, "high": 99.8})


def test_forward_blur_is_the_part_of_the_psf_the_output_does_not_keep():
    # a PSF 1.15 low-res px wide (2.3 output px at x2), pixel integration included as the estimate reports it
    told = math.sqrt(1.15**2 + 1 / 12)
    assert forward_sigma(told, 2, target_blur=0.0) == pytest.approx(2.3)
    # a built-in keeps 1/scale of the optics (2.3 / 2 = 1.15 output px): 2.3^2 = 1.15^2 + rest^2
    assert forward_sigma(told, 2, target_blur=0.5) == pytest.approx(math.sqrt(2.3**2 - 1.15**2))
    assert forward_sigma(0.2, 2) == 0.0  # sharper than a pixel: nothing left to blur


def test_masked_pixels_are_hidden_from_the_network_and_only_they_are_scored():
    rng = np.random.default_rng(0)
    patches = torch.rand(4, 1, 24, 24)
    masked, mask = mask_batch(patches, rng)
    assert mask.sum(dim=(1, 2, 3)).tolist() == [64.0] * 4  # one pixel per 3 x 3 block
    # a masked pixel's own value never reaches the input: changing it leaves the input unchanged
    changed = patches + 10.0 * mask
    again, _ = mask_batch(changed, np.random.default_rng(0))
    assert torch.allclose(again, masked)
    # the loss reads the image only at masked pixels
    net = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2), torch.nn.Conv2d(1, 1, 1))
    step = BlindSpotStep(net, forward_sigma=1.0, scale=2, lr=1e-4, schedule=Schedule("constant", 1))
    sr = net(masked).detach()
    loss = step.terms(sr, torch.cat([patches, mask], 1), {})["blind_spot"]
    noisy_elsewhere = patches + 5.0 * (1 - mask)
    assert step.terms(sr, torch.cat([noisy_elsewhere, mask], 1), {})["blind_spot"] == pytest.approx(float(loss))
    noisy_masked = patches + 5.0 * mask
    assert float(step.terms(sr, torch.cat([noisy_masked, mask], 1), {})["blind_spot"]) > float(loss) + 1.0


def test_blind_spot_patches_carry_the_condition_maps_and_refuse_tiny_images():
    planes = [np.random.default_rng(1).random((40, 50))]
    condition = DegradationCondition(noise_gain=0.01, noise_offset=0.001, blur_sigma=1.0)
    lq, gt = BlindSpotPatches(planes, condition, patch=32).sample(3)
    assert lq.shape == (3, 3, 32, 32) and gt.shape == (3, 2, 32, 32)
    assert torch.allclose(lq[:, 1:], condition_maps(lq[:, :1], condition.as_tensor()))
    lq, _ = BlindSpotPatches(planes, None, patch=32).sample(2)
    assert lq.shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="too small"):
        BlindSpotPatches([np.zeros((2 * LOSS_BORDER, 40))], None, patch=32)


def test_recorrupted_input_and_target_have_uncorrelated_noise():
    # a flat field at 0.5 with the image's own Poisson-Gaussian noise (variance 0.01 * 0.5 + 0.001)
    gain, offset = 0.01, 0.001
    variance = gain * 0.5 + offset
    rng = np.random.default_rng(0)
    noisy = 0.5 + math.sqrt(variance) * torch.from_numpy(rng.standard_normal((64, 1, 32, 32)).astype(np.float32))
    lq, target = recorrupt_batch(noisy, gain, offset, np.random.default_rng(1))
    a, b = (lq - 0.5).flatten(), (target - 0.5).flatten()
    # input noisier by 1 + alpha^2, target's noise independent of it: in expectation the clean image's loss
    assert float(a.var()) == pytest.approx((1 + RECORRUPT_ALPHA**2) * variance, rel=0.05)
    assert float(b.var()) == pytest.approx((1 + 1 / RECORRUPT_ALPHA**2) * variance, rel=0.05)
    assert abs(float((a * b).mean())) < 0.02 * variance
    assert torch.equal(recorrupt_batch(noisy, 0.0, 0.0, rng)[0], noisy)  # a clean image is left as it is


def test_recorrupted_patches_score_every_pixel_and_tell_the_inputs_noise():
    planes = [np.random.default_rng(1).random((40, 50))]
    condition = DegradationCondition(noise_gain=0.01, noise_offset=0.001, blur_sigma=1.0)
    patches = BlindSpotPatches(planes, condition, patch=32, recorrupt=(0.01, 0.001))
    lq, gt = patches.sample(3)
    assert lq.shape == (3, 3, 32, 32) and torch.equal(gt[:, 1:], torch.ones(3, 1, 32, 32))
    k = 1 + RECORRUPT_ALPHA**2  # the input's noise: 1 + alpha^2 times the image's, the same blur
    inputs_noise = torch.tensor([0.01 * k, 0.001 * k, 1.0])
    assert torch.allclose(lq[:, 1:], condition_maps(lq[:, :1], inputs_noise))
    # the recorrupted loss is the squared error; an unknown loss is refused
    net = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2), torch.nn.Conv2d(3, 1, 1))
    step = BlindSpotStep(net, forward_sigma=0.0, scale=2, lr=1e-4, schedule=Schedule("constant", 1), loss="l2")
    sr = torch.zeros(3, 1, 64, 64)
    b = LOSS_BORDER
    expected = float(gt[:, :1, b:-b, b:-b].square().mean())
    assert float(step.terms(sr, gt, {})["blind_spot"]) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="'l1' or 'l2'"):
        BlindSpotStep(net, forward_sigma=0.0, scale=2, lr=1e-4, schedule=Schedule("constant", 1), loss="l3")


def test_adapt_told_the_blur_fine_tunes_by_blind_spot_consistency():
    lq, _ = synthetic_pair((192, 192), 2, seed=3)
    calls = []
    model = adapt(lq, tiny_model(), steps=4, blur_sigma=1.2, progress=lambda d, t: calls.append(d))
    info = model.metadata["adapt"]
    assert calls == [1, 2, 3, 4] and info["method"] == "blind-spot" and info["steps"] == 4
    assert info["mix"] == 1.0 and info["forward_sigma"] == pytest.approx(forward_sigma(1.2, 2), abs=1e-4)
    assert set(info["condition"]) >= {"noise_gain", "blur_sigma"}  # what upscale() tells the network here
    assert info["noise"] == "recorrupted"  # with the blur stated, every pixel is scored (the default route masks)
    start = tiny_model().net.state_dict()
    assert any(not torch.equal(v, start[k]) for k, v in model.net.state_dict().items())
    # a blind network (no condition maps)
    assert adapt(lq, tiny_model(cond_channels=0), steps=2, blur_sigma=1.2).metadata["adapt"]["steps"] == 2


def test_upscale_tells_an_adapted_model_the_blur_it_was_adapted_with(tmp_path):
    from napari_superres.engine import Engine
    from napari_superres.engine.nets.model_file import load_model, save_model

    engine = Engine(device="cpu", builtins=False)
    lq, _ = synthetic_pair((128, 128), 2, seed=3)
    estimated = engine.estimate_degradation(lq, tiny_model()).blur_sigma
    # told the microscope's PSF, adapt records it, and upscale tells it without being told again
    told = adapt(lq, tiny_model(), steps=2, blur_sigma=estimated + 0.4)
    assert told.metadata["adapt"]["told_blur"] == {"blur_sigma": pytest.approx(estimated + 0.4), "stated": True}
    assert engine.estimate_degradation(lq, told).blur_sigma == pytest.approx(estimated + 0.4)
    assert np.array_equal(
        engine.upscale(lq, told), engine.upscale(lq, told, degradation={"blur_sigma": estimated + 0.4})
    )
    # a blur the caller states still wins; the model file keeps the adapted blur
    assert engine.estimate_degradation(lq, told, degradation={"blur_sigma": 0.7}).blur_sigma == 0.7
    save_model(tmp_path / "told.safetensors", told.net, normalization=told.normalization, training=told.metadata)
    assert engine.estimate_degradation(lq, load_model(tmp_path / "told.safetensors")).blur_sigma == pytest.approx(
        estimated + 0.4
    )
    # by default adapt records the blur it told the network (the estimate, after upscale's check where it applies)
    default = adapt(lq, tiny_model(), steps=3)
    recorded = default.metadata["adapt"]["told_blur"]
    assert recorded["stated"] is False
    assert recorded["blur_sigma"] == pytest.approx(default.metadata["adapt"]["blind_spot"]["condition"]["blur_sigma"])
    # ... which is a floor for the estimate of the image upscaled
    default.metadata["adapt"]["told_blur"]["blur_sigma"] = estimated + 0.3
    assert engine.estimate_degradation(lq, default).blur_sigma == pytest.approx(estimated + 0.3)
    default.metadata["adapt"]["told_blur"]["blur_sigma"] = estimated - 0.3
    assert engine.estimate_degradation(lq, default).blur_sigma == pytest.approx(estimated)
    # a blind start records none
    assert "told_blur" not in adapt(lq, tiny_model(cond_channels=0), steps=2, blur_sigma=1.2).metadata["adapt"]


class _Fixed(torch.nn.Module):
    """A stand-in network whose output is always ``out`` (the high-res field behind a low-res plane)."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out


def test_the_forward_blur_is_fitted_to_the_starting_networks_own_output():
    # a low-res plane made from a high-res field by a forward blur of 1.5 output px and 2x2 binning
    field = torch.from_numpy(synthetic_pair((128, 128), 2, seed=5, noise=False)[1].astype(np.float32))
    field = (field / field.max())[None, None]
    plane = torch.nn.functional.avg_pool2d(gaussian_blur(field, 1.5), 2)[0, 0].numpy()
    net = _Fixed(field).train()
    assert fit_forward_blur(net, plane, None, scale=2, implied=1.4)[0] == pytest.approx(1.5, abs=0.11)
    assert net.training  # its mode is kept
    # a start told too little blur implies too little: the fit never goes below FIT_FLOOR of the implied blur
    assert fit_forward_blur(net, plane, None, scale=2, implied=4.0)[0] == pytest.approx(FIT_FLOOR * 4.0)


def test_a_start_told_too_little_blur_is_refitted_told_more(sharpens_when_told):
    field = torch.from_numpy(synthetic_pair((128, 128), 2, seed=5, noise=False)[1].astype(np.float32))
    field = (field / field.max())[None, None]
    plane = torch.nn.functional.avg_pool2d(gaussian_blur(field, 1.5), 2)[0, 0].numpy()
    told = DegradationCondition(noise_gain=1e-3, blur_sigma=0.8)
    implied = forward_sigma(0.8, 2, 0.5)
    # told 0.8 px it explains the image with no blur at all: the floor, unless it may be asked again told more
    start = sharpens_when_told(field, enough=0.95, forward=1.5)
    assert fit_forward_blur(start, plane, told.as_tensor(), scale=2, implied=implied)[0] == pytest.approx(
        FIT_FLOOR * implied
    )
    refit, raised = fit_forward_blur(start, plane, told.as_tensor(), scale=2, implied=implied, target_blur=0.5)
    assert raised == pytest.approx(0.96)  # the blur it was told when its fit reached the share
    assert refit == pytest.approx(1.5, abs=0.11)  # told 1.2x (0.96 px) it sharpens, and its output needs the true blur
    # one that stays smooth however much it is told keeps the floor
    never = sharpens_when_told(field, enough=10.0, forward=1.5)
    floored, raised = fit_forward_blur(never, plane, told.as_tensor(), scale=2, implied=implied, target_blur=0.5)
    assert floored == pytest.approx(FIT_FLOOR * implied) and raised is None


def test_adapt_by_default_averages_self_pairs_and_blind_spot_fine_tunes():
    lq, _ = synthetic_pair((128, 128), 2, seed=3)
    calls = []
    model = adapt(lq, tiny_model(), steps=7, progress=lambda d, t: calls.append((d, t)))
    info = model.metadata["adapt"]
    # 2 of 7 steps on self-pairs (60 of the default 260), then 5 blind-spot steps, one progress bar
    assert info["method"] == "self-pairs + blind-spot" and info["steps"] == 7 and info["self_pair_steps"] == 2
    assert calls == [(d, 7) for d in range(1, 8)] and info["blind_spot"]["steps"] == 5
    spot = info["blind_spot"]
    assert spot["forward_sigma"] >= FIT_FLOOR * spot["implied_sigma"] - 1e-4 and spot["condition"] is not None
    assert spot["noise"] == "masked"  # through a fitted forward blur, masking measured better than recorruption
    assert info["mix"] == 0.75 and info["degradation"]["methods"] == ["area"]  # the self-pairs' degradation
    # mix 1.0 returns the two fine-tunes' average itself; the default keeps a quarter of the start
    tuned, start = adapt(lq, tiny_model(), steps=7, mix=1.0).net.state_dict(), tiny_model().net.state_dict()
    for name, value in model.net.state_dict().items():
        assert torch.allclose(value, torch.lerp(start[name], tuned[name], 0.75), atol=1e-6), name
    assert any(not torch.equal(tuned[k], start[k]) for k in start)


def test_a_bf16_blind_spot_step_trains_float32_weights_like_a_float32_step():
    # bf16 autocast (what adapt uses on CPUs with native bf16): the forward in bf16, weights and loss in float32
    lq = torch.rand(4, 1, 24, 24)
    gt = torch.cat([lq, mask_batch(lq, np.random.default_rng(0))[1]], dim=1)
    losses = {}
    for name, autocast in [("fp32", None), ("bf16", lambda: torch.autocast("cpu", dtype=torch.bfloat16))]:
        net = tiny_model(cond_channels=0).net.train().to(memory_format=torch.channels_last)
        step = BlindSpotStep(net, forward_sigma=1.0, scale=2, lr=1e-3, schedule=Schedule("constant", 1),
                             autocast=autocast)  # fmt: skip
        losses[name] = step.step(lq.contiguous(memory_format=torch.channels_last), gt, 0).losses["blind_spot"]
        assert all(p.dtype == torch.float32 for p in net.parameters())
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)


def test_adapt_fine_tunes_in_bf16_where_the_cpu_has_it(monkeypatch):
    from napari_superres.engine.train import adapt_plan

    lq, _ = synthetic_pair((96, 96), 2, seed=3)
    for enabled in (True, False):
        monkeypatch.setattr(adapt_plan, "ADAPT_CPU_BF16", enabled)
        model = adapt(lq, tiny_model(), steps=3, seconds=None)
        assert model.metadata["adapt"]["precision"] == ("bf16" if adapt_plan.cpu_bf16() else "fp32")
        # the result is an ordinary float32 model: contiguous weights, as a model file stores them
        assert all(v.dtype == torch.float32 and v.is_contiguous() for v in model.net.state_dict().values())
    assert not adapt_plan.cpu_bf16()  # switched off: float32 on any CPU


@pytest.mark.filterwarnings("ignore:cpu_bf16=True on a CPU without native bf16")
def test_both_routes_run_end_to_end_in_bf16_on_any_cpu(monkeypatch):
    """The bf16 plan (what adapt runs where the CPU has native bf16) forced on this CPU (emulated where it has
    none): the default route (self-pairs, then masked blind-spot) and the told route (recorrupted) both finish
    and give float32 models that upscale to finite images."""
    from napari_superres.engine.train import adapt as adapt_module

    monkeypatch.setattr(adapt_module, "cpu_bf16", lambda: True)
    lq, _ = synthetic_pair((96, 96), 2, seed=3)
    for told in (None, 1.2):
        model = adapt(lq, tiny_model(), steps=2, seconds=None, blur_sigma=told)
        info = model.metadata["adapt"]
        assert info["precision"] == "bf16" and info["steps"] == 2
        assert all(v.dtype == torch.float32 for v in model.net.state_dict().values())
        assert np.isfinite(upscale(lq, model, engine=Engine(device="cpu", builtins=False)).astype(float)).all()


def test_the_time_budget_plans_the_steps(monkeypatch):
    from napari_superres.engine.options import ADAPT_SECONDS
    from napari_superres.engine.train.adapt import (
        BLIND_SPOT_STEPS,
        BLIND_SPOT_STEPS_BF16,
        SELF_PAIR_STEPS,
        planned_steps,
    )

    default = (SELF_PAIR_STEPS, BLIND_SPOT_STEPS)
    assert planned_steps(ADAPT_SECONDS, self_pairs=True, blind_spot=True) == default
    assert planned_steps(None, self_pairs=True, blind_spot=True) == default  # no time limit: the defaults
    # twice the time: twice the blind-spot steps; self-pair steps never grow (longer drifts from the real task)
    assert planned_steps(2 * ADAPT_SECONDS, self_pairs=True, blind_spot=True) == (SELF_PAIR_STEPS, 2 * BLIND_SPOT_STEPS)
    assert planned_steps(ADAPT_SECONDS / 3, self_pairs=True, blind_spot=True) == (
        SELF_PAIR_STEPS // 3,
        round(BLIND_SPOT_STEPS / 3),
    )
    assert planned_steps(2 * ADAPT_SECONDS, self_pairs=False, blind_spot=True) == (0, 2 * BLIND_SPOT_STEPS)
    assert planned_steps(0.01, self_pairs=True, blind_spot=False) == (1, 0)
    # fine-tuning in bf16 (a CPU with native bf16): the same time plans more blind-spot steps
    bf16 = planned_steps(ADAPT_SECONDS, self_pairs=True, blind_spot=True, bf16=True)
    assert bf16 == (SELF_PAIR_STEPS, BLIND_SPOT_STEPS_BF16) and BLIND_SPOT_STEPS_BF16 > BLIND_SPOT_STEPS
    # adapt(seconds=) with no steps runs what the budget plans (one progress bar over both phases); here as if the
    # default budget were 3000 s, so that a budget planning 7 steps leaves them time on a busy machine
    monkeypatch.setattr("napari_superres.engine.train.adapt_plan.ADAPT_SECONDS", 3000.0)
    monkeypatch.setattr("napari_superres.engine.train.adapt_plan.ADAPT_CPU_BF16", False)  # float32's plan on any CPU
    lq, _ = synthetic_pair((128, 128), 2, seed=3)
    calls = []
    seconds = 3000.0 * 5 / BLIND_SPOT_STEPS  # plans 2 self-pair and 5 blind-spot steps
    info = adapt(lq, tiny_model(), seconds=seconds, progress=lambda d, t: calls.append((d, t))).metadata["adapt"]
    assert calls == [(d, 7) for d in range(1, 8)] and info["self_pair_steps"] == 2 and info["steps"] == 7


def test_adapt_of_a_clean_image_uses_self_pairs_alone():
    # nothing for the blind spot to learn without noise: self-pairs alone, mixed half with the start, as before
    lq, _ = synthetic_pair((128, 128), 2, seed=3, noise=False)
    info = adapt(lq, tiny_model(), steps=2).metadata["adapt"]
    assert info["method"] == "self-pairs" and info["mix"] == 0.5 and "blind_spot" not in info


def test_adapt_of_a_multichannel_model_uses_self_pairs_and_refuses_a_stated_blur():
    lq, _ = synthetic_pair((96, 96), 2, seed=4)
    rgb = np.stack([lq, lq, lq], axis=-1)
    torch.manual_seed(0)
    net = SRNet(SRNetConfig(scale=2, channels=8, blocks=1, in_channels=3, out_channels=3)).eval()
    start = SRModel("rgb", net, 2, 3, normalization={"mode": "percentile", "low": 1.0, "high": 99.8})
    info = adapt(rgb, start, steps=2).metadata["adapt"]
    assert info["method"] == "self-pairs" and info["mix"] == 0.5 and info["steps"] == 2
    with pytest.raises(ValueError, match="one-channel"):
        adapt(rgb, start, steps=2, blur_sigma=1.2)


def test_adapt_told_a_bad_blur_or_asked_to_stop_says_so():
    lq, _ = synthetic_pair((96, 96), 2, seed=4)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="blur_sigma"):
            adapt(lq, tiny_model(), blur_sigma=bad)
    with pytest.raises(Cancelled):
        adapt(lq, tiny_model(), steps=20, blur_sigma=1.2, should_stop=lambda: True)
