"""The plumbing every job-running dock widget shares: :class:`JobWidget`.

A dock widget of this plugin (Upscale, Train, Feature difference) is a Qt widget that

* opens at once and imports PyTorch (and whatever else it needs) off the GUI thread, then
  fills in: :meth:`JobWidget.load_then` ("import-then");
* checks a request on the GUI thread and refuses a bad one with a napari notification:
  :meth:`JobWidget.prepared`, :meth:`JobWidget.refuse`;
* runs one job at a time in a napari worker thread with a progress bar, **Cancel** and a
  status line (:mod:`.jobs`): :meth:`JobWidget.start_job`;
* keeps its buttons in step with the job (:meth:`JobWidget.set_running`) and reports a failed
  job as a notification naming what failed (:func:`.jobs.describe_error`: the message of a
  :class:`~napari_superres.SuperresError` or a plain bad value, the exception's type too
  for anything unexpected);
* stops a job whose source layer the user deletes (:meth:`JobWidget.on_source_deleted`).

A widget on the base keeps only what is its own: its fields and layout, how it builds its
request, the work function and what it does with the result.  A minimal one::

    class DoubleWidget(JobWidget):
        def __init__(self, napari_viewer):
            super().__init__(napari_viewer)
            self.run_button, self.cancel_button = PushButton(text="Run"), PushButton(text="Cancel")
            layout = dock_layout(self, [button_row(self.run_button, self.cancel_button), self.panel])
            self.run_button.changed.connect(lambda *_: self.run())
            self.cancel_button.changed.connect(lambda *_: self.cancel())
            self.load_then(ENGINE_MODULES)

        def run(self):
            if not self.can_start("Already doubling; cancel it first."):
                return None
            layer = self.prepared(lambda: self.viewer.layers.selection.active)
            if layer is None:
                return None
            return self.start_job(lambda ctx: layer.data * 2, description=f"doubling {layer.name!r}",
                                  sources=(layer,), failure=f"Doubling {layer.name!r} failed",
                                  on_done=lambda data: self.viewer.add_image(data))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from napari.layers import Image
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QWidget

from ..engine.errors import SuperresError
from .engine_access import get_engine
from .jobs import JobContext, JobRunner, describe_error, import_modules_then, when_layer_removed
from .ui import JobPanel

if TYPE_CHECKING:
    import napari
    from superqt.utils import FunctionWorker

    from ..engine import Engine

T = TypeVar("T")

#: What a request check may raise to refuse a request (the message names the fix).
REFUSALS = (SuperresError, ValueError, TypeError, KeyError, RuntimeError)
#: The warning when Run is pressed before PyTorch is loaded.
STILL_LOADING = "PyTorch is still loading; try again in a moment."


class JobWidget(QWidget):
    """Base of the dock widgets that run jobs: engine loading, job runner, buttons, notifications.

    Subclasses create ``run_button`` and ``cancel_button`` (or override :meth:`set_running`)
    and place :attr:`panel` (progress bar and status line) in their layout.
    """

    #: ``(done, total)`` of the running job, emitted on the GUI thread as it advances.
    progressed = Signal(int, int)

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.engine: Engine | None = None
        self.panel = JobPanel()
        self.status = self.panel.status
        self._runner = JobRunner(self, self.panel)
        self._sources: tuple[Any, ...] = ()  # the layers the running job reads

    # --- start-up: heavy imports off the GUI thread ---------------------------------------------
    def load_then(
        self, modules: Sequence[str], ready: Callable[[], None] | None = None, warm: Callable[[], Any] | None = None
    ) -> None:
        """Import ``modules`` in a worker (status "loading PyTorch…"), then set :attr:`engine` and call ``ready()``.

        ``warm()`` runs in the worker after the imports (default: create the viewer's engine).
        Also starts watching the viewer's layers for :meth:`on_source_deleted`.
        """
        viewer = self.viewer  # the worker's closures hold the viewer, never the widget
        when_layer_removed(viewer, self, JobWidget._on_layer_removed)

        def loaded() -> None:
            self.engine = get_engine(viewer)
            if ready is not None:
                ready()
            self.set_running(self._runner.running)

        import_modules_then(self._runner, modules, loaded, warm=warm or (lambda: get_engine(viewer)))

    @property
    def ready(self) -> bool:
        """Whether PyTorch and the engine are loaded (the widget can run)."""
        return self.engine is not None

    def _image_layer_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        """``(name, layer)`` of the viewer's image layers: the choices of a layer combo box."""
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    # --- requests (GUI thread) ------------------------------------------------------------------
    def can_start(self, busy: str) -> bool:
        """Whether a job may start now; if not, a warning says why (``busy``: one is running)."""
        if self._runner.running:
            show_warning(busy)
            return False
        if not self.ready:
            show_warning(STILL_LOADING)
            return False
        return True

    def prepared(self, prepare: Callable[[], T]) -> T | None:
        """``prepare()`` (the widget's request checks); a refusal becomes a notification and ``None``."""
        try:
            return prepare()
        except REFUSALS as exc:
            self.refuse(describe_error(exc))
            return None

    def refuse(self, message: str) -> None:
        """Say ``message`` in the status line and as a napari error notification."""
        self.status.value = message
        self.notify_error(message)

    def notify_error(self, message: str) -> None:
        """A napari error notification (a subclass may route it through its own module)."""
        show_error(message)

    # --- jobs -----------------------------------------------------------------------------------
    @property
    def worker(self) -> FunctionWorker | None:
        """The running worker, or ``None``."""
        return self._runner.worker

    def start_job(
        self,
        work: Callable[[JobContext], Any],
        *,
        description: str,
        failure: str,
        total: int = 0,
        status: str | None = None,
        sources: Sequence[Any] = (),
        cancellable: bool = True,
        on_item: Callable[[Any], None] | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
        on_failed: Callable[[BaseException], None] | None = None,
        on_finish: Callable[[], None] | None = None,
    ) -> FunctionWorker:
        """Run ``work(ctx)`` in a worker thread (:meth:`.jobs.JobRunner.start`) with the buttons in step.

        ``failure``: what a failed job's notification starts with (``"<failure>: <error>"``)
        unless ``on_failed`` handles it.  ``sources``: the layers the job reads (deleting
        one calls :meth:`on_source_deleted`).  ``on_finish`` runs last, after the widget is idle.
        """
        self._sources = tuple(sources)
        self.set_running(True, cancellable=cancellable)
        self.panel.bar.valueChanged.connect(self._emit_progress)

        def failed(exc: BaseException) -> None:
            self.refuse(f"{failure}: {describe_error(exc)}")

        def finished() -> None:
            self._sources = ()
            try:
                self.panel.bar.valueChanged.disconnect(self._emit_progress)
            except (TypeError, RuntimeError):
                pass
            self.set_running(False)
            if on_finish is not None:
                on_finish()

        return self._runner.start(
            work, description=description, total=total, status=status, on_item=on_item, on_done=on_done,
            on_cancelled=on_cancelled, on_failed=on_failed or failed, on_finish=finished,
        )  # fmt: skip

    def cancel(self) -> None:
        """Ask the running job to stop; the widget goes idle when it has."""
        self._runner.cancel()

    def set_running(self, running: bool, cancellable: bool = True) -> None:
        """Enable the buttons of a running (``cancellable``: Cancel too) or idle widget."""
        self.run_button.enabled = not running and self.ready
        self.cancel_button.enabled = running and cancellable

    def _emit_progress(self, value: int) -> None:
        self.progressed.emit(int(value), int(self.panel.bar.maximum()))

    # --- deleted layers -------------------------------------------------------------------------
    def _on_layer_removed(self, layer: Any) -> None:
        if layer is not None and self._runner.running and any(layer is source for source in self._sources):
            self.on_source_deleted(layer)

    def on_source_deleted(self, layer: Any) -> None:
        """A layer the running job reads was deleted: stop the job (a subclass may say more)."""
        self._runner.cancel(f"{layer.name!r} was deleted: stopping…")
