"""One job mechanism for the dock widgets: a napari worker thread, a stop event, progress in the widget.

Every long operation of a widget (upscaling, training, comparing, loading PyTorch) is one
:class:`Job` started by the widget's :class:`JobRunner`:

* the work function runs in a napari ``FunctionWorker`` (``napari.qt.threading.create_worker``),
  so the job is registered in napari's task manager under a readable description and
  closing napari while it runs asks first, then cancels it (``worker.quit``);
* the work function gets a :class:`JobContext`: ``progress(done, total)``, ``emit(item)``
  (an intermediate result for the GUI thread), ``status(text)`` and ``should_stop()``.
  It never touches a Qt object: everything it reports goes into a queue that a timer of the
  runner drains on the GUI thread.  No Qt signal is ever emitted on the widget from the
  worker, so a widget (or viewer) deleted mid-run cannot crash the process;
* the work function never lets an exception escape: the body catches it and stores an
  :class:`Outcome` (``done``, ``cancelled`` or ``failed``).  The runner finishes the job when
  it sees the body's ``done`` event (or the worker's ``finished`` signal, whichever first):
  queued items first, then the outcome callback, then the widget goes idle.  Cancelling
  therefore always ends in an idle, reusable widget, whatever stage was running;
* one stop event per job, set by *Cancel*, by closing the dock (un-parenting), by the
  widget's destruction, by napari's close (``worker.quit``) and at interpreter exit (where
  the runner also waits for the threads, so no worker signal is emitted on an object Python
  has already deleted: that used to abort the process);
* failures are logged with their traceback (``logging``) and shown as napari notifications.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import math
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from napari.qt.threading import create_worker
from qtpy.QtCore import QEvent, QObject, QTimer

from ..engine.errors import Cancelled, SuperresError

if TYPE_CHECKING:
    from qtpy.QtWidgets import QWidget
    from superqt.utils import FunctionWorker

    from .ui import JobPanel

logger = logging.getLogger("napari_superres")

#: How often (ms) the GUI thread picks up what running jobs reported.
POLL_MS = 50
#: At interpreter exit, how long to wait for running jobs to stop (s).
EXIT_WAIT_S = 30.0
#: At exit with no job live, how long to let just-finished worker threads end (ms).
JUST_FINISHED_WAIT_MS = 200
#: Modules whose first import is slow (PyTorch): imported in a worker with a visible status.
ENGINE_MODULES = ("torch", "napari_superres.engine.registry", "napari_superres.engine.infer.pipeline")


class JobCancelled(Cancelled):
    """Raised by :meth:`JobContext.check` when the job was asked to stop."""


@dataclass
class Outcome:
    """How a job ended: ``state`` is ``"done"``, ``"cancelled"`` or ``"failed"``."""

    state: str
    value: Any = None
    error: BaseException | None = None


class JobContext:
    """What a work function gets (worker thread): report progress and items, check for stop."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.done = threading.Event()
        self.outbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.worker: FunctionWorker | None = None
        self.outcome: Outcome | None = None

    def should_stop(self) -> bool:
        """Whether the job was cancelled (Cancel, dock closed, napari quitting)."""
        worker = self.worker
        return self.stop.is_set() or bool(worker is not None and worker.abort_requested)

    def check(self) -> None:
        """Raise :class:`JobCancelled` if the job was asked to stop."""
        if self.should_stop():
            raise JobCancelled()

    def progress(self, done: int, total: int, text: str | None = None, eta_s: float | None = None) -> None:
        """``done`` of ``total`` units (``total`` 0: unknown); optional status ``text`` and ETA (s).

        Without ``eta_s`` the ETA is extrapolated from the rate since the job started.
        """
        self.outbox.put(("progress", int(done), int(total), text, eta_s))

    def status(self, text: str) -> None:
        """Show ``text`` in the widget's status line."""
        self.outbox.put(("status", str(text)))

    def emit(self, item: Any) -> None:
        """Hand ``item`` to the widget's ``on_item`` callback on the GUI thread, in order."""
        self.outbox.put(("item", item))


#: How much lower than the GUI thread worker threads run (Linux ``nice`` increment, per thread).
WORKER_NICENESS = 10


