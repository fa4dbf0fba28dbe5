"""The Train dock widget: train a super-resolution model on image layers, live, inside napari.

Thin glue over :class:`napari_superres.engine.train.trainer.Trainer`:

* the data are a (low-res, high-res) pair of Image layers, or a high-res layer whose
  low-res partner is synthesised on the fly (randomised blur + downsampling + noise);
* everything cheap is checked on the GUI thread before starting (layer types, pair
  shapes and factor, patch size, NaN/Inf, settings) and refused with a napari
  notification; errors raised later in the worker (e.g. missing VGG-16 weights for the
  perceptual / GAN recipes) become notifications too;
* the trainer runs in a ``napari.qt.threading`` worker; its per-step reports travel to
  the GUI thread through a queued Qt signal and drive a napari progress bar, the
  loss plot (:mod:`.loss_plot`), the validation scores and a preview layer updated in place;
* **Stop** ends the run after the current step and keeps a checkpoint (in a temporary
  folder of this widget, or the chosen checkpoint file); **Resume** continues it
  exactly; closing the widget or napari stops the worker too;
* when a run ends or is stopped, the model is registered in the viewer's engine, so it
  is selectable in the Upscale widget at once; **Save model…** writes it to a file.
"""

from __future__ import annotations

import json
import math
import queue
import re
import shutil
import tempfile
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QFileDialog, QFrame, QGroupBox, QScrollArea, QVBoxLayout, QWidget

from ..engine.nets.srnet import SUPPORTED_SCALES, UPSAMPLING_MODES
from ..engine.train.losses import LOSS_PRESETS, LOSS_TERMS
from ..engine.normalization import normalization_spec
from ..engine.train.trainer import StepReport, TrainConfig, Trainer, TrainResult, ValidationReport
from ..engine.train.data import PairSource, make_pair_source
from .engine_access import get_engine
from .layers import layer_axes
from .loss_plot import LossPlot
from .triton_guard import guard_triton_import
from .upscale_widget import available_devices

if TYPE_CHECKING:
    import napari
    from superqt.utils import FunctionWorker

    from ..engine import Engine

#: Name of the layer showing the model's output on the preview crop at validation steps.
PREVIEW_LAYER = "training preview"
#: Data with more pixels than this (or lazy data) is prepared in the worker, not on the GUI thread.
MAX_GUI_PREPARE_PIXELS = 1 << 24
#: How often (ms) the GUI thread picks up the worker's step reports.
REPORT_POLL_MS = 50
#: How long closing the widget waits for the worker to finish its step and checkpoint.
CLOSE_WAIT_S = 30.0
#: File name of the checkpoint in the widget's temporary folder.
CHECKPOINT_NAME = "training.ckpt"
NORMALIZATIONS = ("dtype", "percentile")
MODEL_SUFFIX = ".safetensors"


@dataclass
class _Plan:
    """One run, gathered and validated on the GUI thread; the worker only executes it."""

    name: str
    config: TrainConfig | None  # None: resume with the checkpoint's config
    steps: int
    hr: Any
    lr: Any | None
    axes: str
    data: PairSource | None  # built on the GUI thread when cheap, else in the worker
    checkpoint: Path
    resume: bool
    hr_scale: tuple[float, ...]
    hr_translate: tuple[float, ...]
    colormap: Any
    #: (y, x) in high-res px of the preview crop in its plane, when the data can say
    preview_origin: tuple[float, float] | None = None

    def use_data(self, data: PairSource) -> PairSource:
        """Remember where the data's preview crop lies (if the data can say) and return ``data``."""
        origin = getattr(data, "preview_origin", None)
        if callable(origin):
            yx = origin()
            self.preview_origin = None if yx is None else (float(yx[-2]), float(yx[-1]))
        return data


@dataclass
class _Outcome:
    trainer: Trainer
    result: TrainResult


