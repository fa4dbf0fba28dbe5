"""Loaders for model files other than our ``.safetensors``, registered from outside the engine.

The engine reads only its own model files (:mod:`.nets.model_file`).  Other formats are
added by the layers above it: ``napari_superres/__init__.py`` registers the bioimage.io
package loader of :mod:`napari_superres.io.bioimageio_import` for ``.zip``, ``rdf.yaml``
and ``bioimageio.yaml``.  A loader is given as a ``"module:function"`` string imported on
first use, so registering costs nothing at start-up, and the engine never imports the
layers that register them.  This module imports neither torch nor numpy.

A loader is called as ``loader(path, name=None, device="cpu", trust_code=False)`` and returns an
:class:`~napari_superres.engine.nets.model_file.SRModel` (a subclass may carry an
``upscale_image`` method: then :meth:`Engine.upscale` hands the whole image to it, for
models that bring their own normalisation and tiling).  ``trust_code``: the caller consents
to the file running Python code of its own (a loader refuses such files without it, raising
:class:`~napari_superres.engine.errors.UntrustedCodeError`).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: Our own model files (kept equal to ``nets.model_file.MODEL_SUFFIX``; this module is torch-free).
NATIVE_SUFFIX = ".safetensors"

_lock = threading.Lock()
_loaders: list[tuple[tuple[str, ...], str | Callable[..., Any]]] = []


def register_model_loader(suffixes: Sequence[str], loader: str | Callable[..., Any]) -> None:
    """Use ``loader`` for paths whose name ends with one of ``suffixes`` (case-insensitive).

    ``loader``: a callable or a ``"package.module:function"`` string (imported on first
    use).  Registering the same suffixes and loader twice has no effect; a later
    registration for a suffix wins over an earlier one.
    """
    entry = (tuple(s.lower() for s in suffixes), loader)
    with _lock:
        if entry not in _loaders:
            _loaders.insert(0, entry)


def find_model_loader(path: str | os.PathLike) -> Callable[..., Any] | None:
    """The registered loader for ``path`` (a folder is looked into for a registered file name), or ``None``."""
    p = Path(path)
    name = p.name.lower()
    # a folder is a model when it holds a registered *file name* (``rdf.yaml``), not any ``.zip``
    children = {c.name.lower() for c in p.iterdir() if c.is_file()} if p.is_dir() else set()
    with _lock:
        loaders = list(_loaders)
    for suffixes, loader in loaders:
        if name.endswith(suffixes) or any(s in children for s in suffixes if not s.startswith(".")):
            if isinstance(loader, str):
                module, _, func = loader.partition(":")
                loader = getattr(importlib.import_module(module), func)
            return loader
    return None


def model_file_suffixes() -> list[str]:
    """Every suffix a model file may have (ours first), e.g. for a file dialog's filter."""
    with _lock:
        extra = [s for suffixes, _ in _loaders for s in suffixes]
    return list(dict.fromkeys([NATIVE_SUFFIX, *extra]))


def load_model_file(
    path: str | os.PathLike, *, name: str | None = None, device: Any = "cpu", trust_code: bool = False
) -> Any:
    """Load ``path`` with its registered loader, or as our ``.safetensors`` model file (which holds no code).

    ``trust_code``: let a registered format run Python code the file brings (see the module doc).
    """
    loader = find_model_loader(path) if not str(path).lower().endswith(NATIVE_SUFFIX) else None
    if loader is not None:
        return loader(path, name=name, device=device, trust_code=trust_code)
    from .nets.model_file import load_model

    return load_model(path, name=name, device=device)


__all__ = ["find_model_loader", "load_model_file", "model_file_suffixes", "register_model_loader"]
