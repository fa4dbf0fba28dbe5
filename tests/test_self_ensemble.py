"""Self-ensemble ("x8"): ``upscale(..., self_ensemble=True)`` averages the network over flips and turns."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_superres import upscale
from napari_superres.cli import main
from napari_superres.engine.errors import InvalidRequestError
from napari_superres.engine.infer.ensemble import DIHEDRAL, self_ensemble
from napari_superres.engine.infer.planning import plan
from napari_superres.engine.infer.tiling import Cancelled
from napari_superres.engine.request import UpscaleRequest


@pytest.fixture
def image():
    return np.random.default_rng(0).random((44, 36)).astype(np.float32)


def turned_and_flipped_mean(image, model, engine, **options):
    """What the self-ensemble should give: the mean of the upscaled eight flips and turns, each turned back."""
    outs = []
    for turns, flip in DIHEDRAL:
        x = np.rot90(image[:, ::-1] if flip else image, turns)
        y = np.rot90(engine.upscale(np.ascontiguousarray(x), model, **options), -turns)
        outs.append(y[:, ::-1] if flip else y)
    return np.mean(outs, axis=0)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_the_result_is_the_mean_over_the_eight_flips_and_turns(engine, image, model_file, backend):
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    options = {"backend": backend, "tile": 16}  # several tiles: each is averaged on its own
    plain = engine.upscale(image, str(model_file), **options)
    ensembled = engine.upscale(image, str(model_file), self_ensemble=True, **options)
    expected = turned_and_flipped_mean(image, str(model_file), engine, **options)

    assert ensembled.shape == plain.shape == (88, 72) and ensembled.dtype == np.float32
    np.testing.assert_allclose(ensembled, expected, atol=1e-4)
    assert np.abs(ensembled - plain).max() > 1e-3  # the network is not equivariant: the average changes it


def test_the_ensemble_function_undoes_each_transform():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    calls = []

    def identity(t):
        calls.append(tuple(t.shape))
        return t

    torch.testing.assert_close(self_ensemble(identity, x), x)
    assert len(calls) == 8 and calls.count((1, 2, 4, 3)) == 4  # quarter turns swap H and W


def test_progress_counts_tiles_and_cancel_still_stops_within_a_tile(engine, image, model_file):
    seen = []
    engine.upscale(image, str(model_file), tile=16, backend="torch", self_ensemble=True,
                   progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert (
        seen[-1][0] == seen[-1][1] == engine.plan(image, UpscaleRequest(model=str(model_file), tile=16)).total_tiles()
    )
    with pytest.raises(Cancelled):
        engine.upscale(image, str(model_file), tile=16, backend="torch", self_ensemble=True,
                       should_stop=lambda: len(seen) > 0, progress=lambda done, total: seen.append(done))  # fmt: skip


def test_a_bad_value_or_a_package_that_tiles_itself_is_refused(image):
    with pytest.raises(InvalidRequestError, match="self_ensemble must be True or False"):
        UpscaleRequest(self_ensemble="yes")

    class Package:  # a model that normalises and tiles whole planes itself (a bioimage.io package)
        name, scale, in_channels, own_pipeline, receptive_field, cond_channels = "pkg", 2, 1, True, 0, 0
        normalization: dict = {"mode": "bioimageio"}
        metadata: dict = {}
        source = "python"

        def describe(self) -> str:
            return self.name

        def predict(self, batch, device="cpu", *, tile=None):
            raise AssertionError("planning refuses it before any work")

    with pytest.raises(InvalidRequestError, match="leave self_ensemble off"):
        plan(image, UpscaleRequest(self_ensemble=True), Package())


def test_the_command_line_flag_gives_the_api_result(engine, image, model_file, tmp_path):
    tifffile.imwrite(tmp_path / "in.tif", image, photometric="minisblack")
    argv = ["upscale", str(tmp_path / "in.tif"), str(tmp_path / "out.tif"), "--model", str(model_file), "-q"]
    assert main([*argv, "--device", "cpu", "--self-ensemble"]) == 0
    by_api = upscale(image, str(model_file), self_ensemble=True, device="cpu", engine=engine)
    np.testing.assert_allclose(tifffile.imread(tmp_path / "out.tif"), by_api, atol=1e-4)
