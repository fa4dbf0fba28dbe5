"""The Feature-difference widget in a real viewer: output layers over the reference, figures, offline use.

The VGG-16 in these tests has RANDOM weights (a fake torch hub cache): only the
structure of the outputs is checked, never pretrained values.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_superres.engine.metrics.pixel import psnr, ssim

pytestmark = pytest.mark.gui

WIDGET = ("napari-deep-superres", "Feature difference")
TIMEOUT_MS = 120_000


def reference_and_result(seed: int = 0, shape=(48, 56)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    hr = 3000 + 20000 * (np.sin(yy / 3.0) * np.cos(xx / 4.0) > 0.3) + rng.normal(0, 300, shape)
    sr = hr + rng.normal(0, 2000, shape)
    return np.clip(sr, 0, 65535).astype(np.uint16), np.clip(hr, 0, 65535).astype(np.uint16)


def open_widget(viewer, qtbot):
    _dock, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    qtbot.waitUntil(lambda: widget.ready, timeout=TIMEOUT_MS)  # PyTorch is imported off the GUI thread
    return widget


def run_and_wait(widget, qtbot):
    worker = widget.run()
    assert worker is not None, widget.status.value
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)


def table(widget) -> list[str]:
    return [widget.table.item(row, 0).text() for row in range(widget.table.rowCount())]


def test_maps_overlay_the_reference_and_rerun_replaces_them(make_napari_viewer, qtbot, fake_vgg_cache):
    viewer = make_napari_viewer()
    sr, hr = reference_and_result()
    b = viewer.add_image(hr, name="HR", scale=(0.5, 0.25), translate=(3.0, -2.0))
    a = viewer.add_image(sr, name="SR", scale=(0.5, 0.25), translate=(3.0, -2.0))
    widget = open_widget(viewer, qtbot)
    widget.a_combo.value, widget.b_combo.value = a, b
    widget.per_layer_check.value = True
    run_and_wait(widget, qtbot)

    names = ["Δfeatures(SR, HR)", "|SR−HR|", "SSIM map(SR, HR)"] + [
        f"Δ{name}(SR, HR)" for name in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    ]
    for name in names:
        layer = viewer.layers[name]
        assert layer.data.shape == hr.shape and layer.data.dtype == np.float32
        np.testing.assert_allclose(layer.scale, b.scale)
        np.testing.assert_allclose(layer.translate, b.translate)
        figures = layer.metadata["napari_superres"]["figures"]
        assert figures["psnr"] == pytest.approx(psnr(sr, hr), abs=1e-6)
        assert figures["ssim"] == pytest.approx(ssim(sr, hr), abs=1e-6)
        assert figures["perceptual"] > 0  # random weights: only "a non-negative mean"
    np.testing.assert_allclose(viewer.layers["|SR−HR|"].data, np.abs(sr.astype(np.float32) - hr))
    assert table(widget)[0] == f"{psnr(sr, hr):.2f}"

    n_layers = len(viewer.layers)
    a.data = hr.copy()  # now identical: the same layers get new data
    run_and_wait(widget, qtbot)
    assert len(viewer.layers) == n_layers
    assert viewer.layers["|SR−HR|"].data.max() == 0
    assert np.abs(viewer.layers["Δfeatures(SR, HR)"].data).max() <= 1e-6
    assert table(widget)[0].startswith("∞")


def test_offline_still_gives_pixel_maps_and_says_how_to_get_the_weights(
    make_napari_viewer, qtbot, no_vgg_cache, monkeypatch
):
    monkeypatch.setenv("NAPARI_SUPERRES_OFFLINE", "1")
    viewer = make_napari_viewer()
    sr, hr = reference_and_result()
    b = viewer.add_image(hr, name="HR", translate=(10, 20))
    a = viewer.add_image(sr, name="SR", translate=(10, 20))
    widget = open_widget(viewer, qtbot)
    widget.a_combo.value, widget.b_combo.value = a, b
    run_and_wait(widget, qtbot)

    assert "Δfeatures(SR, HR)" not in viewer.layers
    for name in ("|SR−HR|", "SSIM map(SR, HR)"):
        np.testing.assert_allclose(viewer.layers[name].translate, (10, 20))
    assert "vgg16-397923af.pth" in widget.notes.text()
    assert widget.figures["perceptual"] is None
    assert table(widget)[-1] == "needs VGG-16 weights"


def test_low_res_layer_is_resampled_onto_the_reference_grid(make_napari_viewer, qtbot):
    from napari_superres.engine.samples import synthetic_pair

    viewer = make_napari_viewer()
    lr, hr = synthetic_pair((64, 64), scale=2, seed=3)
    b = viewer.add_image(hr, name="high-res")
    a = viewer.add_image(lr, name="low-res", scale=(2, 2), translate=(0.5, 0.5))
    widget = open_widget(viewer, qtbot)
    widget.a_combo.value, widget.b_combo.value = a, b
    for box in widget.layer_checks.values():  # pixel maps only: no VGG needed
        box.value = False
    run_and_wait(widget, qtbot)

    assert viewer.layers["|low-res−high-res|"].data.shape == hr.shape
    assert "resampled" in widget.notes.text()
    assert np.isfinite(widget.figures["psnr"])


def test_unrelated_shapes_are_refused_with_both_shapes(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    a = viewer.add_image(np.zeros((30, 30), np.uint16), name="small")
    b = viewer.add_image(np.zeros((64, 64), np.uint16), name="big")
    widget = open_widget(viewer, qtbot)
    widget.a_combo.value, widget.b_combo.value = a, b
    assert widget.run() is None
    assert "(30, 30)" in widget.status.value and "(64, 64)" in widget.status.value
    assert len(viewer.layers) == 2


@pytest.mark.slow  # a fresh interpreter importing napari and torch: tens of seconds on 2 busy cores
def test_torchvision_imports_after_the_canvas_exists():
    """On Mesa (e.g. Xvfb) the canvas loads the system libLLVM; a later ``import triton``
    (pulled in by torchvision) would crash the process unless the widget's guard ran first."""
    import subprocess
    import sys

    code = (
        "import napari\n"
        "viewer = napari.Viewer(show=False)\n"
        "from napari_superres._napari.triton_guard import guard_triton_import\n"
        "guard_triton_import()\n"
        "import torchvision.models\n"
        "print('imported')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr[-2000:]
