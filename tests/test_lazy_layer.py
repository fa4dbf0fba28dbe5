"""A lazily upscaled dask stack in napari computes only the plane on display."""

from __future__ import annotations

import threading

import dask.array as da
import numpy as np
import pytest
import torch

from napari_superres.engine import Engine, SRNet

N_PLANES = 12


class PlaneCounter:
    """A (Z, Y, X) dask array, one chunk per plane, recording which planes are read."""

    def __init__(self, image: np.ndarray) -> None:
        self.planes: list[int] = []
        self._lock = threading.Lock()

        def read(block, block_info=None):
            with self._lock:
                self.planes.append(block_info[0]["chunk-location"][0])
            return block

        self.array = da.from_array(image, chunks=(1, *image.shape[1:])).map_blocks(read, dtype=image.dtype)


@pytest.mark.gui
def test_viewing_an_upscaled_stack_computes_only_displayed_planes(make_napari_viewer, qtbot):
    image = (np.random.default_rng(0).random((N_PLANES, 32, 40)) * 60000).astype(np.uint16)
    counter = PlaneCounter(image)
    torch.manual_seed(0)
    engine = Engine(device="cpu", builtins=False)
    big = engine.upscale(counter.array, SRNet(scale=2, channels=4, blocks=1))
    assert counter.planes == []  # lazy: nothing read yet

    viewer = make_napari_viewer()
    layer = viewer.add_image(big, contrast_limits=(0, 65535), name="upscaled")
    shown = int(viewer.dims.current_step[0])
    qtbot.waitUntil(lambda: shown in counter.planes, timeout=10_000)

    assert layer.data.shape == (N_PLANES, 64, 80)
    # napari may slice once at plane 0 before moving to its initial plane: <= 2 planes, never all Z
    assert len(counter.planes) <= 2 and len(set(counter.planes)) <= 2
    first = list(counter.planes)

    other = (shown + 3) % N_PLANES
    viewer.dims.set_current_step(0, other)
    qtbot.waitUntil(lambda: other in counter.planes, timeout=10_000)
    qtbot.wait(200)  # let any further slicing finish before counting
    assert counter.planes[len(first) :] == [other]  # moving one plane computes exactly that plane
