"""The Train dock widget: train a super-resolution model on image layers, live, inside napari.

Thin glue over :class:`napari_superres.engine.train.trainer.Trainer`; planning and checks
that need no Qt live in :mod:`.train_plan`:

* the widget opens at once; PyTorch is imported in a worker on first use ("loading
  PyTorch…") and the settings appear when it is loaded.  Basic settings come first (data,
  preset, steps, name); loss weights, optimisation, network and checkpoint are folded away;
* the data are a (low-res, high-res) pair of Image layers, or a high-res layer whose
  low-res partner is synthesised on the fly (randomised blur + downsampling + noise);
* everything cheap is checked on the GUI thread before starting (layer types, pair
  shapes and factor, patch size, NaN/Inf, settings, and the VGG-16 weights for the
  perceptual / GAN presets: a file check, warned as soon as the preset is chosen) and
  refused with a napari notification;
* the trainer runs as one :mod:`.jobs` job: progress bar with the trainer's ETA in the
  widget, a pyqtgraph loss plot, validation scores and a ``training preview`` layer drawn
  over the region of the high-res layer it comes from;
* **Stop** ends the run after the current step and keeps a checkpoint (in a temporary
  folder of this widget, or the chosen checkpoint file); **Resume** continues it exactly;
* the model is registered in the viewer's engine by the worker itself whenever a run
  added steps (finished, stopped, or stopped by closing the dock or napari), so it is
  selectable in the Upscale widget at once; **Save model…** writes it to a file.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    LineEdit,
    PushButton,
    SpinBox,
)
from napari.layers import Image
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QSizePolicy, QVBoxLayout, QWidget

from ..engine.options import (
    DEFAULT_DEVICE,
    NORMALIZATION_MODES,
    TIME_BUDGET_STEP_CAP,
    TRAIN_DEFAULTS,
    TRAINING_NORMALIZATION,
)
from .jobs import ENGINE_MODULES, JobContext
from .layers import layer_axes
from .train_guards import VGG_PROBE_S, TrainGuards
from .train_plan import (
    Outcome,
    Plan,
    build_data,
    cheap,
    offline,
    run_plan,
    safe_file_stem,
)
from .train_preview import PREVIEW_LAYER, TrainPreview  # noqa: F401  (PREVIEW_LAYER: re-exported)
from .train_tips import TRAIN_TIPS, WEIGHT_TIP
from .ui import SETTINGS_MIN_HEIGHT, StatusLine, button_row, folded, scrolled, set_tips
from .widget_base import JobWidget

if TYPE_CHECKING:
    import napari
    from superqt.utils import FunctionWorker

    from ..engine.train.trainer import StepReport, TrainConfig, Trainer, ValidationReport

#: "start from" choices (TrainConfig.init; a model file is the CLI's --init FILE).
INIT_CHOICES = ("builtin", "none")
#: How long ``stop(wait=True)`` waits by default for the worker to finish its step and checkpoint.
CLOSE_WAIT_S = 30.0
#: File name of the checkpoint in the widget's temporary folder.
CHECKPOINT_NAME = "training.ckpt"
NORMALIZATIONS = NORMALIZATION_MODES
MODEL_SUFFIX = ".safetensors"
TRAIN_MODULES = (
    *ENGINE_MODULES, "napari_superres.engine.nets.srnet", "napari_superres.engine.train.losses",
    "napari_superres.engine.train.trainer", "napari_superres.engine.train.data", "napari_superres.engine.nets.vgg",
    "napari_superres.engine.device", "napari_superres._napari.loss_plot", "torchvision.models",
)  # fmt: skip
#: Where the sample pair is in napari's menu: a plugin with one sample gets one item, "<sample> (<plugin>)".
SAMPLE_MENU = "File ▸ Open Sample ▸ Synthetic fluorescence pair (low-res, high-res) (Super-resolution)"


class TrainWidget(TrainGuards, TrainPreview, JobWidget):
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

    #: Whether the VGG-16 weights' host answered the probe (emitted from the probe's thread).
    vgg_probed = Signal(bool)

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        self._plan: Plan | None = None
        self._trainer: Trainer | None = None
        self._last_config: dict[str, Any] | None = None  # config of the run that wrote the session checkpoint
        self._last_step = 0
        self._last_name: str | None = None  # the name the checkpointed run registers under
        self._tmpdir = Path(tempfile.mkdtemp(prefix="napari-superres-train-"))
        # removed when the widget is closed with no run left, garbage-collected, or at interpreter exit
        self._remove_tmpdir = weakref.finalize(self, shutil.rmtree, str(self._tmpdir), True)
        self.preview_layer: Image | None = None
        self._vgg_reachable: bool | None = None  # whether the VGG-16 weights' host answered (None: not asked)
        self._vgg_probing = False
        self.vgg_probed.connect(self._on_vgg_probed)

        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(4, 4, 4, 4)
        self._layout.addWidget(self.panel)
        self._plot_shown = False
        self.load_then(TRAIN_MODULES, self._build)  # ready (settings built) once PyTorch is loaded

    def notify_error(self, message: str) -> None:
        show_error(message)  # through this module's name (where tests capture notifications)

    # --- building (after PyTorch is loaded) ----------------------------------------------------
    def _build(self) -> None:
        boxes = self._make_controls()
        self._tooltips()
        self._lay_out(*boxes)
        self._connect_controls()

    def _make_controls(self) -> tuple[Container, Container, Container, Container, Container]:
        """Create the settings and control widgets; return the (basic, loss weights, optimisation,
        network, checkpoint) containers of the settings."""
        from ..engine.device import available_devices
        from ..engine.nets.srnet import SUPPORTED_SCALES, UPSAMPLING_MODES
        from ..engine.train.losses import LOSS_PRESETS, LOSS_TERMS
        from .loss_plot import LossPlot

        self._presets = LOSS_PRESETS
        self._supported_scales = tuple(SUPPORTED_SCALES)
        # --- basic ---
        self.hr_combo = ComboBox(label="high-res", choices=self._image_layer_choices, nullable=True)
        self.synth_check = CheckBox(text="synthesize low-res from high-res", value=False)
        self.lr_combo = ComboBox(label="low-res", choices=self._image_layer_choices, nullable=True)
        self.scale_combo = ComboBox(label="scale", choices=list(SUPPORTED_SCALES), value=2)
        self.example_combo = ComboBox(label="degradation from", choices=self._image_layer_choices, nullable=True,
                                      value=None)  # fmt: skip
        d = TRAIN_DEFAULTS  # the CLI's defaults
        self.preset_combo = ComboBox(label="preset", choices=list(LOSS_PRESETS), value=d.preset)
        self.steps_spin = SpinBox(label="steps", min=0, max=TIME_BUDGET_STEP_CAP, step=100, value=d.steps)
        self.seconds_spin = SpinBox(label="time budget (s)", min=0, max=10_000_000, step=60, value=int(d.seconds or 0))
        self.name_edit = LineEdit(label="model name", value="")
        self.name_edit.native.setPlaceholderText("automatic: '<high-res layer> x<scale>', numbered if taken")
        basic = Container(widgets=[self.hr_combo, self.synth_check, self.lr_combo, self.scale_combo,
                                   self.example_combo, self.preset_combo, self.steps_spin, self.seconds_spin,
                                   self.name_edit])  # fmt: skip
        self.pair_label = StatusLine(lines=2)
        self.vgg_label = StatusLine(lines=3)
        self.vgg_label.setStyleSheet("color: #e0a040;")
        # --- loss weights ---
        self.weight_spins: dict[str, FloatSpinBox] = {
            term: FloatSpinBox(label=f"{term} weight", min=0.0, max=1000.0, step=0.001, value=0.0)
            for term in LOSS_TERMS
        }
        loss_box = Container(widgets=list(self.weight_spins.values()))
        # --- optimisation ---
        self.batch_spin = SpinBox(label="batch", min=1, max=1024, value=d.batch_size)
        self.patch_spin = SpinBox(label="patch (high-res px)", min=4, max=4096, step=8, value=d.patch_size)
        self.lr_spin = FloatSpinBox(label="learning rate", min=1e-6, max=1.0, step=1e-5, value=d.learning_rate)
        self.lr_spin.native.setDecimals(6)
        self.lr_spin.value = d.learning_rate
        self.val_spin = SpinBox(label="validate every", min=0, max=1_000_000, step=10, value=d.val_every)
        self.norm_combo = ComboBox(
            label="normalization", choices=list(NORMALIZATIONS), value=TRAINING_NORMALIZATION.mode
        )
        self.device_combo = ComboBox(label="device", choices=available_devices(), value=DEFAULT_DEVICE)
        opt_box = Container(widgets=[self.batch_spin, self.patch_spin, self.lr_spin, self.val_spin,
                                     self.norm_combo, self.device_combo])  # fmt: skip
        # --- network ---
        self.init_combo = ComboBox(label="start from", choices=list(INIT_CHOICES), value=d.init)
        self.channels_spin = SpinBox(label="channels", min=1, max=512, value=32)
        self.blocks_spin = SpinBox(label="blocks", min=0, max=64, value=4)
        self.upsampling_combo = ComboBox(label="upsampling", choices=list(UPSAMPLING_MODES), value="bilinear")
        net_box = Container(widgets=[self.init_combo, self.channels_spin, self.blocks_spin, self.upsampling_combo])
        # --- checkpoint ---
        self.checkpoint_edit = FileEdit(label="checkpoint", mode="w", nullable=True, filter="*.ckpt")
        ckpt_box = Container(widgets=[self.checkpoint_edit])
        # --- control ---
        self.start_button = PushButton(text="Start")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.resume_button = PushButton(text="Resume", enabled=False)
        self.save_button = PushButton(text="Save model…", enabled=False)
        self.validation_label = StatusLine(lines=2)
        self.loss_plot = LossPlot()
        return basic, loss_box, opt_box, net_box, ckpt_box

    def _lay_out(
        self, basic: Container, loss_box: Container, opt_box: Container, net_box: Container, ckpt_box: Container
    ) -> None:
        """Place the settings (scrolled, advanced ones folded), the buttons, the validation line and the
        loss plot in the dock."""
        self._containers = (basic, loss_box, opt_box, net_box, ckpt_box)
        for c in self._containers:
            c.margins = (0, 0, 0, 0)
        settings = QWidget()
        inner = QVBoxLayout(settings)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addWidget(basic.native)
        inner.addWidget(self.pair_label)
        inner.addWidget(self.vgg_label)
        for title, box, tip in (
            ("Loss weights", loss_box, "Weight of each loss term (the preset fills them)."),
            ("Optimisation and device", opt_box, "Batch, patch size, learning rate, validation, normalization, "
                                                 "device."),
            ("Network", net_box, "Width, depth and upsampling of the network trained."),
            ("Checkpoint", ckpt_box, "Where the run's checkpoint is written (Stop, Resume)."),
        ):  # fmt: skip
            inner.addWidget(folded(title, box, tip=tip))
        inner.addStretch(1)
        # the settings scroll; Start/Stop, the progress and the plot stay in sight below them
        self._layout.insertWidget(0, scrolled(settings, SETTINGS_MIN_HEIGHT), 1)
        self._layout.insertWidget(1, button_row(self.start_button, self.stop_button, self.resume_button,
                                                self.save_button))  # fmt: skip
        self._layout.addWidget(self.validation_label)
        # folded until a run starts (an empty plot only takes room), then as tall as the panels it shows
        self.plot_fold = folded("Loss plot", self.loss_plot,
                                tip="Loss per step, discriminator accuracy (GAN) and validation PSNR vs bicubic; "
                                    "unfolds when a run starts, click to fold it away.")  # fmt: skip
        self.plot_fold.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self._layout.addWidget(self.plot_fold, 0)
        self.loss_plot.set_planned_steps(int(self.steps_spin.value))

    def _connect_controls(self) -> None:
        """Apply the theme, fill the defaults that depend on the viewer and connect the controls' signals."""
        self._apply_theme()
        self.viewer.events.theme.connect(self._apply_theme)
        self._fill_weights()
        self._select_default_layers()
        self._on_mode_changed()
        self.preset_combo.changed.connect(self._fill_weights)
        for spin in self.weight_spins.values():
            spin.changed.connect(self._check_vgg)
        self.synth_check.changed.connect(self._on_mode_changed)
        for w in (self.channels_spin, self.blocks_spin, self.upsampling_combo):
            w.changed.connect(self._new_network_chosen)
        for w in (self.hr_combo, self.lr_combo, self.scale_combo):
            w.changed.connect(self._describe_pair)
        self.start_button.changed.connect(lambda *_: self.start())
        self.stop_button.changed.connect(lambda *_: self.stop())
        self.resume_button.changed.connect(lambda *_: self.resume())
        self.save_button.changed.connect(self._on_save_clicked)

    def _tooltips(self) -> None:
        set_tips({
            **{getattr(self, name): tip for name, tip in TRAIN_TIPS.items()},
            **{spin: WEIGHT_TIP.format(term=term) for term, spin in self.weight_spins.items()},
        })  # fmt: skip

    # --- public state --------------------------------------------------------------------------
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
        except (ValueError, TypeError):
            scale = int(self.scale_combo.value)
        return f"{base} x{scale}"

    def _apply_theme(self, *_: Any) -> None:
        from napari.utils.theme import get_theme

        try:
            theme = get_theme(self.viewer.theme)
            self.loss_plot.set_colors(theme.background.as_hex(), theme.text.as_hex())
        except (KeyError, ValueError, AttributeError, RuntimeError):  # unknown theme, deleted widget
            pass

    # --- choices -------------------------------------------------------------------------------
    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer lists (napari calls this when layers change)."""
        if not self.ready:
            return
        for container in self._containers:
            container.reset_choices()
        self._select_default_layers()
        self._describe_pair()

    def _select_default_layers(self) -> None:
        """Pre-select the largest image as high-res and the smallest other one as low-res."""
        images = [layer for _, layer in self._image_layer_choices()]
        if not images:
            return

        def size(layer: Image) -> int:
            return int(np.prod(layer.data[0].shape if layer.multiscale else layer.data.shape))

        if self.hr_combo.value is None:
            self.hr_combo.value = max(images, key=size)
        if self.lr_combo.value is None:
            others = [layer for layer in images if layer is not self.hr_combo.value]
            if others:
                self.lr_combo.value = min(others, key=size)

    def _fill_weights(self, *_: Any) -> None:
        preset = self._presets[self.preset_combo.value]
        for term, spin in self.weight_spins.items():
            spin.value = float(preset.get(term, 0.0))
        self._check_vgg()

    def _weights(self) -> dict[str, float]:
        return {term: float(spin.value) for term, spin in self.weight_spins.items()}

    def _new_network_chosen(self, *_: Any) -> None:
        """A network shape was set: train a new network of it (as the CLI's --channels/--blocks)."""
        self.init_combo.value = "none"

    def _on_mode_changed(self, *_: Any) -> None:
        synth = bool(self.synth_check.value)
        self.lr_combo.visible = not synth
        self.scale_combo.visible = synth
        self.example_combo.visible = synth
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
            raise ValueError(f"Choose a {role} image layer (or open {SAMPLE_MENU}).")
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
            raise ValueError("Low-res and high-res are the same layer; pick two layers, or tick 'synthesize low-res'.")
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
        if int(fy) not in self._supported_scales:
            raise ValueError(f"The pair's factor is {int(fy)}; supported factors are {list(self._supported_scales)}.")
        return int(fy)

    def _config(self, scale: int, checkpoint: Path) -> TrainConfig:
        from ..engine.normalization import normalization_spec
        from ..engine.train.trainer import TrainConfig
        from ..engine.train.warm_start import builtin_model_for

        seconds = float(self.seconds_spin.value) or None
        steps = int(self.steps_spin.value) or (TIME_BUDGET_STEP_CAP if seconds else 0)
        init = self.init_combo.value
        new_net = init == "none" or builtin_model_for(scale) is None  # no built-in: a new net of these settings
        config = TrainConfig(
            scale=scale, preset=self.preset_combo.value, weights=self._weights(), steps=steps, seconds=seconds,
            init=init,
            batch_size=int(self.batch_spin.value), patch_size=int(self.patch_spin.value),
            lr=float(self.lr_spin.value), device=self.device_combo.value, val_every=int(self.val_spin.value),
            checkpoint_path=str(checkpoint),
            net={"channels": int(self.channels_spin.value), "blocks": int(self.blocks_spin.value),
                 "upsampling": self.upsampling_combo.value} if new_net else {},
            normalization=normalization_spec(self.norm_combo.value),
        )  # fmt: skip
        config.validate()  # ValueError with the fix: zero steps, bad patch size, all-zero weights...
        return config

    def _make_plan(self, resume: bool) -> Plan:
        """Read and check the layers and settings; raises ``ValueError``/``TypeError`` with the fix."""
        from ..engine.device import resolve_device
        from ..engine.train.trainer import TrainConfig

        resolve_device(self.device_combo.value)  # RuntimeError when the device is unavailable
        hr_layer = self.hr_combo.value
        hr = self._layer_data(hr_layer, "high-res")
        synth = bool(self.synth_check.value)
        lr = None if synth else self._layer_data(self.lr_combo.value, "low-res")
        scale = self._scale()
        checkpoint = self.checkpoint_path
        seconds = float(self.seconds_spin.value) or None
        steps = int(self.steps_spin.value) or (TIME_BUDGET_STEP_CAP if seconds else 0)
        if resume:
            if not checkpoint.is_file():
                raise ValueError(
                    f"No checkpoint to resume from at {checkpoint}; start a run (or choose a checkpoint file)."
                )
            config = None
            if self._last_config is not None and Path(self._last_config["checkpoint_path"]) == checkpoint:
                config = TrainConfig.from_dict(self._last_config)
                if config.scale != scale:
                    raise ValueError(f"The checkpointed run trains ×{config.scale} but the data are ×{scale}.")
                if steps <= self._last_step:
                    raise ValueError(
                        f"The run is already at step {self._last_step}; raise 'steps' above it to train longer."
                    )
        else:
            config = self._config(scale, checkpoint)
            steps = config.steps
            problem = self._check_vgg()
            if problem is not None and self._vgg_reachable is None and not offline():
                from ..engine.nets.vgg import weights_host_reachable

                self._vgg_reachable = weights_host_reachable(VGG_PROBE_S)  # the thread's answer is not in yet
                problem = self._check_vgg()
            if problem is not None and (offline() or self._vgg_reachable is False):
                raise ValueError(problem)
            if problem is not None:
                show_info(problem)
        if hr_layer.multiscale:
            show_warning(f"{hr_layer.name!r} is multiscale: training on its full-resolution level.")
        plan = Plan(
            name=self.run_name(resume), config=config, steps=steps, hr=hr, lr=lr,
            axes=layer_axes(hr_layer), data=None, checkpoint=checkpoint, resume=resume,
            hr_scale=tuple(hr_layer.scale), hr_translate=tuple(hr_layer.translate),
            colormap=None if hr_layer.rgb else hr_layer.colormap,
            started_at=self._last_step if resume else 0, seconds=seconds,
        )  # fmt: skip
        example = self.example_combo.value if synth else None
        if example is not None:
            plan.degradation_example = self._layer_data(example, "low-res example")
            if example is hr_layer:
                raise ValueError("The degradation example must be a low-res acquisition, not the high-res layer.")
        if config is not None and cheap(hr, lr) and example is None:
            # small numpy data: build now, so shape / patch / NaN problems are refused before starting
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
        """Ask the run to end after the current step (a checkpoint is written, the model registered).

        With ``wait``, block until the worker has finished (at most ``timeout`` s); returns
        whether no run is left running.
        """
        self._runner.cancel("stopping after this step…")
        return self._runner.wait(timeout) if wait else not self._runner.running

    def _launch(self, resume: bool) -> FunctionWorker | None:
        if not self.can_start("A training run is already going; stop it first."):
            return None
        plan = self.prepared(lambda: self._make_plan(resume))
        if plan is None:
            return None
        synth = bool(self.synth_check.value)
        sources = (self.hr_combo.value, *(() if synth else (self.lr_combo.value,)),
                   *((self.example_combo.value,) if synth and self.example_combo.value is not None else ()))  # fmt: skip
        return self._start_worker(plan, sources)

    def _start_worker(self, plan: Plan, sources: tuple[Any, ...]) -> FunctionWorker:
        engine = self.engine
        assert engine is not None

        def work(ctx: JobContext) -> Outcome:
            def report(r: StepReport) -> None:
                ctx.emit(r)
                phase = " (pixel pre-training)" if r.phase == "pretrain" else ""
                total = r.losses.get("total", float("nan"))
                ctx.progress(r.step, r.total_steps,
                             f"step {r.step}/{r.total_steps}{phase} · loss {total:.4g} · {r.it_per_s:.2f} it/s",
                             eta_s=r.eta_s)  # fmt: skip

            return run_plan(plan, engine, report, ctx.should_stop, ctx.status)

        self._plan = plan
        self._last_name = plan.name
        self.loss_plot.set_planned_steps(plan.steps)
        if not self._plot_shown:  # unfolded at the first run; the user's choice is kept afterwards
            self._plot_shown = True
            self.plot_fold.expand(animate=False)
        if not plan.resume:
            self.loss_plot.clear()
            self.validation_label.value = ""
            self._last_step = 0
        verb = "resuming" if plan.resume else "training"
        worker = self.start_job(
            work, description=f"{verb} {plan.name!r}", total=plan.steps, status=f"{verb} {plan.name!r}…",
            sources=sources, failure="Training could not run", on_item=self._apply_report,
            on_done=self._apply_returned, on_cancelled=self._apply_cancelled,
        )  # fmt: skip
        if plan.resume and self._last_step:
            self.panel.set_progress(self._last_step, plan.steps)
        return worker

    # --- GUI-thread handlers -------------------------------------------------------------------
    def _apply_report(self, r: StepReport) -> None:
        self._last_step = int(r.step)
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

    def _apply_returned(self, outcome: Outcome) -> None:
        plan = self._plan
        self._trainer = outcome.trainer
        self._last_config = outcome.trainer.config.to_dict()
        self._last_step = int(outcome.result.steps_done)
        name = plan.name if plan is not None else "model"
        how = "stopped" if outcome.result.stopped else "finished"
        where = f"; model {name!r} is in the Upscale widget" if outcome.registered else ""
        self.status.value = f"{how} at step {outcome.result.steps_done}/{outcome.trainer.config.steps}{where}"
        if outcome.registered:
            show_info(f"Training {how}: model {name!r} registered (select it in the Upscale widget).")

    def _apply_cancelled(self) -> None:
        self.status.value = "stopped before the first step"

    def set_running(self, running: bool, cancellable: bool = True) -> None:
        """Start, Stop (``cancellable``), Resume and Save for a running or idle run."""
        self.start_button.enabled = not running
        self.stop_button.enabled = running and cancellable
        self.resume_button.enabled = not running and self.checkpoint_path.is_file()
        self.save_button.enabled = not running and self._trainer is not None

    # --- saving --------------------------------------------------------------------------------
    def save_model(self, path: str | Path) -> Path | None:
        """Write the last trained model to ``path`` (``.safetensors``, atomic); ``None`` on failure."""
        if self._trainer is None:
            self.refuse("No trained model yet: start a run and let it finish or stop it.")
            return None
        if self._runner.running:
            self.refuse("Training is running; stop it before saving.")
            return None
        try:
            written = self._trainer.save_model(path)
        except OSError as exc:
            self.refuse(f"Could not save the model to {path}: {exc}")
            return None
        self.status.value = f"saved {written}"
        show_info(f"Model saved to {written}")
        return written

    def _on_save_clicked(self, *_: Any) -> None:
        suggested = str(Path.home() / f"{safe_file_stem(self.model_name())}{MODEL_SUFFIX}")
        path, _ = QFileDialog.getSaveFileName(
            self, "Save trained model", suggested, f"napari-superres model (*{MODEL_SUFFIX})"
        )
        if path:
            self.save_model(path)

    # --- closing -------------------------------------------------------------------------------
    def shutdown(self, timeout: float = 0.0) -> None:
        """Stop any run (the worker registers its model) and drop temporary files once none is left."""
        if self._runner.shutdown(timeout):
            self._remove_tmpdir()

    def closeEvent(self, event: Any) -> None:
        self.shutdown()
        super().closeEvent(event)
