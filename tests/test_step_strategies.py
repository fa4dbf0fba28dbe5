"""Training methods as step strategies over one fit loop (engine/train/steps.py, engine/train/loop.py)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_superres import SuperresError  # noqa: E402
from napari_superres.engine.axial import train_axial  # noqa: E402
from napari_superres.engine.errors import Cancelled  # noqa: E402
from napari_superres.engine.nets.axial_net import AxialNet  # noqa: E402
from napari_superres.engine.train.axial_data import AxialDegradation, AxialPairSampler  # noqa: E402
from napari_superres.engine.train.config import TrainConfig, TrainSettingError  # noqa: E402
from napari_superres.engine.train.loop import FitLoop  # noqa: E402
from napari_superres.engine.train.schedule import Schedule  # noqa: E402
from napari_superres.engine.train.steps import PixelStep  # noqa: E402


class GradientStep(PixelStep):
    """A custom training method: L1 on the pixels plus L1 on the horizontal gradients."""

    def terms(self, sr, gt, weights):
        terms = super().terms(sr, gt, weights)
        terms["gradient"] = (sr.diff(dim=-1) - gt.diff(dim=-1)).abs().mean()
        return terms


def _upsampler() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.PixelShuffle(2))


def test_a_custom_step_strategy_runs_in_the_fit_loop():
    hr = torch.rand(4, 1, 16, 16)
    lr = torch.nn.functional.avg_pool2d(hr, 2)
    step = GradientStep(_upsampler(), lr=1e-2, schedule=Schedule("cosine", 20), weights={"l1": 1.0, "gradient": 0.5})
    loop = FitLoop(step, batches=lambda: (lr, hr))
    reports = []
    stopped = loop.run(20, callback=reports.append)
    assert not stopped and loop.step == 20 and len(loop.history) == 20
    first, last = reports[0].losses, reports[-1].losses
    assert set(last) == {"l1", "gradient", "total"}
    assert last["total"] < first["total"]
    assert last["total"] == pytest.approx(last["l1"] + 0.5 * last["gradient"], rel=1e-5)
    assert reports[-1].lr == pytest.approx(1e-2 * 0.01)  # cosine to 1 % of the learning rate at the end
    assert loop.run(30, should_stop=lambda: loop.step >= 25)  # a stop request ends the run between steps
    assert loop.step == 25


def test_the_axial_trainer_is_a_pixel_step_in_the_shared_loop():
    rng = np.random.default_rng(0)
    volume = rng.random((4, 40, 40)).astype(np.float32)
    sampler = AxialPairSampler([volume], AxialDegradation(factor=2, blur_sigma=1.0), patch_size=8, seed=0)
    progress: list[tuple[int, float]] = []
    torch.manual_seed(0)
    net = AxialNet(factor=2, channels=4, blocks=1)
    losses = train_axial(net, sampler, 3, device=torch.device("cpu"), batch_size=2,
                         progress=lambda step, loss: progress.append((step, loss)))  # fmt: skip
    assert len(losses) == 3 and [s for s, _ in progress] == [1, 2, 3] and not net.training

    # the same training, written out: a PixelStep (L1, cosine to 2 %, clipping) in a FitLoop
    torch.manual_seed(0)
    again = AxialNet(factor=2, channels=4, blocks=1)
    sampler = AxialPairSampler([volume], AxialDegradation(factor=2, blur_sigma=1.0), patch_size=8, seed=0)
    step = PixelStep(again, lr=1e-3, schedule=Schedule("cosine", 3, floor=0.02), weights={"l1": 1.0}, grad_clip=1.0)
    loop = FitLoop(step, batches=lambda: sampler.sample(2))
    loop.run(3)
    assert [h["losses"]["l1"] for h in loop.history] == losses

    with pytest.raises(Cancelled):
        train_axial(net, sampler, 5, device=torch.device("cpu"), batch_size=2, should_stop=lambda: True)


def test_train_config_errors_are_of_the_package_family_and_name_the_setting():
    with pytest.raises(SuperresError, match="batch_size must be at least 1") as caught:
        TrainConfig(batch_size=0).validate()
    assert isinstance(caught.value, ValueError) and caught.value.setting == "batch_size"
    assert str(caught.value.named("--batch-size")).startswith("--batch-size must be at least 1")
    with pytest.raises(TrainSettingError, match="unknown loss term") as caught:
        TrainConfig(weights={"sharpness": 1.0}).validate()
    assert caught.value.setting == "weights"
