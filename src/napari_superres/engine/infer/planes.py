"""Whole-plane running for models with their own pipeline (``Predictor.own_pipeline``: a bioimage.io package).

Such a model normalises and tiles each plane itself, so the engine only walks the image's
planes, hands each one raw to :meth:`~napari_superres.engine.infer.predictor.Predictor.predict`
and writes the result (float32 in the package's units, or cast to the job's ``out_dtype``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import Cancelled
from ..normalization import denormalize
from .job import ProgressCallback, UpscaleJob


def run_planes(
    image: Any,
    job: UpscaleJob,
    *,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Every (Y, X) plane of ``image`` through ``job.model.predict``; returns ``job.out_shape`` in ``job.out_dtype``.

    RGB(A): a 3-channel model gets the colour samples together (alpha is repeated, nearest);
    a 1-channel model gets every sample on its own.  ``progress(done, total)`` counts model calls.
    """
    image = np.asarray(image)
    info, model, scale = job.axes, job.model, job.scale
    in_view = image.transpose(info.order)
    plane_shape = tuple(image.shape[i] for i in info.plane_axes)
    n_rgb = image.shape[info.rgb] if info.rgb is not None else None
    out = np.empty(job.out_shape, dtype=np.float32)
    out_view = out.transpose(info.order)
    tile = job.tile or None

    def predict(plane: np.ndarray) -> np.ndarray:  # (C, H, W) -> (C_out, sH, sW)
        return model.predict(plane[None], job.device, tile=tile)[0]

    total, done = job.total_tiles(), 0
    for index in np.ndindex(*plane_shape):
        if should_stop is not None and should_stop():
            raise Cancelled("cancelled")
        raw = np.asarray(in_view[index], dtype=np.float32)  # (H, W) or (H, W, S) after the transpose
        if n_rgb is None:
            out_view[index] = predict(raw[None])[0]
            done += 1
        elif model.in_channels == 3:
            out_view[index][..., :3] = np.moveaxis(predict(np.moveaxis(raw[..., :3], -1, 0)), 0, -1)
            if n_rgb > 3:  # alpha: nearest
                out_view[index][..., 3:] = np.repeat(np.repeat(raw[..., 3:], scale, 0), scale, 1)
            done += 1
        else:  # a 1-channel model on RGB: each sample on its own
            for c in range(n_rgb):
                out_view[index][..., c] = predict(raw[None, ..., c])[0]
                done += 1
        if progress is not None:
            progress(done, total)
    if job.out_dtype != out.dtype:
        return denormalize(out, 0.0, 1.0, job.out_dtype)  # rounded, saturated at the dtype's limits
    return out


__all__ = ["run_planes"]
