"""OME-Zarr (OME-NGFF 0.5, or 0.4 on request) output of an upscaled image: axes, physical scale, translation, pyramid.

``napari-superres upscale IN OUT.ome.zarr`` writes a multiscale image group
(:class:`OmeZarrWriter`, registered for ``.ome.zarr``; plain ``.zarr`` stays a plain zarr
array for dask pipelines) that napari's OME-Zarr reader (napari-ome-zarr), Fiji
(OME-Zarr / N5 readers) and the ``ome-zarr`` package open at the right physical size:

* axes in NGFF order (``t``, ``c``, ``z``, ``y``, ``x``; RGB samples become ``c``), with
  types (time, channel, space) and the input's units (``µm`` -> ``micrometer``...);
* written by ome-zarr-py's ``write_multiscale`` (NGFF 0.5 on zarr v3 by default; 0.4 on
  zarr v2 with ``--ngff 0.4`` for readers that predate 0.5);
* level 0 is the upscaled image, written chunk by chunk as it is computed; levels 1..n
  halve Y and X (2x2 mean; a few levels, down to about :data:`MIN_LEVEL_EDGE` px),
  computed from level 0's chunks in the same dask computation (the network never runs twice);
* each level's ``scale`` and ``translation`` place its pixel centres so that every level,
  and the input, cover the same physical field of view.

Pixel-centre alignment (NGFF: index ``i`` sits at ``t + s*i``, the pixel covers
``[t + s*(i - 1/2), t + s*(i + 1/2)]``).  Upscaling by ``f`` splits input pixel ``i`` into
``f`` output pixels of size ``s/f``; output pixel ``j`` covers input index
``[-1/2 + j/f, -1/2 + (j+1)/f]``, so its centre is at input index ``-1/2 + (j + 1/2)/f``
and in world units ``t + s*(-1/2 + 1/(2f)) + (s/f)*j``.  Hence

    s' = s / f,      t' = t - (s/2) * (1 - 1/f)

(the same shift as the napari layers: ``_napari/layers.py``).  A pyramid level that
averages ``2^k x 2^k`` output pixels has ``s_k = 2^k s'`` and ``t_k = t' + (s'/2)(2^k - 1)``
(its centre is the mean of the centres it averages).  Without a known pixel size the
input's pixel is the unit (``s = 1``, ``t = 0``), so the result still overlays the input.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ImageFileError
from .atomic import atomic_path
from .metadata import UNIT_SYMBOLS, unit_symbol
from .writer_base import ArrayWriter, OutputInfo
from .zarr_store import output_attrs

if TYPE_CHECKING:  # pragma: no cover
    from .runner import ComputeRunner

OME_ZARR_SUFFIX = ".ome.zarr"
#: NGFF version written by default (zarr v3 storage); ``"0.4"`` (zarr v2) for older readers.
NGFF_VERSION = "0.5"
#: Versions :class:`OmeZarrWriter` writes (``napari-superres upscale --ngff``).
NGFF_VERSIONS = ("0.5", "0.4")
#: Pyramid levels stop when Y or X would fall below this many pixels (level 0 always written).
MIN_LEVEL_EDGE = 64
#: At most this many levels, level 0 included.
MAX_LEVELS = 4
#: Our unit spellings -> NGFF (UDUNITS-2) unit names.
NGFF_UNITS = {
    "µm": "micrometer", "um": "micrometer", "\\u00B5m": "micrometer", "micron": "micrometer",
    "micrometer": "micrometer", "micrometre": "micrometer", "nm": "nanometer", "nanometer": "nanometer",
    "mm": "millimeter", "millimeter": "millimeter", "cm": "centimeter", "centimeter": "centimeter",
    "m": "meter", "meter": "meter", "angstrom": "angstrom", "Å": "angstrom", "inch": "inch", "in": "inch",
    "pm": "picometer", "picometer": "picometer",
}  # fmt: skip
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
_NGFF_ORDER = "tczyx"


def ngff_axes_order(letters: str) -> tuple[list[int], str]:
    """Transpose order putting ``letters``' axes in NGFF order, and the NGFF names (``"YXS"`` -> ``[2, 0, 1], "cyx"``).

    ``S`` (RGB samples) is the channel axis; letters other than T, C, Z, Y, X, S raise
    :class:`~napari_superres.io.ImageFileError` (NGFF has no place for them).
    """
    names = ["c" if a.upper() == "S" else a.lower() for a in letters]
    bad = [letters[i] for i, n in enumerate(names) if n not in _AXIS_TYPES]
    if bad or len(set(names)) != len(names):
        raise ImageFileError(
            f"axes {letters!r} cannot be written as OME-NGFF (it has axes t, c, z, y, x once each; "
            f"RGB samples count as c); write a .zarr or .tif instead"
        )
    order = sorted(range(len(names)), key=lambda i: _NGFF_ORDER.index(names[i]))
    return order, "".join(names[i] for i in order)


def ngff_unit(unit: str | None) -> str | None:
    """The NGFF name of a length unit (``"µm"`` -> ``"micrometer"``); ``None`` when unknown."""
    if not unit:
        return None
    return NGFF_UNITS.get(unit, NGFF_UNITS.get(unit.lower()))


def upscaled_transform(scale: float, translation: float, factor: int) -> tuple[float, float]:
    """``(s', t')`` of an axis upscaled ``factor`` times: ``s/f`` and ``t - (s/2)(1 - 1/f)`` (module doc)."""
    return scale / factor, translation - scale / 2 * (1 - 1 / factor)


def level_transform(scale: float, translation: float, level: int) -> tuple[float, float]:
    """``(s_k, t_k)`` of pyramid level ``k`` (``2^k`` pixels averaged) from level 0's ``(s, t)``."""
    k = 2**level
    return scale * k, translation + scale / 2 * (k - 1)


