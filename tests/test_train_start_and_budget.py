"""Where training starts (``init``: the built-in model by default) and the time budget (``seconds``)."""

from __future__ import annotations

import json

import pytest
import tifffile
import torch

from napari_superres.cli import main
from napari_superres.engine.nets.model_file import load_model, save_model
from napari_superres.engine.nets.srnet import SRNet
from napari_superres.engine.options import TRAIN_DEFAULTS
from napari_superres.engine.samples import synthetic_pair
from napari_superres.engine.train.data import make_pair_source
from napari_superres.engine.train.trainer import TrainConfig, Trainer
from napari_superres.engine.train.warm_start import builtin_model_for

TINY = dict(scale=2, batch_size=2, patch_size=32, device="cpu", val_every=0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every test here trains small networks (see conftest.one_torch_thread)."""


@pytest.fixture
def pairs():
    lrs, hrs = zip(*(synthetic_pair((96, 128), 2, seed=s) for s in range(2)))
    return list(hrs), list(lrs)


def source(pairs, config):
    hrs, lrs = pairs
    return make_pair_source(hrs, lrs, scale=2, patch_size=config.patch_size, normalization=config.normalization)


def test_training_starts_from_the_builtin_model_by_default(pairs):
    assert TRAIN_DEFAULTS.init == "builtin"
    config = TrainConfig(steps=3, **TINY)
    data = source(pairs, config)
    trainer = Trainer(config, data)
    builtin = load_model(builtin_model_for(2))
    assert trainer.started_from == str(builtin_model_for(2))
    lr, _ = data.validation()[0]
    x = torch.from_numpy(lr)[None]
    with torch.no_grad():
        start = trainer.trained_net().eval()(x)
        expected = builtin.net(x)
    torch.testing.assert_close(start, expected, atol=1e-5, rtol=1e-5)  # step 0 is the built-in's output
    result = trainer.run()
    assert result.steps_done == 3
    with torch.no_grad():
        trained = trainer.trained_net().eval()(x)
    assert not torch.allclose(trained, expected, atol=1e-6)  # and training moves on from it
    saved = trainer.model("tuned")
    assert saved.net.config == builtin.net.config and saved.metadata["started_from"] == "superres-x2.safetensors"


def test_network_settings_or_none_give_a_new_network(pairs):
    small = Trainer(TrainConfig(steps=1, net={"channels": 8, "blocks": 1}, **TINY), source(pairs, TrainConfig(**TINY)))
    assert small.started_from is None and small.generator.config.channels == 8
    fresh = Trainer(TrainConfig(steps=1, init="none", **TINY), source(pairs, TrainConfig(**TINY)))
    assert fresh.started_from is None and fresh.generator.config.channels == SRNet().config.channels


def test_a_model_file_is_trained_whatever_its_network(pairs, tmp_path):
    path = save_model(tmp_path / "odd.safetensors", SRNet(scale=2, channels=12, blocks=2, activation="silu"))
    trainer = Trainer(TrainConfig(steps=1, init=str(path), **TINY), source(pairs, TrainConfig(**TINY)))
    assert trainer.generator.config.channels == 12 and trainer.generator.config.activation == "silu"
    with pytest.raises(ValueError, match="drop the network settings"):
        Trainer(TrainConfig(steps=1, init=str(path), net={"blocks": 3}, **TINY), source(pairs, TrainConfig(**TINY)))
    x4 = save_model(tmp_path / "x4.safetensors", SRNet(scale=4, channels=4, blocks=1))
    with pytest.raises(ValueError, match="upscales x4 but training is x2"):
        Trainer(TrainConfig(steps=1, init=str(x4), **TINY), source(pairs, TrainConfig(**TINY)))
    with pytest.raises(ValueError, match="init model file not found"):
        TrainConfig(steps=1, init=str(tmp_path / "missing.safetensors"), **TINY).validate()


def test_a_time_budget_ends_the_run_and_the_schedule_decays_over_it(pairs):
    config = TrainConfig(steps=1_000_000, seconds=1.0, net={"channels": 4, "blocks": 1}, lr=1e-3, **TINY)
    trainer = Trainer(config, source(pairs, config))
    reports = []
    result = trainer.run(callback=reports.append)
    assert 1 <= result.steps_done < 1_000_000
    assert trainer.budget.elapsed >= 1.0
    last = reports[-1]
    assert last.total_steps == result.steps_done and last.validation is not None  # the final validation ran
    assert last.lr == pytest.approx(1e-3 * 0.01, rel=1e-6)  # cosine at its end when the time is up
    with pytest.raises(ValueError, match="seconds must be a positive number"):
        TrainConfig(seconds=0).validate()


def test_cli_seconds_alone_and_init(tmp_path, capsys):
    (tmp_path / "hr").mkdir()
    (tmp_path / "lr").mkdir()
    lr, hr = synthetic_pair((96, 128), 2, seed=0)
    tifffile.imwrite(tmp_path / "hr" / "a.tif", hr)
    tifffile.imwrite(tmp_path / "lr" / "a.tif", lr)
    common = ["train", "--hr", str(tmp_path / "hr"), "--lr", str(tmp_path / "lr"), "--batch-size", "2",
              "--patch-size", "32", "--device", "cpu", "--quiet"]  # fmt: skip
    out, log = tmp_path / "m.safetensors", tmp_path / "log.json"
    code = main([*common, "--seconds", "1", "--channels", "4", "--blocks", "1", "--out", str(out), "--log", str(log)])
    assert code == 0, capsys.readouterr().err
    payload = json.loads(log.read_text())
    assert payload["config"]["seconds"] == 1.0 and 1 <= payload["steps_done"] < 100_000
    assert load_model(out).net.config.channels == 4
    code = main([*common, "--steps", "1", "--init", str(out), "--out", str(tmp_path / "m2.safetensors")])
    assert code == 0, capsys.readouterr().err
    assert load_model(tmp_path / "m2.safetensors").metadata["started_from"] == "m.safetensors"
    code = main([*common, "--steps", "1", "--init", str(tmp_path / "nope.safetensors"), "--out", str(out),
                 "--overwrite"])  # fmt: skip
    assert code == 2 and "init model file not found" in capsys.readouterr().err
    code = main([*common, "--seconds", "0", "--out", str(out), "--overwrite"])
    assert code == 2 and "--seconds must be a positive number" in capsys.readouterr().err
