"""TIFF in and out: a lazy region reader of one TIFF series, and a plane-by-plane TIFF writer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ImageFileError
from .atomic import atomic_path
from .metadata import UM_PER_UNIT, PixelSize, pixel_size_from_tiff
from .writer_base import ArrayWriter, OutputInfo

if TYPE_CHECKING:  # pragma: no cover
    from .runner import ComputeRunner

TIFF_SUFFIXES = (".tif", ".tiff")
OME_TIFF_SUFFIXES = (".ome.tif", ".ome.tiff")
#: Above this many bytes the output is a BigTIFF (classic TIFF offsets are 32-bit).
BIGTIFF_BYTES = 2**32 - 2**25


class TiffRegionReader:
    """Picklable lazy reader of one TIFF series: ``reader[slices]`` reads just that region.

    Pickles as its path only, so ``dask.distributed`` workers open the file themselves;
    each thread keeps its own open file (tifffile handles are not shared across threads).
    A damaged or truncated file raises :class:`~napari_superres.io.ImageFileError` naming it.
    """

    def __init__(self, path: str, shape: tuple[int, ...], dtype: Any, series: int = 0, level: int = 0) -> None:
        import numpy as np

        self.path, self.series, self.level = path, series, level
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _zarr(self) -> Any:
        z = getattr(self._local, "zarr", None)
        if z is None:
            import tifffile
            import zarr

            tif = tifffile.TiffFile(self.path)
            store = tif.series[self.series].aszarr(level=self.level)
            z = self._local.zarr = zarr.open(store, mode="r")
            self._local.tif = tif
        return z

    def __getitem__(self, key: Any) -> Any:
        import numpy as np

        try:
            return np.asarray(self._zarr()[key])
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as e:
            raise ImageFileError(f"cannot read TIFF {self.path}: the file is damaged or truncated ({e})") from e


def open_tiff(path: Path) -> tuple[TiffRegionReader, str | None, PixelSize, bool, tuple[int, ...] | None]:
    """``(reader, axes or None, pixel size, is ImageJ, the file's chunk shape or None)`` of a TIFF's first series."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            reader = TiffRegionReader(str(path), series.shape, series.dtype)
            axes = series.axes.upper()
            pixel = pixel_size_from_tiff(tif)
            imagej = bool(tif.is_imagej)
            src_chunks = None
            try:
                with series.aszarr() as store:
                    import zarr

                    src_chunks = tuple(zarr.open(store, mode="r").chunks)
            except Exception:  # noqa: BLE001 - chunking is only a hint
                src_chunks = None
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:
        raise ImageFileError(f"cannot read TIFF {path}: {e}") from e
    if "Y" not in axes or "X" not in axes or len(set(axes)) != len(axes):
        axes = None
    return reader, axes, pixel, imagej, src_chunks


def tiff_kind(out: Path, axes: str, dtype: Any, source_imagej: bool, pixel: PixelSize) -> str:
    """``"ome"``, ``"imagej"`` or ``"shaped"`` TIFF flavour for the output."""
    import numpy as np

    if out.name.lower().endswith(OME_TIFF_SUFFIXES):
        return "ome"
    letters = [a for a in "TZCYXS" if a in axes]
    imagej_ok = "".join(letters) == axes and np.dtype(dtype) in (np.uint8, np.uint16, np.float32)
    if imagej_ok and (source_imagej or pixel.unit):
        return "imagej"
    return "shaped"


def _tiff_metadata(kind: str, axes: str, pixel: PixelSize) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metadata, TiffWriter.write keyword arguments)`` carrying the pixel size in ``kind``'s way."""
    kwargs: dict[str, Any] = {}
    metadata: dict[str, Any] = {"axes": axes}
    if kind == "ome":
        for letter, value in (("X", pixel.x), ("Y", pixel.y), ("Z", pixel.z)):
            if value is not None:
                metadata[f"PhysicalSize{letter}"] = value
                if pixel.unit:
                    metadata[f"PhysicalSize{letter}Unit"] = pixel.unit
        if pixel.x and pixel.y:
            um = UM_PER_UNIT.get(pixel.unit or "µm", 1.0)
            kwargs["resolution"] = (1e4 / (pixel.x * um), 1e4 / (pixel.y * um))
            kwargs["resolutionunit"] = "CENTIMETER"
    elif kind == "imagej":
        if pixel.unit:
            metadata["unit"] = "micron" if pixel.unit in ("µm", "um") else pixel.unit
        if pixel.z is not None:
            metadata["spacing"] = pixel.z
        if pixel.x and pixel.y:
            kwargs["resolution"] = (1.0 / pixel.x, 1.0 / pixel.y)
    elif pixel.x and pixel.y:
        um = UM_PER_UNIT.get(pixel.unit or "", None)
        if um is not None:
            kwargs["resolution"] = (1e4 / (pixel.x * um), 1e4 / (pixel.y * um))
            kwargs["resolutionunit"] = "CENTIMETER"
        else:
            kwargs["resolution"] = (1.0 / pixel.x, 1.0 / pixel.y)
    return metadata, kwargs


