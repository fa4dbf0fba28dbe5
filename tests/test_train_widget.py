"""The Train widget, driven through the napari plugin as a user would."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import napari_superres._napari.train_widget as train_widget_module
from napari_superres._napari.engine_access import get_engine
from napari_superres._napari.train_widget import PREVIEW_LAYER
from napari_superres.engine.nets.model_file import load_model
from napari_superres.engine.train.trainer import Trainer

pytestmark = pytest.mark.gui
PLUGIN = "napari-deep-superres"
WAIT_MS = 120_000
HR, LR = "high-res", "low-res (×2)"


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def widget(viewer, qtbot):
    """The Train widget as napari creates it from the manifest, set up for a tiny, fast run."""
    _dock, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    qtbot.waitUntil(lambda: w.ready, timeout=WAIT_MS)  # PyTorch is imported off the GUI thread
    w.steps_spin.value = 40
    w.batch_spin.value = 4
    w.patch_spin.value = 32
    w.val_spin.value = 10
    w.channels_spin.value = 8
    w.blocks_spin.value = 1
    w.device_combo.value = "cpu"
    yield w
    worker = w.worker
    if worker is not None:  # never leave a thread running past the test
        assert w.stop(wait=True, timeout=WAIT_MS / 1000)
        qtbot.waitUntil(lambda: not worker.is_running, timeout=WAIT_MS)


@pytest.fixture
def errors(monkeypatch):
    """Messages the widget sent to napari's error notification."""
    messages: list[str] = []
    monkeypatch.setattr(train_widget_module, "show_error", lambda msg: messages.append(str(msg)))
    return messages


@pytest.fixture
def sample_pair(viewer, widget):
    viewer.open_sample(PLUGIN, "fluorescence_pair")
    widget.hr_combo.value = viewer.layers[HR]
    widget.lr_combo.value = viewer.layers[LR]
    return viewer.layers[HR], viewer.layers[LR]


def wait_for_end(widget, worker, qtbot):
    """Wait until the worker's thread has finished and the widget has handled it."""
    finished = []
    worker.finished.connect(lambda: finished.append(True))
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: bool(finished) or not worker.is_running, timeout=WAIT_MS)


def test_train_on_the_sample_pair_and_upscale_with_the_model(viewer, widget, sample_pair, qtbot, errors):
    hr_layer, _ = sample_pair
    assert widget.pair_label.value.startswith("×2")
    widget.name_edit.value = "my x2"
    widget.steps_spin.value = 20
    widget.val_spin.value = 5
    added, updates = [], []

    def watch_preview(event):
        if event.value.name == PREVIEW_LAYER:
            added.append(event.value)
            event.value.events.data.connect(updates.append)

    viewer.layers.events.inserted.connect(watch_preview)

    worker = widget.start()
    assert worker is not None, widget.status.value
    wait_for_end(widget, worker, qtbot)

    assert errors == []
    # the loss plot got one point per step for every term, and validation points against bicubic
    steps, values = widget.loss_plot.series("total")
    np.testing.assert_array_equal(steps, np.arange(1, 21))
    assert np.all(np.isfinite(values)) and set(widget.loss_plot.names()) >= {"l1", "total"}
    val = widget.loss_plot.validation_series()
    np.testing.assert_array_equal(val["step"], [5, 10, 15, 20])
    assert np.all(np.isfinite(val["psnr"])) and np.all(np.isfinite(val["bicubic_psnr"]))
    assert "PSNR" in widget.validation_label.value and "bicubic" in widget.validation_label.value
    assert "finished at step 20/20" in widget.status.value
    assert widget.save_button.enabled and widget.resume_button.enabled and widget.start_button.enabled
    # the preview layer: added once at the first validation, then updated in place
    preview = viewer.layers[PREVIEW_LAYER]
    assert added == [preview] and len(updates) == 3
    # it sits on the high-res grid and holds the model's output in [0, 1]
    np.testing.assert_allclose(preview.scale, hr_layer.scale)
    # ... over the region of the high-res layer it comes from: the validation columns (last 20 %)
    data = widget._plan.data
    y0, x0 = data.preview_origin()
    _lr_crop, hr_crop = data.preview_region()
    assert x0 >= 0.75 * hr_layer.data.shape[1] and y0 > 0  # not the image origin
    np.testing.assert_allclose(preview.translate, np.add(hr_layer.translate, np.multiply((y0, x0), hr_layer.scale)))
    # the crop's ground truth is exactly the high-res pixels under the preview layer
    lo, hi = (float(v) for v in data.planes[0].hr_range)
    under = (hr_layer.data[y0 : y0 + preview.data.shape[0], x0 : x0 + preview.data.shape[1]] - lo) / (hi - lo)
    np.testing.assert_allclose(hr_crop[0], under, atol=1e-5)
    assert preview.data.dtype == np.float32 and 0.0 <= preview.data.min() <= preview.data.max() <= 1.0

    # the model is in the viewer's engine and listed by the Upscale widget
    assert "my x2" in get_engine(viewer).names()
    _dock, upscale = viewer.window.add_plugin_dock_widget(PLUGIN, "Upscale")
    assert "my x2" in upscale.model_combo.choices
    model = get_engine(viewer).get("my x2")
    assert model.scale == 2 and model.metadata["steps"] == 20


