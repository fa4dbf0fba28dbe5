"""``napari-superres upscale IN OUT``: upscale a TIFF or zarr image, streaming it chunk by chunk.

The input is opened lazily (TIFF through ``tifffile``'s zarr view, zarr through
``dask.array.from_zarr``), upscaled with :func:`napari_superres.engine.infer.lazy.upscale_dask`
and written chunk by chunk, so host memory stays flat whatever the image size:

* ``OUT.zarr``: a zarr array (the installed zarr's default format) whose chunks are the
  upscaled input chunks; every task writes its own chunks.  Written to ``OUT.zarr.tmp``
  and renamed when complete.
* ``OUT.tif`` / ``OUT.ome.tif``: written plane by plane (``tifffile.TiffWriter`` fed by
  an iterator), to a temporary file renamed when complete.  One output plane is in
  memory at a time (times ``--chunk-planes``).

Pixel sizes are carried over with Y and X divided by the scale: TIFF resolution tags,
ImageJ ``unit``/``spacing``, OME ``PhysicalSizeX/Y/Z``, zarr attributes (``pixel_size``,
or OME-NGFF ``coordinateTransformations`` when reading).  Axes come from the file
(TIFF series axes, OME-NGFF axes, a zarr ``axes`` attribute) unless ``--axes`` is given.

``--scheduler ADDRESS`` runs the chunks on a ``dask.distributed`` cluster (workers need
the input and output paths on a shared file system).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..engine.options import DEFAULT_DEVICE, DEVICE_CHOICES, NORMALIZATION_MODES
from . import CLIError

#: Target Y/X chunk edge in *output* pixels when the input has no better chunking.
OUTPUT_CHUNK_EDGE = 2048
#: Local dask threads per device type.  CPU: 1 (torch already uses every core for one
#: chunk; a second chunk in flight only oversubscribes them, measured on 2 cores).
#: GPU: chunks are read, normalised and written on the host while the device computes.
LOCAL_WORKERS = {"cpu": 1, "cuda": 3, "mps": 2}
ZARR_SUFFIX = ".zarr"
TIFF_SUFFIXES = (".tif", ".tiff")
#: length units -> micrometres (TIFF resolution tags only know inch and centimetre)
_UM_PER_UNIT = {
    "µm": 1.0, "um": 1.0, "micron": 1.0, "micrometer": 1.0, "micrometre": 1.0, "\\u00B5m": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4,
    "m": 1e6, "meter": 1e6, "inch": 25400.0, "in": 25400.0,
}  # fmt: skip


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "upscale",
        help="upscale a TIFF or zarr image (streamed chunk by chunk)",
        description="Upscale a TIFF or zarr image with a super-resolution model, chunk by chunk "
        "(memory stays flat), keeping pixel-size metadata (divided by the scale).",
    )
    p.add_argument("input", help="input image: .tif/.tiff/.ome.tif file or .zarr directory")
    p.add_argument("output", help="output: .zarr directory, or .tif/.ome.tif file (written plane by plane)")
    p.add_argument("--model", "-m", default=None,
                   help="registered model name (see `napari-superres models`) or a .safetensors file "
                   "(default: the built-in default model)")  # fmt: skip
    p.add_argument("--scale", type=int, default=None, help="upscaling factor (fixed by the model; bicubic: any)")
    p.add_argument("--tile", type=int, default=None, help="tile edge in input pixels (default: automatic)")
    p.add_argument("--batch-size", type=int, default=None, help="tiles per network call (default: automatic)")
    p.add_argument("--axes", default=None, help="axis letters of the input, e.g. ZYX, TCYX, YXS (default: from the file)")
    p.add_argument("--device", default=DEFAULT_DEVICE, choices=DEVICE_CHOICES,
                   help=f"where the network runs (default: {DEFAULT_DEVICE})")  # fmt: skip
    p.add_argument("--normalization", choices=NORMALIZATION_MODES, default=None,
                   help="intensity normalisation (default: the model's)")  # fmt: skip
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="dask.distributed scheduler address (e.g. tcp://10.0.0.5:8786); default: local threads")  # fmt: skip
    p.add_argument("--chunk-planes", type=int, default=1, metavar="N",
                   help="planes per chunk along the innermost plane axis (default 1)")  # fmt: skip
    p.add_argument("--chunk-size", type=int, default=None, metavar="PX",
                   help=f"Y/X chunk edge in input pixels (default: about {OUTPUT_CHUNK_EDGE} output px)")  # fmt: skip
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local dask threads (default: 1 on CPU, 3 on a GPU); ignored with --scheduler")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


# --- metadata ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PixelSize:
    """Physical pixel size; ``x``/``y``/``z`` in ``unit`` (``None``: unknown)."""

    x: float | None = None
    y: float | None = None
    z: float | None = None
    unit: str | None = None

    def upscaled(self, scale: int) -> PixelSize:
        """Pixel size after upscaling Y and X by ``scale`` (Z unchanged)."""
        return replace(
            self,
            x=None if self.x is None else self.x / scale,
            y=None if self.y is None else self.y / scale,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass
class Source:
    """A lazily opened input image."""

    array: Any  # dask array
    axes: str | None
    pixel_size: PixelSize
    imagej: bool = False
    attrs: dict[str, Any] | None = None


# --- reading --------------------------------------------------------------------------------------
class TiffRegionReader:
    """Picklable lazy reader of one TIFF series: ``reader[slices]`` reads just that region.

    Pickles as its path only, so ``dask.distributed`` workers open the file themselves;
    each thread keeps its own open file (tifffile handles are not shared across threads).
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

        return np.asarray(self._zarr()[key])