def row_bands(result: Any, n_plane_axes: int) -> list[tuple[Any, int]]:
    """``(dask band, planes completed)`` for every plane of ``result`` in file order, each plane cut
    into bands of rows along its dask chunks in Y (``n_plane_axes`` leading plane axes, then Y).

    An uncompressed TIFF page is one contiguous run of rows, and tifffile writes the arrays of
    an iterator one after the other (checking only the total size), so the bands stream into
    the page: one band is in memory at a time, never a whole 2D output (10k x 10k px or more).
    """
    import numpy as np

    edges = np.cumsum((0, *result.chunks[n_plane_axes]))
    bands = []
    for index in np.ndindex(*result.shape[:n_plane_axes]):
        for k, (y0, y1) in enumerate(zip(edges[:-1], edges[1:])):
            bands.append((result[(*index, slice(int(y0), int(y1)))], int(k == len(edges) - 2)))
    return bands


class TiffWriter(ArrayWriter):
    """A TIFF (ImageJ, OME or plain) written page by page in bands of rows (:func:`row_bands`), or
    ``chunk_planes`` planes at a time: one band or plane group in memory at a time."""

    suffixes = (*TIFF_SUFFIXES, *OME_TIFF_SUFFIXES)
    planes_first = True

    def write(self, result: Any, out: Path, info: OutputInfo, runner: ComputeRunner) -> None:
        """``result``: dask, axes ``info.axes`` with Y, X[, S] last."""
        import numpy as np
        import tifffile

        axes, pixel = info.axes, info.pixel_size
        kind = tiff_kind(out, axes, result.dtype, info.source_imagej, pixel)
        metadata, kwargs = _tiff_metadata(kind, axes, pixel)
        plane_shape = result.shape[: sum(a not in "YXS" for a in axes)]

        def planes() -> Iterator[np.ndarray]:
            if not plane_shape or info.chunk_planes <= 1:  # page by page, each in bands of rows
                yield from runner.compute_in_order(row_bands(result, len(plane_shape)))
                return
            inner, step = plane_shape[-1], info.chunk_planes
            groups = [
                (result[outer + (slice(k, min(k + step, inner)),)], min(step, inner - k))
                for outer in np.ndindex(*plane_shape[:-1])
                for k in range(0, inner, step)
            ]
            for block in runner.compute_in_order(groups):
                yield from block

        nbytes = int(np.prod(result.shape, dtype=np.int64)) * result.dtype.itemsize
        protect = [info.provenance["source"]] if "source" in info.provenance else []
        flavour = {"bigtiff": nbytes > BIGTIFF_BYTES, "imagej": kind == "imagej", "ome": kind == "ome"}
        with atomic_path(out, protect=protect) as tmp, tifffile.TiffWriter(tmp, **flavour) as tif:
            tif.write(
                planes(), shape=result.shape, dtype=result.dtype, metadata=metadata,
                photometric="rgb" if axes.endswith("S") else "minisblack", **kwargs,
            )  # fmt: skip


__all__ = ["OME_TIFF_SUFFIXES", "TIFF_SUFFIXES", "TiffRegionReader", "TiffWriter", "open_tiff", "tiff_kind"]
