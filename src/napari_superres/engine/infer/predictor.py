"""The :class:`Predictor` protocol: what a model offers the engine's planning and running.

Two kinds of model implement it:

* :class:`~napari_superres.engine.nets.model_file.SRModel` (our ``.safetensors`` models, the
  bicubic baseline, networks passed from Python): ``own_pipeline`` is false, so
  :func:`~napari_superres.engine.infer.planning.plan` chooses tiles, batches, backend and
  precision, and the engine's tiled pipeline (:func:`~napari_superres.engine.infer.pipeline.run_upscale`)
  normalises the image and runs the network on tiles;
* :class:`~napari_superres.io.bioimageio_import.BioimageioSRModel` (a foreign bioimage.io
  package): ``own_pipeline`` is true, the package normalises and tiles each plane itself, and
  :func:`~napari_superres.engine.infer.planes.run_planes` hands it whole planes.

Either way :meth:`predict` is the network's forward pass, so the engine never asks a model
what kind it is beyond this protocol.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class Predictor(Protocol):
    """A super-resolution model as :func:`~napari_superres.engine.infer.planning.plan` and the runners use it."""

    name: str
    #: the one factor it upscales by (``None``: any, the caller chooses)
    scale: int | None
    #: image channels it reads (``None``: any; 3: RGB)
    in_channels: int | None
    #: intensity normalisation spec its inputs need (:class:`~napari_superres.engine.options.Normalization` dict)
    normalization: dict[str, Any]
    #: true when :meth:`predict` takes raw whole planes and normalises and tiles them itself
    own_pipeline: bool

    @property
    def receptive_field(self) -> int:
        """Halo in input pixels a tile needs from its neighbours."""
        ...

    @property
    def cond_channels(self) -> int:
        """Degradation maps read after the image channels (0: a blind network)."""
        ...

    def describe(self) -> str:
        """One line for messages and provenance, e.g. ``"superres-x2 (x2, 1-channel)"``."""
        ...

    def predict(self, batch: np.ndarray, device: torch.device | str = "cpu", *, tile: int | None = None) -> np.ndarray:
        """``(N, C, H, W)`` float32 -> ``(N, C_out, scale*H, scale*W)`` float32.

        ``own_pipeline`` false: ``batch`` is normalised tiles (plus ``cond_channels`` maps; the
        engine's tiled pipeline runs faster forms of the same network); true: raw whole planes, in
        the package's own units, which it may split into tiles of about ``tile`` input pixels."""
        ...


__all__ = ["Predictor"]
