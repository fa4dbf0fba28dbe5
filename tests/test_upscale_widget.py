"""The Upscale widget, driven through the napari plugin as a user would."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

import napari_superres._napari.upscale_widget as upscale_widget_module
from napari_superres._napari.engine_access import get_engine
from napari_superres.engine import SRModel, SRNet, save_model

pytestmark = pytest.mark.gui
PLUGIN = "napari-deep-superres"
WAIT_MS = 30_000


def covered_world_box(layer) -> np.ndarray:
    """World coordinates of the outer pixel edges (min and max) along every dimension."""
    shape = np.asarray(layer.data.shape[: layer.ndim])
    return np.array([layer.data_to_world(-0.5 * np.ones(layer.ndim)), layer.data_to_world(shape - 0.5)])


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def widget(viewer, qtbot):
    """The Upscale widget as napari creates it from the plugin manifest, with a tiny model registered."""
    _dock, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Upscale")
    torch.manual_seed(0)
    get_engine(viewer).register(SRNet(channels=8, blocks=1), "tiny")
    # the engine notifies through a queued Qt signal: the combo updates on the event loop
    qtbot.waitUntil(lambda: "tiny" in w.model_combo.choices, timeout=WAIT_MS)
    yield w
    if w.worker is not None:  # never leave a thread running past the test
        w.cancel()
        qtbot.waitUntil(lambda: w.worker is None, timeout=WAIT_MS)


@pytest.fixture
def errors(monkeypatch):
    """Messages sent to napari's error notification by the widget."""
    messages: list[str] = []
    monkeypatch.setattr(upscale_widget_module, "show_error", lambda msg: messages.append(str(msg)))
    return messages


def run_to_end(widget, qtbot, layer=None):
    worker = widget.run(layer)
    assert worker is not None, widget.status.value
    finished = []
    worker.finished.connect(lambda: finished.append(True))
    # the widget forgets its worker in its own `finished` handler, on the GUI thread
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: bool(finished) or not worker.is_running, timeout=WAIT_MS)
    return worker


def test_upscale_the_sample_pair(viewer, widget, qtbot, errors):
    viewer.open_sample(PLUGIN, "fluorescence_pair")
    low = viewer.layers["low-res (×2)"]
    high = viewer.layers["high-res"]
    before = low.data.copy()
    widget.layer_combo.value = low
    widget.model_combo.value = "tiny"
    assert not widget.scale_combo.enabled and widget.scale_combo.value == 2  # fixed by the model

    run_to_end(widget, qtbot)

    assert errors == []
    out = viewer.layers["low-res (×2) ×2 (tiny)"]
    assert out.data.shape == high.data.shape and out.data.dtype == np.uint16
    # the result lands on the high-res grid: same pixel size and position as the ground truth
    np.testing.assert_allclose(out.scale, high.scale)
    np.testing.assert_allclose(out.translate, high.translate)
    np.testing.assert_allclose(covered_world_box(out), covered_world_box(low))
    assert out.metadata["napari_superres"]["model"] == "tiny"
    np.testing.assert_array_equal(low.data, before)  # source untouched
    assert widget.status.value.startswith("added")
    # a learned net, not nearest-neighbour: not constant on 2x2 blocks
    assert np.abs(out.data[0::2, 0::2].astype(int) - out.data[1::2, 1::2]).max() > 0


def test_bicubic_at_any_scale_on_a_scaled_and_translated_layer(viewer, widget, qtbot):
    data = np.random.default_rng(0).random((20, 16), dtype=np.float32)
    source = viewer.add_image(data, name="src", scale=(0.5, 2.0), translate=(3.0, -7.0))
    widget.layer_combo.value = source
    widget.model_combo.value = "bicubic"
    assert widget.scale_combo.enabled
    widget.scale_combo.value = 3

    run_to_end(widget, qtbot)

    out = viewer.layers["src ×3 (bicubic)"]
    assert out.data.shape == (60, 48) and out.data.dtype == np.float32
    np.testing.assert_allclose(out.scale, (0.5 / 3, 2.0 / 3))
    np.testing.assert_allclose(out.translate, (3.0 - 0.5 / 3, -7.0 - 2.0 / 3))
    np.testing.assert_allclose(covered_world_box(out), covered_world_box(source))


def test_rgb_uint8_layer(viewer, widget, qtbot):
    rgb = np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    source = viewer.add_image(rgb, name="photo", rgb=True)
    widget.layer_combo.value = source
    widget.model_combo.value = "tiny"  # 1-channel model: luminance through the net, chroma bicubic

    run_to_end(widget, qtbot)

    out = viewer.layers["photo ×2 (tiny)"]
    assert out.rgb and out.data.shape == (80, 96, 3) and out.data.dtype == np.uint8


