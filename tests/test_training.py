"""Training on layer pairs: learning, adversarial recipe, checkpoints/resume, data checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_superres.engine import Engine, load_model, read_model_metadata
from napari_superres.engine.nets.vgg import VGGWeightsUnavailable
from napari_superres.engine.samples import synthetic_pair
from napari_superres.engine.train.trainer import StepReport, TrainConfig, Trainer, make_pair_source

TINY_NET = {"channels": 16, "blocks": 2}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every test here trains tiny networks (see conftest.one_torch_thread)."""


def float_pair(shape=(128, 160), scale=2, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A noise-free synthetic pair (area-binned low-res) as float32 on one intensity scale in [0, 1]."""
    lr, hr = synthetic_pair(shape, scale, seed=seed, noise=False)
    top = float(hr.max())
    return (lr / top).astype(np.float32), (hr / top).astype(np.float32)


def tiny_config(**overrides) -> TrainConfig:
    base = dict(scale=2, steps=6, batch_size=4, patch_size=32, val_every=0, net=dict(TINY_NET), device="cpu", lr=1e-3)
    base.update(overrides)
    return TrainConfig(**base)


# --- learning -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def psnr_run():
    lr, hr = float_pair()
    data = make_pair_source([hr], [lr], scale=2, patch_size=32, seed=0)
    config = TrainConfig(
        scale=2, preset="psnr", steps=300, batch_size=8, patch_size=32, lr=1e-3, val_every=100,
        net=dict(TINY_NET), device="cpu",
    )  # fmt: skip
    reports: list[StepReport] = []
    trainer = Trainer(config, data)
    result = trainer.run(callback=reports.append)
    return trainer, result, reports


def test_psnr_preset_beats_bicubic_on_the_held_out_region(psnr_run):
    _, result, _ = psnr_run
    val = result.final_validation
    assert val is not None and val.step == 300
    # learned: the held-out columns (never sampled for training) come out better than bicubic
    assert val.psnr > val.bicubic_psnr + 1.0, val
    assert val.ssim > val.bicubic_ssim


def test_loss_curve_falls_and_reports_every_step(psnr_run):
    _, result, reports = psnr_run
    assert [r.step for r in reports] == list(range(1, 301))
    totals = [h["losses"]["total"] for h in result.history]
    assert np.mean(totals[-50:]) < 0.8 * np.mean(totals[:50])
    r = reports[-1]
    assert set(r.losses) == {"l1", "total"} and r.d_acc_real is None
    assert r.lr < 1e-3 and r.it_per_s > 0 and r.eta_s == 0
    val_steps = [r.step for r in reports if r.validation is not None]
    assert val_steps == [100, 200, 300]
    v = reports[-1].validation
    assert v.preview is not None and v.preview.dtype == np.float32 and v.preview.ndim == 2
    assert v.preview.shape == v.preview_hr.shape
    assert v.preview_lr.shape == (v.preview.shape[0] // 2, v.preview.shape[1] // 2)


def test_trained_model_registers_saves_and_upscales(psnr_run, tmp_path):
    trainer, result, _ = psnr_run
    engine = Engine(device="cpu", builtins=False)
    name = engine.register(trainer.model("my x2"))
    lr, hr = float_pair(seed=3)
    out = engine.upscale(lr, name)
    assert out.shape == hr.shape and np.isfinite(out).all()
    path = trainer.save_model(tmp_path / "trained")
    meta = read_model_metadata(path)
    assert meta["normalization"] == {"mode": "percentile", "low": 1.0, "high": 99.8}  # the training default
    assert meta["training"]["steps"] == 300 and meta["training"]["config"]["preset"] == "psnr"
    assert meta["training"]["final_validation"]["psnr"] == pytest.approx(result.final_validation.psnr)
    loaded = load_model(path)
    x = torch.from_numpy(lr[None, None, :32, :32])
    with torch.no_grad():
        assert torch.allclose(loaded.net(x), result.net.eval()(x), atol=1e-6)


# --- adversarial / perceptual --------------------------------------------------------------------------
def test_gan_preset_runs_and_reports_discriminator_accuracy(fake_vgg_cache, tmp_path):
    lr, hr = float_pair((96, 128))
    data = make_pair_source([hr], [lr], scale=2, patch_size=32)
    config = tiny_config(preset="gan", steps=4, pretrain_steps=2, gan_loss="ragan",
                         discriminator={"kind": "patchgan", "channels": 8}, perceptual_layers=("relu1_2", "relu2_2"))  # fmt: skip
    reports: list[StepReport] = []
    result = Trainer(config, data).run(callback=reports.append)
    pre, adv = reports[:2], reports[2:]
    assert all(r.phase == "pretrain" and r.d_acc_real is None for r in pre)
    assert set(pre[0].losses) == {"l1", "total"}  # pixel-only pre-training
    for r in adv:
        assert set(r.losses) == {"l1", "perceptual", "gan", "d", "total"}
        assert 0.0 <= r.d_acc_real <= 1.0 and 0.0 <= r.d_acc_fake <= 1.0
        assert all(math.isfinite(v) for v in r.losses.values())
    assert all(torch.isfinite(p).all() for p in result.net.parameters())


def test_perceptual_preset_without_vgg_weights_fails_before_training(no_vgg_cache):
    lr, hr = float_pair((64, 96))
    data = make_pair_source([hr], [lr], scale=2, patch_size=32)
    with pytest.raises(VGGWeightsUnavailable, match="vgg16-397923af.pth"):
        Trainer(tiny_config(preset="perceptual"), data)


# --- checkpoints -------------------------------------------------------------------------------------
def _hr_only_gan_setup():
    _, hr = float_pair((96, 128))
    data = make_pair_source([hr], scale=2, patch_size=32, degradation={"noise_gaussian": (0.0, 0.02)})
    # l1 + adversarial (no VGG needed): exercises discriminator, both optimizers and degradation RNG
    config = tiny_config(preset="gan", weights={"perceptual": 0.0}, steps=6, pretrain_steps=2, val_every=3,
                         discriminator={"kind": "patchgan", "channels": 8})  # fmt: skip
    return data, config


@pytest.mark.parametrize("setup", ["pairs_psnr", "hr_only_gan"])
def test_resume_continues_exactly(setup, tmp_path):
    def make():
        if setup == "pairs_psnr":
            lr, hr = float_pair((96, 128))
            return make_pair_source([hr], [lr], scale=2, patch_size=32), tiny_config(steps=6, val_every=3)
        return _hr_only_gan_setup()

    data, config = make()
    straight = Trainer(config, data)
    straight.run()

    data, config = make()
    config.checkpoint_path = str(tmp_path / "run.ckpt")
    first = Trainer(config, data)
    first.run(should_stop=lambda: first.step >= 3)
    assert first.step == 3
    resumed = Trainer.resume(tmp_path / "run.ckpt", make()[0])
    assert resumed.step == 3
    result = resumed.run()
    assert result.steps_done == 6 and not result.stopped
    for a, b in [(straight.generator, resumed.generator), (straight.trained_net(), resumed.trained_net())]:
        for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.allclose(pa, pb, atol=1e-6, rtol=0), name
    h_straight = [h["losses"] for h in straight.history]
    h_resumed = [h["losses"] for h in resumed.history]
    assert np.allclose([h["total"] for h in h_straight], [h["total"] for h in h_resumed], atol=1e-6)


def test_stopped_run_returns_normally_with_a_loadable_checkpoint(tmp_path):
    lr, hr = float_pair((96, 128))
    data = make_pair_source([hr], [lr], scale=2, patch_size=32)
    config = tiny_config(steps=50, checkpoint_path=str(tmp_path / "ckpt" / "stop.ckpt"))
    trainer = Trainer(config, data)
    result = trainer.run(should_stop=lambda: trainer.step >= 2)
    assert result.stopped and result.steps_done == 2
    state = Trainer.read_checkpoint(tmp_path / "ckpt" / "stop.ckpt")  # torch.load(weights_only=True)
    assert state["step"] == 2
    assert list((tmp_path / "ckpt").iterdir()) == [tmp_path / "ckpt" / "stop.ckpt"]  # no temp files left
    longer = Trainer.resume(tmp_path / "ckpt" / "stop.ckpt", data, steps=4)
    assert longer.run().steps_done == 4


def test_training_can_continue_in_process_with_a_stretched_schedule():
    lr, hr = float_pair((96, 128))
    trainer = Trainer(tiny_config(steps=4), make_pair_source([hr], [lr], scale=2, patch_size=32))
    trainer.run()
    assert trainer.current_lr() == pytest.approx(1e-3 * 0.01)  # cosine schedule ended at 1 %
    trainer.set_total_steps(8)
    assert 1e-5 < trainer.current_lr() < 1e-3  # half-way down the stretched cosine
    assert trainer.run().steps_done == 8 and len(trainer.history) == 8
    with pytest.raises(ValueError, match="at least 8"):
        trainer.set_total_steps(5)


def test_periodic_checkpoints(tmp_path):
    lr, hr = float_pair((96, 128))
    data = make_pair_source([hr], [lr], scale=2, patch_size=32)
    path = tmp_path / "every.ckpt"
    seen = []
    config = tiny_config(steps=4, checkpoint_every=2, checkpoint_path=str(path))
    trainer = Trainer(config, data)
    trainer.run(callback=lambda r: seen.append((path.exists(), r.checkpoint)))
    assert seen == [(False, None), (True, str(path)), (True, None), (True, str(path))]
    assert Trainer.read_checkpoint(path)["step"] == 4


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    bogus = tmp_path / "x.ckpt"
    torch.save({"weights": torch.zeros(2)}, bogus)
    with pytest.raises(ValueError, match="not a napari-superres training checkpoint"):
        Trainer.read_checkpoint(bogus)
    with pytest.raises(FileNotFoundError):
        Trainer.read_checkpoint(tmp_path / "missing.ckpt")


# --- bad configs and data ----------------------------------------------------------------------------------
def _pair_data():
    lr, hr = float_pair((64, 96))
    return make_pair_source([hr], [lr], scale=2, patch_size=32)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"steps": 0}, "steps must be at least 1"),
        ({"batch_size": 0}, "batch_size"),
        ({"preset": "sharp"}, "unknown preset"),
        ({"gan_loss": "wasserstein"}, "unknown gan_loss"),
        ({"schedule": "linear"}, "unknown schedule"),
        ({"lr": 0.0}, "learning rate"),
        ({"weights": {"l1": 0.0}}, "all loss weights are zero"),
        ({"preset": "gan", "steps": 4, "pretrain_steps": 4}, "pretrain_steps"),
        ({"net": {"upsampling": "magic"}}, "upsampling"),
        ({"patch_size": 48}, "patch_size=48"),
        ({"scale": 4, "patch_size": 32}, "x2"),
    ],
)
def test_bad_config_is_a_value_error_with_the_fix(overrides, match):
    with pytest.raises(ValueError, match=match):
        Trainer(tiny_config(**overrides), _pair_data())


def test_mismatched_pairs_are_rejected():
    hr = np.zeros((64, 96), np.float32)
    with pytest.raises(ValueError, match=r"\(64, 96\).*\(32, 40\)|\(32, 40\).*\(64, 96\)"):
        make_pair_source([hr], [np.zeros((32, 40), np.float32)], scale=2, patch_size=16)  # 2 in Y, 2.4 in X
    with pytest.raises(ValueError, match="not an integer multiple"):
        make_pair_source([hr], [np.zeros((30, 40), np.float32)], scale=2, patch_size=16)
    with pytest.raises(ValueError, match="factor 3 in Y but 2 in X"):
        make_pair_source([np.zeros((96, 96))], [np.zeros((32, 48))], scale=2, patch_size=16)
    with pytest.raises(ValueError, match="gives factor 4, but the training scale is 2"):
        make_pair_source([hr], [np.zeros((16, 24), np.float32)], scale=2, patch_size=16)
    with pytest.raises(ValueError, match="non-spatial axis"):
        make_pair_source([np.zeros((3, 64, 64))], [np.zeros((4, 32, 32))], scale=2, patch_size=16)
    with pytest.raises(ValueError, match="one low-res image per high-res image"):
        make_pair_source([hr, hr], [np.zeros((32, 48))], scale=2, patch_size=16)


def test_bad_data_is_rejected():
    hr = np.random.default_rng(0).random((64, 96)).astype(np.float32)
    with pytest.raises(ValueError, match="patch size 96 px .* is larger than the image"):
        make_pair_source([hr], scale=2, patch_size=96)
    with pytest.raises(ValueError, match="multiple of the scale 3"):
        make_pair_source([hr], scale=3, patch_size=32)
    bad = hr.copy()
    bad[5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        make_pair_source([bad], scale=2, patch_size=16)
    with pytest.raises(ValueError, match="dtype complex"):
        make_pair_source([hr.astype(np.complex64)], scale=2, patch_size=16)
    with pytest.raises(ValueError, match="3-channel"):
        make_pair_source([hr], scale=2, patch_size=16, in_channels=3)


# --- data layout ------------------------------------------------------------------------------------------
def test_patches_never_come_from_the_validation_columns():
    hr = np.full((64, 100), 0.25, np.float32)
    data = make_pair_source([hr], scale=2, patch_size=16, val_fraction=0.2, normalization="dtype",
                            degradation={"blur_sigma": None})  # fmt: skip
    train_w = data.planes[0].train_w_lr * 2
    hr[:, train_w:] = 1.0  # mark the held-out columns (the source keeps a view of the array)
    for _ in range(30):
        _, patch = data.sample(8)
        assert float(patch.max()) == pytest.approx(0.25)
    (val_lr, val_hr), = data.validation()  # fmt: skip
    assert val_hr.shape[-1] == 100 - train_w and float(val_hr.min()) == 1.0
    assert val_lr.shape[-2:] == (val_hr.shape[-2] // 2, val_hr.shape[-1] // 2)


def test_patches_are_aligned_and_augmented():
    lr, hr = float_pair((64, 96))
    data = make_pair_source([hr], [lr], scale=2, patch_size=16, seed=1)
    lrs, hrs = data.sample(64)
    assert lrs.shape == (64, 1, 8, 8) and hrs.shape == (64, 1, 16, 16)
    # area-binned pairs: every low-res pixel is the mean of its 2x2 high-res block, after any flip/rotation
    binned = torch.nn.functional.avg_pool2d(hrs, 2)
    assert torch.allclose(binned, lrs, atol=2e-4)
    again = make_pair_source([hr], [lr], scale=2, patch_size=16, seed=1).sample(64)
    assert torch.equal(again[1], hrs)  # seeded


def test_stacks_rgb_and_uint16():
    rng = np.random.default_rng(0)
    stack = (rng.random((3, 64, 80)) * 60000).astype(np.uint16)
    data = make_pair_source([stack], scale=2, patch_size=16, axes="ZYX")
    assert data.n_planes == 3 and data.sample(4)[1].shape == (4, 1, 16, 16)
    # percentiles 1 / 99.8 (the default) map to 0 / 1: only the tails leave [0, 1], slightly
    assert -0.05 <= float(data.sample(4)[1].min()) and float(data.sample(4)[1].max()) <= 1.05
    rgb = (rng.random((64, 80, 3)) * 255).astype(np.uint8)
    luma = make_pair_source([rgb], scale=2, patch_size=16)
    assert luma.in_channels == 1 and luma.sample(2)[1].shape == (2, 1, 16, 16)
    color = make_pair_source([rgb], scale=2, patch_size=16, in_channels=3)
    assert color.sample(2)[1].shape == (2, 3, 16, 16)
    trainer = Trainer(tiny_config(patch_size=16, steps=1), color)
    assert trainer.generator.in_channels == 3
    # or let the network choose: a 3-channel net switches RGB data from luminance to RGB
    by_net = Trainer(tiny_config(patch_size=16, steps=1, net={**TINY_NET, "in_channels": 3, "out_channels": 3}), luma)
    assert luma.in_channels == 3 and by_net.generator.in_channels == 3
    with pytest.raises(ValueError, match="needs RGB images"):
        Trainer(tiny_config(patch_size=16, steps=1, net={**TINY_NET, "in_channels": 3, "out_channels": 3}), data)
    result = trainer.run()
    assert result.final_validation.preview.shape[-1] == 3  # RGB preview (H, W, 3)


def test_percentile_normalization_is_stored_in_the_model(tmp_path):
    lr, hr = synthetic_pair((64, 96), 2, seed=0, noise=False)
    spec = {"mode": "percentile", "low": 1.0, "high": 99.8}
    data = make_pair_source([hr], [lr], scale=2, patch_size=16, normalization="percentile")
    trainer = Trainer(tiny_config(patch_size=16, steps=1, normalization=spec), data)
    trainer.run()
    assert read_model_metadata(trainer.save_model(tmp_path / "p.safetensors"))["normalization"] == spec
    with pytest.raises(ValueError, match="normalised with"):
        Trainer(tiny_config(patch_size=16, steps=1, normalization={"mode": "dtype"}), data)  # data says percentile
