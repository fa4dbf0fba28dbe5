"""Tile layout and hand-over: balanced tiles, each output pixel from exactly one trusted tile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_superres.engine import SRNet
from napari_superres.engine.infer.tiling import (
    MAX_TILE,
    MIN_TIMED_TILE,
    TILE_SECONDS,
    Throughput,
    TileLayout,
    choose_batch,
    choose_tile,
    count_tiles,
    plan_overlap,
    tiled_forward,
    tiled_map,
    timed_tile,
)


@pytest.mark.parametrize(
    ("size", "tile", "halo"),
    [(size, tile, halo) for tile, halo in [(64, 5), (256, 11), (512, 12)] for size in (97, 300, 513, 1000, 4097)
     if tile < size],
)  # fmt: skip
def test_balanced_layout_covers_with_trusted_hand_overs(size, tile, halo):
    overlap = plan_overlap(halo, tile)
    layout = TileLayout(size, tile, overlap)
    starts, t, cuts = layout.starts, layout.tile_size, layout.cuts

    assert t <= tile and starts[0] == 0 and starts[-1] + t == size
    assert len(starts) == layout.count == len(cuts) - 1
    assert all(b - a > 0 and a + t - b >= overlap for a, b in zip(starts, starts[1:]))  # overlaps
    for i, start in enumerate(starts):  # each tile owns [cuts[i], cuts[i+1]), at least halo from inner edges
        assert cuts[i] < cuts[i + 1]
        assert i == 0 or cuts[i] - start >= halo
        assert i == len(starts) - 1 or start + t - cuts[i + 1] >= halo
    # balanced: shrinking the tiles leaves no more overlap than needed (within rounding)
    assert layout.count * t - (layout.count - 1) * overlap - size < layout.count


def test_balanced_tiles_do_less_work_than_fixed_ones():
    layout = TileLayout(512, 256, plan_overlap(11, 256))
    assert layout.count == 3 and layout.tile_size == 189  # 3 x 189 px instead of 3 x 256 px


def test_every_output_pixel_is_handed_over_exactly_once():
    plane = torch.rand(1, 150, 230)
    hits = np.zeros((300, 460), np.int32)
    blocks = []

    def sink(y0, x0, block):
        hits[y0 : y0 + block.shape[1], x0 : x0 + block.shape[2]] += 1
        blocks.append(block.shape)

    def net(x):
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    tiled_map(net, plane, sink, scale=2, halo=5, tile=64, batch_size=3)

    assert (hits == 1).all()
    assert len(blocks) == count_tiles(150, 230, 64, 5)


def test_tiled_forward_matches_one_pass_for_a_real_net():
    torch.manual_seed(0)
    net = SRNet(scale=2, channels=4, blocks=2).eval()
    plane = torch.rand(1, 140, 170)
    with torch.inference_mode():
        whole = net(plane[None])[0]
        tiled = tiled_forward(net, plane, scale=2, halo=net.receptive_field(), tile=48, batch_size=2)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


def test_cpu_tiles_grow_as_the_model_narrows():
    cpu = torch.device("cpu")
    wide, narrow = choose_tile(8192, 8192, cpu, model_width=128, scale=4), choose_tile(8192, 8192, cpu, model_width=8)
    assert 128 <= wide < narrow <= MAX_TILE
    assert choose_batch(wide, cpu) == 1


def test_a_plane_that_fits_is_one_tile():
    cpu = torch.device("cpu")
    tile = choose_tile(300, 500, cpu, model_width=32, scale=2)
    assert tile == 500
    assert count_tiles(300, 500, tile, halo=11) == 1


def test_a_plane_too_big_for_memory_gets_balanced_tiles(monkeypatch):
    from napari_superres.engine.infer import tiling

    monkeypatch.setattr(tiling, "tile_budget_px", lambda *a, **k: 600 * 600)
    tile = choose_tile(2048, 2048, torch.device("cpu"), model_width=32, scale=2)
    assert tile == 600
    overlap = plan_overlap(11, tile)
    layout = TileLayout(2048, tile, overlap)
    assert layout.count == 4  # the fewest tiles of at most 600 px that cover 2048 px with overlaps
    assert layout.tile_size * layout.count - (layout.count - 1) * overlap < 2048 + layout.count  # no spare work


def test_raw_tiles_are_prepared_batch_by_batch():
    raw = (np.random.default_rng(0).random((1, 90, 120)) * 65535).astype(np.uint16)
    out = torch.empty(1, 180, 240)

    def sink(y0, x0, block):
        out[:, y0 : y0 + block.shape[1], x0 : x0 + block.shape[2]] = block

    def bilinear(x):
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    tiled_map(bilinear, raw, sink, scale=2, halo=2, tile=40, batch_size=4,
              prepare=lambda tiles: torch.from_numpy(tiles.astype(np.float32) / 65535))  # fmt: skip

    expected = bilinear(torch.from_numpy(raw.astype(np.float32) / 65535)[None])[0]
    torch.testing.assert_close(out, expected)


def test_tiles_sized_by_time_take_about_a_second_at_the_measured_rate():
    rate = 90_000.0  # input px/s, e.g. a built-in x2 network on one busy core
    tile = timed_tile(2048, 2048, rate, halo=19)
    assert abs(tile * tile / rate - TILE_SECONDS) < 0.01
    assert timed_tile(200, 300, rate, halo=19) == 300  # computed within the time: one tile
    assert timed_tile(4096, 4096, 100.0, halo=19) == MIN_TIMED_TILE  # never tiles all overlap
    assert timed_tile(4096, 4096, 100.0, halo=60) == 2 * plan_overlap(60, 10_000)


def test_throughput_estimate_drops_at_once_and_recovers_slowly():
    net, estimates = torch.nn.Identity(), Throughput()
    assert estimates.rate(net, "cpu/torch") is None
    estimates.record(net, "cpu/torch", 100_000, 1.0)
    estimates.record(net, "cpu/torch", 10_000, 1.0)  # the cores got busy
    assert estimates.rate(net, "cpu/torch") == 10_000
    estimates.record(net, "cpu/torch", 110_000, 1.0)
    assert estimates.rate(net, "cpu/torch") == 60_000
    assert estimates.rate(net, "cpu/onnxruntime") is None  # per backend


def test_a_cancellable_cpu_run_cuts_tiles_of_about_a_second(monkeypatch):
    from napari_superres.engine.infer import pipeline, tiling
    from napari_superres.engine.nets.model_file import SRModel

    torch.manual_seed(0)
    net = SRNet(scale=2, channels=4, blocks=1).eval()
    model = SRModel("tiny", net, scale=2, in_channels=1)
    image = np.random.default_rng(0).random((600, 500), dtype=np.float32)
    job = pipeline.plan_upscale(image, model, device=torch.device("cpu"), backend="torch")
    assert job.auto_tile and job.total_tiles() == 1  # memory alone: one tile
    monkeypatch.setattr(tiling.THROUGHPUT, "rate", lambda *a: 40_000.0)  # 200 px tiles take a second
    seen: list[tuple[int, int]] = []
    out = pipeline.run_upscale(image, job, progress=lambda d, t: seen.append((d, t)), should_stop=lambda: False)
    assert seen[0] == (0, count_tiles(600, 500, 200, net.receptive_field()))
    assert seen[0][1] > 4 and seen[-1] == (seen[0][1], seen[0][1])
    np.testing.assert_allclose(out, pipeline.run_upscale(image, job), atol=1e-5)  # same values, untiled