def source_transforms(attrs: dict[str, Any]) -> dict[str, tuple[float, float, str | None]]:
    """Per NGFF axis name, ``(scale, translation, unit)`` of an OME-NGFF input's level 0; ``{}`` if none."""
    multiscales = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    try:
        ms = multiscales[0]
        names = [a["name"] if isinstance(a, dict) else str(a) for a in ms["axes"]]
        units = [a.get("unit") if isinstance(a, dict) else None for a in ms["axes"]]
        scale = [1.0] * len(names)
        shift = [0.0] * len(names)
        for transforms in (
            ms["datasets"][0].get("coordinateTransformations", []),
            ms.get("coordinateTransformations", []),
        ):  # dataset first, then the whole image
            for t in transforms:
                if t.get("type") == "scale":
                    shift = [sh * s for sh, s in zip(shift, t["scale"])]
                    scale = [a * b for a, b in zip(scale, t["scale"])]
                elif t.get("type") == "translation":
                    shift = [a + b for a, b in zip(shift, t["translation"])]
    except (KeyError, IndexError, TypeError):
        return {}
    return {n.lower(): (float(s), float(t), u) for n, s, t, u in zip(names, scale, shift, units)}


def output_transforms(info: OutputInfo, names: str, factor: int) -> tuple[list[float], list[float], dict[str, str]]:
    """Level-0 ``scale``, ``translation`` and units (by axis name) of the output in NGFF order ``names``."""
    source = source_transforms(info.source_attrs)
    px = info.pixel_size  # already divided by the factor (Y, X)
    unit = ngff_unit(px.unit)
    scales, shifts, units = [], [], {}
    for name in names:
        if name in source:
            s, t, u = source[name]
            if name in "yx":
                s, t = upscaled_transform(s, t, factor)
            if u:
                units[name] = u
        elif name in "yx":
            known = px.y if name == "y" else px.x
            s, t = upscaled_transform(known * factor if known else 1.0, 0.0, factor)
            if known and unit:
                units[name] = unit
        elif name == "z" and px.z:
            s, t = float(px.z), 0.0
            if unit:
                units[name] = unit
        else:
            s, t = 1.0, 0.0
        scales.append(float(s))
        shifts.append(float(t))
    return scales, shifts, units


def pyramid_levels(shape_yx: tuple[int, int]) -> int:
    """How many levels to write (1 = level 0 only): halve until an edge would drop below MIN_LEVEL_EDGE."""
    levels = 1
    h, w = shape_yx
    while levels < MAX_LEVELS and min(h, w) // 2 >= MIN_LEVEL_EDGE:
        h, w = h // 2, w // 2
        levels += 1
    return levels


def _downsample(level: Any, y: int, x: int, dtype: Any) -> Any:
    """2x2 mean of a dask array along axes ``y``, ``x`` (odd edges trimmed), back in ``dtype``."""
    import dask.array as da
    import numpy as np

    down = da.coarsen(np.mean, level.astype(np.float64), {y: 2, x: 2}, trim_excess=True)
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        down = da.clip(da.round(down), info.min, info.max)
    elif np.dtype(dtype) == np.bool_:
        down = down >= 0.5
    return down.astype(dtype)


