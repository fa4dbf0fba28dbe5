"""Tiled inference with overlapping tiles, each trusted only where it saw full context.

An image plane ``(C, H, W)`` is cut into equal tiles of at most ``tile`` input pixels
that overlap by at least ``overlap >= 2 * halo + margin`` pixels, where ``halo`` is the
network's receptive-field radius.  Tiles are spread evenly (a balanced layout: the
fewest tiles, shrunk to the size that covers the plane, so no tile recomputes more
than it must).  Every output pixel is taken from exactly one tile: neighbouring tiles
hand over in the middle of their overlap, which is farther than ``halo`` from both
tiles' edges, so each tile contributes only pixels that saw all the context the
untiled pass sees.  Hence the tiled output equals the untiled output up to float
rounding, memory is bounded by ``batch * tile**2`` whatever the image size, and tile
results can be written straight into the final output (no accumulation buffers).

On CUDA, tiles travel through pinned host buffers with non-blocking copies, and the
results of one batch are written out while the device computes the next.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import Cancelled

#: Default tile edge in input pixels when nothing better is known.
DEFAULT_TILE = 256
MIN_TILE = 16
#: Largest tile edge (input px) ever chosen automatically.
MAX_TILE = 2048
#: Feature maps alive at once at the output resolution, per channel of the model's width
#: (input of a conv + its output + the upsampled map), used to size tiles from memory.
_LIVE_MAPS = 3.0
#: Share of free device memory (CUDA) / of host RAM (CPU, capped) a batch of tiles may use.
_CUDA_MEMORY_SHARE = 0.5
#: (CPU: of the memory still available, so one plane of a 1024x1024 x4 job is one tile on a 24 GB machine;
#: ONNX Runtime measured ~420 B of arena per output px for the built-in networks, i.e. ~3.3 maps of 32 channels)
_CPU_MEMORY_SHARE = 1 / 3
_CPU_BUDGET_BOUNDS = (256 * 2**20, 16 * 2**30)
#: Elements of the largest activation tensor (batch x width x output px): kernels index with int32.
_MAX_ELEMENTS = 2**31 - 1
#: Compute time (s) one CPU tile should take when the caller can cancel: Cancel and the progress bar
#: then answer within about this long at any image size, whatever else runs on the cores.
TILE_SECONDS = 1.0
#: Smallest tile edge (input px) sized by time: below it the overlaps cost more than the tiles' own work.
MIN_TIMED_TILE = 192
#: Edge (input px) of the probe that measures a network's throughput when none is known yet.
PROBE_TILE = 128

Sink = Callable[[int, int, torch.Tensor], None]
"""``sink(y0, x0, block)``: a finished ``(C_out, h, w)`` float32 CPU block whose top-left
output pixel is ``(y0, x0)``; the block is only valid during the call (copy what you keep)."""


@dataclass(frozen=True)
class TileLayout:
    """Balanced tiles along one axis of length ``size`` for tiles of at most ``tile`` with ``overlap``.

    ``count`` tiles of ``tile_size`` (``<= tile``) at ``starts``, consecutive tiles
    overlapping by at least ``overlap``; ``cuts`` are the hand-over points (input px):
    tile ``i`` owns ``[cuts[i], cuts[i + 1])``.
    """

    size: int
    tile: int
    overlap: int

    @property
    def count(self) -> int:
        if self.tile >= self.size:
            return 1
        return math.ceil((self.size - self.overlap) / (self.tile - self.overlap))

    @property
    def tile_size(self) -> int:
        n = self.count
        if n == 1:
            return min(self.tile, self.size)
        return min(self.tile, math.ceil((self.size + (n - 1) * self.overlap) / n))

    @property
    def starts(self) -> list[int]:
        n, t = self.count, self.tile_size
        if n == 1:
            return [0]
        return [(i * (self.size - t)) // (n - 1) for i in range(n)]

    @property
    def cuts(self) -> list[int]:
        starts, t = self.starts, self.tile_size
        mids = [(b + a + t) // 2 for a, b in zip(starts, starts[1:])]  # middle of each overlap
        return [0, *mids, self.size]


def plan_overlap(halo: int, tile: int) -> int:
    """Overlap (input px) for a receptive-field radius ``halo``: ``2*halo`` plus a margin.

    The hand-over point in the middle of the overlap is then at least ``halo + margin/2``
    from both tiles' inner edges.  (An earlier version blended tiles with a raised-cosine
    window across the margin; when every contributing pixel saw its full receptive field
    the blend changes nothing, so tiles now hand over without accumulation buffers.)
    """
    margin = max(2, halo // 2)
    overlap = 2 * halo + margin
    if tile < 2 * overlap:
        raise ValueError(f"tile {tile} is too small for a receptive field of {halo} px; use tile >= {2 * overlap}")
    return overlap


def _host_memory_bytes() -> int:
    """Host memory this process may still use: ``MemAvailable`` (Linux), else total RAM."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def tile_budget_px(device: torch.device, model_width: int = 64, scale: int = 2) -> int:
    """How many *input* pixels one network call may hold (all tiles of a batch together).

    Sized from the activations: about :data:`_LIVE_MAPS` maps of ``model_width``
    channels at the output resolution (``scale**2`` output px per input px), bf16 on
    CUDA (half of free memory), float32 on the CPU (:data:`_CPU_MEMORY_SHARE` of the
    available host memory, within :data:`_CPU_BUDGET_BOUNDS`).
    """
    per_out_px = _LIVE_MAPS * max(1, model_width)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = free * _CUDA_MEMORY_SHARE
        per_out_px *= 2 * 2  # bf16 activations, plus float32 copies autocast keeps for some ops
    else:
        lo, hi = _CPU_BUDGET_BOUNDS
        budget = min(hi, max(lo, _host_memory_bytes() * _CPU_MEMORY_SHARE))
        per_out_px *= 4
    return max(MIN_TILE**2, int(budget / (per_out_px * scale * scale)))