def build_data(plan: _Plan, config: TrainConfig) -> PairSource:
    """The :class:`PairSource` of ``plan`` with ``config``'s scale, patch size and normalisation."""
    hr = np.asarray(plan.hr)
    lr = None if plan.lr is None else np.asarray(plan.lr)
    return make_pair_source(
        [hr], None if lr is None else [lr], scale=int(config.scale), axes=plan.axes,
        patch_size=int(config.patch_size), degradation=None if lr is not None else config.degradation,
        normalization=config.normalization, seed=int(config.seed),
    )  # fmt: skip


def run_plan(plan: _Plan, engine: Engine, report: Any, should_stop: Any) -> _Outcome:
    """Worker body: build the data and the trainer (or resume it), then train until done or stopped."""
    if plan.resume:
        config = plan.config
        if config is None:
            state = Trainer.read_checkpoint(plan.checkpoint)
            config = TrainConfig.from_dict(json.loads(state["config"]))
        data = plan.use_data(plan.data if plan.data is not None else build_data(plan, config))
        trainer = Trainer.resume(plan.checkpoint, data, engine=engine, steps=plan.steps)
        trainer.config.checkpoint_path = str(plan.checkpoint)
        if trainer.step >= trainer.config.steps:
            raise ValueError(
                f"the checkpointed run is already at step {trainer.step} of {trainer.config.steps}; "
                f"raise 'steps' above {trainer.step} to train longer"
            )
    else:
        assert plan.config is not None
        data = plan.use_data(plan.data if plan.data is not None else build_data(plan, plan.config))
        trainer = Trainer(plan.config, data, engine=engine)
    result = trainer.run(callback=report, should_stop=should_stop)
    return _Outcome(trainer, result)


def _register(engine: Engine, name: str, started_at: list[int], outcome: _Outcome) -> None:
    """Register the trained model (GUI thread; independent of the widget, which may be closed)."""
    if outcome.result.steps_done > started_at[0]:
        engine.register(outcome.trainer.model(name), name)