def test_zyx_stack_is_upscaled_plane_by_plane(viewer, widget, qtbot):
    stack = np.random.default_rng(2).integers(0, 4000, (3, 24, 20), dtype=np.uint16)
    source = viewer.add_image(stack, name="stack", scale=(5.0, 1.0, 1.0))
    widget.layer_combo.value = source
    widget.model_combo.value = "tiny"

    run_to_end(widget, qtbot)

    out = viewer.layers["stack ×2 (tiny)"]
    assert out.data.shape == (3, 48, 40) and out.data.dtype == np.uint16
    np.testing.assert_allclose(out.scale, (5.0, 0.5, 0.5))
    np.testing.assert_allclose(covered_world_box(out), covered_world_box(source))
    # planes are independent: upscaling plane 1 alone gives the same plane
    alone = get_engine(viewer).upscale(stack[1], "tiny")
    np.testing.assert_array_equal(out.data[1], alone)


def test_cancel_a_running_job(viewer, widget, qtbot, errors):
    big = np.random.default_rng(3).integers(0, 60000, (1536, 1536), dtype=np.uint16)
    source = viewer.add_image(big, name="big")
    widget.layer_combo.value = source
    widget.model_combo.value = "tiny"
    widget.tile_spin.value = 64  # many small tiles: cancellation is checked between them
    n_layers = len(viewer.layers)
    progress: list[tuple[int, int]] = []
    widget.progressed.connect(lambda done, total: progress.append((done, total)))

    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: len(progress) > 0, timeout=WAIT_MS)
    with qtbot.waitSignal(worker.finished, timeout=WAIT_MS):
        widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)

    done, total = progress[-1]
    assert done < total  # it really stopped early
    assert widget.status.value == "cancelled"
    assert len(viewer.layers) == n_layers and errors == []
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_multiscale_layer_uses_its_full_resolution_level(viewer, widget, qtbot, monkeypatch):
    warnings: list[str] = []
    monkeypatch.setattr(upscale_widget_module, "show_warning", lambda msg: warnings.append(str(msg)))
    full = np.random.default_rng(5).integers(0, 4000, (64, 48), dtype=np.uint16)
    source = viewer.add_image([full, full[::2, ::2]], name="pyramid", multiscale=True)
    widget.layer_combo.value = source
    widget.model_combo.value = "tiny"

    run_to_end(widget, qtbot)

    assert len(warnings) == 1 and "full-resolution level" in warnings[0]
    out = viewer.layers["pyramid ×2 (tiny)"]
    assert not out.multiscale and out.data.shape == (128, 96)
    np.testing.assert_allclose(covered_world_box(out), covered_world_box(source))


class _Exploding(nn.Module):
    """A model that fails inside the worker (after validation passed)."""

    scale = 2

    def receptive_field(self) -> int:
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom in forward")


def test_error_in_the_worker_is_a_notification(viewer, widget, qtbot, errors):
    get_engine(viewer).register(SRModel("exploding", _Exploding(), scale=2, in_channels=1))
    source = viewer.add_image(np.ones((16, 16), np.float32), name="ones")
    widget.model_combo.reset_choices()
    widget.layer_combo.value = source
    widget.model_combo.value = "exploding"
    n_layers = len(viewer.layers)

    run_to_end(widget, qtbot)

    assert len(errors) == 1 and "boom in forward" in errors[0]
    assert len(viewer.layers) == n_layers
    np.testing.assert_array_equal(source.data, 1.0)


def _nan_image():
    data = np.ones((16, 16), np.float32)
    data[3, 4] = np.nan
    return data


@pytest.mark.parametrize(
    ("data", "model", "message"),
    [
        (np.zeros((1, 1), np.uint16), "tiny", "too small"),
        (np.zeros((1, 9), np.uint16), "bicubic", "too small"),
        (_nan_image(), "tiny", "NaN"),
        (np.zeros((16, 16), np.uint16), "rgb-net", "3-channel"),
    ],
    ids=["1-pixel", "1-row", "nan", "rgb-model-on-gray"],
)
def test_bad_input_is_refused_before_running(viewer, widget, errors, data, model, message):
    get_engine(viewer).register(SRNet(in_channels=3, out_channels=3, channels=8, blocks=1), "rgb-net")
    widget.model_combo.reset_choices()
    source = viewer.add_image(data, name="bad")
    widget.layer_combo.value = source
    widget.model_combo.value = model
    layers_before = list(viewer.layers)

    assert widget.run() is None

    assert len(errors) == 1 and message in errors[0]
    assert list(viewer.layers) == layers_before
    np.testing.assert_array_equal(source.data, data)


