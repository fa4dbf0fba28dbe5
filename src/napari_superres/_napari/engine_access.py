"""One :class:`~napari_superres.engine.Engine` per napari viewer, shared by all widgets.

The engine is created lazily (torch is imported on first use, not at napari start-up)
and lives as long as its viewer: the registry is a :class:`weakref.WeakKeyDictionary`,
so closing a viewer frees its engine.  Listeners registered with ``engine.on_change``
must therefore not hold the viewer strongly (hold the widget through a weak reference).
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from ..engine.errors import SuperresError

if TYPE_CHECKING:
    from ..engine import Engine

_ENGINES: weakref.WeakKeyDictionary[Any, Engine] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def get_engine(viewer: Any = None) -> Engine:
    """The engine of ``viewer`` (created on first call); ``None`` gives the process-wide engine."""
    from .triton_guard import guard_triton_import

    guard_triton_import()  # before any torch code runs next to a napari canvas
    from ..engine import Engine, default_engine

    if viewer is None:
        return default_engine()
    with _LOCK:
        engine = _ENGINES.get(viewer)
        if engine is None:
            engine = _engine_from_settings(Engine)
            _ENGINES[viewer] = engine
        return engine


def _engine_from_settings(engine_class: type[Engine]) -> Engine:
    """A new engine with the plugin settings' device and default model (napari Preferences ▸ Plugins)."""
    import logging

    from .plugin_settings import plugin_defaults

    defaults = plugin_defaults()
    try:
        engine = engine_class(device=defaults.device)
    except (SuperresError, RuntimeError, ValueError) as e:  # e.g. "cuda" in the settings on a machine without a GPU
        logging.getLogger(__name__).warning("plugin setting device=%r unusable (%s); using auto", defaults.device, e)
        engine = engine_class()
    if defaults.model and defaults.model in engine.names():
        engine.set_default(defaults.model)
    return engine