def format_duration(seconds: float) -> str:
    """``83.2`` -> ``"1:23"``, ``3723`` -> ``"1:02:03"``; ``"?"`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _section(title: str, container: Container) -> QGroupBox:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(4, 4, 4, 4)
    container.margins = (0, 0, 0, 0)
    layout.addWidget(container.native)
    return box


def _safe_file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


class TrainWidget(QWidget):
    """Train a super-resolution network on image layers of ``napari_viewer``.

    Programmatic use (and tests)::

        widget.hr_combo.value = viewer.layers["high-res"]
        widget.lr_combo.value = viewer.layers["low-res (×2)"]
        widget.steps_spin.value = 200
        worker = widget.start()     # None if refused (a notification says why)
        widget.stop()               # ends after the current step; a checkpoint is kept
        worker = widget.resume()    # continues from the checkpoint
        widget.save_model("my_x2.safetensors")
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.engine = get_engine(napari_viewer)
        self._worker: FunctionWorker | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._pbar: progress | None = None
        self._plan: _Plan | None = None
        self._trainer: Trainer | None = None
        self._last_config: dict[str, Any] | None = (
            None  # config of the run that wrote the session checkpoint
        )
        self._last_step = 0
        self._pending: deque[tuple[Any, tuple[Any, ...]]] = deque()
        self._draining = False
        # the worker only puts reports in a queue (it never touches Qt objects, which may be
        # deleted while it runs); this timer drains the queue on the GUI thread
        self._reports: queue.SimpleQueue[StepReport] = queue.SimpleQueue()
        self._poll = QTimer(self)
        self._poll.setInterval(REPORT_POLL_MS)
        self._poll.timeout.connect(lambda: self._enqueue((self._drain_reports,)))
        self._tmpdir = Path(tempfile.mkdtemp(prefix="napari-superres-train-"))
        # removed at shutdown, or when the widget is garbage-collected / at interpreter exit
        self._remove_tmpdir = weakref.finalize(self, shutil.rmtree, str(self._tmpdir), True)
        self._had_parent = False
        self._shut = False
        self._deleted = threading.Event()  # set when the Qt object is destroyed
        self._stops: list[threading.Event] = [self._stop]  # the current run's stop event
        self.preview_layer: Image | None = None

        # --- data ---
        self.hr_combo = ComboBox(label="high-res", choices=self._image_layer_choices, nullable=True)
        self.synth_check = CheckBox(text="synthesize low-res from high-res", value=False)
        self.lr_combo = ComboBox(label="low-res", choices=self._image_layer_choices, nullable=True)
        self.scale_combo = ComboBox(label="scale", choices=list(SUPPORTED_SCALES), value=2)
        self.pair_label = Label(value="")
        data_box = Container(
            widgets=[
                self.hr_combo,
                self.synth_check,
                self.lr_combo,
                self.scale_combo,
                self.pair_label,
            ]
        )
        # --- loss ---
        self.preset_combo = ComboBox(label="preset", choices=list(LOSS_PRESETS), value="psnr")
        self.weight_spins: dict[str, FloatSpinBox] = {
            term: FloatSpinBox(label=f"{term} weight", min=0.0, max=1000.0, step=0.001, value=0.0)
            for term in LOSS_TERMS
        }
        loss_box = Container(widgets=[self.preset_combo, *self.weight_spins.values()])
        # --- optimisation ---
        self.steps_spin = SpinBox(label="steps", min=0, max=10_000_000, step=100, value=1000)
        self.batch_spin = SpinBox(label="batch", min=1, max=1024, value=16)
        self.patch_spin = SpinBox(label="patch (high-res px)", min=4, max=4096, step=8, value=96)
        self.lr_spin = FloatSpinBox(label="learning rate", min=1e-6, max=1.0, step=1e-5, value=2e-4)
        self.lr_spin.native.setDecimals(6)
        self.lr_spin.value = 2e-4
        self.val_spin = SpinBox(label="validate every", min=0, max=1_000_000, step=10, value=100)
        self.norm_combo = ComboBox(
            label="normalization", choices=list(NORMALIZATIONS), value="dtype"
        )
        self.device_combo = ComboBox(label="device", choices=available_devices(), value="auto")
        opt_box = Container(
            widgets=[self.steps_spin, self.batch_spin, self.patch_spin, self.lr_spin, self.val_spin,
                     self.norm_combo, self.device_combo]
        )  # fmt: skip
        # --- network ---
        self.channels_spin = SpinBox(label="channels", min=1, max=512, value=32)
        self.blocks_spin = SpinBox(label="blocks", min=0, max=64, value=4)
        self.upsampling_combo = ComboBox(
            label="upsampling", choices=list(UPSAMPLING_MODES), value="bilinear"
        )
        net_box = Container(widgets=[self.channels_spin, self.blocks_spin, self.upsampling_combo])
        # --- output and control ---
        self.name_edit = LineEdit(label="model name", value="")
        self.name_edit.native.setPlaceholderText("automatic: '<high-res layer> x<scale>'")
        self.checkpoint_edit = FileEdit(
            label="checkpoint", mode="w", nullable=True, filter="*.ckpt"
        )
        self.checkpoint_edit.tooltip = (
            "Checkpoint file (empty: a temporary file kept while this widget is open)."
        )
        self.start_button = PushButton(text="Start")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.resume_button = PushButton(text="Resume", enabled=False)
        self.save_button = PushButton(text="Save model…", enabled=False)
        buttons = Container(
            widgets=[self.start_button, self.stop_button, self.resume_button, self.save_button],
            layout="horizontal", labels=False,
        )  # fmt: skip
        buttons.margins = (0, 0, 0, 0)
        self.status = Label(value="")
        self.validation_label = Label(value="")
        out_box = Container(
            widgets=[
                self.name_edit,
                self.checkpoint_edit,
                buttons,
                self.status,
                self.validation_label,
            ]
        )
        self.loss_plot = LossPlot()

        # settings scroll (the dock may be short); model, buttons, status and plot stay visible
        settings = QWidget()
        settings_layout = QVBoxLayout(settings)
        settings_layout.setContentsMargins(0, 0, 0, 0)
        for title, box in (
            ("Data", data_box),
            ("Loss", loss_box),
            ("Optimisation", opt_box),
            ("Network", net_box),
        ):
            settings_layout.addWidget(_section(title, box))
        settings_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(settings)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll, 1)
        layout.addWidget(_section("Model", out_box))
        layout.addWidget(self.loss_plot)
        self._containers = (data_box, loss_box, opt_box, net_box, out_box)

        self._apply_theme()
        self.viewer.events.theme.connect(self._apply_theme)
        self._fill_weights()
        self._select_default_layers()
        self._on_mode_changed()
        self.preset_combo.changed.connect(self._fill_weights)
        self.synth_check.changed.connect(self._on_mode_changed)
        for w in (self.hr_combo, self.lr_combo, self.scale_combo):
            w.changed.connect(self._describe_pair)
        self.start_button.changed.connect(lambda *_: self.start())
        self.stop_button.changed.connect(lambda *_: self.stop())
        self.resume_button.changed.connect(lambda *_: self.resume())
        self.save_button.changed.connect(self._on_save_clicked)

        # a deleted widget stops its run (the closure holds only events, not the widget)
        deleted, stops = self._deleted, self._stops
        self.destroyed.connect(lambda *_: (deleted.set(), stops[0].set()))

    # --- public state --------------------------------------------------------------------------
    @property
    def worker(self) -> FunctionWorker | None:
        """The running worker, or ``None``."""
        return self._worker

    @property
    def trainer(self) -> Trainer | None:
        """The trainer of the last run that ended (finished or stopped), or ``None``."""
        return self._trainer

    @property
    def checkpoint_path(self) -> Path:
        """The checkpoint file runs write and Resume reads (chosen file, else a temporary one)."""
        chosen = self.checkpoint_edit.value
        if chosen is not None and str(chosen) not in ("", "."):
            return Path(chosen)
        return self._tmpdir / CHECKPOINT_NAME

    def model_name(self) -> str:
        """The name the model is registered under (the typed one, else '<high-res layer> x<scale>')."""
        typed = self.name_edit.value.strip()
        if typed:
            return typed
        hr = self.hr_combo.value
        base = hr.name if hr is not None else "trained"
        try:
            scale = self._scale()
        except ValueError:
            scale = int(self.scale_combo.value)
        return f"{base} x{scale}"

    def _apply_theme(self, *_: Any) -> None:
        from napari.utils.theme import get_theme

        if self._closed:
            return
        try:
            theme = get_theme(self.viewer.theme)
            self.loss_plot.set_colors(theme.background.as_hex(), theme.text.as_hex())
        except (
            KeyError,
            ValueError,
            AttributeError,
            RuntimeError,
        ):  # unknown theme, deleted widget
            pass

    # --- choices -------------------------------------------------------------------------------
    def _image_layer_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer lists (napari calls this when layers change)."""
        for container in self._containers:
            container.reset_choices()
        self._select_default_layers()
        self._describe_pair()

    def _select_default_layers(self) -> None:
        """Pre-select the largest image as high-res and the smallest other one as low-res."""
        images = [layer for _, layer in self._image_layer_choices()]
        if not images:
            return
        size = lambda layer: int(
            np.prod(layer.data[0].shape if layer.multiscale else layer.data.shape)
        )
        if self.hr_combo.value is None:
            self.hr_combo.value = max(images, key=size)
        if self.lr_combo.value is None:
            others = [layer for layer in images if layer is not self.hr_combo.value]
            if others:
                self.lr_combo.value = min(others, key=size)

    def _fill_weights(self, *_: Any) -> None:
        preset = LOSS_PRESETS[self.preset_combo.value]
        for term, spin in self.weight_spins.items():
            spin.value = float(preset.get(term, 0.0))

    def _on_mode_changed(self, *_: Any) -> None:
        synth = bool(self.synth_check.value)
        self.lr_combo.visible = not synth
        self.scale_combo.visible = synth
        self._describe_pair()

    def _describe_pair(self, *_: Any) -> None:
        try:
            scale = self._scale()
            hr = self._layer_data(self.hr_combo.value, "high-res")
            text = f"×{scale}: high-res {tuple(hr.shape)}"
            if not self.synth_check.value:
                text += f", low-res {tuple(self._layer_data(self.lr_combo.value, 'low-res').shape)}"
            else:
                text += ", low-res synthesized"
        except (ValueError, TypeError) as exc:
            text = str(exc)
        self.pair_label.value = text

    # --- validation (GUI thread) ---------------------------------------------------------------
    @staticmethod
    def _layer_data(layer: Any, role: str) -> Any:
        if layer is None:
            raise ValueError(
                f"Choose a {role} image layer (or open File > Open Sample > Super-resolution)."
            )
        if not isinstance(layer, Image):
            kind = type(layer).__name__
            raise TypeError(
                f"Layer {getattr(layer, 'name', layer)!r} is a {kind} layer; training needs Image layers "
                f"holding intensities as the {role} data."
            )
        return layer.data[0] if layer.multiscale else layer.data

    def _scale(self) -> int:
        """The training factor: the scale combo when synthesising, else the pair's size ratio."""
        if self.synth_check.value:
            return int(self.scale_combo.value)
        hr_layer, lr_layer = self.hr_combo.value, self.lr_combo.value
        hr = self._layer_data(hr_layer, "high-res")
        lr = self._layer_data(lr_layer, "low-res")
        if hr_layer is lr_layer:
            raise ValueError(
                "Low-res and high-res are the same layer; pick two layers, or tick 'synthesize low-res'."
            )
        axes = layer_axes(hr_layer)
        if len(lr.shape) != len(hr.shape) or layer_axes(lr_layer) != axes:
            raise ValueError(
                f"Low-res {tuple(lr.shape)} and high-res {tuple(hr.shape)} have different layouts; "
                "a pair needs the same dimensions (only Y and X may differ)."
            )
        y, x = axes.index("Y"), axes.index("X")
        fy, fx = hr.shape[y] / lr.shape[y], hr.shape[x] / lr.shape[x]
        if not (fy.is_integer() and fx.is_integer() and fy == fx):
            raise ValueError(
                f"High-res {tuple(hr.shape)} is not the same integer multiple of low-res "
                f"{tuple(lr.shape)} in Y and X (factors {fy:.4g} × {fx:.4g}); crop the images "
                "so that high-res = factor × low-res exactly."
            )
        if int(fy) not in SUPPORTED_SCALES:
            raise ValueError(
                f"The pair's factor is {int(fy)}; supported factors are {list(SUPPORTED_SCALES)}."
            )
        return int(fy)

    def _config(self, scale: int, checkpoint: Path) -> TrainConfig:
        preset = self.preset_combo.value
        weights = {term: float(spin.value) for term, spin in self.weight_spins.items()}
        config = TrainConfig(
            scale=scale, preset=preset, weights=weights, steps=int(self.steps_spin.value),
            batch_size=int(self.batch_spin.value), patch_size=int(self.patch_spin.value),
            lr=float(self.lr_spin.value), device=self.device_combo.value, val_every=int(self.val_spin.value),
            checkpoint_path=str(checkpoint),
            net={"channels": int(self.channels_spin.value), "blocks": int(self.blocks_spin.value),
                 "upsampling": self.upsampling_combo.value},
            normalization=normalization_spec(self.norm_combo.value),
        )  # fmt: skip
        config.validate()  # ValueError with the fix: zero steps, bad patch size, all-zero weights...
        return config

    def _make_plan(self, resume: bool) -> _Plan:
        """Read and check the layers and settings; raises ``ValueError``/``TypeError`` with the fix."""
        from ..engine.device import resolve_device

        resolve_device(self.device_combo.value)  # RuntimeError when the device is unavailable
        hr_layer = self.hr_combo.value
        hr = self._layer_data(hr_layer, "high-res")
        synth = bool(self.synth_check.value)
        lr = None if synth else self._layer_data(self.lr_combo.value, "low-res")
        scale = self._scale()
        checkpoint = self.checkpoint_path
        steps = int(self.steps_spin.value)
        if resume:
            if not checkpoint.is_file():
                raise ValueError(
                    f"No checkpoint to resume from at {checkpoint}; start a run (or choose a checkpoint file)."
                )
            config = None
            if (
                self._last_config is not None
                and Path(self._last_config["checkpoint_path"]) == checkpoint
            ):
                config = TrainConfig.from_dict(self._last_config)
                if config.scale != scale:
                    raise ValueError(
                        f"The checkpointed run trains ×{config.scale} but the data are ×{scale}."
                    )
                if steps <= self._last_step:
                    raise ValueError(
                        f"The run is already at step {self._last_step}; raise 'steps' above it to train longer."
                    )
        else:
            config = self._config(scale, checkpoint)
        if hr_layer.multiscale:
            show_warning(f"{hr_layer.name!r} is multiscale: training on its full-resolution level.")
        plan = _Plan(
            name=self.model_name(), config=config, steps=steps, hr=hr, lr=lr,
            axes=layer_axes(hr_layer), data=None, checkpoint=checkpoint, resume=resume,
            hr_scale=tuple(hr_layer.scale), hr_translate=tuple(hr_layer.translate),
            colormap=None if hr_layer.rgb else hr_layer.colormap,
        )  # fmt: skip
        if config is not None and _cheap(hr, lr):
            # numpy data: build now, so shape / patch / NaN problems are refused before starting
            plan.data = plan.use_data(build_data(plan, config))
        return plan

    # --- running -------------------------------------------------------------------------------
    def start(self) -> FunctionWorker | None:
        """Validate the inputs and start a new run; returns the worker, or ``None`` if refused."""
        return self._launch(resume=False)

    def resume(self) -> FunctionWorker | None:
        """Continue the checkpointed run up to 'steps'; returns the worker, or ``None`` if refused."""
        return self._launch(resume=True)

    def stop(self, wait: bool = False, timeout: float = CLOSE_WAIT_S) -> bool:
        """Ask the run to end after the current step (a checkpoint is written).

        With ``wait``, block until the worker has finished (at most ``timeout`` s); returns
        whether no run is left running.
        """
        if self._worker is not None:
            self._stop.set()
            if not self._closed:
                self.status.value = "stopping after this step…"
        return self._done.wait(timeout) if wait else self._done.is_set()

    def _launch(self, resume: bool) -> FunctionWorker | None:
        if self._worker is not None:
            show_warning("A training run is already going; stop it first.")
            return None
        try:
            plan = self._make_plan(resume)
        except (ValueError, TypeError, RuntimeError, KeyError) as exc:
            self._refuse(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))
            return None
        return self._start_worker(plan)

    def _refuse(self, message: str) -> None:
        self.status.value = message
        show_error(message)

    def _start_worker(self, plan: _Plan) -> FunctionWorker:
        guard_triton_import()  # the canvas may have loaded Mesa's LLVM since the widget opened
        stop = self._stop = self._stops[0] = threading.Event()
        done = self._done = threading.Event()
        holder: list[FunctionWorker] = []
        reports: queue.SimpleQueue[StepReport] = queue.SimpleQueue()
        self._reports = reports
        report = reports.put

        def should_stop() -> bool:  # napari's quit (window closing) sets worker.abort_requested
            return stop.is_set() or bool(holder and holder[0].abort_requested)

        engine = self.engine

        def work() -> _Outcome:
            try:
                return run_plan(plan, engine, report, should_stop)
            finally:
                done.set()

        worker = create_worker(work, _start_thread=False, _ignore_errors=True)
        holder.append(worker)
        started_at = [self._last_step if plan.resume else 0]
        # registration does not depend on the widget: a model stopped by closing the widget is kept
        worker.returned.connect(lambda outcome: _register(engine, plan.name, started_at, outcome))
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._plan = plan
        if not plan.resume:
            self.loss_plot.clear()
            self.validation_label.value = ""
            self._last_step = 0
        total = plan.steps
        self._pbar = progress(total=total, desc=f"training {plan.name!r}")
        if plan.resume and self._last_step:
            self._pbar.update(self._last_step)
        verb = "resuming" if plan.resume else "preparing"
        self.status.value = f"{verb} {plan.name!r}…"
        self._set_running(True)
        self._poll.start()
        worker.start()
        return worker

    # --- GUI-thread handlers -------------------------------------------------------------------
    def _enqueue(self, *calls: tuple[Any, ...]) -> None:
        """Apply worker events (reports, then returned / errored / finished) strictly in order.

        napari's progress bar and layer additions may process events, and so deliver the
        next worker events, inside a handler: those are queued and applied after it.
        """
        self._pending.extend((call[0], call[1:]) for call in calls)
        if self._draining:
            return
        self._draining = True
        try:
            while self._pending:
                handler, args = self._pending.popleft()
                handler(*args)
        finally:
            self._draining = False

    def _drain_reports(self) -> None:
        """Apply every report the worker queued so far, in order."""
        while True:
            try:
                report = self._reports.get_nowait()
            except queue.Empty:
                return
            self._apply_report(report)

    # worker signals: first the reports queued before them, then the event itself
    def _on_returned(self, outcome: _Outcome) -> None:
        self._enqueue((self._drain_reports,), (self._apply_returned, outcome))

    def _on_errored(self, exc: BaseException) -> None:
        self._enqueue((self._drain_reports,), (self._apply_errored, exc))

    def _on_finished(self) -> None:
        self._enqueue((self._drain_reports,), (self._apply_finished,))

    @property
    def _closed(self) -> bool:
        return self._shut or self._deleted.is_set()

    def _apply_report(self, r: StepReport) -> None:
        if self._closed:
            return
        self._last_step = int(r.step)
        if self._pbar is not None:
            if self._pbar.total != r.total_steps:
                self._pbar.total = r.total_steps
            self._pbar.update(r.step - self._pbar.n)
        total = r.losses.get("total", float("nan"))
        phase = " (pixel pre-training)" if r.phase == "pretrain" else ""
        self.status.value = (
            f"step {r.step}/{r.total_steps}{phase} · loss {total:.4g} · {r.it_per_s:.2f} it/s · "
            f"ETA {format_duration(r.eta_s)}"
        )
        self.loss_plot.add_step(r.step, r.losses, r.d_acc_real, r.d_acc_fake)
        if r.validation is not None:
            self._show_validation(r.validation)

    def _show_validation(self, v: ValidationReport) -> None:
        self.loss_plot.add_validation(v.step, v.psnr, v.bicubic_psnr, v.ssim)
        self.validation_label.value = (
            f"validation @ {v.step}: PSNR {v.psnr:.2f} dB (bicubic {v.bicubic_psnr:.2f}, "
            f"{v.psnr - v.bicubic_psnr:+.2f}) · SSIM {v.ssim:.3f} (bicubic {v.bicubic_ssim:.3f})"
        )
        if v.preview is not None and self._plan is not None:
            self._update_preview(np.asarray(v.preview), self._plan)

    def _update_preview(self, image: np.ndarray, plan: _Plan) -> None:
        """Show the model's output on the preview crop, in place, on the high-res layer's grid."""
        rgb = image.ndim == 3
        scale = np.asarray(plan.hr_scale[-2:], float)
        translate = np.asarray(plan.hr_translate[-2:], float)
        if plan.preview_origin is not None:  # overlay the crop on the region it comes from
            translate = translate + np.asarray(plan.preview_origin) * scale
        layer = self.preview_layer
        if layer is not None and layer in self.viewer.layers and layer.rgb == rgb:
            layer.data = image
            if not (np.allclose(layer.scale, scale) and np.allclose(layer.translate, translate)):
                layer.scale, layer.translate = scale, translate  # a new run on another layer
            return
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)
        kwargs: dict[str, Any] = {
            "name": PREVIEW_LAYER,
            "scale": tuple(scale),
            "translate": tuple(translate),
            "rgb": rgb,
            "metadata": {"napari_superres": "training preview (model output on a validation crop)"},
        }
        if not rgb:
            kwargs["contrast_limits"] = (0.0, 1.0)
            if plan.colormap is not None:
                kwargs["colormap"] = plan.colormap
        self.preview_layer = self.viewer.add_image(image, **kwargs)

    def _apply_returned(self, outcome: _Outcome) -> None:
        if self._closed:
            return
        plan = self._plan
        self._trainer = outcome.trainer
        self._last_config = outcome.trainer.config.to_dict()
        self._last_step = int(outcome.result.steps_done)
        name = plan.name if plan is not None else "model"
        how = "stopped" if outcome.result.stopped else "finished"
        self.status.value = (
            f"{how} at step {outcome.result.steps_done}/{outcome.trainer.config.steps}; "
            f"model {name!r} is in the Upscale widget"
        )
        show_info(f"Training {how}: model {name!r} registered (select it in the Upscale widget).")

    def _apply_errored(self, exc: BaseException) -> None:
        if self._closed:
            return
        message = (
            str(exc)
            if isinstance(exc, (ValueError, TypeError, RuntimeError))
            else f"{type(exc).__name__}: {exc}"
        )
        message = f"Training could not run: {message}"
        self.status.value = message
        show_error(message)

    def _apply_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._worker = None
        if not self._closed:
            self._poll.stop()
            self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.start_button.enabled = not running
        self.stop_button.enabled = running
        self.resume_button.enabled = not running and self.checkpoint_path.is_file()
        self.save_button.enabled = not running and self._trainer is not None

    # --- saving --------------------------------------------------------------------------------
    def save_model(self, path: str | Path) -> Path | None:
        """Write the last trained model to ``path`` (``.safetensors``, atomic); ``None`` on failure."""
        if self._trainer is None:
            self._refuse("No trained model yet: start a run and let it finish or stop it.")
            return None
        if self._worker is not None:
            self._refuse("Training is running; stop it before saving.")
            return None
        try:
            written = self._trainer.save_model(path)
        except OSError as exc:
            self._refuse(f"Could not save the model to {path}: {exc}")
            return None
        self.status.value = f"saved {written}"
        show_info(f"Model saved to {written}")
        return written

    def _on_save_clicked(self, *_: Any) -> None:
        suggested = str(Path.home() / f"{_safe_file_stem(self.model_name())}{MODEL_SUFFIX}")
        path, _ = QFileDialog.getSaveFileName(
            self, "Save trained model", suggested, f"napari-superres model (*{MODEL_SUFFIX})"
        )
        if path:
            self.save_model(path)

    # --- closing -------------------------------------------------------------------------------
    def shutdown(self, timeout: float = CLOSE_WAIT_S) -> None:
        """Stop any run, wait for its checkpoint (at most ``timeout`` s) and drop temporary files."""
        if self._closed:
            return
        self._shut = True
        self._poll.stop()
        self._stop.set()
        finished = self._done.wait(timeout)
        if finished:
            self._remove_tmpdir()

    def closeEvent(self, event: Any) -> None:
        self.shutdown()
        super().closeEvent(event)

    def event(self, event: QEvent) -> bool:
        # napari's remove_dock_widget un-parents the widget without closing it: stop then
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._had_parent = True
            elif self._had_parent:
                self.shutdown()
        return super().event(event)


def _cheap(hr: Any, lr: Any | None) -> bool:
    """Whether the data are in-memory numpy arrays small enough to prepare on the GUI thread."""
    arrays = [a for a in (hr, lr) if a is not None]
    return (
        all(isinstance(a, np.ndarray) for a in arrays)
        and sum(a.size for a in arrays) <= MAX_GUI_PREPARE_PIXELS
    )