def test_non_image_layers_are_refused_programmatically(viewer, widget, errors):
    # (napari itself cannot hold an empty or 1-D image layer; the engine rejects such arrays in its API)
    labels = viewer.add_labels(np.zeros((16, 16), np.uint8), name="seg")
    points = viewer.add_points(np.zeros((3, 2)), name="dots")
    assert widget.run(labels) is None
    assert "Labels layer" in errors[-1]
    assert widget.run(points) is None
    assert "Points layer" in errors[-1]
    assert len(errors) == 2
    assert list(viewer.layers) == [labels, points]
    np.testing.assert_array_equal(labels.data, 0)


def test_load_a_model_file_and_reject_a_broken_one(viewer, widget, tmp_path, errors):
    path = save_model(tmp_path / "my-x4.safetensors", SRNet(scale=4, channels=8, blocks=1))
    name = widget.load_model_file(path)
    assert name is not None and widget.model_combo.value == name
    assert widget.scale_combo.value == 4 and not widget.scale_combo.enabled

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a model")
    assert widget.load_model_file(broken) is None
    assert len(errors) == 1 and "broken.safetensors" in errors[0]
    assert widget.model_combo.value == name  # selection kept


def test_models_registered_from_another_thread_appear(viewer, widget, qtbot):
    engine = get_engine(viewer)
    thread = threading.Thread(target=engine.register, args=(SRNet(channels=4, blocks=0), "from-thread"))
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: "from-thread" in widget.model_combo.choices, timeout=WAIT_MS)
    engine.remove("from-thread")
    qtbot.waitUntil(lambda: "from-thread" not in widget.model_combo.choices, timeout=WAIT_MS)


def test_dask_layer_stays_lazy_unless_compute_now(viewer, widget, qtbot):
    da = pytest.importorskip("dask.array")
    from napari_superres._napari.lazy_planes import BackgroundPlanes

    data = np.random.default_rng(4).integers(0, 4000, (3, 32, 32), dtype=np.uint16)
    source = viewer.add_image(da.from_array(data, chunks=(1, 32, 32)), name="lazy", contrast_limits=(0, 4000))
    widget.layer_combo.value = source
    widget.model_combo.value = "tiny"

    assert widget.run() is None  # no job: the layer is added at once, planes come in the background
    lazy_out = viewer.layers["lazy ×2 (tiny)"]
    assert isinstance(lazy_out.data, BackgroundPlanes) and lazy_out.data.shape == (3, 64, 64)
    shown = int(viewer.dims.current_step[0])
    # the displayed plane (and its neighbours) are upscaled off the GUI thread, then the layer refreshes
    qtbot.waitUntil(lambda: lazy_out.data.cached((shown,)), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: np.asarray(lazy_out._slice.image.raw).any(), timeout=WAIT_MS)
    assert not any(lazy_out.data.cached((i,)) for i in range(3) if abs(i - shown) > 1)

    widget.compute_check.value = True
    run_to_end(widget, qtbot)
    eager_out = viewer.layers[-1]
    assert isinstance(eager_out.data, np.ndarray)
    np.testing.assert_array_equal(lazy_out.data[shown], eager_out.data[shown])
    np.testing.assert_array_equal(np.asarray(lazy_out.data), eager_out.data)  # all planes, computed now


def test_adapt_to_this_image_then_upscale_with_the_adapted_model(viewer, widget, qtbot, errors):
    image = np.random.default_rng(6).integers(0, 4000, (64, 64), dtype=np.uint16)
    source = viewer.add_image(image, name="cells")
    widget.layer_combo.value = source
    widget.model_combo.value = "tiny"
    widget.adapt_check.value = True
    widget.adapt_seconds.value = 1  # a time budget: a few steps

    run_to_end(widget, qtbot)

    assert errors == []
    assert "tiny adapted" in get_engine(viewer).names()  # registered: selectable for the next run
    out = viewer.layers["cells ×2 (tiny adapted)"]
    assert out.data.shape == (128, 128)
    assert "tiny adapted" in widget.model_combo.choices


