"""Live training plot for the Train widget: loss curves, GAN discriminator accuracy, validation.

A matplotlib figure embedded in Qt (``FigureCanvasQTAgg``) with two panels:

* top: one curve per loss term (``l1``, ``ssim``, ``perceptual``, ``gan``, ``total``...)
  against the training step, log-scaled y; for GAN training the discriminator's
  accuracy on real and fake patches (0..1) on a second y axis;
* bottom: validation PSNR (dB) of the model against the bicubic baseline (dashed).

Data are appended cheaply with :meth:`LossPlot.add_step` / :meth:`LossPlot.add_validation`
(GUI thread only); drawing is throttled to at most :data:`MAX_REDRAW_HZ` redraws per second,
with a trailing redraw so the last points always show.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

#: Upper bound on redraws per second, so fast training does not load the GUI thread.
MAX_REDRAW_HZ = 5.0
#: The throttle also keeps the time spent drawing below 1/this of the GUI thread's time.
DRAW_BUDGET_FACTOR = 4.0
#: Loss curves are drawn from at most this many points (older points are decimated).
MAX_DRAWN_POINTS = 2000
#: Name of the total loss (drawn thicker, in the foreground colour).
TOTAL = "total"
D_ACC_REAL = "D acc (real)"
D_ACC_FAKE = "D acc (fake)"


class LossPlot(QWidget):
    """Loss curves, discriminator accuracy and validation PSNR of one training run.

    >>> plot = LossPlot()                                   # doctest: +SKIP
    >>> plot.add_step(1, {"l1": 0.12, "total": 0.12})       # doctest: +SKIP
    >>> plot.series("l1")                                   # doctest: +SKIP
    (array([1.]), array([0.12]))
    """

    def __init__(
        self, parent: QWidget | None = None, *, max_redraw_hz: float = MAX_REDRAW_HZ
    ) -> None:
        super().__init__(parent)
        self._min_interval = 1.0 / max_redraw_hz
        self._last_draw = -math.inf
        self._steps: dict[str, list[float]] = {}
        self._values: dict[str, list[float]] = {}
        self._val_steps: list[int] = []
        self._val_psnr: list[float] = []
        self._val_bicubic: list[float] = []
        self._val_ssim: list[float] = []
        self._dirty = False
        self._interval = self._min_interval
        self._lines: dict[str, Line2D] = {}
        self._legend_stale = False
        self.draw_count = 0  # how many times the figure was actually drawn

        self.figure = Figure(figsize=(4, 3.6))
        self.figure.subplots_adjust(left=0.16, right=0.86, top=0.97, bottom=0.12, hspace=0.3)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(260)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.ax_loss, self.ax_val = self.figure.subplots(2, 1, height_ratios=(2, 1))
        self.ax_acc = self.ax_loss.twinx()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._draw_now)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self._fg = "black"
        self._bg = "white"
        self.ax_acc.set_visible(False)
        self.ax_loss.set_ylabel("loss", fontsize=8)
        self.ax_acc.set_ylabel("D accuracy", fontsize=8)
        self.ax_val.set_ylabel("val PSNR (dB)", fontsize=8)
        self.ax_val.set_xlabel("step", fontsize=8)
        for ax in (self.ax_loss, self.ax_acc, self.ax_val):
            ax.tick_params(labelsize=7)

    # --- data ---------------------------------------------------------------------------------
    def add_step(
        self,
        step: int,
        losses: Mapping[str, float],
        d_acc_real: float | None = None,
        d_acc_fake: float | None = None,
    ) -> None:
        """Append one training step: every loss term (non-finite values skipped) and D accuracy."""
        for name, value in losses.items():
            self._append(name, step, value)
        if d_acc_real is not None:
            self._append(D_ACC_REAL, step, d_acc_real)
        if d_acc_fake is not None:
            self._append(D_ACC_FAKE, step, d_acc_fake)
        self.request_redraw()

    def add_validation(
        self, step: int, psnr: float, bicubic_psnr: float, ssim: float | None = None
    ) -> None:
        """Append a validation point: model PSNR and bicubic PSNR in dB (SSIM kept for the table)."""
        self._val_steps.append(int(step))
        self._val_psnr.append(float(psnr))
        self._val_bicubic.append(float(bicubic_psnr))
        self._val_ssim.append(float("nan") if ssim is None else float(ssim))
        self.request_redraw()

    def clear(self) -> None:
        """Forget all points (a new run)."""
        self._steps.clear()
        self._values.clear()
        for series in (self._val_steps, self._val_psnr, self._val_bicubic, self._val_ssim):
            series.clear()
        for name in [n for n in self._lines if n not in ("model", "bicubic")]:
            self._lines.pop(name).remove()
        self._legend_stale = True
        self.request_redraw(force=True)

    def names(self) -> list[str]:
        """Names of the recorded curves (loss terms, then D accuracies when present)."""
        return list(self._steps)

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of one recorded curve, float64 arrays (empty if unknown)."""
        return np.asarray(self._steps.get(name, []), float), np.asarray(
            self._values.get(name, []), float
        )

    def validation_series(self) -> dict[str, np.ndarray]:
        """Validation history: ``step``, ``psnr``, ``bicubic_psnr`` (dB) and ``ssim`` arrays."""
        return {
            "step": np.asarray(self._val_steps, float),
            "psnr": np.asarray(self._val_psnr, float),
            "bicubic_psnr": np.asarray(self._val_bicubic, float),
            "ssim": np.asarray(self._val_ssim, float),
        }

    def _append(self, name: str, step: int, value: float | None) -> None:
        if value is None or not math.isfinite(value):
            return
        self._steps.setdefault(name, []).append(float(step))
        self._values.setdefault(name, []).append(float(value))

    # --- drawing ------------------------------------------------------------------------------
    def request_redraw(self, force: bool = False) -> None:
        """Redraw now if the last redraw is old enough (or ``force``), else once the interval passes."""
        self._dirty = True
        wait = self._last_draw + self._interval - time.monotonic()
        if force or wait <= 0:
            self._timer.stop()
            self._draw_now()
        elif not self._timer.isActive():
            self._timer.start(max(1, int(wait * 1000)))

    def _draw_now(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        start = time.monotonic()
        self._update_losses()
        self._update_validation()
        self.canvas.draw()
        self.draw_count += 1
        self._last_draw = time.monotonic()
        # Slow machines: keep drawing under ~1/DRAW_BUDGET_FACTOR of the GUI thread's time.
        self._interval = max(self._min_interval, DRAW_BUDGET_FACTOR * (self._last_draw - start))

    def _line(self, ax: Axes, name: str, **style: object) -> Line2D:
        line = self._lines.get(name)
        if line is None:
            (line,) = ax.plot([], [], label=name, **style)
            self._lines[name] = line
            self._legend_stale = True
        return line

    def _update_losses(self) -> None:
        ax, acc = self.ax_loss, self.ax_acc
        loss_names = [n for n in self._steps if n not in (D_ACC_REAL, D_ACC_FAKE)]
        for name in loss_names:
            style = {"lw": 2.0, "color": self._fg} if name == TOTAL else {"lw": 1.0}
            self._line(ax, name, **style).set_data(*_decimate(*self.series(name)))
        values = [self._values[n] for n in loss_names]
        log = bool(values) and all(min(v) > 0 for v in values)
        if ax.get_yscale() != ("log" if log else "linear"):
            ax.set_yscale("log" if log else "linear")
        has_acc = False
        for name, dash in ((D_ACC_REAL, "-"), (D_ACC_FAKE, "--")):
            if name in self._steps:
                has_acc = True
                line = self._line(acc, name, ls=dash, color="tab:purple", alpha=0.6, lw=0.8)
                line.set_data(*_decimate(*self.series(name)))
        acc.set_visible(has_acc)
        for a in (ax, acc):
            a.relim()
            a.autoscale_view()
        if has_acc:
            acc.set_ylim(-0.02, 1.02)
        if self._legend_stale:
            self._legend_stale = False
            lines = [self._lines[n] for n in self._lines if n not in ("model", "bicubic")]
            if lines:
                ax.legend(
                    lines,
                    [ln.get_label() for ln in lines],
                    loc="upper right",
                    ncol=2,
                    **self._legend_style(),
                )
            else:
                legend = ax.get_legend()
                if legend is not None:
                    legend.remove()

    def _legend_style(self) -> dict[str, object]:
        return {
            "fontsize": 7,
            "framealpha": 0.6,
            "facecolor": self._bg,
            "edgecolor": self._fg,
            "labelcolor": self._fg,
        }

    def set_colors(self, background: str, foreground: str) -> None:
        """Colour the figure to match the viewer's theme (any matplotlib colours)."""
        self._bg, self._fg = background, foreground
        self.figure.set_facecolor(background)
        for ax in (self.ax_loss, self.ax_acc, self.ax_val):
            ax.set_facecolor(background)
            ax.tick_params(colors=foreground, which="both")
            ax.xaxis.label.set_color(foreground)
            ax.yaxis.label.set_color(foreground)
            for spine in ax.spines.values():
                spine.set_color(foreground)
        self.ax_acc.patch.set_visible(False)  # the twin axes must not hide the loss curves
        if TOTAL in self._lines:
            self._lines[TOTAL].set_color(foreground)
        for ax in (self.ax_loss, self.ax_val):
            if ax.get_legend() is not None:
                ax.get_legend().remove()
        self._legend_stale = True
        self.request_redraw(force=True)

    def _update_validation(self) -> None:
        ax = self.ax_val
        model = self._line(ax, "model", marker="o", ms=3)
        bicubic = self._line(ax, "bicubic", ls="--", color="0.5")
        model.set_data(self._val_steps, self._val_psnr)
        bicubic.set_data(self._val_steps, self._val_bicubic)
        if self._val_steps and ax.get_legend() is None:
            ax.legend(loc="lower right", **self._legend_style())
        ax.relim()
        ax.autoscale_view()


def _decimate(
    x: np.ndarray, y: np.ndarray, limit: int = MAX_DRAWN_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ``limit`` evenly spaced points (always the last one)."""
    if len(x) <= limit:
        return x, y
    idx = np.unique(np.r_[np.linspace(0, len(x) - 1, limit).astype(int), len(x) - 1])
    return x[idx], y[idx]
