"""TrainConfig(cpu_bf16=True): the CPU training step runs under bf16 autocast; validation stays float32."""

from __future__ import annotations

import math

import pytest
import torch

from napari_superres.engine.samples import synthetic_pair
from napari_superres.engine.train import trainer as trainer_module
from napari_superres.engine.train.trainer import TrainConfig, Trainer, make_pair_source


def _trainer(cpu_bf16: bool) -> Trainer:
    pairs = [synthetic_pair((96, 96), 2, seed=s) for s in range(2)]
    data = make_pair_source([hr for _, hr in pairs], [lq for lq, _ in pairs], scale=2, patch_size=32)
    config = TrainConfig(scale=2, preset="psnr", steps=2, batch_size=2, patch_size=32, device="cpu", val_every=0,
                         pretrain_steps=0, cpu_bf16=cpu_bf16, net={"channels": 8, "blocks": 1})  # fmt: skip
    return Trainer(config, data)


@pytest.mark.filterwarnings("ignore:cpu_bf16=True on a CPU without native bf16")
def test_cpu_bf16_trains_in_bf16_and_validates_in_float32():
    trainer = _trainer(cpu_bf16=True)
    with trainer._autocast():  # convolutions run in bf16 (the bicubic skip adds in float32)
        features = trainer.generator.head(torch.rand(1, 1, 16, 16))
    assert features.dtype == torch.bfloat16
    trainer.run()
    assert math.isfinite(trainer.history[-1]["losses"]["total"])
    report = trainer.validate()
    assert report is not None and math.isfinite(report.psnr)


def test_float32_training_is_the_default():
    trainer = _trainer(cpu_bf16=False)
    with trainer._autocast():
        assert trainer.generator.head(torch.rand(1, 1, 16, 16)).dtype == torch.float32


def test_cpu_bf16_on_a_cpu_without_native_bf16_warns_with_the_fix(monkeypatch):
    monkeypatch.setattr(trainer_module, "cpu_support", lambda precision: (False, "no avx512_bf16"))
    with pytest.warns(UserWarning, match="no avx512_bf16.*set cpu_bf16=False"):
        _trainer(cpu_bf16=True)


def test_cpu_bf16_on_a_cpu_with_native_bf16_does_not_warn(monkeypatch, recwarn):
    monkeypatch.setattr(trainer_module, "cpu_support", lambda precision: (True, "amx_bf16"))
    _trainer(cpu_bf16=True)
    assert not [w for w in recwarn if "cpu_bf16" in str(w.message)]