def test_consistency_map_overlays_the_result(viewer, widget, qtbot, errors):
    image = np.random.default_rng(7).integers(0, 4000, (48, 40), dtype=np.uint16)
    source = viewer.add_image(image, name="img", scale=(0.5, 0.5), translate=(2.0, 1.0))
    widget.layer_combo.value = source
    widget.model_combo.value = "bicubic"
    widget.consistency_check.value = True

    run_to_end(widget, qtbot)

    assert errors == []
    out = viewer.layers["img ×2 (bicubic)"]
    check = viewer.layers["img ×2 (bicubic) consistency"]
    assert check.data.shape == out.data.shape and check.data.dtype == np.float32
    np.testing.assert_allclose(check.translate, out.translate)
    np.testing.assert_allclose(check.scale, out.scale)
    assert "rms" in check.metadata["napari_superres"] and "consistency" in widget.status.value


def test_along_z_upsamples_a_stack_axially_and_overlays_it(viewer, widget, qtbot, errors):
    volume = np.random.default_rng(8).integers(0, 4000, (4, 32, 32), dtype=np.uint16)
    source = viewer.add_image(volume, name="stack", scale=(4.0, 1.0, 1.0), translate=(10.0, 0.0, 0.0))
    widget.layer_combo.value = source
    widget.model_combo.value = "bicubic"
    widget.axial_check.value = True
    widget.axial_steps.value = 2

    run_to_end(widget, qtbot)

    assert errors == []
    out = viewer.layers["stack Z×4 (axial)"]
    assert out.data.shape == (16, 32, 32)
    np.testing.assert_allclose(out.scale, (1.0, 1.0, 1.0))
    np.testing.assert_allclose(out.translate, source.translate)  # input plane k = output plane 4k


def test_deleting_the_source_layer_mid_run_stops_the_job_and_adds_nothing(viewer, widget, qtbot, monkeypatch):
    warnings: list[str] = []
    monkeypatch.setattr(upscale_widget_module, "show_warning", lambda msg: warnings.append(str(msg)))
    big = np.random.default_rng(8).integers(0, 60000, (1024, 1024), dtype=np.uint16)
    source = viewer.add_image(big, name="doomed")
    widget.layer_combo.value = source
    widget.model_combo.value = "tiny"
    widget.tile_spin.value = 64
    progress: list[int] = []
    widget.progressed.connect(lambda done, total: progress.append(done))
    assert widget.run() is not None
    qtbot.waitUntil(lambda: len(progress) > 0, timeout=WAIT_MS)

    viewer.layers.remove(source)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)

    assert len(viewer.layers) == 0  # no result added afterwards
    assert "'doomed' was deleted" in widget.status.value and warnings
    assert widget.run_button.enabled


def test_a_conditioned_model_shows_its_estimate_and_takes_overrides(viewer, widget, qtbot, errors):
    """The built-ins are told the image's blur and noise: the dock shows the estimate, keeps it in the
    result's metadata, and the blur field overrides it."""
    torch.manual_seed(1)
    get_engine(viewer).register(SRNet(channels=8, blocks=1, cond_channels=2), "conditioned")
    qtbot.waitUntil(lambda: "conditioned" in widget.model_combo.choices, timeout=WAIT_MS)
    viewer.open_sample(PLUGIN, "fluorescence_pair")
    widget.layer_combo.value = viewer.layers["low-res (×2)"]
    widget.model_combo.value = "conditioned"
    run_to_end(widget, qtbot)
    assert errors == []
    assert widget.estimate_label.value.startswith("blur σ") and "photons" in widget.estimate_label.value
    used = viewer.layers[-1].metadata["napari_superres"]["degradation"]
    assert used["blur_sigma"] > 0 and used["overrides"] == {}

    widget.blur_spin.value = 2.5
    run_to_end(widget, qtbot)
    assert viewer.layers[-1].metadata["napari_superres"]["degradation"]["blur_sigma"] == 2.5
    assert widget.estimate_label.value.startswith("blur σ 2.50 px")


def test_self_ensemble_averages_flips_and_turns_and_says_so(viewer, widget, qtbot, errors):
    data = np.random.default_rng(3).random((24, 20), dtype=np.float32)
    source = viewer.add_image(data, name="noisy")
    widget.layer_combo.value = source
    widget.model_combo.value = "tiny"
    widget.ensemble_check.value = True

    run_to_end(widget, qtbot)

    assert errors == []
    out = viewer.layers["noisy ×2 (tiny)"]
    engine = get_engine(viewer)
    np.testing.assert_allclose(out.data, engine.upscale(data, "tiny", self_ensemble=True), atol=1e-5)
    assert np.abs(out.data - engine.upscale(data, "tiny")).max() > 1e-4  # not the plain result
    assert out.metadata["napari_superres"]["self_ensemble"] is True
