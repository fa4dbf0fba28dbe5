"""The widgets' shared job mechanism in a real viewer: cancel in every stage, closing, layout.

Every test drives a widget the way a user does (plugin dock, buttons' methods) and checks
that it ends idle and reusable (Run / Start enabled, no worker), whatever stage was running.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import dask.array as da
import numpy as np
import pytest

pytestmark = pytest.mark.gui
PLUGIN = "napari-deep-superres"
WAIT_MS = 60_000
LONG = "a very long message that would widen the dock " * 20


def open_dock(viewer, qtbot, name):
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    qtbot.waitUntil(lambda: widget.ready, timeout=WAIT_MS)
    return widget


def blocking(original, entered: threading.Event, release: threading.Event):
    """``original`` that first signals ``entered`` and waits for ``release`` (a stage we can cancel in)."""

    def wrapper(*args, **kwargs):
        entered.set()
        release.wait(30)
        return original(*args, **kwargs)

    return wrapper


def gated_dask(image: np.ndarray, entered: threading.Event, release: threading.Event):
    """A dask array whose chunks wait for ``release`` when read (a slow read stage)."""

    def read(block):
        entered.set()
        release.wait(30)
        return block

    # meta given: dask would otherwise call ``read`` on an empty block at build time (setting ``entered``
    # and waiting for ``release`` before the job even starts)
    meta = np.empty((0,) * image.ndim, dtype=image.dtype)
    return da.from_array(image, chunks=image.shape).map_blocks(read, dtype=image.dtype, meta=meta)


def assert_idle(widget, run_button):
    assert widget.worker is None
    assert run_button.enabled
    assert not widget.panel.bar.isVisible()


# --- Feature difference: the three stages ---------------------------------------------------
@pytest.mark.parametrize("stage", ["pixel maps", "VGG loading", "VGG tiles"])
def test_feature_difference_cancel_in_every_stage_ends_idle(make_napari_viewer, qtbot, fake_vgg_cache,
                                                            monkeypatch, stage):  # fmt: skip
    import napari_superres.engine.metrics.pixel as pixel
    from napari_superres.engine.registry import Engine

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    size = 192 if stage == "VGG tiles" else 48
    hr = rng.integers(0, 60000, (size, size), dtype=np.uint16)
    b = viewer.add_image(hr, name="HR")
    a = viewer.add_image(hr // 2, name="SR")
    widget = open_dock(viewer, qtbot, "Feature difference")
    widget.a_combo.value, widget.b_combo.value = a, b
    entered, release = threading.Event(), threading.Event()
    if stage == "pixel maps":
        monkeypatch.setattr(pixel, "ssim_map", blocking(pixel.ssim_map, entered, release))
    elif stage == "VGG loading":
        monkeypatch.setattr(Engine, "vgg", blocking(Engine.vgg, entered, release))
    else:  # hold the worker after the first VGG tile, cancel there
        import napari_superres.engine.metrics.features as features

        original = features.feature_difference

        def first_tile_waits(*args, progress=None, **kwargs):
            def hold(done, total):
                progress(done, total)
                if done == 1:
                    entered.set()
                    release.wait(30)

            return original(*args, progress=hold, **kwargs)

        monkeypatch.setattr(features, "feature_difference", first_tile_waits)
    n_layers = len(viewer.layers)

    assert widget.run() is not None
    qtbot.waitUntil(entered.is_set, timeout=WAIT_MS)
    widget.cancel()
    release.set()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)

    assert widget.status.value.startswith("cancelled")
    assert_idle(widget, widget.run_button)
    assert "Δfeatures(SR, HR)" not in viewer.layers
    if stage == "pixel maps":  # the maps of the cancelled stage are not added
        assert len(viewer.layers) == n_layers
    # reusable: the next run completes
    monkeypatch.undo()
    widget.pixel_check.value, widget.ssim_check.value = True, False
    for box in widget.layer_checks.values():
        box.value = False
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    assert "|SR−HR|" in viewer.layers


# --- Upscale: reading a dask layer ("compute now"), then tiles --------------------------------
def test_upscale_cancel_while_reading_a_dask_layer_ends_idle(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    entered, release = threading.Event(), threading.Event()
    image = np.random.default_rng(1).integers(0, 4000, (64, 64), dtype=np.uint16)
    source = viewer.add_image(gated_dask(image, entered, release), name="slow", contrast_limits=(0, 4000))
    widget = open_dock(viewer, qtbot, "Upscale")
    widget.layer_combo.value = source
    widget.model_combo.value = "bicubic"
    widget.compute_check.value = True
    n_layers = len(viewer.layers)

    assert widget.run() is not None
    qtbot.waitUntil(entered.is_set, timeout=WAIT_MS)
    widget.cancel()
    release.set()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    assert widget.status.value == "cancelled" and len(viewer.layers) == n_layers
    assert_idle(widget, widget.run_button)


def test_closing_the_upscale_dock_stops_its_job_promptly(make_napari_viewer, qtbot):
    import time

    from napari_superres._napari.engine_access import get_engine
    from napari_superres.engine import SRNet

    viewer = make_napari_viewer()
    source = viewer.add_image(np.random.default_rng(2).integers(0, 60000, (1024, 1024), dtype=np.uint16))
    widget = open_dock(viewer, qtbot, "Upscale")
    get_engine(viewer).register(SRNet(channels=8, blocks=1), "tiny")
    qtbot.waitUntil(lambda: "tiny" in widget.model_combo.choices, timeout=WAIT_MS)
    widget.layer_combo.value, widget.model_combo.value, widget.tile_spin.value = source, "tiny", 64
    progress = []
    widget.progressed.connect(lambda done, total: progress.append(done))
    worker = widget.run()
    qtbot.waitUntil(lambda: len(progress) > 0, timeout=WAIT_MS)
    n_layers = len(viewer.layers)

    closed_at = time.monotonic()
    viewer.window.remove_dock_widget(widget)  # the dock's close button does this
    qtbot.waitUntil(lambda: not worker.is_running, timeout=WAIT_MS)
    assert time.monotonic() - closed_at < 10  # within a tile or two, not the whole image
    qtbot.wait(200)
    assert len(viewer.layers) == n_layers


# --- Train: preparing lazy data (in the worker), then steps ------------------------------------
def test_train_cancel_while_preparing_data_ends_idle(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    entered, release = threading.Event(), threading.Event()
    image = np.random.default_rng(3).random((96, 96)).astype(np.float32)
    hr = viewer.add_image(gated_dask(image, entered, release), name="slow hr")
    widget = open_dock(viewer, qtbot, "Train")
    widget.hr_combo.value, widget.synth_check.value = hr, True
    widget.steps_spin.value, widget.batch_spin.value, widget.patch_spin.value = 5, 2, 32
    widget.channels_spin.value, widget.blocks_spin.value = 4, 1

    assert widget.start() is not None
    qtbot.waitUntil(entered.is_set, timeout=WAIT_MS)
    widget.stop()
    release.set()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    assert_idle(widget, widget.start_button)
    assert widget.loss_plot.series("total")[0].size == 0


# --- closing the viewer mid-run, then exiting --------------------------------------------------
@pytest.mark.slow  # a fresh interpreter importing napari and torch: tens of seconds on 2 busy cores
def test_closing_the_viewer_mid_run_then_exiting_is_clean(tmp_path):
    script = textwrap.dedent(
        """
        import sys, time
        import numpy as np
        import napari
        from qtpy.QtWidgets import QApplication

        viewer = napari.Viewer()
        app = QApplication.instance()

        def wait(cond, timeout=180):
            end = time.monotonic() + timeout
            while not cond():
                app.processEvents()
                time.sleep(0.01)
                if time.monotonic() > end:
                    sys.exit("timed out")

        viewer.open_sample("napari-deep-superres", "fluorescence_pair")
        _, up = viewer.window.add_plugin_dock_widget("napari-deep-superres", "Upscale")
        _, tr = viewer.window.add_plugin_dock_widget("napari-deep-superres", "Train")
        _, fd = viewer.window.add_plugin_dock_widget("napari-deep-superres", "Feature difference")
        wait(lambda: up.ready and tr.ready and fd.ready)
        big = viewer.add_image(np.random.default_rng(0).integers(0, 60000, (1024, 1024), dtype=np.uint16))
        up.layer_combo.value = big
        up.tile_spin.value = 64
        tr.hr_combo.value = viewer.layers["high-res"]
        tr.lr_combo.value = viewer.layers["low-res (×2)"]
        tr.steps_spin.value, tr.batch_spin.value, tr.patch_spin.value = 10000, 2, 32
        tr.channels_spin.value, tr.blocks_spin.value, tr.device_combo.value = 8, 1, "cpu"
        assert up.run() is not None and tr.start() is not None
        wait(lambda: tr.loss_plot.series("total")[0].size >= 1 and up.panel.bar.value() > 0)
        viewer.close()
        print("closed mid-run", flush=True)
        """
    )
    path = tmp_path / "close_mid_run.py"
    path.write_text(script)
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "closed mid-run" in done.stdout
    assert "has been deleted" not in done.stderr


# --- layout ------------------------------------------------------------------------------------
def test_three_docks_fit_a_1280x800_window_and_long_messages_keep_the_width(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1280, 800)
    widgets = [open_dock(viewer, qtbot, name) for name in ("Upscale", "Train", "Feature difference")]
    qtbot.wait(300)
    canvas = viewer.window._qt_viewer.canvas.native
    dock_width = max(w.parentWidget().width() for w in widgets)
    canvas_width = canvas.width()
    assert window.width() <= 1280 and window.height() <= 800
    assert canvas_width >= 600, (canvas_width, dock_width)  # the image keeps most of the window
    for w in widgets:
        hint = w.sizeHint()
        assert hint.width() <= 450, (type(w).__name__, hint)
    from qtpy.QtWidgets import QScrollArea

    for w in widgets:  # no control is clipped: each scroll area shows its content's full width
        for scroll in w.findChildren(QScrollArea):
            assert scroll.widget().width() <= scroll.viewport().width(), (type(w).__name__, scroll.widget().width())
    # the docks share the right column: their minimum heights fit in the window
    assert sum(w.minimumSizeHint().height() for w in widgets) <= 800 - 60

    for w in widgets:  # a long error message wraps and elides; the dock does not grow
        w.status.value = LONG
    qtbot.wait(300)
    assert canvas.width() == canvas_width
    assert max(w.parentWidget().width() for w in widgets) == dock_width
    assert all(w.status.toolTip() == LONG for w in widgets)  # the full text stays reachable
    from magicgui.widgets import Container, Widget

    for w in widgets:  # every control says what it does
        controls = [v for v in vars(w).values() if isinstance(v, Widget) and not isinstance(v, Container)]
        controls += list(getattr(w, "weight_spins", {}).values())
        controls += list(getattr(w, "layer_checks", {}).values())
        assert len(controls) >= 5
        assert [c.label for c in controls if not c.tooltip] == [], type(w).__name__


def test_the_sample_menu_path_named_in_messages_is_napari_s(make_napari_viewer):
    from napari_superres._napari.train_widget import SAMPLE_MENU

    viewer = make_napari_viewer()
    paths = []

    def walk(menu, prefix):
        for action in menu.actions():
            title = action.text().replace("&&", "\0").replace("&", "").replace("\0", "&")
            if action.menu() is not None:
                walk(action.menu(), [*prefix, title])
            elif title:
                paths.append(" ▸ ".join([*prefix, title]))

    walk(viewer.window.file_menu, ["File"])
    assert SAMPLE_MENU in paths, [p for p in paths if "Sample" in p]


@pytest.mark.slow  # a fresh interpreter importing napari: ~10 s on 2 busy cores
def test_widget_modules_do_not_import_torch():
    """napari imports a widget's module when the dock opens: PyTorch must load later, in a worker."""
    code = (
        "import sys\n"
        "import napari_superres._napari.upscale_widget, napari_superres._napari.train_widget\n"
        "import napari_superres._napari.feature_widget, napari_superres._napari.sample_data\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def in_sight(button, window) -> bool:
    """Whether a button is drawn (not scrolled away, not covered) inside the main window."""
    native = getattr(button, "native", button)
    if not native.isVisible() or native.visibleRegion().isEmpty():
        return False
    top_left = native.mapTo(window, native.rect().topLeft())
    bottom_right = native.mapTo(window, native.rect().bottomRight())
    return window.rect().contains(top_left) and window.rect().contains(bottom_right)


def test_every_action_is_in_sight_at_1280x800_with_the_three_docks_open(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1280, 800)
    up, train, feat = (open_dock(viewer, qtbot, name) for name in ("Upscale", "Train", "Feature difference"))
    # the tallest state of each dock: settings unfolded, every panel of the loss plot shown
    from superqt import QCollapsible

    for widget in (up, train, feat):
        for fold in widget.findChildren(QCollapsible):
            fold.expand(animate=False)
    train.loss_plot.add_step(1, {"l1": 0.1, "total": 0.1}, d_acc_real=0.6, d_acc_fake=0.4)
    train.loss_plot.add_validation(1, 30.0, 29.0, 0.9)
    qtbot.wait(300)
    assert window.height() <= 800
    actions = {"Upscale": (up.run_button, up.cancel_button), "Train": (train.start_button, train.stop_button),
               "Feature difference": (feat.run_button, feat.cancel_button)}  # fmt: skip
    hidden = [(dock, b.text) for dock, buttons in actions.items() for b in buttons if not in_sight(b, window)]
    assert hidden == []
    assert train.loss_plot.panels() == ["loss", "acc", "val"]
    assert in_sight(train.loss_plot.graphics, window)


def test_cancel_a_2048_px_cpu_upscale_with_the_default_tile_is_idle_within_seconds(make_napari_viewer, qtbot):
    import time

    viewer = make_napari_viewer()
    widget = open_dock(viewer, qtbot, "Upscale")
    image = np.random.default_rng(5).integers(0, 60000, (2048, 2048), dtype=np.uint16)
    widget.layer_combo.value = viewer.add_image(image, name="big")
    widget.model_combo.value = widget.engine.default_model  # the built-in x2 network
    widget.device_combo.value = "cpu"
    assert widget.tile_spin.value == 0  # the default: automatic
    n_layers = len(viewer.layers)
    progress: list[tuple[int, int]] = []
    widget.progressed.connect(lambda done, total: progress.append((done, total)))

    assert widget.run() is not None
    qtbot.waitUntil(lambda: any(done > 0 for done, _ in progress), timeout=WAIT_MS)  # the bar moves
    assert progress[-1][1] > 4  # more, smaller tiles than memory alone would cut
    t0 = time.monotonic()
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=5_000)
    assert time.monotonic() - t0 < 5
    assert widget.status.value == "cancelled" and len(viewer.layers) == n_layers
    assert_idle(widget, widget.run_button)


def test_loss_plot_reads_plain_steps_and_plain_log_ticks(qtbot):
    from napari_superres._napari.loss_plot import LogAxis, LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.set_planned_steps(1000)
    bottom = plot.ax_loss.getAxis("bottom")
    bottom.setRange(0, 1000)
    assert "x0.001" not in bottom.labelString() and "(x" not in bottom.labelString()
    axis = LogAxis("left")
    levels = axis.logTickValues(-2.5, -0.2, 120, [])  # 0.003 .. 0.6: two decades labelled, no minor ticks
    assert levels == [(1.0, [-2.0, -1.0])]
    assert axis.logTickStrings([-2.0, -1.0], 1.0, 1.0) == ["0.01", "0.1"]
    levels = axis.logTickValues(-1.9, -1.1, 120, [])  # within one decade: 2 and 5 as well
    assert axis.logTickStrings(levels[-1][1], 1.0, 1.0) == ["0.02", "0.05"]
    assert plot.panels() == ["loss"]
    short = plot.graphics.maximumHeight()
    plot.add_validation(10, 30.0, 29.0)
    assert plot.panels() == ["loss", "val"] and plot.graphics.maximumHeight() > short  # sized to what it shows
