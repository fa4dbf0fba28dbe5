"""What :func:`~napari_superres.engine.infer.planning.plan` returns: an :class:`UpscaleJob`, a request checked
against one image and one model, with every choice made (scale, axes, tile, batch, backend, precision)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..layout import AxesInfo
from ..nets.conditioning import DegradationCondition
from ..request import UpscaleRequest
from .conditioning import DegradationRequest
from .tiling import count_tiles

ProgressCallback = Callable[[int, int], None]
"""``progress(done, total)`` in tiles."""


@dataclass
class UpscaleJob:
    """A validated upscaling request: what runs where, and the output's shape and dtype."""

    #: the model (a :class:`~napari_superres.engine.infer.predictor.Predictor`, e.g. an ``SRModel``)
    model: Any
    scale: int
    axes: AxesInfo
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    out_dtype: np.dtype
    tile: int
    device: torch.device
    batch_size: int
    normalization: dict[str, Any]
    #: run the network through ``torch.compile`` (worth it for big jobs on a GPU; first call compiles)
    compile: bool = False
    #: what runs the network: ``"torch"`` or ``"onnxruntime"`` (CPU); see :func:`.planning.resolve_backend`
    backend: str = "torch"
    #: the backend was asked for by name (no silent fallback to torch when it cannot run)
    backend_required: bool = False
    #: what a conditioned network is told about the image's degradation (``degradation=``)
    degradation: DegradationRequest = field(default_factory=DegradationRequest)
    #: the conditions used, by channel index along C (-1: the whole image); filled by :func:`.pipeline.run_upscale`
    conditions: dict[int, DegradationCondition] = field(default_factory=dict)
    #: the tile was chosen automatically (``tile`` is then the memory bound; on the CPU a run that
    #: can be cancelled cuts tiles of about ``TILE_SECONDS`` of measured compute, see :meth:`_Runner.size_tiles_by_time`)
    auto_tile: bool = False
    #: arithmetic of the network on the CPU: ``"fp32"``, ``"bf16"`` or ``"int8"`` (see :mod:`.precision`)
    precision: str = "fp32"
    #: average the network over each tile's eight flips and quarter turns (:mod:`.ensemble`; 8x the compute)
    self_ensemble: bool = False
    #: the request this job was planned from (dask chunks re-plan their own tiles from it)
    request: UpscaleRequest = field(default_factory=UpscaleRequest)

    @property
    def n_planes(self) -> int:
        return int(np.prod([self.in_shape[i] for i in self.axes.plane_axes], dtype=np.int64))

    def tiles_per_plane(self) -> int:
        """Network tiles per plane (RGB with a 1-channel model: luminance only; chroma is bicubic).

        A model with its own pipeline (a bioimage.io package) counts whole planes (RGB samples one by one
        when it takes one channel)."""
        if self.model.own_pipeline:
            n_rgb = self.in_shape[self.axes.rgb] if self.axes.rgb is not None else 1
            return 1 if self.model.in_channels == 3 else n_rgb
        h, w = self.in_shape[self.axes.y], self.in_shape[self.axes.x]
        return count_tiles(h, w, self.tile, self.model.receptive_field)

    def total_tiles(self) -> int:
        return self.n_planes * self.tiles_per_plane()


__all__ = ["ProgressCallback", "UpscaleJob"]