def test_stop_keeps_a_checkpoint_and_resume_continues(viewer, widget, sample_pair, qtbot, errors, tmp_path):
    widget.steps_spin.value = 400
    widget.name_edit.value = "stopped"
    worker = widget.start()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.loss_plot.series("total")[0].size >= 3, timeout=WAIT_MS)
    widget.stop()
    wait_for_end(widget, worker, qtbot)

    stopped_at = int(widget.loss_plot.series("total")[0][-1])
    assert 3 <= stopped_at < 400
    assert f"stopped at step {stopped_at}/400" in widget.status.value
    assert "stopped" in get_engine(viewer).names()  # a stopped run's model is usable too
    state = Trainer.read_checkpoint(widget.checkpoint_path)  # loadable, weights_only
    assert state["step"] == stopped_at
    assert widget.resume_button.enabled and widget.save_button.enabled

    widget.steps_spin.value = stopped_at + 5
    worker = widget.resume()
    assert worker is not None, widget.status.value
    wait_for_end(widget, worker, qtbot)
    assert errors == []
    steps = widget.loss_plot.series("total")[0]
    np.testing.assert_array_equal(steps, np.arange(1, stopped_at + 6))  # continued, not restarted
    assert Trainer.read_checkpoint(widget.checkpoint_path)["step"] == stopped_at + 5
    assert get_engine(viewer).get("stopped").metadata["steps"] == stopped_at + 5

    saved = widget.save_model(tmp_path / "stopped")
    assert saved == tmp_path / "stopped.safetensors"
    assert load_model(saved).metadata["steps"] == stopped_at + 5


def test_synthesized_low_res_from_a_dask_layer_with_a_chosen_checkpoint(viewer, widget, qtbot, errors, tmp_path, rng):
    # a lazy (dask) layer is read in the worker, not on the GUI thread
    image = da.from_array(rng.random((96, 96)).astype(np.float32), chunks=48)
    hr = viewer.add_image(image, name="hr only", scale=(0.5, 0.5))
    widget.hr_combo.value = hr
    widget.synth_check.value = True
    assert widget.lr_combo.native.isHidden() and not widget.scale_combo.native.isHidden()
    widget.scale_combo.value = 4
    widget.steps_spin.value = 6
    widget.val_spin.value = 3
    widget.checkpoint_edit.value = tmp_path / "run.ckpt"

    wait_for_end(widget, widget.start(), qtbot)

    assert errors == []
    assert "hr only x4" in get_engine(viewer).names()
    assert get_engine(viewer).get("hr only x4").scale == 4
    assert Trainer.read_checkpoint(tmp_path / "run.ckpt")["step"] == 6
    np.testing.assert_allclose(viewer.layers[PREVIEW_LAYER].scale, (0.5, 0.5))


