"""Lazy (dask) upscaling: chunk by chunk with a halo, equal to the in-memory result."""

from __future__ import annotations

import pickle
import threading

import dask
import dask.array as da
import numpy as np
import pytest
import torch

from napari_superres.engine import Engine, SRNet
from napari_superres.engine.infer.lazy import ModelPayload, upscale_dask


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(device="cpu", builtins=False)


@pytest.fixture(scope="module")
def net() -> SRNet:
    torch.manual_seed(0)
    return SRNet(scale=2, channels=4, blocks=1).eval()


class ChunkCounter:
    """Wraps a numpy array as a dask array whose chunk reads are recorded."""

    def __init__(self, array: np.ndarray, chunks) -> None:
        self.reads: list[tuple[int, ...]] = []
        self._lock = threading.Lock()
        base = da.from_array(array, chunks=chunks)

        def read(block, block_info=None):
            with self._lock:
                self.reads.append(tuple(block_info[0]["chunk-location"]))
            return block

        self.array = base.map_blocks(read, dtype=array.dtype)


def test_result_is_lazy_until_computed(engine, net, rng):
    image = (rng.random((4, 40, 50)) * 65535).astype(np.uint16)
    counted = ChunkCounter(image, chunks=(1, 40, 50))

    big = engine.upscale(counted.array, net)

    assert isinstance(big, da.Array)
    assert big.shape == (4, 80, 100) and big.dtype == np.uint16
    assert counted.reads == []  # integer image, dtype normalisation: not even a range pass


def test_one_plane_computes_only_that_planes_chunk(engine, net, rng):
    image = (rng.random((5, 40, 50)) * 65535).astype(np.uint16)
    counted = ChunkCounter(image, chunks=(1, 40, 50))
    big = engine.upscale(counted.array, net)

    plane = big[3].compute()

    assert counted.reads == [(3, 0, 0)]
    np.testing.assert_array_equal(plane, engine.upscale(image[3], net))


def test_chunked_uint16_equals_in_memory_across_chunk_borders(engine, net, rng):
    image = (rng.random((2, 70, 90)) * 65535).astype(np.uint16)
    expected = engine.upscale(image, net, tile=32)

    lazy = engine.upscale(da.from_array(image, chunks=(1, 30, 40)), net, tile=32)
    result = lazy.compute()

    assert lazy.chunks == ((1, 1), (60, 60, 20), (80, 80, 20))  # input chunks x2 in Y/X
    # Conv kernels sum in a shape-dependent order, so a float rounding on either side of
    # .5 can flip the last bit of a handful of pixels; never more than 1 count.
    diff = np.abs(result.astype(np.int32) - expected)
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.005


def test_chunked_bicubic_x2_is_bit_identical(engine, rng):
    # x2 sample positions are exact binary fractions: the same arithmetic in every chunk
    image = (rng.random((2, 70, 90)) * 65535).astype(np.uint16)
    expected = engine.upscale(image, "bicubic", scale=2)

    result = engine.upscale(da.from_array(image, chunks=(1, 25, 31)), "bicubic", scale=2).compute()

    np.testing.assert_array_equal(result, expected)
    # x3 positions (k + 0.5) / 3 round differently at different offsets: within 1 count
    x3 = engine.upscale(da.from_array(image, chunks=(1, 25, 31)), "bicubic", scale=3).compute()
    assert np.abs(x3.astype(np.int32) - engine.upscale(image, "bicubic", scale=3)).max() <= 1


def test_float_range_is_global_not_per_chunk(engine, net, rng):
    # a steep ramp: per-chunk min/max or percentiles would differ wildly between chunks
    ramp = np.linspace(0, 1000, 96, dtype=np.float32)[None, :] * np.ones((64, 1), np.float32)
    image = ramp + rng.random((64, 96), dtype=np.float32)
    for mode in ("dtype", "percentile"):
        expected = engine.upscale(image, net, normalization=mode)
        result = engine.upscale(da.from_array(image, chunks=(32, 24)), net, normalization=mode).compute()
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-3 * 1000)
        assert np.abs(result - expected).max() < 1e-3


def test_known_value_range_skips_the_range_pass(engine, net, rng):
    image = rng.random((2, 32, 32), dtype=np.float32)
    counted = ChunkCounter(image, chunks=(1, 32, 32))

    lazy = upscale_dask(counted.array, engine.prepare(net), device=engine.device, value_range=(0.0, 1.0))

    assert counted.reads == []
    np.testing.assert_allclose(lazy.compute(), engine.upscale(image, net), atol=1e-5)


def test_rgb_axis_is_one_chunk_and_matches(engine, net, rng):
    image = (rng.random((40, 44, 3)) * 255).astype(np.uint8)
    expected = engine.upscale(image, net)

    lazy = engine.upscale(da.from_array(image, chunks=(20, 22, 1)), net)

    assert lazy.chunks[2] == (3,)
    diff = np.abs(lazy.compute().astype(np.int16) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.005


def test_channel_axis_uses_per_channel_ranges(engine, net, rng):
    image = rng.random((3, 32, 40), dtype=np.float32) * np.array([1, 100, 10000], np.float32)[:, None, None]
    expected = engine.upscale(image, net, axes="CYX", normalization="percentile")

    result = engine.upscale(
        da.from_array(image, chunks=(1, 16, 20)), net, axes="CYX", normalization="percentile"
    ).compute()

    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_chunks_smaller_than_the_halo_are_merged(engine, net, rng):
    image = (rng.random((30, 30)) * 255).astype(np.uint8)
    halo = net.receptive_field()

    lazy = engine.upscale(da.from_array(image, chunks=(halo - 1, 30)), net)

    assert min(lazy.chunks[0]) >= 2 * halo  # merged to >= halo input px, then x2
    diff = np.abs(lazy.compute().astype(np.int16) - engine.upscale(image, net))
    assert diff.max() <= 1


def test_bad_axes_fail_before_any_work(engine, net):
    with pytest.raises(ValueError, match="axes"):
        engine.upscale(da.zeros((2, 8, 8), chunks=1), net, axes="YX")


def test_graph_pickles_with_the_weights_as_safetensors(engine, net, rng):
    image = rng.random((24, 24), dtype=np.float32)
    lazy = engine.upscale(da.from_array(image, chunks=12), net)

    payload = ModelPayload(engine.prepare(net), "cpu")
    state = payload.__getstate__()["state"]
    assert state["kind"] == "srnet" and isinstance(state["weights"], bytes)
    rebuilt = pickle.loads(pickle.dumps(payload)).model()
    assert rebuilt.net is not net
    for a, b in zip(rebuilt.net.state_dict().values(), net.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert pickle.loads(pickle.dumps(payload)).model() is rebuilt  # cached per process

    # the whole graph round-trips through pickle and computes the same
    (restored,) = pickle.loads(pickle.dumps(dask.optimize(lazy)))
    np.testing.assert_allclose(restored.compute(), lazy.compute(), atol=1e-6)
