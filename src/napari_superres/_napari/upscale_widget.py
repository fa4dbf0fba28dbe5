"""The Upscale dock widget: pick an image layer and a model, run it in a worker thread, add the result.

Thin glue over :meth:`napari_superres.engine.Engine.upscale`:

* everything that can be checked is checked on the GUI thread before any work starts
  (layer type, NaN/Inf, model/image channel mismatch, too small images...), and
  reported as a napari notification;
* the network runs in a ``napari.qt.threading`` worker; progress (in tiles) goes to a
  napari progress bar and the status label; **Cancel** stops it within one tile batch;
* the result is added as a new Image layer overlaying its source in world coordinates
  (:func:`~napari_superres._napari.layers.output_layer_kwargs`); the source is never
  modified, and nothing is added when a run fails or is cancelled.

Dask-backed layers stay lazy by default (the new layer is a dask array upscaled chunk by
chunk as napari displays it); tick *compute now* to compute everything at once.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton, SpinBox
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QVBoxLayout, QWidget

from .engine_access import get_engine
from .progress_relay import ProgressRelay
from .layers import layer_axes, output_layer_kwargs

if TYPE_CHECKING:
    import napari
    from superqt.utils import FunctionWorker

#: Factors offered for the bicubic baseline (learned models have a fixed scale).
BICUBIC_SCALES = (2, 3, 4, 8)
#: Largest tile edge the widget offers (0 = automatic).
MAX_TILE = 8192


def available_devices() -> list[str]:
    """``"auto"``, ``"cpu"`` and the accelerators torch can use on this machine."""
    import torch

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def _is_dask(data: Any) -> bool:
    return type(data).__module__.split(".")[0] == "dask"


class _Request:
    """Everything a run needs, gathered and validated on the GUI thread."""

    def __init__(self, layer: Image, data: Any, model: str, scale: int, axes: str, tile: int | None,
                 lazy: bool, total: int, model_info: dict[str, Any]) -> None:  # fmt: skip
        self.layer = layer
        self.data = data
        self.model = model
        self.scale = scale
        self.axes = axes
        self.tile = tile
        self.lazy = lazy
        self.total = total
        self.model_info = model_info


class UpscaleWidget(QWidget):
    """Upscale an image layer with a super-resolution model from the viewer's engine.

    Programmatic use (and tests)::

        widget.layer_combo.value = viewer.layers["low-res (×2)"]
        widget.model_combo.value = "tiny"
        worker = widget.run()       # None if the request was refused (a notification says why)
        widget.cancel()             # stop a running job; no layer is added
    """

    #: ``(done, total)`` tiles, emitted on the GUI thread as the job advances.
    progressed = Signal(int, int)
    #: Emitted (from any thread) when the engine's model registry changes.
    models_changed = Signal()

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.engine = get_engine(napari_viewer)
        self._worker: FunctionWorker | None = None
        self._stop = threading.Event()
        self._pbar: progress | None = None
        self._request: _Request | None = None

        self.layer_combo = ComboBox(label="image", choices=self._image_layer_choices, nullable=False)
        self.model_combo = ComboBox(label="model", choices=self._model_choices)
        self.load_button = PushButton(text="Load model file…")
        self.scale_combo = ComboBox(label="scale", choices=list(BICUBIC_SCALES), value=BICUBIC_SCALES[0])
        self.tile_spin = SpinBox(label="tile (0 = auto)", min=0, max=MAX_TILE, step=64, value=0)
        self.device_combo = ComboBox(label="device", choices=available_devices(), value="auto")
        self.compute_check = CheckBox(text="compute now (dask layers)", value=False)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        self._container = Container(
            widgets=[
                self.layer_combo, self.model_combo, self.load_button, self.scale_combo, self.tile_spin,
                self.device_combo, self.compute_check, buttons, self.status,
            ]
        )  # fmt: skip
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._container.native)

        self.model_combo.value = self.engine.default_model
        self._on_model_changed()
        self._select_active_layer()
        self.model_combo.changed.connect(self._on_model_changed)
        self.load_button.changed.connect(self._on_load_clicked)
        self.run_button.changed.connect(lambda *_: self.run())
        self.cancel_button.changed.connect(lambda *_: self.cancel())
        self.models_changed.connect(self._refresh_models)

        # engine callbacks may come from worker threads: only emit a Qt signal there
        # (queued to the GUI thread); hold the widget weakly so the engine (kept alive by
        # the viewer) does not keep a closed widget, or the viewer through it, alive.
        ref = weakref.ref(self)

        def _on_engine_change() -> None:
            widget = ref()
            if widget is not None:
                try:
                    widget.models_changed.emit()
                except RuntimeError:  # the Qt object is already deleted
                    pass

        disconnect = self.engine.on_change(_on_engine_change)
        self.destroyed.connect(lambda *_: disconnect())
        stop = self._stop
        self.destroyed.connect(lambda *_: stop.set())  # a closed widget stops its job

    # --- choices -------------------------------------------------------------------------------
    def _image_layer_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def _model_choices(self, _widget: Any = None) -> list[str]:
        return self.engine.names()

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer and model lists (napari calls this when layers change)."""
        self._container.reset_choices()

    def _select_active_layer(self) -> None:
        active = self.viewer.layers.selection.active
        if isinstance(active, Image):
            self.layer_combo.value = active

    def _refresh_models(self) -> None:
        current = self.model_combo.value
        self.model_combo.reset_choices()
        names = self.engine.names()
        if current in names:
            self.model_combo.value = current
        elif names:
            self.model_combo.value = self.engine.default_model
        self._on_model_changed()

    # --- model selection -----------------------------------------------------------------------
    def _on_model_changed(self, *_: Any) -> None:
        name = self.model_combo.value
        if name is None:
            return
        try:
            model = self.engine.get(name)
        except Exception as exc:  # a broken model file: say so, keep the GUI usable
            show_error(f"Cannot use model {name!r}: {exc}")
            self.status.value = f"model {name!r} unusable"
            return
        if model.scale is None:  # the bicubic baseline: any factor
            self.scale_combo.choices = list(BICUBIC_SCALES)
            self.scale_combo.enabled = True
        else:
            self.scale_combo.choices = sorted({*BICUBIC_SCALES, int(model.scale)})
            self.scale_combo.value = int(model.scale)
            self.scale_combo.enabled = False
        channels = "any" if model.in_channels is None else str(model.in_channels)
        self.model_combo.tooltip = f"{model.name}: x{model.scale or 'any'}, {channels}-channel, {model.source}"

    def load_model_file(self, path: str | os.PathLike) -> str | None:
        """Load a ``.safetensors`` model into the engine and select it; ``None`` (and a notification) on error."""
        from ..engine.nets.model_file import ModelFileError

        try:
            name = self.engine.load(path)
        except (ModelFileError, OSError, ValueError) as exc:
            show_error(f"Cannot load model file {os.fspath(path)!r}: {exc}")
            return None
        self._refresh_models()  # the engine notification is queued; update now too
        self.model_combo.value = name
        self.status.value = f"loaded model {name!r}"
        return name

    def _on_load_clicked(self, *_: Any) -> None:
        path, _filter = QFileDialog.getOpenFileName(
            self, "Load a super-resolution model", "", "Model files (*.safetensors);;All files (*)"
        )
        if path:
            self.load_model_file(path)

    # --- running -------------------------------------------------------------------------------
    @property
    def worker(self) -> FunctionWorker | None:
        """The running worker, or ``None``."""
        return self._worker

    def run(self, layer: Any = None) -> FunctionWorker | None:
        """Validate and start upscaling ``layer`` (default: the selected one); returns the worker.

        Returns ``None`` (after a notification) when the request is refused.
        """
        if self._worker is not None:
            show_warning("An upscaling job is already running; cancel it first.")
            return None
        try:
            request = self._prepare(self.layer_combo.value if layer is None else layer)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            self._refuse(str(message))
            return None
        return self._start(request)

    def cancel(self) -> None:
        """Ask the running job to stop (within one tile batch); nothing is added."""
        if self._worker is not None:
            self._stop.set()
            self.status.value = "cancelling…"

    def _refuse(self, message: str) -> None:
        self.status.value = message
        show_error(message)

    def _prepare(self, layer: Any) -> _Request:
        """All checks before starting: raises ``ValueError`` (etc.) with the fix."""
        from ..engine.infer.pipeline import plan_upscale

        if layer is None:
            raise ValueError("Choose an image layer to upscale.")
        if not isinstance(layer, Image):
            kind = type(layer).__name__
            raise TypeError(f"Layer {getattr(layer, 'name', layer)!r} is a {kind} layer; only Image layers can be upscaled.")
        data = layer.data
        if layer.multiscale:
            show_warning(f"{layer.name!r} is multiscale: upscaling its full-resolution level only.")
            data = data[0]
        from ..engine.device import resolve_device

        device = resolve_device(self.device_combo.value)  # RuntimeError when unavailable
        if device != self.engine.device:
            self.engine.set_device(device)
        name = self.model_combo.value
        if name is None:
            raise ValueError("Choose a model.")
        model = self.engine.get(name)
        scale = int(self.scale_combo.value) if model.scale is None else int(model.scale)
        axes = layer_axes(layer)
        tile = int(self.tile_spin.value) or None
        lazy = _is_dask(data) and not self.compute_check.value
        if not _is_dask(data):
            data = np.asarray(data)
            if data.dtype.kind in "fc" and data.size and not np.isfinite(data).all():
                raise ValueError(
                    f"Layer {layer.name!r} contains NaN or Inf values; replace them "
                    "(e.g. np.nan_to_num) before upscaling."
                )
        job = plan_upscale(data, model, scale=scale, axes=axes, tile=tile, device=self.engine.device)
        info = {"model_source": str(model.source), "normalization": dict(job.normalization)}
        if model.metadata:
            info["model_metadata"] = dict(model.metadata)
        return _Request(layer, data, name, job.scale, axes, tile, lazy, 0 if lazy else job.total_tiles(), info)

    def _start(self, request: _Request) -> FunctionWorker:
        stop = self._stop
        stop.clear()  # the same Event for the widget's life: closing the widget sets it
        engine = self.engine
        relay = ProgressRelay()  # lives with the job, not the widget: safe if the widget is deleted
        relay.progressed.connect(self._on_progress)
        emit = relay.emit

        def work() -> Any:
            data = request.data
            if _is_dask(data) and not request.lazy:
                data = np.asarray(data)  # "compute now": read it all, then upscale with progress
            return engine.upscale(
                data, request.model, scale=request.scale, axes=request.axes, tile=request.tile,
                progress=emit, should_stop=stop.is_set,
            )  # fmt: skip

        worker = create_worker(work, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._request = request
        what = "building a lazy (dask) result" if request.lazy else "upscaling"
        self._pbar = progress(total=request.total, desc=f"{what} {request.layer.name!r}")
        self.status.value = f"{what} {request.layer.name!r} ×{request.scale} with {request.model}…"
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        worker.start()
        return worker

    def _on_progress(self, done: int, total: int) -> None:
        """GUI thread: advance the progress bar and re-emit :attr:`progressed` for observers.

        The status is set *before* the bar moves: napari's progress bar processes events,
        which can run the worker's ``returned`` handler (whose status must win) inside this one.
        """
        if self._worker is not None and not self._stop.is_set():
            self.status.value = f"tile {done}/{total}"
        if self._pbar is not None:
            if self._pbar.total != total:
                self._pbar.total = total
            self._pbar.update(done - self._pbar.n)
        self.progressed.emit(done, total)

    def _on_returned(self, result: Any) -> None:
        request = self._request
        if request is None:
            return
        kwargs = output_layer_kwargs(request.layer, request.scale, request.model, model_info=request.model_info)
        layer = self.viewer.add_image(result, **kwargs)
        self.status.value = f"added {layer.name!r} {tuple(result.shape)}"
        if request.lazy:
            show_info(f"{layer.name!r} is lazy: chunks are upscaled when displayed.")

    def _on_errored(self, exc: BaseException) -> None:
        from ..engine.infer.tiling import Cancelled

        if isinstance(exc, Cancelled) or self._stop.is_set():
            self.status.value = "cancelled"
            return
        name = self._request.layer.name if self._request is not None else "the layer"
        message = f"Upscaling {name!r} failed: {exc}"
        self.status.value = message
        show_error(message)

    def _on_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._worker = None
        self._request = None
        try:
            self.run_button.enabled = True
            self.cancel_button.enabled = False
        except RuntimeError:  # widget already deleted
            pass
