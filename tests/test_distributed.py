"""Upscaling on a ``dask.distributed`` cluster (two worker processes on loopback)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import torch
import zarr

from napari_superres.cli import main
from napari_superres.engine import Engine, SRNet, save_model

distributed = pytest.importorskip("distributed")

#: two worker processes each import torch: ~10 s on an idle 2-core machine
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
    ) as cluster:  # fmt: skip
        yield cluster


@pytest.fixture(scope="module")
def net() -> SRNet:
    torch.manual_seed(0)
    return SRNet(scale=2, channels=4, blocks=1).eval()


def test_api_on_a_cluster_equals_in_process(cluster, net):
    image = np.random.default_rng(0).random((2, 40, 48), dtype=np.float32) * 100
    engine = Engine(device="cpu", builtins=False)
    expected = engine.upscale(image, net)

    with distributed.Client(cluster.scheduler_address) as client:
        lazy = engine.upscale(da.from_array(image, chunks=(1, 20, 24)), net)  # range pass runs on the cluster
        result = client.compute(lazy).result()
        # every chunk ran in a worker process, not here
        workers = client.run(
            lambda: __import__("napari_superres.engine.infer.lazy").engine.infer.lazy._worker_cache.copy()
        )

    assert sum(len(cache) for cache in workers.values()) >= 1
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("source", ["in.zarr", "in.tif"])
def test_cli_with_scheduler_address(cluster, net, tmp_path, source):
    import tifffile

    image = (np.random.default_rng(1).random((3, 36, 40)) * 60000).astype(np.uint16)
    src, out = tmp_path / source, tmp_path / "out.zarr"
    if source.endswith(".zarr"):
        z = zarr.open_array(str(src), mode="w", shape=image.shape, chunks=(1, 36, 40), dtype=image.dtype)
        z[:] = image
    else:  # workers open the TIFF themselves (the reader pickles as its path)
        tifffile.imwrite(src, image, imagej=True, metadata={"axes": "ZYX"})
    model = save_model(tmp_path / "tiny", net)

    code = main(["upscale", str(src), str(out), "--model", str(model), "--scheduler", cluster.scheduler_address,
                 "--chunk-size", "20", "-q"])  # fmt: skip

    assert code == 0
    result = zarr.open_array(str(out), mode="r")[:]
    expected = Engine(device="cpu", builtins=False).upscale(image, net)
    diff = np.abs(result.astype(np.int64) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.005
