"""Streaming: open a TIFF or zarr input lazily, chunked for upscaling, and compute dask work with a progress bar.

The input is opened lazily (TIFF through ``tifffile``'s zarr view, zarr through
``dask.array.from_zarr``); writers (:mod:`.writers`) pull the result chunk by chunk
through a :class:`~.runner.ComputeRunner`, so host memory stays flat whatever the image size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ImageFileError
from .metadata import PixelSize
from .runner import ComputeRunner
from .tiff import TIFF_SUFFIXES, open_tiff
from .zarr_store import ZARR_SUFFIX, open_zarr

#: Target Y/X chunk edge in *output* pixels when the input has no better chunking.
OUTPUT_CHUNK_EDGE = 2048
#: Local dask threads per device type.  CPU: 1 (torch already uses every core for one
#: chunk; a second chunk in flight only oversubscribes them, measured on 2 cores).
#: GPU: chunks are read, normalised and written on the host while the device computes.
LOCAL_WORKERS = {"cpu": 1, "cuda": 3, "mps": 2}


@dataclass
class Source:
    """A lazily opened input image: a dask array, its axes (or ``None``), pixel size and file metadata."""

    array: Any  # dask array
    axes: str | None
    pixel_size: PixelSize
    imagej: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)


def chunk_edges(size: int, edge: int, minimum: int) -> tuple[int, ...]:
    """Chunks of ``edge`` along an axis of ``size``; a last chunk under ``minimum`` joins its neighbour.

    Keeping every boundary at a multiple of ``edge`` lets each task own whole zarr chunks.
    """
    if size <= edge:
        return (size,)
    n, rest = divmod(size, edge)
    chunks = [edge] * n
    if rest >= minimum:
        chunks.append(rest)
    elif rest:
        chunks[-1] += rest
    return tuple(chunks)


def input_chunks(
    shape: tuple[int, ...], axes_letters: str, *, scale: int, halo: int, chunk_planes: int,
    chunk_size: int | None, source_chunks: tuple[int, ...] | None,
) -> tuple[tuple[int, ...], ...]:  # fmt: skip
    """Dask chunks for the input: planes by ``chunk_planes`` (innermost plane axis), Y/X by an edge.

    The Y/X edge is ``chunk_size`` or about :data:`OUTPUT_CHUNK_EDGE` output pixels, rounded to a
    multiple of the file's own chunk edge when that is smaller (no chunk decoded twice).
    """
    plane_axes = [i for i, a in enumerate(axes_letters) if a not in "YXS"]
    chunks: list[tuple[int, ...]] = []
    for ax, (size, letter) in enumerate(zip(shape, axes_letters)):
        if letter in "YX":
            edge = chunk_size or max(OUTPUT_CHUNK_EDGE // scale, 2 * halo)
            src = source_chunks[ax] if source_chunks else None
            if chunk_size is None and src and src < edge:
                edge = max(src, edge // src * src)
            chunks.append(chunk_edges(size, max(int(edge), 2 * halo), halo))
        elif letter == "S":
            chunks.append((size,))
        else:
            n = max(1, chunk_planes) if plane_axes and ax == plane_axes[-1] else 1
            chunks.append(chunk_edges(size, n, 1))
    return tuple(chunks)


def open_source(path: Path, *, scale: int, halo: int, chunk_planes: int = 1, chunk_size: int | None = None,
                axes: str | None = None) -> Source:  # fmt: skip
    """Open ``path`` (``.tif``/``.tiff``/``.ome.tif`` file or ``.zarr`` folder) lazily as a dask array
    chunked for upscaling by ``scale`` with a ``halo`` of input pixels."""
    import dask.array as da
    from dask.base import tokenize

    from ..engine.layout import parse_axes

    if not path.exists():
        raise ImageFileError(f"input not found: {path}")
    if path.is_dir() or path.name.lower().endswith(ZARR_SUFFIX):
        zarray, file_axes, pixel, attrs = open_zarr(path)
        letters = parse_axes(tuple(zarray.shape), axes or file_axes).axes
        chunks = input_chunks(
            tuple(zarray.shape), letters, scale=scale, halo=halo, chunk_planes=chunk_planes,
            chunk_size=chunk_size, source_chunks=tuple(zarray.chunks),
        )  # fmt: skip
        array = da.from_zarr(zarray, chunks=chunks)
        return Source(array, axes or file_axes, pixel, attrs=attrs)
    if not path.name.lower().endswith(TIFF_SUFFIXES):
        raise ImageFileError(f"input {path} must be a .tif/.tiff file or a .zarr directory")
    reader, file_axes, pixel, imagej, src_chunks = open_tiff(path)
    # planar RGB (samples stored as separate planes, e.g. "SYX"): read as is, then samples last
    order = list(range(reader.ndim))
    if axes is None and file_axes and "S" in file_axes and not file_axes.endswith("S"):
        s = file_axes.index("S")
        order = order[:s] + order[s + 1 :] + [s]
        file_axes = "".join(file_axes[i] for i in order)
    shape = tuple(reader.shape[i] for i in order)
    letters = parse_axes(shape, axes or file_axes).axes
    chunks = input_chunks(
        shape, letters, scale=scale, halo=halo, chunk_planes=chunk_planes, chunk_size=chunk_size,
        source_chunks=tuple(src_chunks[i] for i in order) if src_chunks else None,
    )  # fmt: skip
    file_chunks: list[tuple[int, ...]] = [()] * reader.ndim
    for pos, i in enumerate(order):
        file_chunks[i] = chunks[pos]
    name = "tiff-" + tokenize(str(path.resolve()), path.stat().st_mtime_ns, chunks)
    array = da.from_array(reader, chunks=tuple(file_chunks), asarray=False, fancy=False, name=name, lock=False)
    if order != list(range(reader.ndim)):
        array = array.transpose(order)
    return Source(array, axes or file_axes, pixel, imagej=imagej)


__all__ = [
    "LOCAL_WORKERS",
    "OUTPUT_CHUNK_EDGE",
    "ComputeRunner",
    "Source",
    "chunk_edges",
    "input_chunks",
    "open_source",
]