def lower_thread_priority(niceness: int = WORKER_NICENESS) -> None:
    """Give the calling (worker) thread a lower CPU priority than the GUI thread (Linux; else a no-op).

    On a loaded machine the GUI thread then gets the CPU first when it wakes up (timers,
    input, drawing); threads this one starts later (torch's intra-op pool) inherit it.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import os

        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < niceness:
            os.setpriority(os.PRIO_PROCESS, tid, niceness)
    except (OSError, AttributeError):  # not permitted / not supported: keep the default priority
        logger.debug("could not lower the worker thread's priority", exc_info=True)


class _Body:
    """The worker's callable; its ``str`` is what napari's task manager and close dialog show."""

    def __init__(self, fn: Callable[[JobContext], Any], ctx: JobContext, description: str, nice: bool = True) -> None:
        self.fn, self.ctx, self.description, self.nice = fn, ctx, description, nice

    def __str__(self) -> str:
        return f"napari-superres: {self.description}"

    def __call__(self) -> Outcome:
        ctx = self.ctx
        if self.nice:
            lower_thread_priority()
        try:
            outcome = Outcome("done", self.fn(ctx))
        except BaseException as exc:
            if isinstance(exc, Cancelled) or ctx.should_stop():
                outcome = Outcome("cancelled", error=exc)
            else:
                logger.error("%s failed", self, exc_info=exc)
                outcome = Outcome("failed", error=exc)
            if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: let them end the thread
                ctx.outcome = outcome
                ctx.done.set()
                raise
        finally:
            _LIVE.discard(ctx)
        ctx.outcome = outcome
        ctx.done.set()
        return outcome


#: Contexts of the jobs still running in this process (for the exit hook).
_LIVE: set[JobContext] = set()


def stop_all_jobs(wait_s: float = EXIT_WAIT_S) -> bool:
    """Ask every running job to stop and wait (at most ``wait_s`` s in all); returns whether all ended."""
    live = list(_LIVE)
    for ctx in live:
        ctx.stop.set()
    deadline = time.monotonic() + wait_s
    ok = all(ctx.done.wait(max(0.0, deadline - time.monotonic())) for ctx in live)
    # let our worker threads emit their last signals while their Qt objects still exist (a
    # just-finished job's thread may still be emitting: wait briefly even when none is live)
    wait_ms = int(max(0.0, deadline - time.monotonic()) * 1000) if live else JUST_FINISHED_WAIT_MS
    try:
        from qtpy.QtCore import QThreadPool

        QThreadPool.globalInstance().waitForDone(max(wait_ms, 1))
    except RuntimeError:  # Qt already torn down
        pass
    return ok


atexit.register(stop_all_jobs)


#: Errors whose message alone says what went wrong (anything else is shown with its type's name).
EXPECTED_ERRORS = (SuperresError, ValueError, TypeError, KeyError, RuntimeError, OSError)


def describe_error(exc: BaseException) -> str:
    """The message a user sees for ``exc``: its text for the package's and the usual errors,
    ``"<Type>: <text>"`` for an unexpected one (a bug: its traceback is in the log)."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    detail = str(exc) or type(exc).__name__
    return detail if isinstance(exc, EXPECTED_ERRORS) else f"{type(exc).__name__}: {detail}"


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


