"""Live training plot for the Train widget (pyqtgraph): loss curves, GAN discriminator accuracy, validation.

pyqtgraph draws with Qt directly (no figure rasterisation), so an update of a few
thousand points costs about a millisecond of GUI time; matplotlib redraws used to block
the GUI for 0.1-0.5 s.  Panels:

* losses: one curve per loss term (``l1``, ``ssim``, ``perceptual``, ``gan``, ``total``...)
  against the training step, log-scaled y;
* discriminator accuracy on real and fake patches (0..1), shown only for GAN training;
* validation PSNR (dB) of the model against the bicubic baseline (dashed).

Data are appended with :meth:`LossPlot.add_step` / :meth:`LossPlot.add_validation` (GUI
thread only); curves are redrawn at most :data:`MAX_REDRAW_HZ` times per second.

Read at a glance: step numbers are plain (no SI prefix such as "x0.001"), the log axis is
labelled at decades (and 2, 5 within a short range) as plain numbers, axis labels are
short so stacked panels never overlap them, legends sit inside their panels, and the plot
is as tall as the panels it shows (:meth:`LossPlot.sizeHint`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

#: Upper bound on redraws per second.
MAX_REDRAW_HZ = 5.0
#: Curves are drawn from at most this many points (older points are decimated).
MAX_DRAWN_POINTS = 2000
#: Name of the total loss (drawn thicker).
TOTAL = "total"
D_ACC_REAL = "D acc (real)"
D_ACC_FAKE = "D acc (fake)"
#: Height (px) of each panel when shown: losses, D accuracy (GAN runs), validation PSNR (once measured).
PANEL_HEIGHTS = {"loss": 110, "acc": 60, "val": 90}
#: Width (px) of every left axis, so the panels' plot areas line up.
LEFT_AXIS_WIDTH = 46
#: Minimum height of the plot (px): the loss panel alone.
MIN_HEIGHT = PANEL_HEIGHTS["loss"]
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


class LogAxis(pg.AxisItem):
    """A log-scale axis labelled at decades (and at 2 and 5 when less than two decades show), as plain numbers."""

    def logTickValues(self, minVal, maxVal, size, stdTicks):  # noqa: N802, N803 - pyqtgraph's API
        lo, hi = math.floor(minVal), math.ceil(maxVal)
        decades = [float(v) for v in range(lo, hi + 1) if minVal <= v <= maxVal]
        ticks = [(1.0, decades)]
        if len(decades) < 2:
            minor = [v + math.log10(m) for v in range(lo, hi + 1) for m in (2, 5)]
            ticks.append((None, [v for v in minor if minVal <= v <= maxVal]))
        return ticks

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's API
        return [f"{10**v * scale:.3g}" for v in values]


def _plain_axis(axis: pg.AxisItem) -> None:
    axis.enableAutoSIPrefix(False)  # "step", never "step (x0.001)"


class LossPlot(QWidget):
    """Loss curves, discriminator accuracy and validation PSNR of one training run.

    >>> plot = LossPlot()                                   # doctest: +SKIP
    >>> plot.add_step(1, {"l1": 0.12, "total": 0.12})       # doctest: +SKIP
    >>> plot.series("l1")                                   # doctest: +SKIP
    (array([1.]), array([0.12]))
    """

    def __init__(self, parent: QWidget | None = None, *, max_redraw_hz: float = MAX_REDRAW_HZ) -> None:
        super().__init__(parent)
        self._steps: dict[str, list[float]] = {}
        self._values: dict[str, list[float]] = {}
        self._val_steps: list[int] = []
        self._val_psnr: list[float] = []
        self._val_bicubic: list[float] = []
        self._val_ssim: list[float] = []
        self._curves: dict[str, pg.PlotDataItem] = {}
        self.draw_count = 0  # how many times the curves were actually updated
        self._fg = "#000000"

        self.graphics = pg.GraphicsLayoutWidget()
        self.ax_loss = self.graphics.addPlot(row=0, col=0, axisItems={"left": LogAxis("left")})
        self.ax_loss.setLogMode(y=True)
        self.ax_loss.setLabel("left", "loss")
        self.ax_loss.addLegend(offset=(-5, 5), labelTextSize="7pt", colCount=2)
        self.ax_acc = self.graphics.addPlot(row=1, col=0)
        self.ax_acc.setLabel("left", "D acc")
        self.ax_acc.setYRange(0, 1)
        self.ax_acc.setXLink(self.ax_loss)
        self.ax_acc.hide()
        self.ax_val = self.graphics.addPlot(row=2, col=0)
        self.ax_val.setLabel("left", "dB")
        self.ax_val.addLegend(offset=(-5, 5), labelTextSize="7pt", colCount=2)
        self.ax_val.setXLink(self.ax_loss)
        self.ax_val.hide()
        for ax in (self.ax_loss, self.ax_acc, self.ax_val):
            for side in ("left", "bottom"):
                _plain_axis(ax.getAxis(side))
            ax.getAxis("left").setWidth(LEFT_AXIS_WIDTH)
            ax.setMenuEnabled(False)
        self.ax_loss.setXRange(0, 1, padding=0.02)
        self._model_curve = self.ax_val.plot([], [], name="model", pen=pg.mkPen(COLORS[0], width=2))
        self._bicubic_curve = self.ax_val.plot(
            [], [], name="bicubic", pen=pg.mkPen("#888888", width=1, style=pg.QtCore.Qt.PenStyle.DashLine)
        )
        self.setToolTip("Loss terms per step (log scale), D accuracy for GAN runs, validation PSNR (dB) of the "
                        "model vs bicubic (dashed)")  # fmt: skip
        self._fit()

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(int(1000 / max_redraw_hz))
        self._timer.timeout.connect(self._draw_now)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)

    # --- size ---------------------------------------------------------------------------------
    def panels(self) -> list[str]:
        """The panels shown: ``"loss"``, then ``"acc"`` (GAN runs) and ``"val"`` (once validated)."""
        shown = ["loss"]
        if self.ax_acc.isVisible():
            shown.append("acc")
        if self.ax_val.isVisible():
            shown.append("val")
        return shown

    def _fit(self) -> None:
        """As tall as the panels shown; the step axis and its label only under the lowest one."""
        shown = self.panels()
        axes = {"loss": self.ax_loss, "acc": self.ax_acc, "val": self.ax_val}
        for name, ax in axes.items():
            last = name == shown[-1]
            ax.showAxis("bottom", show=True)
            ax.setLabel("bottom", "step" if last else None)
        height = sum(PANEL_HEIGHTS[name] for name in shown) + 14  # + the step label
        self.graphics.setMaximumHeight(height)  # as tall as its panels; a short dock may squeeze it
        self.graphics.setMinimumHeight(min(height, MIN_HEIGHT))
        self.graphics.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.updateGeometry()

    def set_planned_steps(self, steps: int) -> None:
        """Show steps 0..``steps`` before the first point arrives (the axis then follows the data)."""
        self.ax_loss.setXRange(0, max(1, int(steps)), padding=0.02)

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

    def add_validation(self, step: int, psnr: float, bicubic_psnr: float, ssim: float | None = None) -> None:
        """Append a validation point: model PSNR and bicubic PSNR in dB (SSIM kept for the table)."""
        self._val_steps.append(int(step))
        self._val_psnr.append(float(psnr))
        self._val_bicubic.append(float(bicubic_psnr))
        self._val_ssim.append(float("nan") if ssim is None else float(ssim))
        if not self.ax_val.isVisible():
            self.ax_val.show()
            self._fit()
        self.request_redraw()

    def clear(self) -> None:
        """Forget all points (a new run)."""
        self._steps.clear()
        self._values.clear()
        for series in (self._val_steps, self._val_psnr, self._val_bicubic, self._val_ssim):
            series.clear()
        for name, curve in self._curves.items():
            (self.ax_acc if name.startswith("D acc") else self.ax_loss).removeItem(curve)
        self._curves.clear()
        self.ax_acc.hide()
        self.ax_val.hide()
        self._fit()
        self._draw_now()

    def names(self) -> list[str]:
        """Names of the recorded curves (loss terms, then D accuracies when present)."""
        return list(self._steps)

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of one recorded curve, float64 arrays (empty if unknown)."""
        return np.asarray(self._steps.get(name, []), float), np.asarray(self._values.get(name, []), float)

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
    def request_redraw(self) -> None:
        """Redraw within 1 / :data:`MAX_REDRAW_HZ` s (several requests make one redraw)."""
        if not self._timer.isActive():
            self._timer.start()

    def _curve(self, name: str) -> pg.PlotDataItem:
        curve = self._curves.get(name)
        if curve is None:
            if name.startswith("D acc"):
                color = COLORS[3] if name == D_ACC_REAL else COLORS[4]
                curve = self.ax_acc.plot([], [], name=name, pen=pg.mkPen(color, width=1))
                if not self.ax_acc.isVisible():
                    self.ax_acc.show()
                    self._fit()
            else:
                width = 2 if name == TOTAL else 1
                color = self._fg if name == TOTAL else COLORS[len(self._curves) % len(COLORS)]
                curve = self.ax_loss.plot([], [], name=name, pen=pg.mkPen(color, width=width))
            self._curves[name] = curve
        return curve

    def _draw_now(self) -> None:
        for name in self._steps:
            steps, values = _decimate(self._steps[name], self._values[name])
            if not name.startswith("D acc"):
                positive = values > 0  # log scale
                steps, values = steps[positive], values[positive]
            self._curve(name).setData(steps, values)
        self._model_curve.setData(np.asarray(self._val_steps, float), np.asarray(self._val_psnr, float))
        self._bicubic_curve.setData(np.asarray(self._val_steps, float), np.asarray(self._val_bicubic, float))
        self.draw_count += 1

    def set_colors(self, background: str, foreground: str) -> None:
        """Colour the plot to match the viewer's theme (any Qt colour strings)."""
        self._fg = foreground
        self.graphics.setBackground(background)
        for ax in (self.ax_loss, self.ax_acc, self.ax_val):
            for side in ("left", "bottom"):
                axis = ax.getAxis(side)
                axis.setPen(foreground)
                axis.setTextPen(foreground)
        total = self._curves.get(TOTAL)
        if total is not None:
            total.setPen(pg.mkPen(foreground, width=2))


def _decimate(steps: list[float], values: list[float], limit: int = MAX_DRAWN_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` evenly spaced points (always the last one)."""
    x, y = np.asarray(steps, float), np.asarray(values, float)
    if x.size <= limit:
        return x, y
    keep = np.unique(np.r_[np.linspace(0, x.size - 1, limit).astype(int), x.size - 1])
    return x[keep], y[keep]
