"""npe2 reader: dropping a model file on napari registers it in the viewer's engine.

Accepts our ``.safetensors`` model files and bioimage.io model packages (``.zip`` holding
an ``rdf.yaml`` / ``bioimageio.yaml``; a package that would run Python code of its own is
loaded only after a confirmation naming the file and its SHA-256, see :mod:`.consent`);
other files of those suffixes are left to other readers (``get_model_reader`` returns ``None`` after a cheap look at the header / zip
listing).  The model becomes selectable in the Upscale widget at once; no layer is
added: the reader returns napari's "no layers" sentinel ``[(None,)]``.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: What napari's reader machinery accepts as "read, but no layers".
NO_LAYERS: list[tuple[None]] = [(None,)]
_DESCRIPTION_NAMES = ("rdf.yaml", "bioimageio.yaml")


def is_model_file(path: str | Path) -> bool:
    """True for our safetensors model files and bioimage.io packages (no weights are read)."""
    p = Path(path)
    if not p.is_file():
        return False
    name = p.name.lower()
    if name.endswith(".safetensors"):
        from ..engine.nets.model_file import ModelFileError, read_model_metadata

        try:
            read_model_metadata(p)
        except ModelFileError:
            return False
        return True
    if name.endswith(".zip"):
        try:
            with zipfile.ZipFile(p) as z:
                return any(Path(n).name in _DESCRIPTION_NAMES for n in z.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
    return False


def get_model_reader(path: str | list[str]) -> Callable[[Any], list[tuple[None]]] | None:
    """npe2 ``get_reader``: a reader for one model file, or ``None``."""
    if isinstance(path, list) or not is_model_file(path):
        return None
    return register_model_file


def register_model_file(path: str | list[str]) -> list[tuple[None]]:
    """Load the model into the current viewer's engine (the process-wide one without a viewer)."""
    import napari

    from .consent import load_with_consent
    from .engine_access import get_engine

    path = path[0] if isinstance(path, list) else path
    viewer = napari.current_viewer()
    name = load_with_consent(get_engine(viewer), path)
    if name is None:  # the package would run its own code and the user said no
        message = f"{Path(path).name} was not loaded: it would run Python code of its own"
    else:
        message = f"registered model {name!r} from {Path(path).name}: choose it in the Upscale widget"
    log.info(message)
    try:
        from napari.utils.notifications import show_info

        show_info(message)
    except ImportError:  # pragma: no cover
        pass
    return NO_LAYERS


__all__ = ["NO_LAYERS", "get_model_reader", "is_model_file", "register_model_file"]