class OmeZarrWriter(ArrayWriter):
    """OME-NGFF multiscale image written by ome-zarr-py: 0.5 (zarr v3) by default, 0.4 (zarr v2) on request.

    Every level is a dask array: level 0 the network's result, level ``k`` the 2x2 mean of
    level ``k - 1``; all levels are stored in one dask computation, so each output chunk is
    computed once (the network never runs twice) and only the chunks in flight are in memory.
    """

    suffixes = (OME_ZARR_SUFFIX,)

    def __init__(self, ngff_version: str = NGFF_VERSION) -> None:
        if ngff_version not in NGFF_VERSIONS:
            raise ValueError(
                f"OME-NGFF version {ngff_version!r} cannot be written; choose {' or '.join(NGFF_VERSIONS)}"
            )
        self.ngff_version = ngff_version

    def write(self, result: Any, out: Path, info: OutputInfo, runner: ComputeRunner) -> None:
        import warnings

        import zarr

        try:
            from ome_zarr.format import format_from_version
            from ome_zarr.writer import write_multiscale
        except ImportError:
            raise ImageFileError(
                f"writing {out.name} (OME-Zarr) needs the ome-zarr package: pip install 'napari-deep-superres[ome-zarr]'"
            ) from None

        fmt = format_from_version(self.ngff_version)
        order, names = ngff_axes_order(info.axes)
        result = result.transpose(order)
        factor = int(info.provenance.get("scale", 1) or 1)
        scales, shifts, units = output_transforms(info, names, factor)
        y, x = names.index("y"), names.index("x")
        pyramid = pyramid_of(result, y, x, pyramid_levels((result.shape[y], result.shape[x])))
        axes = [{"name": n, "type": _AXIS_TYPES[n], **({"unit": units[n]} if n in units else {})} for n in names]
        protect = [info.provenance["source"]] if "source" in info.provenance else []
        with atomic_path(out, protect=protect) as tmp:
            root = zarr.open_group(str(tmp), mode="w", zarr_format=fmt.zarr_format)
            with warnings.catch_warnings():
                # ome-zarr >= 0.14 prefers its `scale` argument, which has no translation: NGFF's
                # per-level coordinateTransformations are the only way to keep pixel centres in place
                warnings.filterwarnings("ignore", message=".*coordinate_transformations.*", category=DeprecationWarning)
                stores = write_multiscale(
                    pyramid, root, fmt=fmt, axes=axes, name=Path(info.provenance.get("source", out)).stem,
                    coordinate_transformations=[_transforms(k, scales, shifts, y, x) for k in range(len(pyramid))],
                    compute=False,
                    metadata={"method": "mean of 2x2 pixels per level", "napari_superres": dict(info.provenance)},
                )  # fmt: skip
            runner.compute_stores(stores)
            extra = output_attrs(info)  # reopened: the metadata may have been written by a dask task
            zarr.open_group(str(tmp), mode="r+").attrs.update(
                {"napari_superres": extra.get("napari_superres", {}), "pixel_size": extra["pixel_size"]}
            )


def pyramid_of(level0: Any, y: int, x: int, n_levels: int) -> list[Any]:
    """``[level0, level1, ...]`` (dask): each level the 2x2 mean of the one before, in ``level0``'s chunks (at most)."""
    chunks = tuple(c[0] for c in level0.chunks)
    levels = [level0.rechunk(chunks)]  # regular chunks: one zarr chunk per dask chunk
    for _ in range(1, n_levels):
        down = _downsample(levels[-1], y, x, level0.dtype)
        levels.append(down.rechunk(tuple(min(c, s) for c, s in zip(chunks, down.shape))))
    return levels


def _transforms(level: int, scales: list[float], shifts: list[float], y: int, x: int) -> list[dict[str, Any]]:
    """NGFF ``coordinateTransformations`` of pyramid ``level``: its scale, then its translation."""
    scale, shift = list(scales), list(shifts)
    for axis in (y, x):
        scale[axis], shift[axis] = level_transform(scales[axis], shifts[axis], level)
    return [{"type": "scale", "scale": scale}, {"type": "translation", "translation": shift}]


def read_ome_zarr(path: str | Path) -> tuple[Any, str, list[float], list[float], dict[str, str]]:
    """Level 0 of an OME-Zarr image with the ``ome-zarr`` reader: ``(dask array, axes letters, scale, translation, units)``.

    Axes letters are upper case (``"CYX"``); scale/translation per axis of level 0
    (dataset and image-level transforms combined); units by letter.
    """
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    location = parse_url(str(path), mode="r")
    if location is None:
        raise ImageFileError(f"{path} is not an OME-Zarr image (no zarr group found)")
    node = next((n for n in Reader(location)() if n.load(Multiscales) is not None), None)
    if node is None:
        raise ImageFileError(f"{path} has no OME-NGFF multiscales image")
    names = [a["name"] if isinstance(a, dict) else str(a) for a in node.metadata["axes"]]
    transforms = source_transforms(node.zarr.root_attrs)
    missing = (1.0, 0.0, None)
    scale = [transforms.get(n.lower(), missing)[0] for n in names]
    shift = [transforms.get(n.lower(), missing)[1] for n in names]
    units = {n.upper(): transforms[n.lower()][2] for n in names if transforms.get(n.lower(), missing)[2]}
    return node.data[0], "".join(n.upper() for n in names), scale, shift, units


__all__ = [
    "MIN_LEVEL_EDGE",
    "UNIT_SYMBOLS",
    "NGFF_VERSION",
    "NGFF_VERSIONS",
    "OME_ZARR_SUFFIX",
    "OmeZarrWriter",
    "level_transform",
    "ngff_axes_order",
    "ngff_unit",
    "output_transforms",
    "pyramid_of",
    "pyramid_levels",
    "read_ome_zarr",
    "source_transforms",
    "unit_symbol",
    "upscaled_transform",
]