def choose_tile(
    height: int, width: int, device: torch.device, channels: int = 1, model_width: int = 64, scale: int = 2
) -> int:
    """Pick a tile edge (input px) for a ``height x width`` plane from the memory one network call may use.

    A plane whose activations fit the budget (:func:`tile_budget_px`, and the int32
    indexing limit of the kernels) is one tile: the edge returned is ``max(height, width)``.
    Otherwise the largest square edge the budget allows, up to :data:`MAX_TILE`; the
    tiles actually run are balanced (:class:`TileLayout`: the fewest tiles, shrunk to
    cover the plane evenly), so larger tiles only ever waste less on overlaps
    (``(tile / (tile - overlap))**2`` extra work).
    """
    budget = tile_budget_px(device, model_width, scale)
    by_indexing = _MAX_ELEMENTS / (max(1, model_width) * scale * scale)
    if height * width <= min(budget, by_indexing):
        return int(max(height, width))
    edge = int(min(math.sqrt(budget), math.sqrt(by_indexing)))
    return int(min(MAX_TILE, max(128, edge)))


def choose_batch(tile: int, device: torch.device, model_width: int = 64, scale: int = 2, limit: int = 16) -> int:
    """Tiles per network call: 1 on CPU; on CUDA as many ``tile``-px tiles as memory allows (at most ``limit``)."""
    if device.type != "cuda":
        return 1
    by_memory = tile_budget_px(device, model_width, scale) // (tile * tile)
    by_indexing = _MAX_ELEMENTS // (max(1, model_width) * (tile * scale) ** 2)
    return int(max(1, min(limit, by_memory, by_indexing)))


