"""The Engine's registry and shared state: devices are per call, shared networks never move.

"Another device" is CUDA when this machine has a GPU, else PyTorch's ``meta`` device
(tensors with shapes but no data): enough to see where a network lives after a call.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from napari_superres.engine.device import module_device, same_device
from napari_superres.engine.nets.srnet import SRNet, SRNetConfig
from napari_superres.engine.registry import Engine

OTHER = torch.device("cuda") if torch.cuda.is_available() else torch.device("meta")


def small_net(seed: int = 0) -> SRNet:
    torch.manual_seed(seed)
    return SRNet(SRNetConfig(channels=4, blocks=1)).eval()


@pytest.fixture
def engine():
    return Engine(device="cpu", builtins=False)


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 255, (40, 48), dtype=np.uint8)


def test_a_call_on_another_device_leaves_the_registered_network_on_the_cpu(engine, image, one_torch_thread):
    name = engine.register(small_net(), "small")
    registered = engine.get(name).net
    before = engine.upscale(image, name, device="cpu")

    elsewhere = engine.prepare(name, OTHER)
    assert same_device(module_device(elsewhere.net), OTHER)
    assert elsewhere.net is not registered
    assert module_device(registered).type == "cpu"
    assert engine.prepare(name, OTHER).net is elsewhere.net  # one copy per (network, device)
    assert engine.prepare(name, "cpu").net is registered  # on its own device: no copy

    if OTHER.type == "cuda":  # (meta tensors hold no data to run on)
        engine.upscale(image, name, device=OTHER)
    assert module_device(registered).type == "cpu"
    assert engine.device.type == "cpu"  # the default stays what it was
    np.testing.assert_array_equal(engine.upscale(image, name, device="cpu"), before)


def test_a_device_chosen_mid_run_does_not_disturb_a_running_call(engine, image, one_torch_thread):
    """What one widget does (prepare on a GPU) while another's CPU job runs: the job's network stays put."""
    name = engine.register(small_net(), "small")
    reference = engine.upscale(image, name, device="cpu", backend="torch")  # torch: the network itself runs
    seen = []

    def meanwhile() -> bool:  # called between tile batches of the running job
        seen.append(module_device(engine.prepare(name, OTHER).net))
        return False

    out = engine.upscale(image, name, device="cpu", tile=32, should_stop=meanwhile, backend="torch")
    assert len(seen) > 1 and all(same_device(d, OTHER) for d in seen)
    np.testing.assert_array_equal(out, reference)


def test_set_device_changes_only_the_default(engine, image, one_torch_thread):
    name = engine.register(small_net(), "small")
    engine.set_device("cpu")
    assert engine.resolve(None).type == "cpu"
    assert same_device(engine.resolve(OTHER), OTHER)
    assert module_device(engine.get(name).net).type == "cpu"


def test_a_copy_follows_weights_changed_in_place(engine):
    name = engine.register(small_net(), "small")
    registered = engine.get(name).net
    first = engine.prepare(name, OTHER).net
    with torch.no_grad():
        next(registered.parameters()).add_(1.0)  # e.g. training continues on the registered network
    second = engine.prepare(name, OTHER).net
    assert second is not first
    assert engine.prepare(name, OTHER).net is second


def test_user_networks_are_not_moved_by_upscale(image, one_torch_thread):
    engine = Engine(device="cpu", builtins=False)
    net = small_net()
    engine.prepare(net, OTHER)
    assert module_device(net).type == "cpu"


# --- the shared VGG-16 -----------------------------------------------------------------------------
@pytest.fixture
def counted_vgg(monkeypatch):
    """VGG-16 ``features`` with random weights, built by a counting loader that can be held back."""
    from torchvision.models.vgg import cfgs, make_layers

    from napari_superres.engine.nets import vgg as vgg_module

    calls = []
    release = threading.Event()
    release.set()

    def load(max_index: int = 30):
        calls.append(threading.current_thread().name)
        release.wait(10)
        return make_layers(cfgs["D"])[:max_index].eval().requires_grad_(False)  # VGG-16's features

    monkeypatch.setattr(vgg_module, "load_vgg16_features", load)
    return calls, release


def test_vgg_on_another_device_is_a_copy_and_the_shared_one_stays(engine, counted_vgg):
    calls, _ = counted_vgg
    on_cpu = engine.vgg_features("cpu")
    vgg_other = engine.vgg(("relu1_2", "relu2_2"), device=OTHER)
    assert same_device(module_device(vgg_other), OTHER)
    assert same_device(vgg_other.mean.device, OTHER)
    assert module_device(on_cpu).type == "cpu"  # the shared VGG did not move
    assert engine.vgg_features("cpu") is on_cpu
    assert module_device(engine.vgg(("relu1_2",), device="cpu")).type == "cpu"
    assert len(calls) == 1  # loaded once per engine


def test_vgg_loads_once_and_outside_the_registry_lock(engine, counted_vgg):
    calls, release = counted_vgg
    release.clear()  # the first loader blocks, as a 528 MB download would
    results = []
    threads = [threading.Thread(target=lambda: results.append(engine.vgg_features("cpu"))) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    engine.register(small_net(), "while loading")  # the registry is not blocked by the load
    assert engine.get("while loading") is not None and "while loading" in engine.names()
    assert time.perf_counter() - t0 < 2.0
    release.set()
    for t in threads:
        t.join(20)
    assert len(calls) == 1
    assert len(results) == 3 and all(r is results[0] for r in results)


def test_feature_difference_uses_the_vgg_passed_in(engine, counted_vgg, monkeypatch):
    """No hidden default engine: the map uses the given engine's VGG (or a given VGGFeatures)."""
    from napari_superres.engine import registry
    from napari_superres.engine.metrics.features import feature_difference
    from napari_superres.engine.nets.vgg import VGGFeatures

    monkeypatch.setattr(registry, "default_engine", lambda: pytest.fail("feature_difference used the default engine"))
    calls, _ = counted_vgg
    a = np.random.default_rng(1).random((24, 24), dtype=np.float32)
    b = np.random.default_rng(2).random((24, 24), dtype=np.float32)
    by_engine = feature_difference(a, b, layers=("relu1_2",), engine=engine, device="cpu")
    by_vgg = feature_difference(a, b, layers=("relu1_2",), vgg=VGGFeatures(("relu1_2",), engine.vgg_features("cpu")))
    np.testing.assert_allclose(by_engine, by_vgg, atol=1e-6)
    assert len(calls) == 1


