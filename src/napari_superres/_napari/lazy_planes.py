"""Lazily upscaled layers whose planes are computed in the background, never on the GUI thread.

Design.  A dask-backed source layer upscaled "lazily" used to become a dask array: napari
then computed the displayed plane *on the GUI thread* while slicing (tens of seconds per
plane on a CPU, no progress, no cancel).  Instead the new layer holds a
:class:`BackgroundPlanes` array:

* ``__getitem__`` (napari's slicing) never computes: it returns the planes already
  upscaled, and a placeholder (zeros) for the others, which it queues;
* one background thread upscales queued planes, the most recently requested first, then
  its neighbours (the plane before and after), each with the engine's tiled ``upscale``
  (progress per tile, cancellable between tiles);
* when a plane is ready the layer is refreshed on the GUI thread (a timer polls a queue);
  progress shows in napari's activity panel (``napari.utils.progress``);
* upscaled planes stay in a small cache (:data:`CACHE_PLANES` most recent);
* removing the layer, closing the viewer or leaving the interpreter stops the thread
  (the shared stop hook of :mod:`.jobs`).

``np.asarray(layer.data)`` (saving, scripts) computes every plane synchronously.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, QTimer

from . import jobs

logger = logging.getLogger("napari_superres")

#: Upscaled planes kept in memory per layer.
CACHE_PLANES = 8
#: How often (ms) the GUI thread looks for finished planes.
POLL_MS = 100


class BackgroundPlanes:
    """An array-like ``(..., Y*s, X*s[, S])`` whose leading-axis planes are upscaled in the background.

    ``compute(index, progress, should_stop) -> ndarray`` upscales the source plane at the
    leading ``index`` (a tuple of ints; empty for a single 2-D image).
    """

    def __init__(self, shape: tuple[int, ...], dtype: Any, n_lead: int,
                 compute: Callable[..., np.ndarray], name: str = "") -> None:  # fmt: skip
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))
        self.n_lead = int(n_lead)
        self.name = name
        self._compute = compute
        self._cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._wanted: list[tuple[int, ...]] = []
        self._wake = threading.Condition(self._lock)
        self.ready: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.context = jobs.JobContext(threading.Event())
        self._thread: threading.Thread | None = None

    # --- napari's view ---------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        lead, rest = key[: self.n_lead], key[self.n_lead :]
        ranges = [range(n)[k] if isinstance(k, slice) else [int(k) % n] for k, n in zip(lead, self.shape)]
        indices = [tuple(ix) for ix in np.ndindex(*[len(r) for r in ranges])]
        planes = []
        missing = []
        with self._lock:
            for ix in indices:
                plane_index = tuple(r[i] for r, i in zip(ranges, ix))
                plane = self._cache.get(plane_index)
                if plane is None:
                    missing.append(plane_index)
                    plane = np.zeros(self.shape[self.n_lead :], self.dtype)
                else:
                    self._cache.move_to_end(plane_index)
                planes.append(plane[rest])
        if missing:
            self.request(missing)
        out = np.stack(planes) if planes else np.zeros((0,), self.dtype)
        lead_shape = tuple(len(r) for k, r in zip(lead, ranges) if isinstance(k, slice))
        return out.reshape(lead_shape + out.shape[1:])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """Every plane, computed now (synchronously): for saving and scripts, not for display."""
        out = np.empty(self.shape, self.dtype)
        for index in np.ndindex(*self.shape[: self.n_lead]):
            with self._lock:
                plane = self._cache.get(index)
            out[index] = plane if plane is not None else self._compute(index, None, None)
        return out if dtype is None else out.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]

    # --- background work -------------------------------------------------------------------------
    def cached(self, index: tuple[int, ...]) -> bool:
        with self._lock:
            return tuple(index) in self._cache

    def request(self, indices: list[tuple[int, ...]]) -> None:
        """Queue planes (the first ones first), then their neighbours along the first leading axis."""
        if self.context.stop.is_set():
            return
        with self._lock:
            wanted = [ix for ix in indices if ix not in self._cache]
            if self.n_lead and len(indices) == 1:
                (ix,) = indices
                for d in (1, -1):
                    nb = (ix[0] + d, *ix[1:])
                    if 0 <= nb[0] < self.shape[0] and nb not in self._cache:
                        wanted.append(nb)
            self._wanted = wanted + [ix for ix in self._wanted if ix not in wanted]
            self._wake.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=f"napari-superres planes {self.name}",
                                                daemon=True)  # fmt: skip
                jobs._LIVE.add(self.context)
                self._thread.start()

    def stop(self) -> None:
        self.context.stop.set()
        with self._lock:
            self._wake.notify()

    def _loop(self) -> None:
        ctx = self.context
        jobs.lower_thread_priority()
        try:
            while not ctx.stop.is_set():
                with self._lock:
                    while not self._wanted and not ctx.stop.is_set():
                        self._wake.wait(0.5)
                    if ctx.stop.is_set():
                        return
                    index = self._wanted.pop(0)
                    if index in self._cache:
                        continue
                self.ready.put(("start", index))
                try:
                    plane = self._compute(
                        index, lambda d, t, ix=index: self.ready.put(("progress", ix, d, t)), ctx.stop.is_set
                    )
                except Exception as exc:  # reported on the GUI thread, loop ends
                    if ctx.stop.is_set():
                        return
                    logger.error("upscaling plane %s of %r failed", index, self.name, exc_info=exc)
                    self.ready.put(("failed", index, exc))
                    return
                with self._lock:
                    self._cache[index] = plane
                    while len(self._cache) > CACHE_PLANES:
                        self._cache.popitem(last=False)
                self.ready.put(("done", index))
        finally:
            ctx.done.set()
            jobs._LIVE.discard(ctx)


class _LayerRefresher(QObject):
    """GUI thread: refreshes the layer when planes are ready and shows progress in the activity panel."""

    def __init__(self, layer: Any, planes: BackgroundPlanes, status: Callable[[str], None] | None) -> None:
        super().__init__()
        self.layer, self.planes, self.status = layer, planes, status
        self.pbar: Any = None
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    def poll(self) -> None:
        from napari.utils import progress
        from napari.utils.notifications import show_error

        refresh = False
        while True:
            try:
                kind, index, *args = self.planes.ready.get_nowait()
            except queue.Empty:
                break
            where = f"plane {index}" if index else "the image"
            if kind == "start":
                if self.pbar is None:
                    self.pbar = progress(total=0, desc=f"upscaling {where} of {self.layer.name!r}")
                else:
                    self.pbar.set_description(f"upscaling {where} of {self.layer.name!r}")
                    self.pbar.n = 0
            elif kind == "progress" and self.pbar is not None:
                done, total = args
                if self.pbar.total != total:
                    self.pbar.total = total
                self.pbar.update(done - self.pbar.n)
            elif kind == "done":
                refresh = True
                self._say(f"{self.layer.name!r}: {where} upscaled")
                if self.pbar is not None:
                    self.pbar.close()
                    self.pbar = None
            elif kind == "failed":
                message = f"Upscaling {where} of {self.layer.name!r} failed: {args[0]}"
                self._say(message)
                show_error(message)
        if refresh:
            self.layer.refresh()
        if self.planes.context.done.is_set():
            self.close()

    def _say(self, text: str) -> None:
        if self.status is not None:
            try:
                self.status(text)
            except RuntimeError:  # the widget is gone
                self.status = None

    def close(self) -> None:
        self.planes.stop()
        self.timer.stop()
        if self.pbar is not None:
            self.pbar.close()
            self.pbar = None


#: Refreshers of the layers alive (kept here: they have no Qt parent).
_REFRESHERS: set[_LayerRefresher] = set()


def _read_plane(source: Any, index: tuple[int, ...]) -> np.ndarray:
    """Plane ``index`` of ``source`` as numpy, read in this (background) thread.

    A dask source is computed with ``callbacks=[]``: dask's global callbacks include napari's
    opportunistic cache (``dask.cache.Cache``), which is not thread-safe, and a compute that uses the
    global callbacks also empties them for every other thread while it runs. Without this, a plane
    read here while napari slices another dask layer failed with a ``KeyError`` from ``dask.cache``.
    """
    part = source[index] if index else source
    if hasattr(part, "dask") and hasattr(part, "compute"):
        return np.asarray(part.compute(callbacks=[]))
    return np.asarray(part)


def background_planes(source: Any, upscale_plane: Callable[..., np.ndarray], out_shape: tuple[int, ...],
                      dtype: Any, n_lead: int, name: str = "") -> BackgroundPlanes:  # fmt: skip
    """A :class:`BackgroundPlanes` over ``source`` whose plane ``index`` is ``upscale_plane(np.asarray(source[index]), progress, should_stop)``."""

    def compute(index: tuple[int, ...], progress: Any, should_stop: Any) -> np.ndarray:
        return upscale_plane(_read_plane(source, index), progress, should_stop)

    return BackgroundPlanes(out_shape, dtype, n_lead, compute, name=name)


def add_background_layer(viewer: Any, planes: BackgroundPlanes, kwargs: dict[str, Any],
                         status: Callable[[str], None] | None = None) -> Any:  # fmt: skip
    """Add ``planes`` as an Image layer; it refreshes as planes arrive and stops when removed."""
    layer = viewer.add_image(planes, **kwargs)
    refresher = _LayerRefresher(layer, planes, status)
    _REFRESHERS.add(refresher)

    def on_removed(event: Any) -> None:
        if event.value is layer:
            refresher.close()
            _REFRESHERS.discard(refresher)
            viewer.layers.events.removed.disconnect(on_removed)

    viewer.layers.events.removed.connect(on_removed)
    return layer