class Throughput:
    """Measured network throughput in input px/s, per (network, where it runs): sizes CPU tiles by time.

    ``record`` keeps a cautious estimate: a slower measurement (the cores got busier) is taken
    at once, a faster one only half-way, so tiles shrink quickly and grow back slowly.
    Entries go with their network (weak keys).  Thread-safe.
    """

    def __init__(self) -> None:
        self._rates: weakref.WeakKeyDictionary[object, dict[str, float]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def record(self, net: object, where: str, pixels: int, seconds: float) -> None:
        """``pixels`` input px went through ``net`` on ``where`` (e.g. ``"cpu/onnxruntime"``) in ``seconds``."""
        if pixels <= 0 or not seconds > 0:
            return
        rate = pixels / seconds
        with self._lock:
            per_net = self._rates.setdefault(net, {})
            old = per_net.get(where)
            per_net[where] = rate if old is None or rate < old else 0.5 * (old + rate)

    def rate(self, net: object, where: str) -> float | None:
        """The estimate (input px/s), or ``None`` before any measurement."""
        with self._lock:
            return self._rates.get(net, {}).get(where)


#: Throughput measured by the pipeline in this process.
THROUGHPUT = Throughput()


def timed_tile(height: int, width: int, px_per_s: float, halo: int, seconds: float = TILE_SECONDS) -> int:
    """Tile edge (input px) whose compute takes about ``seconds`` at ``px_per_s`` (input px/s, overlaps included).

    A plane computed within ``seconds`` is one tile (``max(height, width)``); otherwise the
    square edge of ``px_per_s * seconds`` pixels, at least :data:`MIN_TIMED_TILE` and what the
    receptive field ``halo`` needs (:func:`plan_overlap`).
    """
    budget = max(1.0, float(px_per_s) * float(seconds))
    if height * width <= budget:
        return int(max(height, width))
    floor = max(MIN_TIMED_TILE, 2 * (2 * halo + max(2, halo // 2)))
    return int(max(floor, math.isqrt(int(budget))))


class _PinnedBuffers:
    """Reusable page-locked host buffers, two per shape (one filling while the other is copied)."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, tuple[int, ...], torch.dtype, int], torch.Tensor] = {}

    def get(self, kind: str, shape: tuple[int, ...], dtype: torch.dtype, slot: int) -> torch.Tensor:
        key = (kind, tuple(shape), dtype, slot % 2)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = torch.empty(shape, dtype=dtype, pin_memory=True)
        return buf


def tiled_map(
    net: Callable[[torch.Tensor], torch.Tensor],
    plane: torch.Tensor | np.ndarray,
    sink: Sink,
    *,
    scale: int,
    halo: int,
    tile: int = DEFAULT_TILE,
    batch_size: int = 4,
    on_tile: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: torch.device | None = None,
    prepare: Callable[[np.ndarray], torch.Tensor] | None = None,
) -> None:
    """Run ``net`` over ``plane`` (``(C, H, W)`` float32, CPU) tile by tile, handing results to ``sink``.

    Every output pixel reaches ``sink`` exactly once, as part of a float32 CPU block.
    ``device``: where ``net`` runs; on CUDA the tiles go through pinned buffers with
    non-blocking copies and a batch's results are handed over while the next batch
    runs.  ``on_tile(n)`` is called after each batch with the number of tiles done;
    ``should_stop()`` is checked before each batch and raises :class:`Cancelled`.
    ``prepare``: with a numpy ``plane`` of any dtype, turns each stacked ``(N, C, h, w)``
    batch of raw tiles into the float32 tensor the net takes (e.g. normalisation), so
    no float copy of the whole plane is ever made.
    """
    c, h, w = plane.shape
    cuda = device is not None and device.type == "cuda"
    overlap = plan_overlap(halo, tile) if (tile < h or tile < w) else 0
    ly = TileLayout(h, tile, overlap) if overlap else TileLayout(h, max(h, tile), 0)
    lx = TileLayout(w, tile, overlap) if overlap else TileLayout(w, max(w, tile), 0)
    th, tw = ly.tile_size, lx.tile_size
    cy, cx = ly.cuts, lx.cuts
    tiles = [(iy, ix) for iy in range(ly.count) for ix in range(lx.count)]
    sy, sx = ly.starts, lx.starts
    pinned = _PinnedBuffers() if cuda else None
    pending: tuple[list[tuple[int, int]], torch.Tensor, torch.cuda.Event | None] | None = None

    def hand_over(group: list[tuple[int, int]], result: torch.Tensor, event: torch.cuda.Event | None) -> None:
        if event is not None:
            event.synchronize()
        for (iy, ix), out in zip(group, result):
            y0, y1, x0, x1 = cy[iy], cy[iy + 1], cx[ix], cx[ix + 1]
            block = out[:, (y0 - sy[iy]) * scale : (y1 - sy[iy]) * scale, (x0 - sx[ix]) * scale : (x1 - sx[ix]) * scale]
            sink(y0 * scale, x0 * scale, block)
        if on_tile is not None:
            on_tile(len(group))

    for k, i in enumerate(range(0, len(tiles), batch_size)):
        if should_stop is not None and should_stop():
            raise Cancelled("cancelled")
        group = tiles[i : i + batch_size]
        if prepare is not None:
            raw = plane[None] if len(tiles) == 1 else np.stack(
                [plane[:, sy[iy] : sy[iy] + th, sx[ix] : sx[ix] + tw] for iy, ix in group]
            )  # fmt: skip
            batch = prepare(raw)
            if pinned is not None:
                batch = pinned.get("in", tuple(batch.shape), batch.dtype, k).copy_(batch)
        elif len(tiles) == 1:
            batch = plane[None]
        elif pinned is not None:
            batch = pinned.get("in", (len(group), c, th, tw), plane.dtype, k)
            torch.stack([plane[:, sy[iy] : sy[iy] + th, sx[ix] : sx[ix] + tw] for iy, ix in group], out=batch)
        else:
            batch = torch.stack([plane[:, sy[iy] : sy[iy] + th, sx[ix] : sx[ix] + tw] for iy, ix in group])
        if cuda:
            batch = batch.to(device, non_blocking=True)
        result = net(batch)
        if result.device.type == "cuda":
            host = pinned.get("out", tuple(result.shape), torch.float32, k) if pinned is not None else None
            if host is None:
                host = torch.empty(result.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(result.float(), non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            if pending is not None:
                hand_over(*pending)  # the previous batch, while the device works on this one
            pending = (group, host, event)
        else:
            hand_over(group, result.float(), None)
    if pending is not None:
        hand_over(*pending)


def tiled_forward(
    net: Callable[[torch.Tensor], torch.Tensor],
    plane: torch.Tensor,
    *,
    scale: int,
    halo: int,
    tile: int = DEFAULT_TILE,
    batch_size: int = 4,
    out_channels: int | None = None,
    on_tile: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Run ``net`` over ``plane`` (``(C, H, W)`` float tensor, CPU) tile by tile.

    Returns ``(C_out, scale*H, scale*W)`` float32 on the CPU.  ``on_tile(n)`` is called
    after each batch with the number of tiles just done; ``should_stop()`` is checked
    before each batch and raises :class:`Cancelled`.  Device memory holds one batch of
    tiles (two on CUDA, where copies overlap compute); see :func:`tiled_map`.
    """
    c, h, w = plane.shape
    out = torch.empty((out_channels or c, h * scale, w * scale), dtype=torch.float32)

    def sink(y0: int, x0: int, block: torch.Tensor) -> None:
        out[:, y0 : y0 + block.shape[1], x0 : x0 + block.shape[2]] = block

    tiled_map(
        net, plane, sink, scale=scale, halo=halo, tile=tile, batch_size=batch_size, on_tile=on_tile,
        should_stop=should_stop, device=device,
    )  # fmt: skip
    return out


def count_tiles(height: int, width: int, tile: int, halo: int) -> int:
    """Number of tiles :func:`tiled_forward` will run for one plane."""
    if tile >= height and tile >= width:
        return 1
    overlap = plan_overlap(halo, tile)
    return TileLayout(height, tile, overlap).count * TileLayout(width, tile, overlap).count
