"""The output-format base types: what a writer is given (:class:`OutputInfo`) and what it is
(:class:`ArrayWriter`).  Format modules (``tiff``, ``zarr_store``, ``ome_zarr``) subclass
:class:`ArrayWriter` from here; the registry that picks one by suffix is
:mod:`napari_superres.io.writers`, which imports the formats (so they never import it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .metadata import PixelSize

if TYPE_CHECKING:  # pragma: no cover
    from .runner import ComputeRunner


@dataclass
class OutputInfo:
    """What a writer needs besides the pixels.

    ``axes``: letters of ``result``'s dimensions (e.g. ``"ZYX"``, ``"YXS"``), in the
    result's own order; ``pixel_size``: already divided by the scale; ``source_attrs``:
    the input's zarr attributes to carry over (may be empty); ``provenance``: model name,
    scale, source path (stored by formats that have free-form metadata);
    ``source_imagej``: the input was an ImageJ TIFF; ``chunk_planes``: planes computed
    together by plane-by-plane writers.
    """

    axes: str
    pixel_size: PixelSize = field(default_factory=PixelSize)
    source_attrs: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    source_imagej: bool = False
    chunk_planes: int = 1


class ArrayWriter:
    """Base class of output formats (see the module docstring)."""

    #: lower-case suffixes of the paths this writer handles, e.g. ``(".zarr",)``
    suffixes: tuple[str, ...] = ()
    #: whether the writer wants the result with plane axes first and Y, X (, S) last
    planes_first: bool = False

    def handles(self, out: Path) -> int:
        """Length of the longest of :attr:`suffixes` that ``out`` ends with (0: not handled)."""
        name = out.name.lower()
        return max((len(s) for s in self.suffixes if name.endswith(s)), default=0)

    def write(self, result: Any, out: Path, info: OutputInfo, runner: ComputeRunner) -> None:
        """Compute ``result`` (a dask array) through ``runner`` and write it to ``out`` atomically."""
        raise NotImplementedError


__all__ = ["ArrayWriter", "OutputInfo"]
