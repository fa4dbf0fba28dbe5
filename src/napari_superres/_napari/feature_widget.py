"""The Feature-difference dock widget: where and how much image A differs from the reference B.

Thin glue over :mod:`napari_superres.engine.metrics.pixel` and
:mod:`napari_superres.engine.metrics.features`:

* A and B are checked on the GUI thread.  When their shapes differ but their layer
  scale/translate say they cover the same field of view (e.g. A is the low-res image with
  scale ``s`` and B the high-res one), A is resampled onto B's grid (cubic spline) and
  the widget says so; otherwise a notification names both shapes.
* The work (:func:`napari_superres.engine.metrics.difference.difference_stages`) runs as
  one :mod:`.jobs` job (progress bar and ETA in the widget); **Cancel**
  stops it between maps and between VGG tiles and always leaves the widget idle; maps of
  a cancelled stage are not added.  The pixel and SSIM maps come first, then the VGG-16 map.
  PyTorch is imported off the GUI thread when the widget first opens.
* Outputs overlay the reference (B's scale, translate, rotate, shear, affine):
  ``Δfeatures(A, B)``, optionally one ``Δrelu…(A, B)`` per VGG layer, ``|A−B|`` and
  ``SSIM map(A, B)``, with the real layer names.  Running again replaces the data of
  existing output layers instead of adding duplicates.
* PSNR, SSIM (and PSNR on Y for RGB) and the perceptual distance are shown in a table
  and stored in every output layer's ``metadata["napari_superres"]["figures"]``.
* Offline without the VGG-16 ImageNet weights, the pixel and SSIM maps are still made
  and the widget shows where to put the weights file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, PushButton
from napari.layers import Image
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
)

from ..engine.metrics.grids import GridMatch, match_shapes, yx_axes
from ..engine.options import BASIC_DEVICES, DEFAULT_DEVICE
from .jobs import ENGINE_MODULES, JobContext
from .layers import METADATA_KEY, layer_axes, map_contrast_limits
from .ui import button_row, dock_layout, folded, set_tips
from .widget_base import JobWidget

if TYPE_CHECKING:
    import napari
    from superqt.utils import FunctionWorker as GeneratorWorker

FEATURE_MODULES = (
    *ENGINE_MODULES,
    "napari_superres.engine.metrics.pixel",
    "napari_superres.engine.metrics.difference",
    "napari_superres.engine.nets.vgg",
    "torchvision.models",
)  # VGG16_Weights: the weights file name

#: VGG-16 layers offered as check boxes, and which are ticked by default (the engine's defaults).
OFFERED_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
DEFAULT_CHECKED = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
FEATURE_COLORMAP = "magma"
PIXEL_COLORMAP = "inferno"
SSIM_COLORMAP = "inferno"
#: Percentile of a difference map used as its upper contrast limit.
CONTRAST_PERCENTILE = 99.5
#: Table rows: figure key -> label (short: the table sizes to its content), and the row's tooltip.
TABLE_ROWS = {
    "psnr": "PSNR (dB)",
    "psnr_y": "PSNR Y (dB)",
    "ssim": "SSIM",
    "perceptual": "Δfeatures",
}
ROW_TIPS = {
    "psnr": "Peak signal-to-noise ratio of A against B, in dB (higher: closer).",
    "psnr_y": "PSNR on the luminance (Y) of RGB images, in dB.",
    "ssim": "Structural similarity of A and B (1: identical).",
    "perceptual": "Perceptual distance: mean of the Δfeatures map (VGG-16 features; lower: closer).",
}
#: Short names of the figures in the status line.
STATUS_NAMES = {"psnr": "PSNR", "psnr_y": "PSNR Y", "ssim": "SSIM", "perceptual": "Δfeatures"}


def feature_layer_name(a: str, b: str) -> str:
    return f"Δfeatures({a}, {b})"


def vgg_layer_name(layer: str, a: str, b: str) -> str:
    return f"Δ{layer}({a}, {b})"


def pixel_layer_name(a: str, b: str) -> str:
    return f"|{a}−{b}|"


def ssim_layer_name(a: str, b: str) -> str:
    return f"SSIM map({a}, {b})"


def _is_output_name(name: str) -> bool:
    return name.startswith(("Δ", "|", "SSIM map("))


def format_figure(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "∞ (identical)"
    return f"{value:.2f}" if key.startswith("psnr") else f"{value:.4f}"


def figures_line(figures: dict[str, Any]) -> str:
    """The figures known so far in one line, e.g. ``"PSNR 31.20 dB · SSIM 0.9120"`` (empty when none)."""
    parts = []
    for key, name in STATUS_NAMES.items():
        value = figures.get(key)
        if value is not None:
            unit = " dB" if key.startswith("psnr") and math.isfinite(value) else ""
            parts.append(f"{name} {format_figure(key, value)}{unit}")
    return " · ".join(parts)


# --- one request ---------------------------------------------------------------------------------
@dataclass
class _Request:
    a_layer: Image
    b_layer: Image
    a_data: Any
    b_data: Any
    axes: str
    layers: tuple[str, ...]
    per_layer: bool
    pixel: bool
    ssim: bool
    match: GridMatch | None
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> tuple[str, str]:
        return self.a_layer.name, self.b_layer.name


class FeatureDifferenceWidget(JobWidget):
    """Compare image A with the reference B: VGG-16 feature difference, |A−B|, SSIM map and figures.

    Programmatic use (and tests)::

        widget.a_combo.value = viewer.layers["result"]
        widget.b_combo.value = viewer.layers["high-res"]
        worker = widget.run()    # None when refused (a notification says why)
        widget.cancel()
        widget.figures           # {"psnr": ..., "ssim": ..., "perceptual": ... or None}
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        self._request: _Request | None = None
        self._device = "cpu"
        self._outputs: list[Image] = []
        self.figures: dict[str, Any] = {}
        self._deleted_message: str | None = None

        self.a_combo = ComboBox(label="image A", choices=self._image_layer_choices, nullable=False)
        self.b_combo = ComboBox(label="reference B", choices=self._image_layer_choices, nullable=False)
        self.layer_checks = {name: CheckBox(text=name, value=name in DEFAULT_CHECKED) for name in OFFERED_LAYERS}
        layer_box = Container(widgets=list(self.layer_checks.values()), layout="vertical", labels=False)
        layer_box.margins = (0, 0, 0, 0)
        self.per_layer_check = CheckBox(text="one map per VGG layer", value=False)
        self.pixel_check = CheckBox(text="|A−B| map", value=True)
        self.ssim_check = CheckBox(text="SSIM map", value=True)
        self.device_combo = ComboBox(label="device", choices=list(BASIC_DEVICES), value=DEFAULT_DEVICE)
        self.run_button = PushButton(text="Run", enabled=False)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        set_tips({
            self.a_combo: "Image A: e.g. a super-resolved result (a low-res layer is resampled onto B's grid).",
            self.b_combo: "Reference B: e.g. the high-res acquisition. The maps overlay B.",
            self.per_layer_check: "Also add one Δ map per chosen VGG-16 layer.",
            self.pixel_check: "Add |A−B|, the absolute difference in the images' intensity units.",
            self.ssim_check: "Add the local SSIM map (1 = identical, dark = dissimilar).",
            self.device_combo: "Where this widget runs VGG-16 (auto: CUDA, MPS, else CPU). Affects this widget only.",
            self.run_button: "Compute the figures and the chosen maps.",
            self.cancel_button: "Stop between maps / VGG tiles; maps of the running stage are not added.",
            **{box: f"Use VGG-16 layer {name} in Δfeatures (earlier: fine detail, later: structure)."
               for name, box in self.layer_checks.items()},
        })  # fmt: skip
        self._container = Container(widgets=[self.a_combo, self.b_combo, self.pixel_check, self.ssim_check])
        self._container.margins = (0, 0, 0, 0)
        self._advanced = Container(widgets=[self.per_layer_check, layer_box, self.device_combo])
        self._advanced.margins = (0, 0, 0, 0)

        self.table = QTableWidget(len(TABLE_ROWS), 1, self)
        self.table.setHorizontalHeaderLabels(["A vs B"])
        self.table.setVerticalHeaderLabels(list(TABLE_ROWS.values()))
        for row, key in enumerate(TABLE_ROWS):
            self.table.verticalHeaderItem(row).setToolTip(ROW_TIPS[key])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        rows_height = (len(TABLE_ROWS) + 1) * (self.table.fontMetrics().height() + 6) + 6
        self.table.setFixedHeight(rows_height)
        self.table.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Fixed)
        self.table.setToolTip("Figures of A against B (also in the status line and in each output layer's metadata).")
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        self.notes.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.notes.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        # a short window scrolls the settings; Run/Cancel and the progress stay in sight below them
        layout = dock_layout(self, [button_row(self.run_button, self.cancel_button), self.panel])
        layout.addWidget(self._container.native)
        layout.addWidget(folded("VGG-16 layers and device", self._advanced,
                                tip="Which VGG-16 layers make up Δfeatures, per-layer maps, and the device."))  # fmt: skip
        layout.addWidget(self.table)
        layout.addWidget(self.notes)
        layout.addStretch(1)

        self._select_defaults()
        self._show_figures({})
        self.run_button.changed.connect(lambda *_: self.run())
        self.cancel_button.changed.connect(lambda *_: self.cancel())
        self.load_then(FEATURE_MODULES, self._on_engine_ready)

    def _on_engine_ready(self) -> None:
        from ..engine.device import available_devices
        from ..engine.nets.vgg import vgg16_weights_path

        self.device_combo.choices = available_devices()
        if not vgg16_weights_path().is_file():  # a file check only: nothing is downloaded here
            self.notes.setText(
                f"Δfeatures needs the VGG-16 ImageNet weights ({vgg16_weights_path()}); without them only the "
                "pixel and SSIM maps are made."
            )

    # --- choices -------------------------------------------------------------------------------
    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer lists (napari calls this when layers change)."""
        self._container.reset_choices()

    def _select_defaults(self) -> None:
        """A: the selected image (else the top one); B: the bottom-most other image; skip our outputs."""
        images = [ly for ly in self.viewer.layers if isinstance(ly, Image) and not _is_output_name(ly.name)]
        if not images:
            return
        active = self.viewer.layers.selection.active
        a = active if active in images else images[-1]
        others = [ly for ly in images if ly is not a]
        self.a_combo.value = a
        if others:
            self.b_combo.value = others[0]

    @property
    def chosen_layers(self) -> tuple[str, ...]:
        return tuple(name for name, box in self.layer_checks.items() if box.value)

    # --- running -------------------------------------------------------------------------------
    def run(self) -> GeneratorWorker | None:
        """Validate and start the comparison of A with B; returns the worker, or ``None`` when refused."""
        if not self.can_start("A comparison is already running; cancel it first."):
            return None
        request = self.prepared(lambda: self._prepare(self.a_combo.value, self.b_combo.value))
        return None if request is None else self._start(request)

    def on_source_deleted(self, layer: Any) -> None:
        """A or B was deleted mid-run: stop; nothing more is added."""
        message = f"{layer.name!r} was deleted: comparison stopped, nothing more is added."
        self._deleted_message = message
        self._runner.cancel(message)
        show_warning(message)

    def _prepare(self, a: Any, b: Any) -> _Request:
        if not isinstance(a, Image) or not isinstance(b, Image):
            raise TypeError("Choose two image layers: A (e.g. a super-resolved result) and the reference B.")
        if a is b:
            raise ValueError(f"A and B are the same layer {a.name!r}; choose a reference B to compare with.")
        if bool(a.rgb) != bool(b.rgb):
            raise ValueError(
                f"{a.name!r} is {'RGB' if a.rgb else 'grayscale'} but {b.name!r} is "
                f"{'RGB' if b.rgb else 'grayscale'}; compare two RGB or two grayscale layers."
            )
        a_data = a.data[0] if a.multiscale else a.data
        b_data = b.data[0] if b.multiscale else b.data
        axes = layer_axes(b)
        notes: list[str] = []
        match: GridMatch | None = None
        a_shape, b_shape = tuple(a_data.shape), tuple(b_data.shape)
        y, x = yx_axes(len(b_shape), bool(b.rgb))
        if a_shape != b_shape:
            match = match_shapes(
                a_shape, a.scale[-2:], a.translate[-2:], b_shape, b.scale[-2:], b.translate[-2:], (y, x)
            )
            if match is None:
                raise ValueError(
                    f"A {a.name!r} has shape {a_shape} and B {b.name!r} has shape {b_shape}, and their layer "
                    "scale/translate do not say they cover the same field of view. Upscale A onto B's grid "
                    "or choose layers of the same shape."
                )
            notes.append(
                f"A {a.name!r} {(a_shape[y], a_shape[x])} was resampled onto B's grid {(b_shape[y], b_shape[x])} "
                f"(cubic spline, ×{1 / match.ratio[0]:g} in Y, ×{1 / match.ratio[1]:g} in X) before comparing."
            )
        elif not (np.allclose(a.scale, b.scale) and np.allclose(a.translate, b.translate)):
            notes.append("A and B have the same shape but different scale/translate: compared pixel for pixel.")
        if np.dtype(a_data.dtype) != np.dtype(b_data.dtype):
            notes.append(f"A is {a_data.dtype}, B is {b_data.dtype}: values are compared in B's units and data range.")
        from ..engine.device import resolve_device

        self._device = str(resolve_device(self.device_combo.value))  # RuntimeError when unavailable
        layers = self.chosen_layers
        if not layers and not self.pixel_check.value and not self.ssim_check.value:
            raise ValueError("Nothing to compute: tick at least one VGG-16 layer, the |A−B| map or the SSIM map.")
        return _Request(a, b, a_data, b_data, axes, layers, bool(self.per_layer_check.value),
                        bool(self.pixel_check.value), bool(self.ssim_check.value), match, notes)  # fmt: skip

    def _start(self, request: _Request) -> GeneratorWorker:
        engine, device = self.engine, self._device

        def work(ctx: JobContext) -> None:
            from ..engine.metrics.difference import difference_stages

            for stage in difference_stages(
                request.a_data, request.b_data, axes=request.axes, rgb=bool(request.b_layer.rgb),
                match=request.match, pixel_map=request.pixel, ssim_map=request.ssim, layers=request.layers,
                per_layer=request.per_layer, engine=engine, device=device, should_stop=ctx.should_stop,
                status=ctx.status,
                progress=lambda done, total: ctx.progress(done, total, f"VGG-16 features: tile {done}/{total}"),
            ):  # fmt: skip
                ctx.emit(stage)

        self._request = request
        self._deleted_message: str | None = None
        self._outputs = []
        self.figures = {}
        self._show_figures({})
        a_name, b_name = request.names
        self.notes.setText("\n".join(request.notes))
        return self.start_job(
            work, description=f"comparing {a_name!r} with {b_name!r}", sources=(request.a_layer, request.b_layer),
            failure="Comparison failed", on_item=self._on_yielded, on_done=self._on_done,
            on_cancelled=self._on_cancelled,
        )  # fmt: skip

    # --- results -------------------------------------------------------------------------------
    def _on_yielded(self, item: tuple[str, Any, dict[str, Any]]) -> None:
        kind, payload, figures = item
        request = self._request
        ctx = self._runner.context
        if request is None or (ctx is not None and ctx.should_stop()):
            return  # cancelled: maps of the stage that was running are not added
        a_name, b_name = request.names
        self.figures = {**figures, "perceptual": figures.get("perceptual")}
        if kind == "pixel":
            if "pixel" in payload:
                self._write(pixel_layer_name(a_name, b_name), payload["pixel"], PIXEL_COLORMAP, "|A−B|")
            if "ssim" in payload:
                self._write(ssim_layer_name(a_name, b_name), payload["ssim"], SSIM_COLORMAP, "ssim")
            stage = "pixel maps done; VGG-16 features…" if request.layers else "done"
        elif kind == "features":
            fmap, per = payload
            self._write(feature_layer_name(a_name, b_name), fmap, FEATURE_COLORMAP, "features")
            for layer_name, m in per.items():
                self._write(vgg_layer_name(layer_name, a_name, b_name), m, FEATURE_COLORMAP, "features")
            stage = "done"
        elif kind == "offline":
            self.figures["perceptual_note"] = payload
            self.notes.setText("\n".join([*request.notes, "Δfeatures not computed: " + payload]))
            stage = "pixel maps done; Δfeatures needs the VGG-16 ImageNet weights (see below)"
            show_warning("The feature-difference map needs the VGG-16 ImageNet weights: " + payload)
        self._show_figures(self.figures)
        line = figures_line(self.figures)
        self.status.value = f"{stage}: {line}" if line else stage
        for layer in self._outputs:  # every output carries the latest figures
            layer.metadata[METADATA_KEY]["figures"] = dict(self.figures)

    def _write(self, name: str, data: np.ndarray, colormap: str, kind: str) -> Image:
        """Add an output layer over B, or replace the data of an existing one of that name."""
        request = self._request
        assert request is not None
        b = request.b_layer
        limits = map_contrast_limits(data, similarity=kind == "ssim", percentile=CONTRAST_PERCENTILE)
        info = {
            "kind": kind,
            "a": request.a_layer.name,
            "b": b.name,
            "vgg_layers": list(request.layers),
            "resampled_a": request.match is not None,
            "figures": dict(self.figures),
        }
        if kind == "|A−B|":
            info["units"] = "intensity units of the images"
        transform = {"scale": tuple(b.scale), "translate": tuple(b.translate), "rotate": np.asarray(b.rotate),
                     "shear": np.asarray(b.shear), "affine": np.asarray(b.affine.affine_matrix)}  # fmt: skip
        existing = self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401
        if isinstance(existing, Image) and existing.ndim == data.ndim and not existing.rgb:
            existing.data = data
            for key, value in transform.items():
                setattr(existing, key, value)
            existing.contrast_limits_range = (
                min(limits[0], float(data.min())),
                max(limits[1], float(data.max())),
            )
            existing.contrast_limits = limits
            existing.metadata[METADATA_KEY] = info
            layer = existing
        else:
            if existing is not None:  # same name, not an output we can reuse
                name = f"{name} [new]"
            layer = self.viewer.add_image(data, name=name, colormap=colormap, contrast_limits=limits,
                                          metadata={METADATA_KEY: info}, **transform)  # fmt: skip
        if layer not in self._outputs:
            self._outputs.append(layer)
        return layer

    def _show_figures(self, figures: dict[str, Any]) -> None:
        for row, key in enumerate(TABLE_ROWS):
            text = format_figure(key, figures.get(key))
            if key == "perceptual" and figures.get("perceptual_note"):
                text = "needs VGG-16 weights"
            item = QTableWidgetItem(text)
            item.setToolTip(ROW_TIPS[key])
            self.table.setItem(row, 0, item)
        self._fit_table()

    def _fit_table(self) -> None:
        """Ask for the width the row names and the longest figure need: nothing reads "…"."""
        table = self.table
        metrics = table.fontMetrics()
        texts = [table.item(r, 0).text() for r in range(table.rowCount()) if table.item(r, 0) is not None]
        column = max(metrics.horizontalAdvance(t) for t in [*texts, "A vs B", "needs VGG-16 weights"]) + 16
        width = table.verticalHeader().sizeHint().width() + column + 2 * table.frameWidth()
        table.setMinimumWidth(width)

    def _on_done(self, _: Any) -> None:
        request = self._request
        if request is not None and self.status.value.startswith("done"):
            line = figures_line(self.figures)
            show_info(f"Compared {request.a_layer.name!r} with {request.b_layer.name!r}: {line}.")

    def _on_cancelled(self) -> None:
        self.status.value = self._deleted_message or "cancelled (maps already written are kept)"
