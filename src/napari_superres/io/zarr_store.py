"""zarr in and out: open a zarr array (or the first level of an OME-NGFF group); write a dask result chunk by chunk."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ImageFileError
from .atomic import atomic_path
from .metadata import PixelSize, pixel_size_from_attrs, unit_symbol
from .writer_base import ArrayWriter, OutputInfo

if TYPE_CHECKING:  # pragma: no cover
    from .runner import ComputeRunner

ZARR_SUFFIX = ".zarr"


def open_zarr(path: Path) -> tuple[Any, str | None, PixelSize, dict[str, Any]]:
    """Open a zarr array (or the first level of an OME-NGFF group); returns (zarr array, axes, pixel size, attrs)."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as e:
        raise ImageFileError(
            f"cannot open zarr {path}: {e} (inputs are .tif/.tiff files or .zarr arrays/groups; for an array inside "
            "a group pass its path, e.g. data.zarr/raw)"
        ) from e
    axes = None
    pixel = PixelSize()
    if isinstance(node, zarr.Group):
        attrs = dict(node.attrs)
        multiscales = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
        if multiscales:
            try:
                ms = multiscales[0]
                dataset = ms["datasets"][0]
                names = [a["name"] if isinstance(a, dict) else str(a) for a in ms.get("axes", [])]
                units = [a.get("unit") if isinstance(a, dict) else None for a in ms.get("axes", [])]
                array = node[dataset["path"]]
            except (KeyError, IndexError, TypeError) as e:
                raise ImageFileError(f"{path}: damaged OME-NGFF multiscales metadata ({e!r})") from e
            if names:
                axes = "".join("S" if n.lower() == "s" else n.upper()[0] for n in names)
            scales = next(
                (t["scale"] for t in dataset.get("coordinateTransformations", []) if t.get("type") == "scale"), None
            )
            if scales and names:
                by_name = dict(zip(axes or "", scales))
                unit = next((u for u, n in zip(units, axes or "") if n in "YX" and u), None)
                unit = unit_symbol(unit)  # NGFF "micrometer" -> "µm" (OME-TIFF outputs need the symbol)
                pixel = PixelSize(by_name.get("X"), by_name.get("Y"), by_name.get("Z"), unit)
        else:
            keys = list(node.array_keys())
            if len(keys) != 1:
                raise ImageFileError(
                    f"{path} is a zarr group with {len(keys)} arrays {keys[:5]}; pass the array's path, e.g. "
                    f"{path}/{keys[0] if keys else 'ARRAY'}"
                )
            array = node[keys[0]]
    else:
        array = node
        attrs = {}
    arr_attrs = dict(array.attrs)
    if isinstance(arr_attrs.get("axes"), str):
        axes = arr_attrs["axes"].upper()
    pixel = pixel_size_from_attrs(arr_attrs) or pixel
    if axes is not None and (len(axes) != array.ndim or "Y" not in axes or "X" not in axes):
        axes = None
    return array, axes, pixel, {**attrs, **arr_attrs}


def write_block(block: Any, *, target: Any, block_info: Any = None) -> Any:
    """Store one computed output chunk into its region of the zarr array (a dask task)."""
    import numpy as np

    target[tuple(slice(a, b) for a, b in block_info[0]["array-location"])] = block
    return np.zeros((1,) * block.ndim, dtype=np.uint8)


def write_chunks(result: Any, target: Any, runner: ComputeRunner) -> None:
    """Compute ``result`` (dask) into the zarr array ``target`` (same shape), one task per chunk.

    Every task writes whole zarr chunks when ``target``'s chunks are ``result``'s (regular)
    chunks, so tasks never share a chunk.  Reusable by any zarr-based writer (OME-NGFF level 0).
    """
    written = result.map_blocks(
        write_block, target=target, dtype="uint8", chunks=tuple((1,) * len(c) for c in result.chunks)
    )
    runner.compute_blocks(written)


def output_attrs(info: OutputInfo) -> dict[str, Any]:
    """The attributes our zarr output carries: the source's (less OME-NGFF), axes, pixel size, provenance."""
    attrs = {k: v for k, v in info.source_attrs.items() if k not in ("multiscales", "ome")}
    attrs.update({"axes": info.axes, "pixel_size": info.pixel_size.to_dict(), "napari_superres": dict(info.provenance)})
    return attrs


class ZarrWriter(ArrayWriter):
    """A plain zarr array (the installed zarr's default format) whose chunks are the result's chunks."""

    suffixes = (ZARR_SUFFIX,)

    def write(self, result: Any, out: Path, info: OutputInfo, runner: ComputeRunner) -> None:
        import zarr

        protect = [info.provenance["source"]] if "source" in info.provenance else []
        with atomic_path(out, protect=protect) as tmp:
            chunks = tuple(c[0] for c in result.chunks)
            target = zarr.open_array(str(tmp), mode="w", shape=result.shape, chunks=chunks, dtype=result.dtype)
            target.attrs.update(output_attrs(info))
            write_chunks(result, target, runner)


__all__ = ["ZARR_SUFFIX", "ZarrWriter", "open_zarr", "output_attrs", "write_block", "write_chunks"]
