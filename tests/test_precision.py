"""Reduced-precision CPU inference: ``upscale(..., precision=)`` with bf16, int8 and auto."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_superres.engine import SRNet
from napari_superres.engine.infer import precision as prec
from napari_superres.engine.infer.onnx_backend import onnxruntime_available
from napari_superres.engine.nets.model_file import SRModel
from napari_superres.engine.registry import Engine

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_SUPERRES_CACHE_DIR", str(tmp_path / "onnx-cache"))


@pytest.fixture(scope="module")
def model() -> SRModel:
    torch.manual_seed(0)
    net = SRNet(scale=2, channels=8, blocks=1).eval()
    return SRModel("tiny", net, 2, 1, normalization={"mode": "percentile", "low": 1.0, "high": 99.8})


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    y, x = np.mgrid[0:48, 0:48]
    smooth = 1000 + 800 * np.sin(x / 5.0) * np.cos(y / 7.0) + 600 * (np.hypot(x - 20, y - 30) < 9)
    return smooth.astype(np.uint16)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(float(b.max() - b.min()) ** 2 / max(mse, 1e-12)))


def test_unknown_precision_names_the_choices(model, image):
    with pytest.raises(ValueError, match="fp32, bf16, int8, auto"):
        Engine(device="cpu", builtins=False).upscale(image, model, precision="fp16")


def test_reduced_precision_is_refused_off_the_cpu_and_auto_falls_back():
    with pytest.raises(ValueError, match="CPU option"):
        prec.resolve_precision("int8", torch.device("cuda"))
    assert prec.resolve_precision("auto", torch.device("cuda")) == "fp32"


@pytest.mark.slow  # calibration and quantization: tens of seconds on a shared 2-core machine
@pytest.mark.skipif(not prec.cpu_support("int8")[0], reason=prec.cpu_support("int8")[1])
def test_int8_is_close_to_fp32_and_cached_on_disk(model, image, tmp_path):
    engine = Engine(device="cpu", builtins=False)
    fp32 = engine.upscale(image, model, precision="fp32")
    int8 = engine.upscale(image, model, precision="int8")
    assert int8.shape == fp32.shape and int8.dtype == np.uint16
    assert _psnr(int8, fp32) > 35  # a quantized copy of the same network, not another result
    cached = list((tmp_path / "onnx-cache").glob("*-int8-*.onnx"))
    assert len(cached) == 1  # quantized once, kept next to the fp32 export


@pytest.mark.skipif(not prec.cpu_support("bf16")[0], reason=prec.cpu_support("bf16")[1])
def test_bf16_is_close_to_fp32(model, image):
    engine = Engine(device="cpu", builtins=False)
    fp32 = engine.upscale(image, model, precision="fp32")
    bf16 = engine.upscale(image, model, precision="bf16")
    assert _psnr(bf16, fp32) > 40


def test_auto_picks_the_fastest_within_the_loss_limit(monkeypatch):
    monkeypatch.setattr(prec, "cpu_support", lambda name: (True, "test"))
    measured = {"precisions": {"bf16": {"speedup": 1.4, "loss_db": 0.01}, "int8": {"speedup": 2.5, "loss_db": 0.04}}}
    assert prec.choose_auto(measured, CPU) == "int8"
    measured["precisions"]["int8"]["loss_db"] = 0.3  # too lossy: the next fastest
    assert prec.choose_auto(measured, CPU) == "bf16"
    monkeypatch.setattr(prec, "cpu_support", lambda name: (False, "no instructions"))
    assert prec.choose_auto(measured, CPU) == "fp32"  # the CPU lacks them: fp32


def test_measurement_applies_only_to_the_weights_it_measured(tmp_path, model):
    import hashlib

    weights = tmp_path / "m.safetensors"
    weights.write_bytes(b"weights")
    stored = {"model_sha256": hashlib.sha256(b"weights").hexdigest(),
              "precisions": {"int8": {"speedup": 2.0, "loss_db": 0.0}}}  # fmt: skip
    (tmp_path / "m.precision.json").write_text(json.dumps(stored))
    from_file = SRModel("m", model.net, 2, 1, source=str(weights))
    assert prec.measured_precisions(from_file) == stored
    weights.write_bytes(b"retrained")  # another model now: its measurement is gone
    assert prec.measured_precisions(from_file) == {}
    assert prec.measured_precisions(model) == {}  # a session model has none: auto is fp32


def test_auto_on_a_model_without_measurement_is_fp32(model, image):
    engine = Engine(device="cpu", builtins=False)
    np.testing.assert_array_equal(
        engine.upscale(image, model, precision="auto"), engine.upscale(image, model, precision="fp32")
    )


@pytest.mark.skipif(not onnxruntime_available(), reason="needs onnxruntime")
def test_cli_accepts_precision():
    import argparse

    from napari_superres.cli import upscale_cmd

    parser = argparse.ArgumentParser()
    upscale_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["upscale", "in.tif", "out.zarr", "--precision", "int8"])
    assert args.precision == "int8"


def test_calibration_inputs_carry_the_maps_upscale_appends(monkeypatch):
    from napari_superres.engine.infer import calibration as cal

    monkeypatch.setattr(cal, "CALIBRATION_SIZE", 32)  # tiny inputs: one synthetic field, one bundled image
    monkeypatch.setattr(cal, "CALIBRATION_SEEDS", (5000,))
    monkeypatch.setattr(cal, "CALIBRATION_IMAGES", ("camera",))
    inputs = cal.calibration_inputs(in_channels=1, cond_channels=2, scale=2)
    assert len(inputs) == 2
    for x in inputs:
        assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
        image, noise, blur = x[0]
        assert 0.0 <= np.percentile(image, 50) <= 1.0  # normalised as the models' inputs
        assert noise.min() >= 0.0 and not np.allclose(noise, image)  # a noise map, not the image repeated
        assert np.ptp(blur) == 0.0 and blur[0, 0] > 0.0  # one blur value over the image


def test_calibration_degradations_give_low_res_images():
    from napari_superres.engine.infer.calibration import DEGRADATIONS, degrade

    hr = np.random.default_rng(0).random((40, 40)) * 500
    for kind in DEGRADATIONS:
        low = degrade(hr, 2, kind, np.random.default_rng(1))
        assert low.shape == (20, 20) and np.isfinite(low).all()
