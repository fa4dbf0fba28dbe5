"""One request object: build an ``UpscaleRequest``, plan it once, run the job (API, Engine, dask, CLI)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_superres import upscale
from napari_superres.engine import SRNet
from napari_superres.engine.errors import InvalidRequestError
from napari_superres.engine.infer.planning import plan
from napari_superres.engine.infer.predictor import Predictor
from napari_superres.engine.options import Normalization
from napari_superres.engine.request import REQUEST_OPTIONS, UpscaleRequest


@pytest.fixture
def image():
    return (np.random.default_rng(0).random((40, 36)) * 60000).astype(np.uint16)


# --- building a request -----------------------------------------------------------------------------
def test_a_request_holds_every_choice_in_canonical_form():
    request = UpscaleRequest.from_kwargs(
        model="bicubic", scale=2.0, tile=0, device=" CPU ", normalization="percentile", output_dtype="float32",
        backend="TORCH", precision="fp32", degradation={"blur_sigma": 1.0},
    )  # fmt: skip
    assert request.scale == 2 and isinstance(request.scale, int)
    assert request.tile is None  # 0: automatic
    assert request.device == "cpu" and request.backend == "torch"
    assert request.normalization == Normalization("percentile")
    assert request.output_dtype == np.float32
    assert request.replace(scale=3).scale == 3 and request.scale == 2  # frozen: replace makes a copy
    assert UpscaleRequest(device=torch.device("cpu")).device == "cpu"
    assert set(request.options()) == set(REQUEST_OPTIONS) - {"model"}


def test_an_unknown_keyword_names_the_closest_and_every_known_one(image):
    with pytest.raises(
        InvalidRequestError, match=r"unknown upscale option 'tiel' \(did you mean 'tile'\?\); known: model, scale"
    ):
        UpscaleRequest.from_kwargs(tiel=64)
    with pytest.raises(InvalidRequestError, match="did you mean 'normalization'"):
        upscale(image, "bicubic", normalisation="percentile")  # the public keyword API is the request's
    with pytest.raises(InvalidRequestError, match="unknown upscale option 'colour'"):
        UpscaleRequest().replace(colour=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 2.5}, "scale must be a whole number"),
        ({"tile": -8}, "tile must be a whole number of pixels >= 0"),
        ({"batch_size": 1.5}, "batch_size must be a whole number"),
        ({"device": "gpu"}, "unknown device 'gpu'"),
        ({"normalization": "zscore"}, "normalization must be one of"),
        ({"output_dtype": "complex64"}, "output_dtype must be an integer, float or bool dtype"),
        ({"backend": "tensorrt"}, "backend must be one of auto, torch, onnxruntime"),
        ({"precision": "fp8"}, "precision must be one of fp32, bf16, int8, auto"),
        ({"axes": 3}, "axes must be a string"),
    ],
)
def test_a_bad_value_fails_when_the_request_is_built(kwargs, message):
    with pytest.raises(InvalidRequestError, match=message):
        UpscaleRequest.from_kwargs(**kwargs)


# --- planning: every check once, before any work --------------------------------------------------------
class _CountingNet(SRNet):
    calls = 0

    def forward(self, x):
        type(self).calls += 1
        return super().forward(x)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 4}, "upscales x2; it cannot upscale x4"),
        ({"axes": "ZY"}, "exactly one 'Y' and one 'X'"),
        ({"axes": "YXC"}, "3 letters but the image has 2 dimensions"),
        ({"backend": "onnxruntime", "device": "meta"}, "unknown device 'meta'"),
    ],
)
def test_plan_errors_come_before_any_work(engine, image, kwargs, message):
    net = _CountingNet(scale=2, channels=4, blocks=1)
    progress = []
    with pytest.raises(ValueError, match=message):  # InvalidRequestError (a ValueError) names the fix
        engine.upscale(image, net, progress=lambda done, total: progress.append(done), **kwargs)
    assert _CountingNet.calls == 0 and progress == []  # the network never ran


def test_a_job_is_planned_once_and_run_as_planned(engine, image, model_file):
    request = UpscaleRequest(model=str(model_file), tile=32, backend="torch")
    job = engine.plan(image, request)
    assert job.request is request and job.scale == 2 and job.out_shape == (80, 72) and job.out_dtype == np.uint16
    assert job.tile >= 32 and job.backend == "torch"
    assert isinstance(job.model, Predictor)  # an SRModel: the protocol the engine plans and runs with
    np.testing.assert_array_equal(
        engine.run(image, job), engine.upscale(image, str(model_file), tile=32, backend="torch")
    )


def test_the_same_result_through_upscale_engine_dask_and_the_command_line(engine, image, model_file, tmp_path):
    da = pytest.importorskip("dask.array")
    from napari_superres.cli import main
    from napari_superres.engine.infer.lazy import upscale_dask

    request = UpscaleRequest(model=str(model_file), backend="torch", device="cpu")
    by_api = upscale(image, str(model_file), backend="torch", device="cpu", engine=engine)
    by_engine = engine.run(image, engine.plan(image, request))
    lazy = da.from_array(image, chunks=20)
    by_dask = upscale_dask(lazy, engine.plan(lazy, request)).compute(scheduler="synchronous")  # a job streams
    tifffile.imwrite(tmp_path / "in.tif", image, photometric="minisblack")
    argv = ["upscale", str(tmp_path / "in.tif"), str(tmp_path / "out.tif"), "--model", str(model_file), "-q"]
    assert main([*argv, "--device", "cpu"]) == 0
    by_cli = tifffile.imread(tmp_path / "out.tif")

    np.testing.assert_array_equal(by_engine, by_api)
    for other in (by_dask, by_cli):  # chunked: equal up to float rounding of a count in a few pixels
        assert np.abs(other.astype(np.int64) - by_api).max() <= 1


# --- a model with its own pipeline --------------------------------------------------------------------
class _NearestPackage:
    """A toy model that normalises and tiles whole planes itself (as a bioimage.io package does)."""

    name, scale, in_channels, own_pipeline = "nearest x2", 2, 1, True
    normalization = {"mode": "bioimageio"}
    receptive_field = cond_channels = 0
    metadata: dict = {}
    source = "python"

    def __init__(self):
        self.planes = 0

    def describe(self) -> str:
        return self.name

    def predict(self, batch, device="cpu", *, tile=None):
        self.planes += len(batch)
        return np.repeat(np.repeat(batch, 2, axis=-2), 2, axis=-1).astype(np.float32) / 100


def test_a_predictor_with_its_own_pipeline_gets_whole_planes(engine):
    package = _NearestPackage()
    assert isinstance(package, Predictor)
    stack = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    out = engine.upscale(stack, package)
    assert out.shape == (3, 8, 10) and out.dtype == np.float32 and package.planes == 3  # its units, float32
    np.testing.assert_array_equal(out[1, ::2, ::2], stack[1] / np.float32(100))
    with pytest.raises(InvalidRequestError, match="normalises its input itself"):
        plan(stack, UpscaleRequest(normalization="percentile"), package)
    with pytest.raises(InvalidRequestError, match="cannot be streamed"):
        from napari_superres.engine.infer.lazy import upscale_dask

        upscale_dask(pytest.importorskip("dask.array").from_array(stack), package)
