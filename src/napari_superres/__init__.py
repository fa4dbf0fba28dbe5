"""napari-superres: deep-learning super-resolution for napari.

Importing this package is cheap: torch and the engine load on first use of
:func:`upscale`, :class:`Engine` or a widget, so napari's start-up stays light.

Every exception the package raises on purpose derives from :class:`SuperresError`
(``except napari_superres.SuperresError``); its subclasses say what went wrong:
:class:`InvalidRequestError` (also a ``ValueError``), :class:`DeviceUnavailableError`,
:class:`ModelFileError`, :class:`ImageFileError` and :class:`Cancelled`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - not installed from a VCS checkout
    __version__ = "0.1.0"

if TYPE_CHECKING:
    from ._napari.engine_access import get_engine
    from .engine import Engine, SRNet, adapt, consistency, estimate_degradation, upscale, upscale_z
    from .engine.errors import (
        Cancelled,
        DeviceUnavailableError,
        ImageFileError,
        InvalidRequestError,
        ModelFileError,
        SuperresError,
    )

#: The exception family (torch-free: ``engine.errors``).
_ERRORS = (
    "Cancelled", "DeviceUnavailableError", "ImageFileError", "InvalidRequestError", "ModelFileError", "SuperresError",
)  # fmt: skip

__all__ = [
    "Engine", "SRNet", "adapt", "consistency", "estimate_degradation", "get_engine", "upscale", "upscale_z", "__version__",
    "Cancelled", "DeviceUnavailableError", "ImageFileError", "InvalidRequestError", "ModelFileError", "SuperresError",
]  # fmt: skip


def _register_model_loaders() -> None:
    """bioimage.io packages load as models everywhere (``upscale(model="pkg.zip")``, *Load model file...*).

    The engine never imports ``napari_superres.io``: the loader is a string resolved on first use.
    """
    from .engine.loaders import register_model_loader

    register_model_loader(
        (".zip", "rdf.yaml", "bioimageio.yaml"), "napari_superres.io.bioimageio_import:load_bioimageio_model"
    )


_register_model_loaders()


def __getattr__(name: str) -> Any:
    if name in ("Engine", "SRNet", "upscale", "upscale_z", "consistency", "adapt", "estimate_degradation"):
        from . import engine

        return getattr(engine, name)
    if name in _ERRORS:
        from .engine import errors

        return getattr(errors, name)
    if name == "get_engine":  # the Engine shared by a viewer's widgets
        from ._napari.engine_access import get_engine

        return get_engine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
