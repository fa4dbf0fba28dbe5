"""Make ``docs/feature_difference.png``: the Feature-difference widget in a real napari viewer.

Run (headless machines need a virtual display)::

    xvfb-run -a python docs/make_feature_screenshot.py [--out docs/feature_difference.png]

What it shows, in grid mode: the super-resolved result, its high-res reference, and the
maps the widget computes.  The result comes from the engine's default model: a shipped
trained model when the package has one, else the **bicubic** baseline (the layer name
says which).  The Δfeatures map needs the VGG-16 ImageNet weights; where they are not in
the torch hub cache (e.g. offline) the widget computes the pixel-error and SSIM maps only,
and shows in its notes where to put the weights file (visible in the picture).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "feature_difference.png"
WINDOW_SIZE = (1900, 1080)


def _wait(app, condition, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the comparison did not finish in time")
        app.processEvents()
        time.sleep(0.02)


def _settle(app, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.05)


def _close_toasts(app) -> None:
    """Close napari's notification pop-ups so they do not cover the canvas."""
    for widget in app.allWidgets():
        if type(widget).__name__ == "NapariQtNotification":
            widget.close()


def make_screenshot(out: Path = DEFAULT_OUT) -> Path:
    import imageio.v3 as iio
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_superres._napari.engine_access import get_engine
    from napari_superres._napari.layers import output_layer_kwargs

    viewer = napari.Viewer(title="napari-superres: feature difference")
    app = QApplication.instance()
    viewer.window.resize(*WINDOW_SIZE)
    hr, lr = viewer.open_sample("napari-superres", "fluorescence_pair")

    engine = get_engine(viewer)
    model = engine.default_model  # a shipped trained model if there is one, else "bicubic"
    sr = engine.upscale(lr.data, model, scale=2)
    result = viewer.add_image(sr, **output_layer_kwargs(lr, 2, model))
    viewer.layers.remove(lr)  # the grid shows: reference, result, then the maps

    _dock, widget = viewer.window.add_plugin_dock_widget("napari-superres", "Feature difference")
    widget.a_combo.value, widget.b_combo.value = result, hr
    worker = widget.run()
    if worker is None:
        raise RuntimeError(f"the widget refused to run: {widget.status.value}")
    _wait(app, lambda: widget.worker is None)

    for layer in viewer.layers:
        layer.name_overlay.visible = True  # each grid cell says what it shows
    viewer.canvas.grid.enabled = True
    viewer.reset_view()
    _settle(app, 1.0)
    _close_toasts(app)  # the widget's own notes already show the offline message
    _settle(app, 1.0)

    image = viewer.screenshot(canvas_only=False, flash=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=out.parent)
    os.close(fd)
    try:
        iio.imwrite(tmp, image[..., :3], optimize=True)  # RGB: the window is opaque
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {out} {image.shape}; figures: {widget.figures}")
    viewer.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    make_screenshot(parser.parse_args().out)


if __name__ == "__main__":
    main()