def _chunk_edges(size: int, edge: int, minimum: int) -> tuple[int, ...]:
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


def _input_chunks(
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
            chunks.append(_chunk_edges(size, max(int(edge), 2 * halo), halo))
        elif letter == "S":
            chunks.append((size,))
        else:
            n = max(1, chunk_planes) if plane_axes and ax == plane_axes[-1] else 1
            chunks.append(_chunk_edges(size, n, 1))
    return tuple(chunks)


def _pixel_size_from_tiff(tif: Any) -> PixelSize:
    if tif.is_ome and tif.ome_metadata:
        try:
            root = ET.fromstring(tif.ome_metadata)
        except ET.ParseError:
            root = None
        pixels = next((el for el in root.iter() if el.tag.endswith("Pixels")), None) if root is not None else None
        if pixels is not None:
            def num(name: str) -> float | None:
                v = pixels.get(name)
                return float(v) if v not in (None, "") else None

            return PixelSize(num("PhysicalSizeX"), num("PhysicalSizeY"), num("PhysicalSizeZ"),
                             pixels.get("PhysicalSizeXUnit", "µm"))  # fmt: skip
    page = tif.series[0].keyframe
    try:
        xres, yres = page.resolution
    except (AttributeError, TypeError, ValueError):
        xres = yres = 0.0
    unit_code = int(getattr(page, "resolutionunit", 1))
    z = None
    unit = None
    if tif.is_imagej and tif.imagej_metadata:
        unit = tif.imagej_metadata.get("unit")
        z = tif.imagej_metadata.get("spacing")
        if unit == "\\u00B5m":
            unit = "µm"
    if unit is None:
        if unit_code == 3:  # centimetre: report micrometres
            return PixelSize(1e4 / xres if xres else None, 1e4 / yres if yres else None, z, "µm")
        if unit_code == 2:  # inch
            return PixelSize(25400.0 / xres if xres else None, 25400.0 / yres if yres else None, z, "µm")
        if xres in (0, 1) and yres in (0, 1):
            return PixelSize(z=z)
    return PixelSize(1.0 / xres if xres else None, 1.0 / yres if yres else None, z, unit)


def open_tiff(path: Path) -> tuple[TiffRegionReader, str | None, PixelSize, bool, tuple[int, ...] | None]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            reader = TiffRegionReader(str(path), series.shape, series.dtype)
            axes = series.axes.upper()
            pixel = _pixel_size_from_tiff(tif)
            imagej = bool(tif.is_imagej)
            src_chunks = None
            try:
                with series.aszarr() as store:
                    import zarr

                    src_chunks = tuple(zarr.open(store, mode="r").chunks)
            except Exception:  # noqa: BLE001 - chunking is only a hint
                src_chunks = None
    except (tifffile.TiffFileError, OSError, IndexError) as e:
        raise CLIError(f"cannot read TIFF {path}: {e}") from e
    if "Y" not in axes or "X" not in axes or len(set(axes)) != len(axes):
        axes = None
    return reader, axes, pixel, imagej, src_chunks


def open_zarr(path: Path) -> tuple[Any, str | None, PixelSize, dict[str, Any]]:
    """Open a zarr array (or the first level of an OME-NGFF group); returns (zarr array, axes, pixel size, attrs)."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as e:  # noqa: BLE001 - zarr raises several types for "not a zarr store"
        raise CLIError(f"cannot open zarr {path}: {e}") from e
    axes = None
    pixel = PixelSize()
    if isinstance(node, zarr.Group):
        attrs = dict(node.attrs)
        multiscales = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
        if multiscales:
            ms = multiscales[0]
            dataset = ms["datasets"][0]
            names = [a["name"] if isinstance(a, dict) else str(a) for a in ms.get("axes", [])]
            units = [a.get("unit") if isinstance(a, dict) else None for a in ms.get("axes", [])]
            array = node[dataset["path"]]
            if names:
                axes = "".join("S" if n.lower() == "s" else n.upper()[0] for n in names)
            scales = next(
                (t["scale"] for t in dataset.get("coordinateTransformations", []) if t.get("type") == "scale"), None
            )
            if scales and names:
                by_name = dict(zip(axes or "", scales))
                unit = next((u for u, n in zip(units, axes or "") if n in "YX" and u), None)
                pixel = PixelSize(by_name.get("X"), by_name.get("Y"), by_name.get("Z"), unit)
        else:
            keys = list(node.array_keys())
            if len(keys) != 1:
                raise CLIError(
                    f"{path} is a zarr group with {len(keys)} arrays {keys[:5]}; pass the array's path, e.g. {path}/{keys[0] if keys else 'ARRAY'}"
                )
            array = node[keys[0]]
    else:
        array = node
        attrs = {}
    arr_attrs = dict(array.attrs)
    if isinstance(arr_attrs.get("axes"), str):
        axes = arr_attrs["axes"].upper()
    if isinstance(arr_attrs.get("pixel_size"), dict):
        pixel = PixelSize(**{k: arr_attrs["pixel_size"].get(k) for k in ("x", "y", "z", "unit")})
    if axes is not None and (len(axes) != array.ndim or "Y" not in axes or "X" not in axes):
        axes = None
    return array, axes, pixel, {**attrs, **arr_attrs}


# --- writing --------------------------------------------------------------------------------------
def _temp_dir_for(out: Path) -> Path:
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    return tmp


def _replace(tmp: Path, out: Path) -> None:
    """Move ``tmp`` to ``out``; an existing ``out`` (``--overwrite``) is removed only after the move."""
    if out.exists():
        old = out.with_name(out.name + ".old")
        if old.exists():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, out)


def _write_block(block: Any, *, target: Any, block_info: Any = None) -> Any:
    """Store one computed output chunk into its region of the zarr array (a dask task)."""
    import numpy as np

    target[tuple(slice(a, b) for a, b in block_info[0]["array-location"])] = block
    return np.zeros((1,) * block.ndim, dtype=np.uint8)


def write_zarr(result: Any, out: Path, attrs: dict[str, Any], runner: ComputeRunner) -> None:
    import zarr

    tmp = _temp_dir_for(out)
    chunks = tuple(c[0] for c in result.chunks)
    target = zarr.open_array(str(tmp), mode="w", shape=result.shape, chunks=chunks, dtype=result.dtype)
    target.attrs.update(attrs)
    written = result.map_blocks(
        _write_block, target=target, dtype="uint8", chunks=tuple((1,) * len(c) for c in result.chunks)
    )
    try:
        runner.compute_blocks(written)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace(tmp, out)


def _tiff_kind(out: Path, axes: str, dtype: Any, source_imagej: bool, pixel: PixelSize) -> str:
    """``"ome"``, ``"imagej"`` or ``"shaped"`` TIFF flavour for the output."""
    import numpy as np

    if out.name.lower().endswith((".ome.tif", ".ome.tiff")):
        return "ome"
    letters = [a for a in "TZCYXS" if a in axes]
    imagej_ok = "".join(letters) == axes and np.dtype(dtype) in (np.uint8, np.uint16, np.float32)
    if imagej_ok and (source_imagej or pixel.unit):
        return "imagej"
    return "shaped"


def write_tiff(
    result: Any, axes: str, out: Path, pixel: PixelSize, source_imagej: bool, runner: ComputeRunner,
    chunk_planes: int,
) -> None:  # fmt: skip
    """Write ``result`` (dask, axes with Y, X[, S] last) plane by plane to a TIFF via a temp file."""
    import numpy as np
    import tifffile

    kind = _tiff_kind(out, axes, result.dtype, source_imagej, pixel)
    n_plane_axes = sum(a not in "YXS" for a in axes)
    plane_shape = result.shape[:n_plane_axes]
    kwargs: dict[str, Any] = {}
    metadata: dict[str, Any] = {"axes": axes}
    if kind == "ome":
        for letter, value in (("X", pixel.x), ("Y", pixel.y), ("Z", pixel.z)):
            if value is not None:
                metadata[f"PhysicalSize{letter}"] = value
                if pixel.unit:
                    metadata[f"PhysicalSize{letter}Unit"] = pixel.unit
        if pixel.x and pixel.y:
            um = _UM_PER_UNIT.get(pixel.unit or "µm", 1.0)
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
        um = _UM_PER_UNIT.get(pixel.unit or "", None)
        if um is not None:
            kwargs["resolution"] = (1e4 / (pixel.x * um), 1e4 / (pixel.y * um))
            kwargs["resolutionunit"] = "CENTIMETER"
        else:
            kwargs["resolution"] = (1.0 / pixel.x, 1.0 / pixel.y)

    def planes() -> Iterator[np.ndarray]:
        if not plane_shape:  # one 2D (or RGB) page
            yield from runner.compute_in_order([(result, 1)])
            return
        inner, step = plane_shape[-1], max(1, chunk_planes)
        groups = [
            (result[outer + (slice(k, min(k + step, inner)),)], min(step, inner - k))
            for outer in np.ndindex(*plane_shape[:-1])
            for k in range(0, inner, step)
        ]
        for block in runner.compute_in_order(groups):
            yield from block

    tmp = out.with_name(f".{out.name}.tmp")
    nbytes = int(np.prod(result.shape, dtype=np.int64)) * result.dtype.itemsize
    try:
        with tifffile.TiffWriter(tmp, bigtiff=nbytes > 2**32 - 2**25, imagej=kind == "imagej", ome=kind == "ome") as tif:
            tif.write(
                planes(), shape=result.shape, dtype=result.dtype, metadata=metadata,
                photometric="rgb" if axes.endswith("S") else "minisblack", **kwargs,
            )  # fmt: skip
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    _replace(tmp, out)


# --- running --------------------------------------------------------------------------------------
class ComputeRunner:
    """Computes dask work locally (threads) or on a ``dask.distributed`` client, with a tqdm bar."""

    def __init__(self, client: Any = None, *, quiet: bool = False, workers: int = 1) -> None:
        self.client = client
        self.quiet = quiet
        self.workers = workers

    def _bar(self, total: int, unit: str) -> Any:
        from tqdm import tqdm

        return tqdm(total=total, unit=unit, disable=self.quiet, file=sys.stderr, dynamic_ncols=True)

    def compute_blocks(self, written: Any) -> None:
        """Compute a dask array of per-chunk write tasks; the bar counts chunks."""
        blocks = written.to_delayed().ravel().tolist()
        with self._bar(len(blocks), "chunk") as bar:
            if self.client is not None:
                from distributed import as_completed

                futures = self.client.compute(blocks)
                for future in as_completed(futures):
                    future.result()  # re-raise a task's error here
                    bar.update(1)
                return
            import dask
            from dask.callbacks import Callback

            name = written.name

            def posttask(key, result, dsk, state, worker_id):  # noqa: ANN001
                if isinstance(key, tuple) and key and key[0] == name:
                    bar.update(1)

            with Callback(posttask=posttask):
                dask.compute(*blocks, scheduler="threads", num_workers=self.workers)

    def compute_in_order(self, groups: list[tuple[Any, int]]) -> Iterator[Any]:
        """Compute ``(dask array, planes in it)`` one after the other, yielding numpy results in order."""
        import dask

        with self._bar(sum(n for _, n in groups), "plane") as bar:
            for group, n in groups:
                if self.client is not None:
                    block = self.client.compute(group).result()
                else:
                    (block,) = dask.compute(group, scheduler="threads", num_workers=self.workers)
                bar.update(n)
                yield block


def _output_kind(out: Path) -> str:
    name = out.name.lower()
    if name.endswith(ZARR_SUFFIX):
        return "zarr"
    if name.endswith(TIFF_SUFFIXES):
        return "tiff"
    raise CLIError(f"output {out} must end in .zarr, .tif, .tiff or .ome.tif")


def open_source(path: Path, *, scale: int, halo: int, chunk_planes: int, chunk_size: int | None,
                axes: str | None) -> Source:  # fmt: skip
    """Open ``path`` lazily as a dask array chunked for upscaling."""
    import dask.array as da
    from dask.base import tokenize

    from ..engine.layout import parse_axes

    if not path.exists():
        raise CLIError(f"input not found: {path}")
    if path.is_dir() or path.name.lower().endswith(ZARR_SUFFIX):
        zarray, file_axes, pixel, attrs = open_zarr(path)
        letters = parse_axes(tuple(zarray.shape), axes or file_axes).axes
        chunks = _input_chunks(
            tuple(zarray.shape), letters, scale=scale, halo=halo, chunk_planes=chunk_planes,
            chunk_size=chunk_size, source_chunks=tuple(zarray.chunks),
        )  # fmt: skip
        array = da.from_zarr(zarray, chunks=chunks)
        return Source(array, axes or file_axes, pixel, attrs=attrs)
    if not path.name.lower().endswith(TIFF_SUFFIXES):
        raise CLIError(f"input {path} must be a .tif/.tiff file or a .zarr directory")
    reader, file_axes, pixel, imagej, src_chunks = open_tiff(path)
    # planar RGB (samples stored as separate planes, e.g. "SYX"): read as is, then samples last
    order = list(range(reader.ndim))
    if axes is None and file_axes and "S" in file_axes and not file_axes.endswith("S"):
        s = file_axes.index("S")
        order = order[:s] + order[s + 1 :] + [s]
        file_axes = "".join(file_axes[i] for i in order)
    shape = tuple(reader.shape[i] for i in order)
    letters = parse_axes(shape, axes or file_axes).axes
    chunks = _input_chunks(
        shape, letters, scale=scale, halo=halo, chunk_planes=chunk_planes, chunk_size=chunk_size,
        source_chunks=tuple(src_chunks[i] for i in order) if src_chunks else None,
    )  # fmt: skip
    file_chunks = [()] * reader.ndim
    for pos, i in enumerate(order):
        file_chunks[i] = chunks[pos]
    name = "tiff-" + tokenize(str(path.resolve()), path.stat().st_mtime_ns, chunks)
    array = da.from_array(reader, chunks=tuple(file_chunks), asarray=False, fancy=False, name=name, lock=False)
    if order != list(range(reader.ndim)):
        array = array.transpose(order)
    return Source(array, axes or file_axes, pixel, imagej=imagej)


def run(args: argparse.Namespace) -> int:
    src_path, out = Path(args.input), Path(args.output)
    if not src_path.exists():
        raise CLIError(f"input not found: {src_path}")
    out_kind = _output_kind(out)
    if out.exists() and not args.overwrite:
        raise CLIError(f"output {out} exists; pass --overwrite to replace it")
    if out.resolve() == src_path.resolve():
        raise CLIError("output must differ from the input")
    for name in ("tile", "batch_size", "chunk_size", "workers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")

    from ..engine.registry import Engine
    from ..engine.infer.lazy import upscale_dask
    from ..engine.normalization import normalization_spec

    try:
        engine = Engine(device=args.device)
    except RuntimeError as e:  # e.g. --device cuda without a GPU
        raise CLIError(str(e)) from e
    model = engine.prepare(args.model)
    scale = model.scale or args.scale or 2
    if model.scale is not None and args.scale is not None and args.scale != model.scale:
        raise CLIError(f"model {model.name!r} upscales x{model.scale}; it cannot upscale x{args.scale}")
    halo = max(model.receptive_field, 2)
    source = open_source(
        src_path, scale=scale, halo=halo, chunk_planes=args.chunk_planes, chunk_size=args.chunk_size,
        axes=args.axes,
    )  # fmt: skip

    client = None
    if args.scheduler:
        try:
            from distributed import Client
        except ImportError as e:
            raise CLIError("--scheduler needs the 'distributed' package: pip install distributed") from e
        try:
            client = Client(args.scheduler, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise CLIError(f"cannot connect to the dask scheduler at {args.scheduler}: {e}") from e
    try:
        result = upscale_dask(
            source.array, model, engine=engine, scale=args.scale, axes=source.axes, tile=args.tile,
            batch_size=args.batch_size,
            normalization=normalization_spec(args.normalization) if args.normalization else None,
            device=args.device if client is not None else None,
        )  # fmt: skip
        from ..engine.layout import parse_axes

        info = parse_axes(source.array.shape, source.axes)
        pixel = source.pixel_size.upscaled(scale)
        workers = args.workers or LOCAL_WORKERS.get(engine.device.type, 2)
        runner = ComputeRunner(client, quiet=args.quiet, workers=workers)
        if not args.quiet:
            print(f"{src_path} {source.array.shape} {source.array.dtype} axes {info.axes} -> {out} "
                  f"{result.shape}, model {model.describe()}, {result.npartitions} chunks", file=sys.stderr)  # fmt: skip
        if out_kind == "zarr":
            attrs = {k: v for k, v in (source.attrs or {}).items() if k not in ("multiscales", "ome")}
            attrs.update({
                "axes": info.axes, "pixel_size": pixel.to_dict(),
                "napari_superres": {"model": model.name, "scale": scale, "source": str(src_path)},
            })  # fmt: skip
            write_zarr(result, out, attrs, runner)
        else:
            order = info.plane_axes + (info.y, info.x) + ((info.rgb,) if info.rgb is not None else ())
            letters = "".join(info.axes[i] for i in order)
            if math.prod(result.shape) * result.dtype.itemsize > 2**36:
                print("warning: writing a >64 GB TIFF; a .zarr output is faster and chunked", file=sys.stderr)
            write_tiff(result.transpose(order), letters, out, pixel, source.imagej, runner, args.chunk_planes)
    finally:
        if client is not None:
            client.close()
    return 0
