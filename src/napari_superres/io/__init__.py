"""Image files in and out, for the command line (and any script): TIFF and zarr readers and writers,
pixel-size metadata, atomic file and folder writes, and the streaming runner.

Modules (import what you use; nothing heavy is imported here):

* :mod:`.metadata`: :class:`PixelSize` (and reading it from TIFF tags / OME-XML / ImageJ).
* :mod:`.atomic`: temporary names beside the target, atomic replacement of files and
  folders, cleanup of a killed run's leftovers, refusal to write over an input.
* :mod:`.tiff`: lazy TIFF reading (region by region) and plane-by-plane TIFF writing.
* :mod:`.zarr_store`: zarr (and OME-NGFF group) reading, and :class:`ZarrWriter`, the chunk
  writer; :mod:`.ome_zarr`: the OME-NGFF multiscale writer and reader.
* :mod:`.writer_base`: :class:`ArrayWriter`, the interface an output format implements, and
  :class:`OutputInfo`; :mod:`.writers`: the registry that picks a format by suffix (it imports
  the formats; the formats import only :mod:`.writer_base`).
* :mod:`.runner`: :class:`ComputeRunner` (local threads or ``dask.distributed``), what
  writers compute through.
* :mod:`.stream`: :func:`open_source`, the chunked lazy input.

This package may import :mod:`napari_superres.engine`; the engine never imports it.
"""

from __future__ import annotations

from ..engine.errors import ImageFileError  # one of the package's error family (napari_superres.SuperresError)

__all__ = ["ImageFileError"]