def test_preset_fills_the_weights(widget):
    widget.preset_combo.value = "gan"
    weights = {k: s.value for k, s in widget.weight_spins.items()}
    assert weights == pytest.approx({"l1": 0.01, "l2": 0.0, "ssim": 0.0, "perceptual": 1.0, "gan": 0.005})
    widget.preset_combo.value = "psnr"
    assert widget.weight_spins["l1"].value == 1.0 and widget.weight_spins["gan"].value == 0.0


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda v, w: setattr(w.steps_spin, "value", 0), "steps must be at least 1"),
        (lambda v, w: setattr(w.patch_spin, "value", 512), "larger than the image"),
        (lambda v, w: setattr(w.patch_spin, "value", 33), "multiple of the scale"),
        (
            lambda v, w: [setattr(s, "value", 0.0) for s in w.weight_spins.values()],
            "all loss weights are zero",
        ),
        (
            lambda v, w: setattr(w.lr_combo, "value", v.add_image(np.zeros((200, 256), np.uint16))),
            "integer multiple",
        ),
        (lambda v, w: setattr(w.lr_combo, "value", v.layers[HR]), "same layer"),
    ],
    ids=[
        "zero-steps",
        "patch-too-large",
        "patch-not-multiple",
        "zero-weights",
        "non-integer-factor",
        "same-layer",
    ],
)
def test_bad_settings_are_refused_with_a_notification(viewer, widget, sample_pair, errors, setup, expected):
    setup(viewer, widget)
    assert widget.start() is None
    assert len(errors) == 1 and expected in errors[0], errors
    assert widget.worker is None and widget.start_button.enabled


def test_nan_and_labels_layers_are_refused(viewer, widget, errors):
    hr = np.ones((128, 128), np.float32)
    hr[5, 7] = np.nan
    widget.hr_combo.value = viewer.add_image(hr, name="with nan")
    widget.synth_check.value = True
    assert widget.start() is None
    assert "NaN" in errors[-1]

    labels = viewer.add_labels(np.zeros((128, 128), np.uint8), name="mask")
    assert all(layer is not labels for _, layer in widget._image_layer_choices())  # not offered
    widget.hr_combo.value = None
    assert widget.start() is None and "Choose a high-res image layer" in errors[-1]
    with pytest.raises(TypeError, match="Labels layer"):
        widget._layer_data(labels, "high-res")


def test_missing_vgg_weights_offline_become_a_notification(viewer, widget, sample_pair, qtbot, errors, no_vgg_cache):
    widget.preset_combo.value = "perceptual"
    # warned as soon as the preset is chosen (a file check, no download), refused before Start
    assert widget.vgg_label.isVisibleTo(widget) and "VGG-16" in widget.vgg_label.value
    assert widget.start() is None
    assert len(errors) == 1 and "VGG-16" in errors[0]
    assert widget.worker is None and widget.start_button.enabled
    assert widget.model_name() not in get_engine(viewer).names()
    widget.weight_spins["perceptual"].value = 0.0  # without the perceptual term the warning goes
    assert not widget.vgg_label.isVisibleTo(widget)


def test_gan_run_plots_discriminator_accuracy(viewer, widget, sample_pair, qtbot, errors):
    widget.preset_combo.value = "gan"
    widget.weight_spins["perceptual"].value = 0.0  # edited weights override the preset (no VGG needed)
    widget.steps_spin.value = 6
    widget.val_spin.value = 0
    wait_for_end(widget, widget.start(), qtbot)
    assert errors == []
    names = widget.loss_plot.names()
    assert {"gan", "d", "D acc (real)", "D acc (fake)"} <= set(names) and "perceptual" not in names
    acc_steps, acc = widget.loss_plot.series("D acc (real)")
    np.testing.assert_array_equal(acc_steps, [2, 3, 4, 5, 6])  # after 6 // 4 = 1 pixel pre-training step
    assert np.all((acc >= 0) & (acc <= 1))


