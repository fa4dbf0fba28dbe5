"""Apply an axial upsampling network to the XZ and YZ slices of a stack and fuse the two results.

A ``(Z, Y, X)`` stack is cut into its ``Y`` XZ slices ``(Z, X)`` and its ``X`` YZ slices
``(Z, Y)``; the network upsamples each along Z to ``(factor * Z, .)``.  Each of the two
passes alone sees only one lateral direction (structure along the other is upsampled
slice by slice, independently), so the two volumes are averaged (as CARE's isotropic
reconstruction): errors that are independent between the passes shrink, and the result
no longer depends on which lateral axis was chosen.

Slices are sent in batches sized from a memory budget; slices wider than
:data:`MAX_WIDTH` are cut along their lateral axis into pieces that overlap by the
network's receptive field, each keeping only the pixels that saw full context (so the
result equals the uncut pass).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..errors import Cancelled
from ..nets.axial_net import AxialNet
from ..options import BACKENDS

#: Widest slice (lateral px) processed in one piece.
MAX_WIDTH = 512
#: Fewest pixels a piece keeps (its read window adds the halo on both sides).
MIN_CORE = 16
#: Bytes of activations one network call may use (the fine-grid feature maps dominate).
BATCH_BYTES = 256 * 2**20
#: Fine-grid feature maps alive at once during a forward pass (per channel).
_LIVE_MAPS = 4


def _batch_size(net: AxialNet, rows_out: int, width: int) -> int:
    per_slice = rows_out * width * net.config.channels * 4 * _LIVE_MAPS
    return max(1, int(BATCH_BYTES // max(per_slice, 1)))


def _width_pieces(width: int, halo: int) -> list[tuple[int, int, int, int]]:
    """``(read_start, read_stop, keep_start, keep_stop)`` pieces covering ``[0, width)``."""
    if width <= MAX_WIDTH:
        return [(0, width, 0, width)]
    core = max(MAX_WIDTH - 2 * halo, MIN_CORE)
    pieces = []
    for start in range(0, width, core):
        stop = min(start + core, width)
        pieces.append((max(0, start - halo), min(width, stop + halo), start, stop))
    return pieces


def slice_forward(net: AxialNet, device: torch.device, backend: str = "auto") -> Callable[[torch.Tensor], torch.Tensor]:
    """What runs ``net`` on slice batches: ONNX Runtime on the CPU (``"auto"`` when installed, as
    ``upscale``; exported in memory only, nothing cached on disk: a fine-tuned network is used once),
    else torch.  ``"onnxruntime"`` raises ``ValueError`` naming the fix when it cannot run."""
    from .onnx_backend import OnnxRunner, export_onnx, make_session, onnxruntime_available

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    wanted = backend == "onnxruntime" or (backend == "auto" and device.type == "cpu" and onnxruntime_available())
    if wanted:
        if device.type != "cpu" or not onnxruntime_available():
            raise ValueError("backend 'onnxruntime' needs device='cpu' and pip install 'napari-superres[onnx]'")
        try:
            return OnnxRunner(make_session(export_onnx(net, in_channels=1)), key="axial")
        except RuntimeError:
            if backend == "onnxruntime":
                raise
    return net


@torch.no_grad()
def upsample_slices(
    net: AxialNet,
    slices: np.ndarray,
    *,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    sink: Callable[[int, int, np.ndarray], None] | None = None,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray | None:
    """Upsample ``(N, Z, W)`` float32 slices along Z: ``(N, factor * Z, W)`` float32.

    ``progress(n)`` is called with the number of slices just finished.  With ``sink``,
    each finished batch goes to ``sink(i0, i1, block)`` (slices ``i0:i1``, ``block`` of
    shape ``(i1 - i0, factor * Z, W)``) instead of an output array, and ``None`` is returned.
    ``forward``: what runs the network (default ``net`` itself; see :func:`slice_forward`).
    """
    forward = forward or net
    n, z, width = slices.shape
    f = net.config.factor
    out = np.empty((n, z * f, width), dtype=np.float32) if sink is None else None
    halo = net.receptive_field()
    pieces = _width_pieces(width, halo)
    batch = _batch_size(net, z * f, min(width, MAX_WIDTH))
    for i0 in range(0, n, batch):
        i1 = min(n, i0 + batch)
        block = out[i0:i1] if out is not None else np.empty((i1 - i0, z * f, width), dtype=np.float32)
        for r0, r1, k0, k1 in pieces:
            if should_stop is not None and should_stop():
                raise Cancelled("axial upsampling cancelled")
            x = torch.from_numpy(np.ascontiguousarray(slices[i0:i1, :, r0:r1])).to(device)[:, None]
            y = forward(x)[:, 0].float().cpu().numpy()
            block[:, :, k0:k1] = y[:, :, k0 - r0 : k1 - r0]
        if sink is not None:
            sink(i0, i1, block)
        if progress is not None:
            progress(i1 - i0)
    return out


def upsample_volume(
    net: AxialNet,
    volume: np.ndarray,
    *,
    device: torch.device,
    fuse: str = "mean",
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    backend: str = "auto",
) -> np.ndarray:
    """Upsample a normalised ``(Z, Y, X)`` float32 stack along Z: ``(factor * Z, Y, X)`` float32.

    ``fuse``: ``"mean"`` of the XZ and YZ passes (default), or ``"xz"`` / ``"yz"`` for one pass.
    ``progress(n)`` counts finished slices (``Y + X`` in all for ``"mean"``).  ``backend``: see
    :func:`slice_forward`.
    """
    if fuse not in ("mean", "xz", "yz"):
        raise ValueError(f"fuse must be 'mean', 'xz' or 'yz', got {fuse!r}")
    vol = np.asarray(volume, dtype=np.float32)
    z, h, w = vol.shape
    net.eval()
    forward = slice_forward(net, device, backend)
    result = np.zeros((z * net.config.factor, h, w), dtype=np.float32)
    weight = np.float32(0.5 if fuse == "mean" else 1.0)

    def add_xz(i0: int, i1: int, block: np.ndarray) -> None:  # block (y, fZ, X)
        result[:, i0:i1, :] += weight * block.transpose(1, 0, 2)

    def add_yz(i0: int, i1: int, block: np.ndarray) -> None:  # block (x, fZ, Y)
        result[:, :, i0:i1] += weight * block.transpose(1, 2, 0)

    # results are accumulated into one volume batch by batch (no second full-size pass in memory)
    if fuse in ("mean", "xz"):
        upsample_slices(
            net, vol.transpose(1, 0, 2), device=device, progress=progress, should_stop=should_stop, sink=add_xz,
            forward=forward,
        )  # fmt: skip
    if fuse in ("mean", "yz"):
        upsample_slices(
            net, vol.transpose(2, 0, 1), device=device, progress=progress, should_stop=should_stop, sink=add_yz,
            forward=forward,
        )  # fmt: skip
    return result


__all__ = ["MAX_WIDTH", "slice_forward", "upsample_slices", "upsample_volume"]
