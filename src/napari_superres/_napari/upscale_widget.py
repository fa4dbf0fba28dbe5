"""The Upscale dock widget: pick an image layer and a model, run it in a worker thread, add the result.

Thin glue over :func:`napari_superres.engine.registry.upscale` (device per call: the
device chosen here never changes the other widgets'):

* the widget opens at once; PyTorch is imported in a worker on first use ("loading
  PyTorch…"), then the model list and devices fill in;
* everything that can be checked is checked on the GUI thread before any work starts
  (layer type, NaN/Inf, model/image channel mismatch, too small images...), and
  reported as a napari notification;
* the network runs as one :mod:`.jobs` job: progress and ETA in the widget's progress
  bar, **Cancel** stops it within one tile batch, closing the dock stops it too;
* the result is added as a new Image layer overlaying its source in world coordinates
  (:func:`~napari_superres._napari.layers.output_layer_kwargs`); the source is never
  modified, and nothing is added when a run fails or is cancelled.

Dask-backed layers stay lazy by default: the new layer's planes are upscaled in the
background around the plane on display (:mod:`.lazy_planes`), never on the GUI thread;
tick *compute now* to compute everything at once.
"""

from __future__ import annotations

import os
import time
import weakref
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox
from napari.layers import Image
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog

from ..engine.errors import SuperresError
from ..engine.options import ADAPT_SECONDS, BASIC_DEVICES, DEFAULT_DEVICE
from .engine_access import get_engine
from .jobs import ENGINE_MODULES, JobContext
from .layers import layer_axes, output_layer_kwargs
from .ui import button_row, dock_layout, folded, set_tips
from .widget_base import JobWidget

if TYPE_CHECKING:
    import napari
    from superqt.utils import FunctionWorker

    from ..engine.infer.job import UpscaleJob
    from ..engine.request import UpscaleRequest

#: Factors offered for the bicubic baseline (learned models have a fixed scale).
BICUBIC_SCALES = (2, 3, 4, 8)
#: Largest tile edge the widget offers (0 = automatic).
MAX_TILE = 8192
#: Suffix of the consistency-map layer's name.
CONSISTENCY_SUFFIX = "consistency"
#: Devices offered before PyTorch is loaded (accelerators are added once it is).
UPSCALE_MODULES = (*ENGINE_MODULES, "napari_superres.engine.device", "napari_superres.engine.nets.model_file")


def _warm_engine(viewer: Any) -> None:
    """Worker side of the first open: the viewer's engine and its default model (read from disk once)."""
    engine = get_engine(viewer)
    try:
        engine.get(engine.default_model)  # cached: selecting it on the GUI thread is then instant
    except Exception:  # noqa: BLE001 - a broken file is reported when it is selected
        pass


def _is_dask(data: Any) -> bool:
    return type(data).__module__.split(".")[0] == "dask"


class _Request:
    """A run: the layer and GUI state, next to the upscaling request and its job (planned once, on the GUI thread)."""

    def __init__(self, layer: Image, data: Any, upscale: UpscaleRequest, job: UpscaleJob, lazy: bool,
                 model_info: dict[str, Any], adapt_seconds: int = 0, consistency: bool = False) -> None:  # fmt: skip
        self.layer = layer
        self.data = data
        #: what to upscale with and how (the model becomes the adapted one's name after 'adapt')
        self.upscale = upscale
        #: ``upscale`` checked against ``data`` and the model: what the worker runs
        self.job = job
        self.lazy = lazy
        self.model_info = model_info
        self.adapt_seconds = adapt_seconds
        self.consistency = consistency

    @property
    def model(self) -> str:
        return str(self.upscale.model)

    @property
    def scale(self) -> int:
        return self.job.scale

    @property
    def axes(self) -> str:
        return str(self.upscale.axes)

    @property
    def device(self) -> str:
        return str(self.job.device)

    @property
    def total(self) -> int:
        return 0 if self.lazy else self.job.total_tiles()

    @property
    def degradation(self) -> dict[str, float]:
        """Overrides of the degradation estimate (``upscale(..., degradation=...)``): blur, photons."""
        return dict(self.upscale.degradation)


