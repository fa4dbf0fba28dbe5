"""int8 fine-tuning: a model's companion file of tuned weights is what ``precision="int8"`` quantizes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from napari_superres.engine import SRNet
from napari_superres.engine.infer import precision as prec
from napari_superres.engine.infer.calibration import network_input
from napari_superres.engine.nets.folding import fold_upsampling
from napari_superres.engine.nets.model_file import load_model, save_model
from napari_superres.engine.registry import Engine
from napari_superres.engine.samples import synthetic_pair
from napari_superres.engine.train.int8_tuning import fake_quantized, module_of, save_int8_tuning, tune_int8

pytestmark = pytest.mark.skipif(not prec.cpu_support("int8")[0], reason=prec.cpu_support("int8")[1])


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_SUPERRES_CACHE_DIR", str(tmp_path / "onnx-cache"))


def test_exporter_scopes_name_the_modules():
    assert module_of("body/body.3/conv1") == "body.3.conv1"
    assert module_of("head/head.1") == "head.1"
    assert module_of("body/body.0") == "body.0"


@pytest.mark.slow  # calibration, 3 tuning steps and two quantizations: ~20 s on 2 cores
def test_tuned_weights_are_what_int8_quantizes_and_only_for_the_file_they_tune(tmp_path):
    torch.manual_seed(0)
    net = SRNet(scale=2, channels=8, blocks=2, upsample_channels=[8]).eval()
    path = save_model(
        tmp_path / "tiny.safetensors", net, normalization={"mode": "percentile", "low": 1.0, "high": 99.8}
    )
    model = load_model(path)
    lows = [synthetic_pair(shape=(96, 96), scale=2, seed=s, noise=bool(s % 2))[0] for s in range(4)]
    inputs = [network_input(low, 1, 0) for low in lows]
    fp32, _ = prec._folded_bytes(model.net, 1)
    quantized = prec.quantize_int8(fp32, inputs=inputs)

    student, convs, params = fake_quantized(fold_upsampling(model.net), quantized)  # the graph's form of the network
    assert convs == ["body.0.conv1", "body.0.conv2", "body.1.conv1", "body.1.conv2"]  # first, upsampling, last: fp32
    assert params and all(0 < scale and 0 <= zero <= 255 for scale, zero in params.values())

    tuning = tune_int8(model.net, quantized, inputs, steps=3, patch=24, batch=2, log=None)
    changed = {k for k, v in tuning.state.items() if not torch.equal(v, model.net.state_dict()[k])}
    assert changed and all(k.startswith("body.") for k in changed)  # only the body's int8 convs were tuned
    save_int8_tuning(path.with_name("tiny.int8.safetensors"), tuning, hashlib.sha256(path.read_bytes()).hexdigest())

    loaded = prec.int8_tuning(model)
    assert loaded is not None and loaded[1] == tuning.activation_params
    engine = Engine(device="cpu", builtins=False)
    image = (lows[0] * 4000).astype(np.uint16)
    out = engine.upscale(image, model, precision="int8")
    assert out.shape == (2 * image.shape[0], 2 * image.shape[1]) and out.dtype == np.uint16
    assert list((tmp_path / "onnx-cache").glob("*-int8-*-tuned-*.onnx"))  # upscale() quantized the tuned weights
    tuned = prec.int8_runner(model.net, in_channels=1, tuning=loaded)
    calibrated = prec.int8_runner(model.net, in_channels=1)  # the same network, its own weights calibrated
    assert not np.allclose(tuned.numpy(inputs[0]), calibrated.numpy(inputs[0]))

    path.write_bytes(path.read_bytes() + b" ")  # the model file changed: the tuning no longer applies
    assert prec.int8_tuning(model) is None


def test_a_quantized_folded_upsampling_is_rounded_in_tuning_but_keeps_its_weights():
    torch.manual_seed(1)
    net = SRNet(scale=2, channels=8, blocks=1, upsample_channels=[8]).eval()
    inputs = [network_input(synthetic_pair(shape=(96, 96), scale=2, seed=s)[0], 1, 0) for s in range(2)]
    fp32, _ = prec._folded_bytes(net, 1)
    quantized = prec.quantize_int8(fp32, inputs=inputs, keep_fp32=("first", "border", "last"))
    _, convs, _ = fake_quantized(fold_upsampling(net), quantized)
    assert "upsampler.0.folded" in convs
    tuning = tune_int8(net, quantized, inputs, steps=2, patch=24, batch=2, log=None)
    assert set(tuning.state) == set(net.state_dict())  # the network's own state, not the folded form's
    assert all(torch.equal(tuning.state[k], v) for k, v in net.state_dict().items() if not k.startswith("body."))
