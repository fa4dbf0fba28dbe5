"""Carry worker-thread progress to the GUI thread without touching the widget from the worker."""

from __future__ import annotations

from qtpy.QtCore import QObject, Signal


class ProgressRelay(QObject):
    """A queued ``progressed(done, total)`` signal owned by one running job.

    The job's closure holds the relay, not the widget: emitting stays safe when the widget
    is deleted mid-run (Qt drops connections to a destroyed receiver), whereas emitting a
    deleted widget's own signal from a worker thread can crash the process.
    """

    progressed = Signal(int, int)

    def emit(self, done: int, total: int) -> None:
        self.progressed.emit(int(done), int(total))
