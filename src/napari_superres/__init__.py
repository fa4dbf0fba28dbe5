"""napari-superres: deep-learning super-resolution for napari.

Importing this package is cheap: torch and the engine load on first use of
:func:`upscale`, :class:`Engine` or a widget, so napari's start-up stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - not installed from a VCS checkout
    __version__ = "0.1.0"

if TYPE_CHECKING:
    from .engine import Engine, SRNet, upscale

__all__ = ["Engine", "SRNet", "upscale", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Engine", "SRNet", "upscale"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
