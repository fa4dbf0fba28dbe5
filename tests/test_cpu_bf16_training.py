"""TrainConfig(cpu_bf16=True): the CPU training step runs under bf16 autocast; validation stays float32."""

from __future__ import annotations

import math

import torch

from napari_superres.engine.samples import synthetic_pair
from napari_superres.engine.train.trainer import TrainConfig, Trainer, make_pair_source


def _trainer(cpu_bf16: bool) -> Trainer:
    pairs = [synthetic_pair((96, 96), 2, seed=s) for s in range(2)]
    data = make_pair_source([hr for _, hr in pairs], [lq for lq, _ in pairs], scale=2, patch_size=32)
    config = TrainConfig(scale=2, preset="psnr", steps=2, batch_size=2, patch_size=32, device="cpu", val_every=0,
                         pretrain_steps=0, cpu_bf16=cpu_bf16, net={"channels": 8, "blocks": 1})  # fmt: skip
    return Trainer(config, data)


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
