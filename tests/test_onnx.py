"""ONNX export (API and `napari-superres export`) and the ONNX Runtime backend of upscale()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_superres.engine import SRNet
from napari_superres.engine.infer import onnx_backend
from napari_superres.engine.infer.onnx_backend import export_onnx, make_session, onnx_runner
from napari_superres.engine.nets.model_file import save_model
from napari_superres.engine.registry import Engine

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_SUPERRES_CACHE_DIR", str(tmp_path / "onnx-cache"))


def _small_net(scale: int = 2) -> SRNet:
    torch.manual_seed(0)
    return SRNet(scale=scale, channels=8, blocks=2).eval()


@pytest.mark.parametrize("scale", [2, 4])
def test_exported_graph_matches_torch_at_any_size(scale):
    net = _small_net(scale)
    session = make_session(export_onnx(net), threads=1)
    for h, w in [(23, 37), (64, 48)]:  # dynamic H and W, neither the export's probe size
        x = torch.rand(2, 1, h, w)
        got = session.run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            want = net(x).numpy()
        assert got.shape == (2, 1, scale * h, scale * w)
        assert np.abs(got - want).max() < 1e-5


def test_export_opset_below_17_is_refused():
    with pytest.raises(ValueError, match="opset must be >= 17"):
        export_onnx(_small_net(), opset=13)


def test_upscale_through_onnxruntime_equals_torch_tiled_and_untiled():
    engine = Engine(device="cpu", builtins=False)
    net = _small_net()
    image = (np.random.default_rng(1).random((70, 90)) * 65535).astype(np.uint16)
    by_torch = engine.upscale(image, net, backend="torch", tile=0)
    untiled = engine.upscale(image, net, backend="onnxruntime")
    tiled = engine.upscale(image, net, backend="onnxruntime", tile=48)
    assert untiled.dtype == np.uint16 and untiled.shape == (140, 180)
    assert np.abs(untiled.astype(int) - by_torch).max() <= 1
    assert np.abs(tiled.astype(int) - untiled).max() <= 1


def test_dask_chunks_run_the_backend_asked_for(monkeypatch):
    da = pytest.importorskip("dask.array")
    from napari_superres.engine.infer import lazy

    chosen: list[str] = []
    plan = lazy.plan_upscale

    def spy(*args, **kwargs):
        job = plan(*args, **kwargs)
        chosen.append(job.backend)
        return job

    monkeypatch.setattr(lazy, "plan_upscale", spy)
    engine = Engine(device="cpu", builtins=False)
    net = _small_net()
    image = (np.random.default_rng(2).random((96, 96)) * 65535).astype(np.uint16)
    lazy_image = da.from_array(image, chunks=48)
    by_torch = engine.upscale(lazy_image, net, backend="torch").compute(scheduler="synchronous")
    assert set(chosen) == {"torch"}  # the graph's plan and every chunk's
    chosen.clear()
    by_ort = engine.upscale(lazy_image, net, backend="onnxruntime").compute(scheduler="synchronous")
    assert set(chosen) == {"onnxruntime"}
    assert np.abs(by_ort.astype(int) - by_torch).max() <= 1
    with pytest.raises(ValueError, match="backend must be one of"):
        engine.upscale(lazy_image, net, backend="tensorrt")  # refused when the graph is built, not in a chunk


def test_auto_backend_is_onnxruntime_on_cpu_and_torch_for_bicubic():
    from napari_superres.engine.infer.pipeline import resolve_backend
    from napari_superres.engine.nets.model_file import SRModel
    from napari_superres.engine.nets.srnet import Bicubic

    cpu = torch.device("cpu")
    net_model = SRModel("n", _small_net(), 2, 1)
    assert resolve_backend("auto", net_model, cpu) == ("onnxruntime", False)
    assert resolve_backend("torch", net_model, cpu) == ("torch", True)
    assert resolve_backend("auto", SRModel("b", Bicubic(2), None, None), cpu)[0] == "torch"
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("tensorrt", net_model, cpu)


def test_sessions_are_cached_and_follow_weight_changes(tmp_path):
    net = _small_net()
    first = onnx_runner(net)
    assert first is not None and onnx_runner(net) is first
    assert any((tmp_path / "onnx-cache").glob("*.onnx"))  # exported graph kept on disk
    with torch.no_grad():
        next(net.parameters()).add_(0.5)
    second = onnx_runner(net)
    assert second is not None and second is not first
    x = torch.rand(1, 1, 20, 20)
    with torch.no_grad():
        assert (second(x) - net(x)).abs().max() < 1e-5


def test_a_network_that_cannot_export_falls_back_to_torch(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no exporter today")

    monkeypatch.setattr(onnx_backend, "export_onnx", broken)
    engine = Engine(device="cpu", builtins=False)
    net = _small_net()
    image = np.zeros((20, 20), np.uint8)
    assert engine.upscale(image, net).shape == (40, 40)  # auto: torch ran it
    with pytest.raises(RuntimeError, match="no exporter today"):
        engine.upscale(image, net, backend="onnxruntime")


def test_cli_export_onnx_matches_torch(tmp_path, capsys):
    import onnxruntime as ort

    from napari_superres.cli import main

    net = _small_net()
    model_file = tmp_path / "m.safetensors"
    save_model(model_file, net)
    before = model_file.read_bytes()
    out = tmp_path / "m.onnx"
    assert main(["export", str(model_file), "--onnx", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 1, 31, 45)
    with torch.no_grad():
        assert np.abs(session.run(None, {"input": x.numpy()})[0] - net(x).numpy()).max() < 1e-5
    assert model_file.read_bytes() == before

    assert main(["export", str(model_file), "--onnx", str(out)]) == 2  # exists: not replaced without --force
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(model_file), "--onnx", str(model_file), "--force"]) == 2  # never over its input
    assert model_file.read_bytes() == before
    assert main(["export", "bicubic", "--onnx", str(tmp_path / "b.onnx")]) == 2
    assert main(["export", str(model_file)]) == 2  # no target format


def test_an_idle_session_hands_its_arena_back_and_still_runs():
    import time

    net = _small_net()
    runner = onnx_runner(net)
    x = torch.rand(1, 1, 40, 40)
    before = runner(x)
    runner.release_later(0.0)
    for _ in range(100):  # the release runs on a timer thread
        if runner._timer is None:
            break
        time.sleep(0.02)
    assert runner._timer is None and runner._active == 0
    torch.testing.assert_close(runner(x), before)


def test_cancel_ends_a_run_inside_a_large_tile():
    import threading
    import time

    from napari_superres.engine.errors import Cancelled

    runner = onnx_runner(SRNet(scale=2, channels=32, blocks=4).eval())
    x = torch.rand(1, 1, 1024, 1024)  # seconds of work on a CPU core
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    t0 = time.perf_counter()
    with pytest.raises(Cancelled):
        runner(x, stop=stop.is_set)
    assert time.perf_counter() - t0 < 1.5  # one node of the graph, not the whole tile
    small = torch.rand(1, 1, 16, 16)
    assert runner(small, stop=lambda: False).shape == (1, 1, 32, 32)  # the session runs on