class JobRunner(QObject):
    """Runs one job at a time for ``owner`` and reports into its :class:`~.ui.JobPanel`.

    ``start(fn, description=..., on_item=..., on_done=..., on_cancelled=..., on_failed=...,
    on_finish=...)``: ``fn(ctx)`` runs in a worker thread; the callbacks run on the GUI
    thread (``on_item`` for each :meth:`JobContext.emit`, then one of ``on_done(value)``,
    ``on_cancelled()``, ``on_failed(exc)``, then always ``on_finish()``).  A failure with no
    ``on_failed`` is shown as ``"<description> failed: <error>"`` in the panel and as a
    notification.  Closing the owner (un-parenting it, deleting it) stops the job.
    """

    def __init__(self, owner: QWidget, panel: JobPanel, *, poll_ms: int = POLL_MS) -> None:
        super().__init__(owner)
        self._owner_ref = weakref.ref(owner)
        self.panel = panel
        self._ctx: JobContext | None = None
        self._job: dict[str, Any] = {}
        self._draining = False
        self._had_parent = owner.parent() is not None
        self._closed = False
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._poll)
        owner.installEventFilter(self)
        # a deleted owner stops its job: the closure holds only the (mutable) holder, not the owner
        holder = self._stop_holder = [threading.Event()]
        owner.destroyed.connect(lambda *_: holder[0].set())

    # --- state ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._ctx is not None

    @property
    def worker(self) -> FunctionWorker | None:
        return None if self._ctx is None else self._ctx.worker

    @property
    def context(self) -> JobContext | None:
        return self._ctx

    @property
    def closed(self) -> bool:
        """Whether the owner was closed (no more jobs start)."""
        return self._closed

    # --- control -------------------------------------------------------------------------------
    def start(
        self,
        fn: Callable[[JobContext], Any],
        *,
        description: str,
        total: int = 0,
        status: str | None = None,
        on_item: Callable[[Any], None] | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
        on_failed: Callable[[BaseException], None] | None = None,
        on_finish: Callable[[], None] | None = None,
        activity: bool = True,
        nice: bool = True,
    ) -> FunctionWorker:
        """Start ``fn`` in a worker thread; see the class docstring.  One job at a time.

        ``nice``: run the thread at a lower CPU priority (:func:`lower_thread_priority`).  Not for
        work that holds the interpreter lock most of the time (imports): on busy cores a
        low-priority thread holding the lock waits for the CPU while the GUI thread waits for it.
        """
        if self._ctx is not None:
            raise RuntimeError("a job is already running; cancel it first")
        stop = threading.Event()
        self._stop_holder[0] = stop
        ctx = JobContext(stop)
        body = _Body(fn, ctx, description, nice)
        worker = create_worker(body, _start_thread=False, _ignore_errors=True)
        ctx.worker = worker
        worker.finished.connect(self._poll)
        self._ctx = ctx
        self._job = {
            "description": description, "on_item": on_item, "on_done": on_done,
            "on_cancelled": on_cancelled, "on_failed": on_failed, "on_finish": on_finish,
            "started": time.monotonic(), "pbar": None,
        }  # fmt: skip
        if activity:
            from napari.utils import progress

            self._job["pbar"] = progress(total=total, desc=description)
        self.panel.start(status or f"{description}…", total)
        _LIVE.add(ctx)
        self._timer.start()
        worker.start()
        return worker

    def cancel(self, message: str = "cancelling…") -> None:
        """Ask the running job to stop; the widget goes idle when it has."""
        if self._ctx is not None and not self._ctx.stop.is_set():
            self._ctx.stop.set()
            self.panel.set_status(message)

    def shutdown(self, wait_s: float = 0.0) -> bool:
        """The owner is closing: stop the job (waiting at most ``wait_s`` s); returns whether none is left."""
        self._closed = True
        ctx = self._ctx
        if ctx is None:
            return True
        ctx.stop.set()
        return ctx.done.wait(wait_s) if wait_s > 0 else ctx.done.is_set()

    def wait(self, timeout: float) -> bool:
        """Block until the running job's body has returned (at most ``timeout`` s)."""
        ctx = self._ctx
        return True if ctx is None else ctx.done.wait(timeout)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        # napari's dock close button (remove_dock_widget) un-parents the widget: stop its job
        if event.type() == QEvent.Type.ParentChange:
            owner = self._owner_ref()
            if owner is not None and obj is owner:
                if owner.parent() is not None:
                    self._had_parent = True
                elif self._had_parent:
                    self.shutdown()
        return False

    # --- GUI thread ----------------------------------------------------------------------------
    def _poll(self) -> None:
        """Apply what the job reported, in order; finish it once its body has returned."""
        ctx = self._ctx
        if ctx is None or self._draining:
            return
        self._draining = True
        try:
            self._drain(ctx)
            if ctx.done.is_set() and self._ctx is ctx:
                self._drain(ctx)
                self._finish(ctx)
        finally:
            self._draining = False

    def _drain(self, ctx: JobContext) -> None:
        while True:
            try:
                kind, *args = ctx.outbox.get_nowait()
            except queue.Empty:
                return
            if kind == "progress":
                self._progress(*args, ctx)
            elif kind == "status":
                if not ctx.stop.is_set():
                    self.panel.set_status(args[0])
            elif kind == "item" and self._job.get("on_item") is not None:
                self._call(self._job["on_item"], args[0])

    def _progress(self, done: int, total: int, text: str | None, eta_s: float | None, ctx: JobContext) -> None:
        elapsed = time.monotonic() - self._job["started"]
        eta = elapsed / done * (total - done) if total > 0 and done > 0 else math.nan
        if eta_s is not None:
            eta = eta_s
        if not ctx.stop.is_set():
            self.panel.set_progress(done, total, text, eta)
        pbar = self._job.get("pbar")
        if pbar is not None:
            if pbar.total != total:
                pbar.total = total
            pbar.update(done - pbar.n)

    def _finish(self, ctx: JobContext) -> None:
        job = self._job
        self._ctx = None
        self._timer.stop()
        pbar = job.get("pbar")
        if pbar is not None:
            pbar.close()
        outcome = ctx.outcome or Outcome("failed", error=RuntimeError("the job ended without a result"))
        self.panel.stop()
        if outcome.state == "done":
            if job["on_done"] is not None:
                self._call(job["on_done"], outcome.value)
            else:
                self.panel.set_status("done")
        elif outcome.state == "cancelled":
            self.panel.set_status("cancelled")
            if job["on_cancelled"] is not None:
                self._call(job["on_cancelled"])
        else:
            assert outcome.error is not None
            if job["on_failed"] is not None:
                self._call(job["on_failed"], outcome.error)
            else:
                self.report_failure(f"{job['description']} failed", outcome.error)
        if job["on_finish"] is not None:
            self._call(job["on_finish"])

    def report_failure(self, what: str, exc: BaseException) -> None:
        """Status line and napari notification ``"<what>: <error>"``."""
        message = f"{what}: {describe_error(exc)}"
        self.panel.set_status(message)
        _notify_error(message)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run a widget callback; an exception is logged and notified, never left to Qt."""
        try:
            fn(*args)
        except Exception as exc:
            logger.exception("napari-superres: handling the end of %r failed", self._job.get("description"))
            try:
                self.report_failure("Handling the result failed", exc)
            except RuntimeError:  # the widget is already deleted
                pass


# --- source layers -------------------------------------------------------------------------------
def when_layer_removed(viewer: Any, owner: QWidget, handler: Callable[[Any, Any], None]) -> None:
    """Call ``handler(owner, layer)`` on the GUI thread whenever a layer leaves ``viewer``, while ``owner`` lives.

    ``handler`` is a plain function (e.g. ``Widget._on_layer_removed``), so the viewer holds no
    reference to ``owner``: a closed widget is not kept alive, nor called once deleted.  Widgets use
    it to stop a job whose source layer the user deleted.
    """
    ref = weakref.ref(owner)

    def removed(event: Any) -> None:
        widget = ref()
        if widget is None:
            return
        try:
            handler(widget, event.value)
        except RuntimeError:  # the Qt object is already deleted
            pass

    emitter = viewer.layers.events.removed
    emitter.connect(removed)

    def disconnect(*_: Any) -> None:
        try:
            emitter.disconnect(removed)
        except (RuntimeError, ValueError, TypeError):
            pass

    owner.destroyed.connect(disconnect)


# --- heavy imports ---------------------------------------------------------------------------------
def modules_loaded(modules: Sequence[str]) -> bool:
    """Whether every module in ``modules`` has been imported (completely) in this process."""
    for name in modules:
        module = sys.modules.get(name)
        spec = getattr(module, "__spec__", None)
        if module is None or getattr(spec, "_initializing", False):
            return False
    return True


def import_modules_then(
    runner: JobRunner,
    modules: Sequence[str],
    ready: Callable[[], None],
    what: str = "loading PyTorch",
    warm: Callable[[], Any] | None = None,
) -> bool:
    """Import ``modules`` off the GUI thread (status ``what…``), then call ``ready()`` on the GUI thread.

    ``warm()`` (optional) also runs in the worker after the imports: slow first-time set-up
    such as creating the viewer's engine.  When the modules are already imported, ``ready()``
    runs at once; returns whether it did.
    """
    from .triton_guard import guard_triton_import

    guard_triton_import()  # before torch loads next to a napari canvas
    if modules_loaded(modules):
        ready()
        return True

    def load(ctx: JobContext) -> None:
        for i, name in enumerate(modules):
            ctx.progress(i, len(modules), f"{what} ({name})…")
            importlib.import_module(name)
        if warm is not None:
            ctx.progress(len(modules), len(modules), f"{what}: setting up…")
            warm()

    def done(_: Any) -> None:
        for name in modules:  # finished in the worker: these return at once
            importlib.import_module(name)
        runner.panel.set_status("")
        ready()

    runner.start(load, description=what, status=f"{what}… (first use: a few seconds)", on_done=done,
                 activity=False, nice=False)  # fmt: skip
    return False