def test_closing_the_widget_stops_the_run(viewer, widget, sample_pair, qtbot):
    widget.steps_spin.value = 10_000
    worker = widget.start()
    qtbot.waitUntil(lambda: widget.loss_plot.series("total")[0].size >= 1, timeout=WAIT_MS)
    finished = []
    worker.finished.connect(lambda: finished.append(True))
    name = widget.model_name()
    viewer.window.remove_dock_widget(widget)  # un-parents the widget: the run must stop
    assert widget.stop(wait=True, timeout=60)
    qtbot.waitUntil(lambda: bool(finished), timeout=WAIT_MS)
    assert not worker.is_running
    assert name in get_engine(viewer).names()  # closing Train keeps the partly trained model


def test_closing_napari_stops_the_run(viewer, widget, sample_pair, qtbot):
    widget.steps_spin.value = 10_000
    worker = widget.start()
    qtbot.waitUntil(lambda: widget.loss_plot.series("total")[0].size >= 1, timeout=WAIT_MS)
    finished = []
    worker.finished.connect(lambda: finished.append(True))
    engine = get_engine(viewer)
    name = widget.model_name()
    viewer.close()  # napari cancels its registered tasks: the worker is asked to quit
    qtbot.waitUntil(lambda: bool(finished), timeout=WAIT_MS)
    assert not worker.is_running
    assert name in engine.names()  # the partly trained model is kept (registered by the worker)


def test_degradation_fitted_to_a_low_res_example(viewer, widget, sample_pair, qtbot, errors):
    hr_layer, lr_layer = sample_pair
    widget.synth_check.value = True
    widget.scale_combo.value = 2
    assert not widget.example_combo.native.isHidden()
    widget.example_combo.value = lr_layer  # the measured low-res image: its blur and noise are fitted
    widget.steps_spin.value = 3
    widget.val_spin.value = 0

    wait_for_end(widget, widget.start(), qtbot)

    assert errors == []
    from napari_superres.engine.train.degradation import DegradationConfig

    fitted = DegradationConfig.from_dict({"scale": 2, **widget.trainer.config.degradation}).to_dict()
    assert widget.trainer.data.degradation.to_dict() == fitted  # the data were made with the fitted degradation
    assert fitted != DegradationConfig(scale=2).to_dict()  # not the generic default


def test_a_taken_name_is_never_replaced_silently(viewer, widget, sample_pair, errors):
    engine = get_engine(viewer)
    from napari_superres.engine import SRNet

    engine.register(SRNet(channels=4, blocks=0), "high-res x2")  # a first run's model
    assert widget.run_name() == "high-res x2 (2)"  # the automatic name is numbered
    asked: list[str] = []
    widget.confirm_replace = lambda name: asked.append(name) or False  # the user answers "No"
    widget.name_edit.value = "high-res x2"
    assert widget.start() is None and asked == ["high-res x2"]
    assert "already registered" in errors[-1] and widget.worker is None
    widget.confirm_replace = lambda name: True  # "Yes": replacing was the user's choice
    assert widget.run_name() == "high-res x2"


def test_an_image_too_small_to_train_on_says_so(viewer, widget, errors):
    tiny = viewer.add_image(np.random.default_rng(0).random((16, 16), dtype=np.float32), name="tiny")
    widget.synth_check.value = True
    widget.hr_combo.value = tiny
    widget.patch_spin.value = 16
    assert widget.start() is None
    assert "too small to train on" in errors[-1] and "at most 0 px" not in errors[-1]


def test_offline_perceptual_preset_says_start_will_refuse(viewer, widget, no_vgg_cache):
    widget.preset_combo.value = "perceptual"
    assert "Start will refuse" in widget.vgg_label.value and "downloaded" not in widget.vgg_label.value
