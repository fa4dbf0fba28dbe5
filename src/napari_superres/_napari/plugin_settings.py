"""The plugin's settings (napari *Preferences ▸ Plugins*, npe2 ``configurations``): defaults only.

Declared in ``napari.yaml`` under ``contributions.configurations.defaults``:

* ``device``: ``auto`` / ``cpu`` / ``cuda`` / ``mps``: the device of each viewer's engine;
* ``model``: the model selected by default (a registered name, e.g. ``superres-x2``);
* ``tile``: tile edge in input pixels, ``0`` = automatic (from the device's free memory).

:func:`plugin_defaults` reads them through ``napari.settings.get_plugin_settings`` and
falls back to the built-in defaults when napari's settings cannot be read (an older
napari, a damaged settings file): a settings problem never stops the widgets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..engine.options import AUTO_TILE, DEFAULT_DEVICE

log = logging.getLogger(__name__)

#: The npe2 plugin (distribution) name: the key of our settings.
PLUGIN_NAME = "napari-deep-superres"
#: ``contributions.configurations`` key in napari.yaml.
CONFIGURATION_KEY = "defaults"


@dataclass(frozen=True)
class PluginDefaults:
    """``device`` (``"auto"``...), ``model`` (name or ``None``: the engine's default), ``tile`` (``None``: automatic)."""

    device: str = DEFAULT_DEVICE
    model: str | None = None
    tile: int | None = None


def plugin_defaults() -> PluginDefaults:
    """The user's plugin settings, or :class:`PluginDefaults` when they cannot be read."""
    try:
        from napari.settings import get_plugin_settings

        section = getattr(get_plugin_settings(PLUGIN_NAME), CONFIGURATION_KEY)
        device = str(getattr(section, "device", DEFAULT_DEVICE) or DEFAULT_DEVICE)
        model = getattr(section, "model", None) or None
        tile = int(getattr(section, "tile", AUTO_TILE) or AUTO_TILE)
    except Exception:  # noqa: BLE001 - settings must never break the widgets; logged with the traceback
        log.debug("napari plugin settings unavailable; using the defaults", exc_info=True)
        return PluginDefaults()
    return PluginDefaults(device=device, model=str(model) if model else None, tile=tile if tile > AUTO_TILE else None)


__all__ = ["PluginDefaults", "plugin_defaults"]
