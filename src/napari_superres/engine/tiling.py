"""Tiled inference with overlap and smooth blending.

An image plane ``(C, H, W)`` is cut into tiles of ``tile`` input pixels that overlap
by ``overlap >= 2 * halo + 1`` pixels, where ``halo`` is the network's receptive-field
radius.  Each tile's output is trusted only farther than ``halo`` from a tile edge
that is not an image edge (there it saw all the context the untiled pass sees), and
across the rest of the overlap the tiles are blended with raised-cosine weights that
sum to one.  Hence the tiled output equals the untiled output up to float rounding,
while memory is bounded by ``batch * tile**2`` whatever the image size.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

#: Default tile edge in input pixels (CPU); GPU tiles are sized from free memory.
DEFAULT_TILE = 256
MIN_TILE = 16


class Cancelled(RuntimeError):
    """Raised inside tiled inference when the caller's cancel check returns True."""


@dataclass(frozen=True)
class TileLayout:
    """Tile starts along one axis of length ``size`` for tiles of ``tile`` with ``overlap``."""

    size: int
    tile: int
    overlap: int

    @property
    def starts(self) -> list[int]:
        if self.tile >= self.size:
            return [0]
        stride = self.tile - self.overlap
        starts = list(range(0, self.size - self.tile, stride))
        starts.append(self.size - self.tile)
        return starts

    @property
    def tile_size(self) -> int:
        return min(self.tile, self.size)


@functools.lru_cache(maxsize=256)
def _ramp(n: int) -> np.ndarray:
    """``n`` raised-cosine weights strictly inside (0, 1], rising."""
    k = np.arange(n, dtype=np.float64) + 0.5
    return (0.5 - 0.5 * np.cos(np.pi * k / n)).astype(np.float32)


@functools.lru_cache(maxsize=256)
def axis_window(length: int, scale: int, halo: int, ramp: int, first: bool, last: bool) -> np.ndarray:
    """1D blending weights over one tile's output (``length`` = tile * scale pixels).

    At an inner edge: ``halo*scale`` zeros (untrusted), then a ``ramp*scale`` rising
    raised cosine, then ones.  At an image edge (``first``/``last``): ones.
    """
    w = np.ones(length, dtype=np.float32)
    dead, rise = halo * scale, ramp * scale
    if not first:
        w[:dead] = 0.0
        w[dead : dead + rise] = _ramp(rise)
    if not last:
        w[length - dead :] = 0.0
        w[length - dead - rise : length - dead] = np.minimum(w[length - dead - rise : length - dead], _ramp(rise)[::-1])
    return w


def plan_overlap(halo: int, tile: int) -> int:
    """Overlap (input px) for a receptive-field radius ``halo``: ``2*halo`` plus a blend ramp."""
    ramp = max(2, halo // 2)
    overlap = 2 * halo + ramp
    if tile < 2 * overlap:
        raise ValueError(f"tile {tile} is too small for a receptive field of {halo} px; use tile >= {2 * overlap}")
    return overlap


def iter_tiles(height: int, width: int, tile: int, overlap: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(y0, x0, th, tw)`` of every tile, row-major."""
    ly, lx = TileLayout(height, tile, overlap), TileLayout(width, tile, overlap)
    for y0 in ly.starts:
        for x0 in lx.starts:
            yield y0, x0, ly.tile_size, lx.tile_size


def choose_tile(height: int, width: int, device: torch.device, channels: int = 1, model_width: int = 64) -> int:
    """Pick a tile edge: the whole plane when small; on CUDA from free memory; else :data:`DEFAULT_TILE`."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # activations: about 4 feature maps of model_width channels at the output resolution, bf16
        bytes_per_px = 4 * model_width * 2 * 16
        edge = int(math.sqrt(free * 0.4 / bytes_per_px))
        tile = int(min(2048, max(128, edge // 64 * 64)))
    else:
        tile = DEFAULT_TILE
    return tile


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
) -> torch.Tensor:
    """Run ``net`` over ``plane`` (``(C, H, W)`` float tensor on the net's device) tile by tile.

    Returns ``(C_out, scale*H, scale*W)`` float32 on the CPU.  ``on_tile(n)`` is called
    after each batch with the number of tiles just done; ``should_stop()`` is checked
    before each batch and raises :class:`Cancelled`.  The output is accumulated on the
    CPU, so device memory holds only one batch of tiles.
    """
    c, h, w = plane.shape
    if tile >= h and tile >= w:  # one tile: no blending needed
        if should_stop is not None and should_stop():
            raise Cancelled("cancelled")
        out = net(plane[None])[0].float().cpu()
        if on_tile is not None:
            on_tile(1)
        return out
    overlap = plan_overlap(halo, tile)
    ramp = overlap - 2 * halo
    tiles = list(iter_tiles(h, w, tile, overlap))
    c_out = out_channels or c
    acc = torch.zeros((c_out, h * scale, w * scale), dtype=torch.float32)
    wsum = torch.zeros((1, h * scale, w * scale), dtype=torch.float32)
    for i in range(0, len(tiles), batch_size):
        if should_stop is not None and should_stop():
            raise Cancelled("cancelled")
        group = tiles[i : i + batch_size]
        batch = torch.stack([plane[:, y0 : y0 + th, x0 : x0 + tw] for y0, x0, th, tw in group])
        result = net(batch).float().cpu()
        for (y0, x0, th, tw), out in zip(group, result):
            wy = axis_window(th * scale, scale, halo, ramp, y0 == 0, y0 + th == h)
            wx = axis_window(tw * scale, scale, halo, ramp, x0 == 0, x0 + tw == w)
            weight = torch.from_numpy(np.outer(wy, wx))[None]
            ys, xs = slice(y0 * scale, (y0 + th) * scale), slice(x0 * scale, (x0 + tw) * scale)
            acc[:, ys, xs] += out * weight
            wsum[:, ys, xs] += weight
        if on_tile is not None:
            on_tile(len(group))
    return acc / wsum


def count_tiles(height: int, width: int, tile: int, halo: int) -> int:
    """Number of tiles :func:`tiled_forward` will run for one plane."""
    if tile >= height and tile >= width:
        return 1
    overlap = plan_overlap(halo, tile)
    return len(TileLayout(height, tile, overlap).starts) * len(TileLayout(width, tile, overlap).starts)