def test_a_dask_payload_for_another_device_copies_the_model(engine):
    """lazy.ModelPayload (one per dask graph) runs chunks on its device without moving the model it holds."""
    from napari_superres.engine.infer.lazy import ModelPayload

    model = engine.get(engine.register(small_net(), "small"))
    payload = ModelPayload(model, OTHER)
    on_other = payload.model()
    assert same_device(module_device(on_other.net), OTHER)
    assert module_device(model.net).type == "cpu"
    assert payload.model() is on_other  # one copy per payload and device
    assert ModelPayload(model, "cpu").model() is model


def test_a_model_file_named_by_path_loads_once_until_it_changes(tmp_path, monkeypatch):
    import os

    from napari_superres.engine import registry
    from napari_superres.engine.nets.model_file import save_model

    loads: list[str] = []
    real_load = registry.load_model_file
    monkeypatch.setattr(
        registry, "load_model_file", lambda path, **kw: loads.append(str(path)) or real_load(path, **kw)
    )
    path = tmp_path / "mine.safetensors"
    save_model(path, SRNet(scale=2, channels=4, blocks=1))
    engine = Engine(device="cpu", builtins=False)
    first = engine.get(str(path))
    assert engine.get(path) is first and len(loads) == 1  # str or Path: loaded once

    save_model(path, SRNet(scale=2, channels=4, blocks=1))  # rewritten (atomically: a new file)
    os.utime(path, ns=(1, 1))  # a different modification time even on a coarse clock
    second = engine.get(str(path))
    assert second is not first and len(loads) == 2

    from napari_superres.engine.errors import ModelFileError

    with pytest.raises(ModelFileError, match="model file not found"):
        engine.get(str(tmp_path / "gone.safetensors"))
