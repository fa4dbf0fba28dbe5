"""The main job (`make demo`): upscale the sample data in a real napari viewer and save the results.

Opens napari, loads the synthetic fluorescence pair through the plugin's sample-data
contribution, docks the Upscale widget through the plugin, runs it on the low-res layer
with the default (built-in) model, then writes to ``--out``:

* ``upscaled.tif`` (uint16, ImageJ pixel size = low-res pixel / scale), ``bicubic.tif``,
* ``screenshot.png`` of the whole napari window (grid: low-res | upscaled | high-res, one world
  coordinate system) and ``overlay.png`` (low-res green under the upscaled layer magenta, additive),
* ``summary.json`` with PSNR/SSIM of the model and of bicubic against the high-res layer.

Needs a display: under ``make demo`` it runs inside ``xvfb-run`` when none is set.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def _wait_for(widget, timeout: float = 600.0) -> None:
    from qtpy.QtWidgets import QApplication

    start = time.monotonic()
    while widget.worker is not None:
        QApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() - start > timeout:
            widget.cancel()
            raise TimeoutError("upscaling did not finish in time")


def _wait_until_ready(widget, timeout: float = 300.0) -> None:
    """The widget loads PyTorch and the engine in a worker when it opens; wait until it can run."""
    from qtpy.QtWidgets import QApplication

    start = time.monotonic()
    while not widget.ready:
        QApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() - start > timeout:
            raise TimeoutError("the Upscale widget did not finish loading PyTorch in time")


def _settle(seconds: float = 0.5) -> None:
    """Let Qt lay out and paint (window resizes, grid changes) before the camera or a screenshot uses sizes."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def _figures(result: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = 65535.0
    a, b = result.astype(np.float64), reference.astype(np.float64)
    return {
        "psnr_db": round(float(peak_signal_noise_ratio(b, a, data_range=rng)), 3),
        "ssim": round(
            float(
                structural_similarity(
                    b, a, data_range=rng, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
                )
            ),
            4,
        ),  # fmt: skip
    }


def _world_edges(layer) -> np.ndarray:
    """World coordinates of the outer pixel edges (napari's extent spans pixel centres)."""
    shape = np.asarray(layer.data.shape[-2:], dtype=float)
    return np.array([layer.data_to_world(-0.5 * np.ones(2)), layer.data_to_world(shape - 0.5)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="folder for the results")
    parser.add_argument("--model", default=None, help="model name or .safetensors file (default: the built-in x2)")
    parser.add_argument("--screenshot", type=Path, default=None, help="also copy the screenshot here")
    args = parser.parse_args(argv)

    import napari
    import tifffile

    from napari_superres._napari.engine_access import get_engine

    args.out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-superres demo", show=True)
    try:
        viewer.window._qt_window.resize(1900, 820)
        _settle()
        viewer.open_sample("napari-deep-superres", "fluorescence_pair")
        high, low = viewer.layers["high-res"], viewer.layers[-1]
        _, widget = viewer.window.add_plugin_dock_widget("napari-deep-superres", "Upscale")
        _wait_until_ready(widget)
        engine = get_engine(viewer)
        model = args.model or engine.default_model
        if args.model and args.model not in engine.names():
            model = engine.load(args.model)
        widget.model_combo.value = model
        print(f"upscaling {low.name!r} {low.data.shape} {low.data.dtype} with {model!r} on {engine.device}")
        start = time.perf_counter()
        if widget.run(low) is None:
            print("the Upscale widget refused the job (see the notification above)", file=sys.stderr)
            return 1
        _wait_for(widget)
        seconds = time.perf_counter() - start
        up = viewer.layers[-1]
        if up is low:
            print("no upscaled layer was added", file=sys.stderr)
            return 1
        scale = int(round(low.scale[-1] / up.scale[-1]))
        bicubic = engine.upscale(low.data, "bicubic", scale=scale)
        pixel = float(low.scale[-1]) / scale
        tifffile.imwrite(args.out / "upscaled.tif", up.data, imagej=True, resolution=(1 / pixel, 1 / pixel))
        tifffile.imwrite(args.out / "bicubic.tif", bicubic, imagej=True, resolution=(1 / pixel, 1 / pixel))
        summary = {
            "source": {"layer": low.name, "shape": list(low.data.shape), "scale": list(map(float, low.scale))},
            "result": {
                "layer": up.name,
                "shape": list(up.data.shape),
                "scale": list(map(float, up.scale)),
                "translate": list(map(float, up.translate)),
                "seconds": round(seconds, 2),
            },  # fmt: skip
            "overlay_edges_equal": bool(np.allclose(_world_edges(up), _world_edges(low))),
            "model": {"name": model, **_figures(up.data, high.data)},
            "bicubic": _figures(bicubic, high.data),
            "device": str(engine.device),
        }
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary, indent=2))

        # screenshot: low-res | upscaled | high-res side by side, same world coordinates
        for layer in viewer.layers:
            layer.visible = layer in (low, up, high)
        viewer.layers.move(viewer.layers.index(high), len(viewer.layers))  # grid panels follow list order
        grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid  # napari >= 0.9 / before
        grid.enabled = True
        grid.shape = (1, 3)
        _settle()
        viewer.reset_view()
        _settle()
        shot = args.out / "screenshot.png"
        viewer.screenshot(str(shot), canvas_only=False)

        # overlay: low-res (green) under the upscaled layer (magenta), additive, zoomed in:
        # aligned structures add up to white; a misregistration would show coloured fringes
        grid.enabled = False
        high.visible = False
        low.colormap, up.colormap = "green", "magenta"
        low.blending, up.blending = "additive", "additive"
        _settle()
        viewer.reset_view()
        camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari >= 0.9 / before
        camera.zoom *= 4
        camera.center = (0, 300, 190)
        _settle()
        overlay = args.out / "overlay.png"
        viewer.screenshot(str(overlay), canvas_only=False)
        if args.screenshot:
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, args.screenshot)
            shutil.copyfile(overlay, args.screenshot.with_name("overlay.png"))
        print(f"wrote {args.out}/upscaled.tif, bicubic.tif, summary.json, screenshot.png, overlay.png")
    finally:
        viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
