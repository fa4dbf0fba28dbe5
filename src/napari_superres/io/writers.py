"""The output-format registry: an :class:`ArrayWriter` (:mod:`~napari_superres.io.writer_base`)
writes a lazy (dask) result to a path.

A format is a subclass that names its suffixes and implements :meth:`ArrayWriter.write`;
:func:`register_writer` adds it and :func:`writer_for` picks the writer of an output path
(the longest matching suffix wins, so ``.ome.zarr`` can take precedence over ``.zarr``).
Built in: :class:`~napari_superres.io.zarr_store.ZarrWriter` (``.zarr``) and
:class:`~napari_superres.io.tiff.TiffWriter` (``.tif``, ``.tiff``, ``.ome.tif``).

A writer must write atomically (:func:`~napari_superres.io.atomic.atomic_path`): the
output is complete or absent, and an existing output is replaced only once the new one
is complete.  An OME-NGFF writer plugs in as::

    class OmeZarrWriter(ArrayWriter):
        suffixes = (".ome.zarr",)
        def write(self, result, out, info, runner): ...   # group + multiscales, level 0 via write_chunks

    register_writer(OmeZarrWriter())
"""

from __future__ import annotations

from pathlib import Path

from . import ImageFileError
from .writer_base import ArrayWriter, OutputInfo

_WRITERS: list[ArrayWriter] = []
_builtins_registered = False


def register_writer(writer: ArrayWriter) -> ArrayWriter:
    """Add an output format (replacing a registered writer of the same class); may run at import time."""
    _WRITERS[:] = [w for w in _WRITERS if type(w) is not type(writer)]
    _WRITERS.append(writer)
    return writer


def _builtin_writers() -> None:
    """Register the built-in formats once, before any added ones (their suffixes are listed first)."""
    global _builtins_registered
    if not _builtins_registered:
        _builtins_registered = True
        from .ome_zarr import OmeZarrWriter
        from .tiff import TiffWriter
        from .zarr_store import ZarrWriter

        added = list(_WRITERS)
        _WRITERS[:] = [ZarrWriter(), TiffWriter()]
        register_writer(OmeZarrWriter())  # .ome.zarr: OME-NGFF multiscale image
        for writer in added:
            register_writer(writer)


def writer_for(out: str | Path) -> ArrayWriter:
    """The registered writer for ``out`` by suffix; :class:`ImageFileError` listing the suffixes otherwise."""
    _builtin_writers()
    out = Path(out)
    best = max(_WRITERS, key=lambda w: w.handles(out))
    if best.handles(out) == 0:
        raise ImageFileError(f"output {out} must end in {', '.join(output_suffixes())}")
    return best


def output_suffixes() -> list[str]:
    """Every suffix a registered writer handles."""
    _builtin_writers()
    return list(dict.fromkeys(s for w in _WRITERS for s in w.suffixes))


__all__ = ["ArrayWriter", "OutputInfo", "output_suffixes", "register_writer", "writer_for"]