class UpscaleWidget(JobWidget):
    """Upscale an image layer with a super-resolution model from the viewer's engine.

    Programmatic use (and tests)::

        widget.layer_combo.value = viewer.layers["low-res (×2)"]
        widget.model_combo.value = "tiny"
        worker = widget.run()       # None if the request was refused (a notification says why)
        widget.cancel()             # stop a running job; no layer is added
    """

    #: Emitted (from any thread) when the engine's model registry changes.
    models_changed = Signal()

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        self._request: _Request | None = None
        self._model_names: list[str] = []
        self._source_deleted: str | None = None  # its name, once the user deleted it mid-run

        self.layer_combo = ComboBox(label="image", choices=self._image_layer_choices, nullable=False)
        self.model_combo = ComboBox(label="model", choices=self._model_choices)
        self.load_button = PushButton(text="Load model file…")
        self.scale_combo = ComboBox(label="scale", choices=list(BICUBIC_SCALES), value=BICUBIC_SCALES[0])
        self.tile_spin = SpinBox(label="tile (0 = auto)", min=0, max=MAX_TILE, step=64, value=0)
        self.device_combo = ComboBox(label="device", choices=list(BASIC_DEVICES), value=DEFAULT_DEVICE)
        self.compute_check = CheckBox(text="compute now (dask layers)", value=False)
        self.estimate_label = Label(label="degradation", value="estimated on Run")
        self.blur_spin = FloatSpinBox(label="blur σ (px, 0 = estimate)", min=0.0, max=6.0, step=0.1, value=0.0)
        self.photons_spin = FloatSpinBox(label="photons at peak (0 = estimate)", min=0.0, max=1e6, step=50.0, value=0.0)
        self.adapt_check = CheckBox(text="adapt to this image first", value=False)
        self.adapt_seconds = SpinBox(label="adapt budget (s)", min=1, max=3600, step=10, value=round(ADAPT_SECONDS))
        self.consistency_check = CheckBox(text="consistency map", value=False)
        self.axial_check = CheckBox(text="along Z (axial, 3D layers)", value=False)
        self.axial_factor = SpinBox(label="Z factor (0 = from scale)", min=0, max=16, value=0)
        self.axial_steps = SpinBox(label="Z training steps (0 = default)", min=0, max=100_000, step=50, value=0)
        self.export_button = PushButton(text="Save model as bioimage.io…")
        self.run_button = PushButton(text="Run", enabled=False)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self._set_tips()
        self._basic = Container(widgets=[self.layer_combo, self.model_combo, self.scale_combo])
        self._advanced = Container(widgets=[self.estimate_label, self.blur_spin, self.photons_spin,
                                            self.tile_spin, self.device_combo, self.compute_check, self.adapt_check,
                                            self.adapt_seconds, self.consistency_check, self.axial_check,
                                            self.axial_factor, self.axial_steps, self.load_button,
                                            self.export_button])  # fmt: skip
        # precision (CPU arithmetic of the network): one contained addition to the advanced options
        from ..engine.options import PRECISIONS

        self.precision_combo = ComboBox(label="precision (CPU)", choices=list(PRECISIONS), value="fp32")
        self.precision_combo.tooltip = (
            "CPU arithmetic of the network: fp32 (exact), bf16 (AVX-512 BF16/AMX), int8 (VNNI; quantized once, "
            "cached), auto (the fastest measured within 0.05 dB of fp32 for this model on this CPU, else fp32)."
        )
        self._advanced.insert(self._advanced.index(self.device_combo) + 1, self.precision_combo)
        self.ensemble_check = CheckBox(text="self-ensemble (8x slower)", value=False)
        self.ensemble_check.tooltip = (
            "Average the network over the eight flips and quarter turns of each tile (EDSR+'s x8): eight times the "
            "compute, the same memory; about +0.1 dB on noisy microscopy."
        )
        self._advanced.insert(self._advanced.index(self.precision_combo) + 1, self.ensemble_check)
        for c in (self._basic, self._advanced):
            c.margins = (0, 0, 0, 0)
        # a short window scrolls the settings; Run/Cancel and the progress stay in sight below them
        layout = dock_layout(self, [button_row(self.run_button, self.cancel_button), self.panel])
        layout.addWidget(self._basic.native)
        layout.addWidget(folded("Advanced", self._advanced,
                                tip="Tile size, device, lazy layers, adapting to the image, consistency map, "
                                    "Z upsampling, loading and exporting models."))  # fmt: skip
        layout.addStretch(1)

        self._select_active_layer()
        self.model_combo.changed.connect(self._on_model_changed)
        self.load_button.changed.connect(self._on_load_clicked)
        self.export_button.changed.connect(self._on_export_clicked)
        self.run_button.changed.connect(lambda *_: self.run())
        self.cancel_button.changed.connect(lambda *_: self.cancel())
        self.models_changed.connect(self._refresh_models)
        viewer = self.viewer
        self.load_then(UPSCALE_MODULES, self._on_engine_ready, warm=lambda: _warm_engine(viewer))

    def _set_tips(self) -> None:
        """The tooltips of the settings."""
        set_tips({
            self.layer_combo: "Image layer to upscale (2D, RGB, stacks, dask). The source is never modified.",
            self.model_combo: "Super-resolution model: built-in, trained in the Train widget, or loaded from a file.",
            self.load_button: "Add a .safetensors model file or a bioimage.io model package (.zip) to the list (never unpickled).",
            self.scale_combo: "Upscaling factor (fixed by learned models; any factor for bicubic).",
            self.tile_spin: "Tile edge in input pixels (0: automatic from free memory). Smaller tiles: "
                            "less memory, faster Cancel; the result is identical.",
            self.device_combo: "Where this widget runs the network (auto: CUDA, MPS, else CPU). "
                               "Affects this widget only.",
            self.compute_check: "Dask (lazy) layers: compute the whole result now instead of plane by plane "
                                "in the background as you browse.",
            self.estimate_label: "What the built-in model was told about the image: its blur and noise, estimated "
                                 "once per image (stored in the result's metadata).",
            self.blur_spin: "Override the estimated blur: Gaussian PSF sigma of the image in its own pixels "
                            "(0: estimate it from the image).",
            self.photons_spin: "Override the estimated noise: photons at the image's bright end (lower: noisier; "
                               "0: estimate it from the image).",
            self.adapt_check: "Fine-tune the chosen model on this image itself first (no high-res data needed); "
                              "the adapted model is registered as '<model> adapted' and used for the result. "
                              "With a blur override set, it fine-tunes through that PSF (consistency at the image's own scale): "
                              "set it only to a PSF known within about 10 % (measured on beads); a wrong one "
                              "does worse than no override.",
            self.adapt_seconds: "Time budget of the adaptation in seconds: it plans the steps (30 s: 260 on 2 CPU "
                                "cores, 360 where the CPU has bf16) and ends them when it runs out; longer gives "
                                "more blind-spot steps and a slightly closer fit.",
            self.consistency_check: "Also add a map of how well the result, degraded back, matches the measured "
                                    "image (in noise sigmas; about 1 = consistent, bright = not supported).",
            self.axial_check: "3D (Z, Y, X) layers: upsample along Z instead of Y/X, with a network trained on the "
                              "stack's own lateral planes (for anisotropic voxels).",
            self.axial_factor: "Planes in the result per input plane (0: Z step / pixel size from the layer scale).",
            self.axial_steps: "Training steps of the axial network (0: the engine's default, a few minutes on a CPU).",
            self.export_button: "Write the chosen model as a bioimage.io model package (.zip, spec 0.5) for other "
                                "tools (deepImageJ, ilastik, bioimage.io).",
            self.run_button: "Upscale the chosen layer; the result overlays its source.",
            self.cancel_button: "Stop the running job within one tile; nothing is added.",
        })  # fmt: skip

    def notify_error(self, message: str) -> None:
        show_error(message)  # through this module's name (where tests capture notifications)

    # --- start-up ------------------------------------------------------------------------------
    def _on_engine_ready(self) -> None:
        engine = self.engine
        assert engine is not None
        from ..engine.device import available_devices

        self.device_combo.choices = available_devices()
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

        disconnect = engine.on_change(_on_engine_change)
        self.destroyed.connect(lambda *_: disconnect())
        self._model_names = engine.names()
        self.model_combo.reset_choices()
        self.model_combo.value = engine.default_model
        self._on_model_changed()

    # --- choices -------------------------------------------------------------------------------
    def _model_choices(self, _widget: Any = None) -> list[str]:
        return list(self._model_names)

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer and model lists (napari calls this when layers change)."""
        if self.engine is not None:
            self._model_names = self.engine.names()
        self._basic.reset_choices()

    def _select_active_layer(self) -> None:
        active = self.viewer.layers.selection.active
        if isinstance(active, Image):
            self.layer_combo.value = active

    def _refresh_models(self) -> None:
        if self.engine is None:
            return
        current = self.model_combo.value
        self._model_names = names = self.engine.names()
        self.model_combo.reset_choices()
        if current in names:
            self.model_combo.value = current
        elif names:
            self.model_combo.value = self.engine.default_model
        self._on_model_changed()

    # --- model selection -----------------------------------------------------------------------
    def _on_model_changed(self, *_: Any) -> None:
        name = self.model_combo.value
        if name is None or self.engine is None:
            return
        try:
            model = self.engine.get(name)
        except Exception as exc:  # noqa: BLE001 - a broken model file: say so, keep the GUI usable
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
        if self.engine is None:
            show_warning("PyTorch is still loading; try again in a moment.")
            return None
        from .consent import load_with_consent

        try:
            name = load_with_consent(self.engine, path, parent=self)
        except (SuperresError, OSError, ValueError) as exc:
            show_error(f"Cannot load model file {os.fspath(path)!r}: {exc}")
            return None
        if name is None:  # a package that would run its own code, declined
            show_warning(f"{os.fspath(path)!r} was not loaded: it would run Python code of its own")
            return None
        self._refresh_models()  # the engine notification is queued; update now too
        self.model_combo.value = name
        self.status.value = f"loaded model {name!r}"
        return name

    def _on_load_clicked(self, *_: Any) -> None:
        path, _filter = QFileDialog.getOpenFileName(
            self,
            "Load a super-resolution model",
            "",
            "Model files (*.safetensors *.zip rdf.yaml bioimageio.yaml);;All files (*)",
        )
        if path:
            self.load_model_file(path)

    def export_bioimageio(self, path: str | os.PathLike, overwrite: bool = False) -> FunctionWorker | None:
        """Write the chosen model as a bioimage.io package at ``path`` in the background; ``None`` if refused."""
        name = self.model_combo.value
        if self._runner.running or self.engine is None:
            show_warning("Wait for the running job (or for PyTorch to load) first.")
            return None
        if name is None or self.engine.get(name).scale is None:
            self.refuse("Choose a learned model to export (bicubic is not a network).")
            return None
        model, target = self.engine.get(name), os.fspath(path)

        def work(ctx: JobContext) -> Any:
            from ..io.bioimageio import export_bioimageio

            return export_bioimageio(model, target, overwrite=overwrite)

        def done(written: Any) -> None:
            self.status.value = f"saved {name!r} as {written}"
            show_info(f"bioimage.io package written: {written}")

        return self.start_job(
            work, description=f"exporting {name!r} to bioimage.io", on_done=done,
            failure=f"Export of {name!r} failed", cancellable=False,
        )  # fmt: skip

    def _on_export_clicked(self, *_: Any) -> None:
        name = self.model_combo.value or "model"
        path, _filter = QFileDialog.getSaveFileName(
            self, "Save as a bioimage.io model package", f"{name}.zip", "bioimage.io package (*.zip)"
        )
        if path:  # the dialog asked before replacing an existing file
            self.export_bioimageio(path, overwrite=True)

    # --- running -------------------------------------------------------------------------------
    def run(self, layer: Any = None) -> FunctionWorker | None:
        """Validate and start upscaling ``layer`` (default: the selected one); returns the worker.

        Returns ``None`` (after a notification) when the request is refused.
        """
        if not self.can_start("An upscaling job is already running; cancel it first."):
            return None
        request = self.prepared(lambda: self._prepare(self.layer_combo.value if layer is None else layer))
        if request is None:
            return None
        if self.axial_check.value:
            return self._start_axial(self.layer_combo.value if layer is None else layer)
        if request.lazy:  # no job: planes are upscaled in the background as they are displayed
            self._add_lazy(request)
            return None
        return self._start(request)

    def on_source_deleted(self, layer: Any) -> None:
        """The running job's source layer was deleted: stop it; nothing will be added."""
        self._source_deleted = str(layer.name)
        super().on_source_deleted(layer)

    def _source_gone(self, layer: Image) -> bool:
        """Whether ``layer`` left the viewer; if so the status and a notification say nothing is added."""
        if layer in self.viewer.layers:
            return False
        message = f"Stopped: the source layer {layer.name!r} was deleted, so no result was added."
        self.status.value = message
        show_warning(message)
        return True

    def _prepare(self, layer: Any) -> _Request:
        """All checks before starting, the request planned once: raises ``ValueError`` (etc.) with the fix."""
        from ..engine.request import UpscaleRequest

        assert self.engine is not None
        if layer is None:
            raise ValueError("Choose an image layer to upscale.")
        if not isinstance(layer, Image):
            kind = type(layer).__name__
            raise TypeError(
                f"Layer {getattr(layer, 'name', layer)!r} is a {kind} layer; only Image layers can be upscaled."
            )
        data = layer.data
        if layer.multiscale:
            show_warning(f"{layer.name!r} is multiscale: upscaling its full-resolution level only.")
            data = data[0]
        name = self.model_combo.value
        if name is None:
            raise ValueError("Choose a model.")
        lazy = _is_dask(data) and not self.compute_check.value
        if not _is_dask(data):
            data = np.asarray(data)
            if data.dtype.kind in "fc" and data.size and not np.isfinite(data).all():
                raise ValueError(
                    f"Layer {layer.name!r} contains NaN or Inf values; replace them "
                    "(e.g. np.nan_to_num) before upscaling."
                )
        degradation = {}
        if self.blur_spin.value > 0:
            degradation["blur_sigma"] = float(self.blur_spin.value)
        if self.photons_spin.value > 0:
            degradation["peak_photons"] = float(self.photons_spin.value)
        upscale = UpscaleRequest(  # (the scale combo shows a model's own scale)
            model=name, scale=self.scale_combo.value, axes=layer_axes(layer), tile=self.tile_spin.value,
            device=str(self.device_combo.value), precision=str(self.precision_combo.value), degradation=degradation,
            self_ensemble=bool(self.ensemble_check.value),
        )  # fmt: skip
        job = self.engine.plan(data, upscale)  # every check, once: refused here, before the job starts
        model = job.model
        info = {"model_source": str(model.source), "normalization": dict(job.normalization)}
        if job.self_ensemble:
            info["self_ensemble"] = True
        if model.metadata:
            info["model_metadata"] = dict(model.metadata)
        adapt_seconds = int(self.adapt_seconds.value) if self.adapt_check.value else 0
        consistency = bool(self.consistency_check.value)
        if (adapt_seconds or consistency) and lazy:
            raise ValueError("'adapt' and 'consistency map' need the whole image: tick 'compute now' for dask layers.")
        if consistency and getattr(layer, "rgb", False):
            raise ValueError("The consistency map is for grayscale images; untick it for RGB layers.")
        if adapt_seconds and model.scale is None:
            raise ValueError("Adapting needs a learned model (not bicubic); choose one or untick 'adapt'.")
        return _Request(layer, data, upscale, job, lazy, info, adapt_seconds, consistency)

    def _start(self, request: _Request) -> FunctionWorker:
        engine = self.engine
        assert engine is not None

        def work(ctx: JobContext) -> Any:
            from ..engine.infer.pipeline import job_condition

            data = request.data
            if _is_dask(data) and not request.lazy:
                ctx.status(f"reading {request.layer.name!r}…")
                data = np.asarray(data)  # "compute now": read it all, then upscale with progress
            job = request.job
            if request.adapt_seconds:
                from ..engine.train.adapt import adapt

                budget, t0 = float(request.adapt_seconds), time.monotonic()

                def adapting(done: int, total: int) -> None:  # bar: steps or time, whichever is further
                    elapsed = time.monotonic() - t0
                    share = max(done / max(total, 1), elapsed / budget)
                    ctx.progress(min(1000, int(1000 * share)), 1000,
                                 f"adapting to the image: step {done}, {elapsed:.0f}/{budget:.0f} s")  # fmt: skip

                # a stated blur (the override) is fitted through by consistency at the image's own scale, see adapt()
                adapted = adapt(data, model=request.model, scale=request.scale, seconds=budget, engine=engine,
                                progress=adapting, should_stop=ctx.should_stop,
                                blur_sigma=request.degradation.get("blur_sigma"))  # fmt: skip
                engine.register(adapted, adapted.name)  # selectable in the list, and kept for the next run
                request.upscale = request.upscale.replace(model=adapted.name)
                job = request.job = engine.plan(data, request.upscale)  # another model: its own job
                request.model_info["adapted_from"] = adapted.metadata.get("adapt", {}) if adapted.metadata else {}
            condition = job_condition(data, job)  # a conditioned model's estimate (the heavy part: here)
            if condition is not None:  # estimated once, shown, kept, and used for every channel
                from ..engine.infer.blur_check import trained_blur_ceiling
                from ..engine.infer.conditioning import DegradationRequest, describe_condition

                widest = trained_blur_ceiling(job.model)
                ctx.status(f"estimated: {describe_condition(condition, widest)}")
                request.model_info["degradation"] = {
                    **condition.to_dict(), "overrides": request.degradation, "widest_trained_blur": widest,
                }  # fmt: skip
                job = replace(job, degradation=DegradationRequest.parse(condition))
            result = engine.run(  # device per call: this widget's choice changes no one else's
                data, job, progress=lambda done, total: ctx.progress(done, total, f"tile {done}/{total}"),
                should_stop=ctx.should_stop,
            )  # fmt: skip
            if not request.consistency:
                return result, None
            from ..engine.metrics.consistency import consistency

            ctx.status("consistency map…")
            return result, consistency(data, result, request.scale)

        self._request, self._source_deleted = request, None
        what = "building a lazy (dask) result" if request.lazy else "upscaling"
        return self.start_job(
            work, description=f"{what} {request.layer.name!r}", total=request.total, sources=(request.layer,),
            status=f"{what} {request.layer.name!r} ×{request.scale} with {request.model} on {request.device}…",
            failure=f"Upscaling {request.layer.name!r} failed", on_done=self._on_returned, on_finish=self._on_finished,
            on_cancelled=lambda: self._source_deleted is not None and self._source_gone(request.layer),
        )  # fmt: skip

    def _start_axial(self, layer: Image) -> FunctionWorker | None:
        """Upsample a 3D layer along Z (``napari_superres.upscale_z``); the result overlays the source."""
        from ..engine.device import resolve_device

        if not isinstance(layer, Image) or layer.ndim != 3 or layer.rgb:
            self.refuse("'along Z' needs a 3D grayscale (Z, Y, X) image layer.")
            return None
        data = layer.data[0] if layer.multiscale else layer.data
        factor = int(self.axial_factor.value) or None
        z, y = float(layer.scale[0]), float(layer.scale[1])
        if factor is None and round(z / y) < 2:
            self.refuse(f"{layer.name!r} has Z step {z:g} and pixel size {y:g} (isotropic): set a Z factor, or set "
                         "the layer's Z scale.")  # fmt: skip
            return None
        steps = int(self.axial_steps.value) or None
        device = str(resolve_device(self.device_combo.value))

        def work(ctx: JobContext) -> Any:
            from ..engine.axial import upscale_z

            ctx.status(f"reading {layer.name!r}…")
            volume = np.asarray(data)
            return upscale_z(
                volume, factor, axes="ZYX", scale=tuple(float(v) for v in layer.scale), steps=steps, device=device,
                progress=lambda done, total: ctx.progress(done, total, f"along Z: {done}/{total} (training, then slices)"),
                should_stop=ctx.should_stop,
            )  # fmt: skip

        def done(result: Any) -> None:
            if self._source_gone(layer):
                return
            kwargs = output_layer_kwargs(layer, 1, "axial")
            scale = list(kwargs["scale"])
            scale[0] = float(layer.scale[0]) / result.factor  # input plane k is result plane k * factor
            kwargs.update(name=f"{layer.name} Z×{result.factor} (axial)", scale=tuple(scale))
            kwargs["metadata"]["napari_superres"].update(
                axial_factor=result.factor, model="axial (trained on the stack)"
            )
            added = self.viewer.add_image(result.volume, **kwargs)
            self.status.value = f"added {added.name!r} {tuple(result.volume.shape)}"

        self._source_deleted = None
        return self.start_job(
            work, description=f"upscaling {layer.name!r} along Z", on_done=done, sources=(layer,),
            failure=f"Upscaling {layer.name!r} along Z failed",
            on_cancelled=lambda: self._source_deleted is not None and self._source_gone(layer),
        )  # fmt: skip

    def _on_returned(self, outcome: tuple[Any, Any]) -> None:
        request = self._request
        if request is None:
            return
        result, check = outcome
        if self._source_gone(request.layer):
            return
        used = request.model_info.get("degradation")
        if used:
            from ..engine.infer.conditioning import describe_condition
            from ..engine.nets.conditioning import DegradationCondition

            self.estimate_label.value = describe_condition(
                DegradationCondition.from_dict(used), used.get("widest_trained_blur")
            )
        kwargs = output_layer_kwargs(request.layer, request.scale, request.model, model_info=request.model_info)
        layer = self.viewer.add_image(result, **kwargs)
        self.status.value = f"added {layer.name!r} {tuple(result.shape)}"
        if check is not None:
            from .layers import METADATA_KEY

            info = {**kwargs["metadata"][METADATA_KEY], "consistency": check.summary(),
                    "rms": float(check.rms), "inconsistent_fraction": float(check.inconsistent_fraction)}  # fmt: skip
            map_kwargs = {
                key: kwargs[key] for key in ("scale", "translate", "rotate", "shear", "affine") if key in kwargs
            }
            self.viewer.add_image(
                check.map, name=f"{layer.name} {CONSISTENCY_SUFFIX}", colormap="inferno", blending="additive",
                contrast_limits=(0.0, max(3.0, float(np.percentile(check.map, 99.5)))),
                metadata={METADATA_KEY: info}, **map_kwargs,
            )  # fmt: skip
            self.status.value += f"; consistency: {check.summary()}"
        if request.adapt_seconds:
            self._refresh_models()

    def _add_lazy(self, request: _Request) -> Image:
        """Add a layer whose planes are upscaled in the background around the displayed one."""
        from .lazy_planes import add_background_layer, background_planes

        engine, n_lead = self.engine, request.axes.count("Q")
        assert engine is not None
        plane_axes = request.axes[n_lead:]

        def upscale_plane(plane: np.ndarray, progress: Any, should_stop: Any) -> np.ndarray:
            job = engine.plan(plane, request.upscale.replace(axes=plane_axes))  # one plane of the planned stack
            return engine.run(plane, job, progress=progress, should_stop=should_stop)

        shape = list(request.data.shape)
        y = n_lead
        shape[y] *= request.scale
        shape[y + 1] *= request.scale
        kwargs = output_layer_kwargs(request.layer, request.scale, request.model, model_info=request.model_info)
        planes = background_planes(request.data, upscale_plane, tuple(shape), request.data.dtype, n_lead,
                                   name=kwargs["name"])  # fmt: skip
        ref = weakref.ref(self)

        def say(text: str) -> None:
            widget = ref()
            if widget is not None:
                widget.status.value = text

        layer = add_background_layer(self.viewer, planes, kwargs, say)
        self.status.value = f"added {layer.name!r} {tuple(shape)}: planes are upscaled in the background as shown"
        show_info(f"{layer.name!r} is lazy: each plane is upscaled in the background when displayed.")
        return layer

    def _on_finished(self) -> None:
        self._request = None
