"""Bad input and faults: every case ends in a clear error (the key words of its fix) or a correct result.

Nothing is ever lost: no operation deletes or overwrites a file it reads, outputs are
complete or absent, and temporaries of killed runs are cleaned by the next write.
Covers the Python API, model files, metrics, the command line (in process) and faults
(kill -9 during a write, a full disk, a read-only folder).
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

from napari_superres.cli import main
from napari_superres.engine import (
    Engine,
    ModelFileError,
    SRNet,
    SRNetConfig,
    compare,
    feature_difference,
    load_model,
    psnr,
    save_model,
    ssim,
)
from napari_superres.engine.files import TEMP_PREFIX, atomic_write_bytes, clean_stale_temps, temp_path_for
from napari_superres.engine.metrics.pixel import absolute_error_map, ssim_map


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Tiny networks: one intra-op thread."""


@pytest.fixture(scope="module")
def net() -> SRNet:
    torch.manual_seed(0)
    return SRNet(SRNetConfig(channels=4, blocks=1)).eval()


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(device="cpu", builtins=False)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, net) -> Path:
    return save_model(tmp_path_factory.mktemp("models") / "tiny", net)


@pytest.fixture
def image(rng) -> np.ndarray:
    """A small uint16 (Z, Y, X) stack."""
    return (rng.random((2, 24, 20)) * 1000).astype(np.uint16)


@pytest.fixture
def in_tif(tmp_path, image) -> Path:
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, image, photometric="minisblack")
    return path


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX))


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_clear_error(code: int, err: str, *words: str, status: int = 2) -> None:
    """Exit ``status``, one line on stderr, no traceback, every key word in it."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == status, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word.lower() in err.lower(), (word, err)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- API: refused arguments ----------------------------------------------------------------------
API_ERRORS = [
    ({"device": "nonsense"}, "unknown device"),
    ({"device": "gpu"}, "cuda"),
    ({"model": "bicubic", "scale": 2.5}, "whole number"),
    ({"model": "bicubic", "scale": 0}, "whole number"),
    ({"model": "bicubic", "scale": -2}, "whole number"),
    ({"model": "bicubic", "scale": True}, "whole number"),
    ({"model": "bicubic", "scale": "2"}, "whole number"),
    ({"scale": 2.5}, "whole number"),  # the x2 network: 2.5 is never rounded to 2
    ({"scale": 3}, "cannot upscale x3"),
    ({"model": "no-such-model"}, "no model named"),
    ({"model": "missing.safetensors"}, "not found"),
    ({"model": "bicubic", "output_dtype": np.complex64}, "output_dtype"),
]


@pytest.mark.parametrize(("kwargs", "words"), API_ERRORS, ids=[f"{k}" for k, _ in API_ERRORS])
def test_api_refuses_bad_arguments(engine, net, image, kwargs, words):
    from napari_superres.engine.registry import upscale

    kwargs = {"model": net, **kwargs}
    with pytest.raises((ValueError, KeyError), match=words):
        upscale(image, engine=engine, **kwargs)


BAD_IMAGES = [
    ("nan", lambda: np.where(np.eye(16, dtype=bool), np.nan, 1.0).astype(np.float32), "NaN"),
    ("inf", lambda: np.full((16, 16), np.inf, np.float32), "NaN or Inf"),
    ("empty", lambda: np.zeros((0, 16), np.float32), "empty"),
    ("1-D", lambda: np.zeros(16, np.float32), "at least 2 dimensions"),
    ("one pixel", lambda: np.zeros((1, 1), np.float32), "too small"),
    ("complex", lambda: np.zeros((16, 16), np.complex64), "dtype"),
    ("object", lambda: np.zeros((16, 16), object), "dtype"),
]


@pytest.mark.parametrize(("make", "words"), [(m, w) for _, m, w in BAD_IMAGES], ids=[n for n, _, _ in BAD_IMAGES])
def test_api_refuses_bad_images(engine, net, make, words):
    with pytest.raises(ValueError, match=words):
        engine.upscale(make(), net)


def test_api_device_nonsense_lists_the_choices():
    with pytest.raises(ValueError, match="auto, cpu, cuda, cuda:N, mps"):
        Engine(device="nonsense", builtins=False)


def test_api_model_folder_says_it_is_a_folder(engine, tmp_path, model_file):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.safetensors").write_bytes(model_file.read_bytes())
    with pytest.raises(ModelFileError, match="is a folder.*tiny.safetensors"):
        engine.upscale(np.zeros((8, 8), np.uint8), str(tmp_path / "models"))


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory: 9 TB")])
def test_api_out_of_memory_says_what_to_reduce(engine, error):
    class Exhausted(torch.nn.Module):
        scale, in_channels = 2, 1

        def receptive_field(self) -> int:
            return 2

        def forward(self, x):
            raise error

    with pytest.raises(MemoryError, match="out of memory.*tile.*batch_size"):
        engine.upscale(np.zeros((32, 32), np.float32), Exhausted())


# --- API: correct results for every dtype ---------------------------------------------------------
DTYPES = ["int8", "int16", "int32", "int64", "uint32", "uint64", "float16", "float32", "float64"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_comes_back_in_its_dtype_with_correct_values(engine, net, rng, dtype):
    """Integers other than uint8/uint16 use their own value range (not their dtype's), computed
    precisely: the result equals the float64 computation, rounded (and clipped) into the dtype."""
    x = (rng.random((20, 20)) * (100 if dtype == "int8" else 1000)).astype(dtype)
    out = engine.upscale(x, net)
    expected = engine.upscale(x.astype(np.float64), net)
    assert out.dtype == x.dtype and out.shape == (40, 40)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        expected = np.clip(np.rint(expected), info.min, info.max)
        assert np.abs(out.astype(np.float64) - expected).max() <= 1
    else:
        tol = 0.5 if dtype == "float16" else 1e-3
        np.testing.assert_allclose(out.astype(np.float64), expected, atol=tol, rtol=2e-3)


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_camera_dtypes_keep_the_dtype_range(engine, rng, dtype):
    x = (rng.random((20, 20)) * 200).astype(dtype)
    out = engine.upscale(x, "bicubic")
    expected = np.clip(np.rint(engine.upscale(x.astype(np.float64), "bicubic")), 0, np.iinfo(dtype).max)
    assert out.dtype == x.dtype and np.abs(out - expected).max() <= 1


def test_int64_with_a_huge_offset_keeps_its_differences(engine, net, rng):
    base = (rng.random((20, 20)) * 1000).astype(np.int64)
    out = engine.upscale(base + 10**12, net) - 10**12
    expected = engine.upscale(base.astype(np.float64), net)
    assert np.abs(out - expected).max() <= 1


def test_scale_two_point_zero_is_two(engine):
    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    np.testing.assert_array_equal(engine.upscale(x, "bicubic", scale=2.0), engine.upscale(x, "bicubic", scale=2))


# --- model files -----------------------------------------------------------------------------------
def _model_with_metadata(path: Path, config: dict, tensors: dict | None = None) -> Path:
    from safetensors.torch import save_file

    meta = {"format": "napari-superres", "format_version": "1", "config": json.dumps(config),
            "normalization": "{}", "training": "{}"}  # fmt: skip
    save_file(tensors or {"x": torch.zeros(1)}, str(path), metadata=meta)
    return path


def _nan_model(tmp_path: Path, value: float) -> Path:
    bad = SRNet(SRNetConfig(channels=4, blocks=1))
    with torch.no_grad():
        next(bad.parameters()).view(-1)[0] = value
    return save_model(tmp_path / f"bad{value}", bad)


def _pickle_payload(tmp_path: Path) -> Path:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Payload()))
    return path


def _truncated(tmp_path: Path, model_file: Path) -> Path:
    data = model_file.read_bytes()
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(data[: len(data) // 2])
    return path


MODEL_FILES = {
    "nan weights": (lambda tmp, good: _nan_model(tmp, float("nan")), "NaN or Inf"),
    "inf weights": (lambda tmp, good: _nan_model(tmp, float("inf")), "NaN or Inf"),
    "truncated": (_truncated, "damaged or truncated|not a readable"),
    "wrong header": (
        lambda tmp, good: (tmp / "x.safetensors").write_bytes(os.urandom(256)) and tmp / "x.safetensors",
        "not a readable safetensors",
    ),
    "empty file": (
        lambda tmp, good: (tmp / "e.safetensors").write_bytes(b"") or tmp / "e.safetensors",
        "not a readable",
    ),
    "other safetensors": (lambda tmp, good: _other_safetensors(tmp), "not a napari-superres model"),
    "pickle renamed": (lambda tmp, good: _pickle_payload(tmp), "not a readable safetensors"),
    "torch.save renamed": (lambda tmp, good: _torch_saved(tmp), "not a readable safetensors"),
    "absurd channels": (
        lambda tmp, good: _model_with_metadata(tmp / "c.safetensors", {"channels": 10**6}),
        "at most 1024 channels",
    ),
    "absurd blocks": (lambda tmp, good: _model_with_metadata(tmp / "b.safetensors", {"blocks": 10**7}), "at most"),
    "absurd upsample": (
        lambda tmp, good: _model_with_metadata(tmp / "u.safetensors", {"upsample_channels": [10**5]}),
        "at most",
    ),
    "negative channels": (
        lambda tmp, good: _model_with_metadata(tmp / "n.safetensors", {"channels": -3}),
        "invalid network config",
    ),
    "string channels": (
        lambda tmp, good: _model_with_metadata(tmp / "s.safetensors", {"channels": "32"}),
        "invalid network config",
    ),
    "bad scale": (
        lambda tmp, good: _model_with_metadata(tmp / "sc.safetensors", {"scale": 5}),
        "invalid network config",
    ),
    "weights mismatch": (
        lambda tmp, good: _model_with_metadata(tmp / "w.safetensors", {"channels": 8}),
        "do not match",
    ),
    "folder": (lambda tmp, good: tmp, "is a folder"),
    "missing": (lambda tmp, good: tmp / "nope.safetensors", "not found"),
}


def _other_safetensors(tmp: Path) -> Path:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp / "o.safetensors"))
    return tmp / "o.safetensors"


def _torch_saved(tmp: Path) -> Path:
    torch.save({"w": torch.zeros(2)}, tmp / "t.safetensors")
    return tmp / "t.safetensors"


@pytest.mark.parametrize("case", list(MODEL_FILES))
def test_bad_model_files_are_refused_before_any_allocation(tmp_path, model_file, case):
    make, words = MODEL_FILES[case]
    path = make(tmp_path, model_file)
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=words):
        load_model(path)
    assert time.perf_counter() - start < 5  # a terabyte network would take far longer (or crash)
    assert not (tmp_path / "pwned").exists()  # no pickle payload ever runs


# --- metrics: NaN/Inf in either image -------------------------------------------------------------
METRICS = {
    "psnr": lambda a, b: psnr(a, b),
    "ssim": lambda a, b: ssim(a, b),
    "ssim_map": lambda a, b: ssim_map(a, b),
    "compare": lambda a, b: compare(a, b, perceptual=False),
    "abs error map": lambda a, b: absolute_error_map(a, b),
    "feature_difference": lambda a, b: feature_difference(a, b),
}


@pytest.mark.parametrize("which", ["A", "B"])
@pytest.mark.parametrize("metric", list(METRICS))
def test_metrics_refuse_nan_in_either_image(rng, metric, which):
    good = rng.random((24, 24)).astype(np.float32)
    bad = good.copy()
    bad[3, 4] = np.nan
    a, b = (bad, good) if which == "A" else (good, bad)
    with pytest.raises(ValueError, match=f"image {which} contains NaN or Inf"):
        METRICS[metric](a, b)


def test_metrics_refuse_inf_in_a_dask_image(rng):
    da = pytest.importorskip("dask.array")
    good = rng.random((2, 24, 24)).astype(np.float32)
    bad = good.copy()
    bad[1, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        ssim_map(da.from_array(bad, chunks=(1, 24, 24)), good)


# --- CLI: files are never destroyed ---------------------------------------------------------------
def test_cli_input_named_like_the_old_temp_is_read_not_deleted(tmp_path, capsys, rng):
    """The old writer used OUT.zarr.tmp as its temp: an input of that name was deleted."""
    image = rng.random((20, 24)).astype(np.float32)
    src = tmp_path / "o.zarr.tmp"
    zarr.open_array(str(src), mode="w", shape=image.shape, chunks=(10, 12), dtype=image.dtype)[:] = image
    code, err = cli(capsys, "upscale", src, tmp_path / "o.zarr", "--model", "bicubic", "--axes", "YX", "-q")
    assert code == 0, err
    np.testing.assert_array_equal(zarr.open_array(str(src), mode="r")[:], image)
    expected = Engine(device="cpu", builtins=False).upscale(image, "bicubic")
    np.testing.assert_allclose(zarr.open_array(str(tmp_path / "o.zarr"), mode="r")[:], expected, atol=1e-5)


def test_cli_input_named_like_the_old_backup_survives_overwrite(tmp_path, capsys, rng):
    image = rng.random((20, 24)).astype(np.float32)
    src, out = tmp_path / "o.zarr.old", tmp_path / "o.zarr"
    zarr.open_array(str(src), mode="w", shape=image.shape, chunks=(10, 12), dtype=image.dtype)[:] = image
    zarr.open_array(str(out), mode="w", shape=(2, 2), dtype="u1")[:] = 7
    code, err = cli(capsys, "upscale", src, out, "--model", "bicubic", "--axes", "YX", "--overwrite", "-q")
    assert code == 0, err
    np.testing.assert_array_equal(zarr.open_array(str(src), mode="r")[:], image)
    assert zarr.open_array(str(out), mode="r").shape == (40, 48)
    assert temps(tmp_path) == []


def _zarr_group_input(tmp_path: Path, image: np.ndarray) -> Path:
    group = zarr.open_group(str(tmp_path / "data.zarr"), mode="w")
    group.create_array("raw", shape=image.shape, dtype=image.dtype)[:] = image
    return tmp_path / "data.zarr" / "raw"


OUTPUT_CLASHES = [
    ("output is the input", lambda tmp, src: (src, src), "is the input"),
    ("symlink to the input", lambda tmp, src: (src, _symlink(tmp / "link.tif", src)), "is the input"),
    ("hard link to the input", lambda tmp, src: (src, _hardlink(tmp / "hard.tif", src)), "is the input"),
    (
        "output inside the input",
        lambda tmp, src: (_zarr_copy(tmp, src), tmp / "in.zarr" / "out.zarr"),
        "inside the input",
    ),
    (
        "output contains the input",
        lambda tmp, src: (_zarr_group_input(tmp, tifffile.imread(src)), tmp / "data.zarr"),
        "contains the input",
    ),
    ("reserved temp name", lambda tmp, src: (src, temp_path_for(tmp / "x.tif")), "reserved for temporary"),
]


def _symlink(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


def _hardlink(link: Path, target: Path) -> Path:
    os.link(target, link)
    return link


def _zarr_copy(tmp: Path, src: Path) -> Path:
    image = tifffile.imread(src)
    zarr.open_array(str(tmp / "in.zarr"), mode="w", shape=image.shape, dtype=image.dtype)[:] = image
    return tmp / "in.zarr"


@pytest.mark.parametrize(
    ("make", "words"), [(m, w) for _, m, w in OUTPUT_CLASHES], ids=[n for n, _, _ in OUTPUT_CLASHES]
)
def test_cli_never_writes_over_its_input(tmp_path, capsys, in_tif, image, make, words):
    src, out = make(tmp_path, in_tif)
    before = np.asarray(zarr.open_array(str(src), mode="r")[:]) if src.name != "in.tif" else tifffile.imread(src)
    code, err = cli(capsys, "upscale", src, out, "--model", "bicubic", "--overwrite", "-q")
    assert_clear_error(code, err, words)
    after = np.asarray(zarr.open_array(str(src), mode="r")[:]) if src.name != "in.tif" else tifffile.imread(src)
    np.testing.assert_array_equal(after, before)


# --- CLI: one clear line for every foreseeable failure -------------------------------------------
def test_cli_missing_output_folder(tmp_path, capsys, in_tif):
    code, err = cli(capsys, "upscale", in_tif, tmp_path / "no" / "such" / "out.tif", "--model", "bicubic", "-q")
    assert_clear_error(code, err, "does not exist", str(tmp_path / "no" / "such"), status=1)


@pytest.mark.parametrize(
    ("make_tif", "words"),
    [
        (lambda p, good: p.write_bytes(good.read_bytes()[:300]), "cannot read TIFF"),
        (lambda p, good: p.write_bytes(good.read_bytes()[: len(good.read_bytes()) - 900]), "cannot read TIFF"),
        (lambda p, good: p.write_bytes(os.urandom(2048)), "cannot read TIFF"),
        (lambda p, good: p.write_bytes(b""), "cannot read TIFF"),
    ],
    ids=["truncated header", "truncated data", "random bytes", "empty"],
)
def test_cli_damaged_tiff_names_the_file(tmp_path, capsys, in_tif, make_tif, words):
    bad = tmp_path / "bad.tif"
    make_tif(bad, in_tif)
    code, err = cli(capsys, "upscale", bad, tmp_path / "out.tif", "--model", "bicubic", "-q")
    assert_clear_error(code, err, words, str(bad))
    assert not (tmp_path / "out.tif").exists() and temps(tmp_path) == []


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--scale", "0"], "--scale must be a positive integer"),
        (["--scale", "-2"], "--scale must be a positive integer"),
        (["--scale", "3"], "cannot upscale x3"),
        (["--chunk-planes", "0"], "--chunk-planes must be a positive integer"),
        (["--workers", "0"], "--workers must be a positive integer"),
    ],
)
def test_cli_bad_numbers(tmp_path, capsys, in_tif, model_file, extra, words):
    code, err = cli(capsys, "upscale", in_tif, tmp_path / "out.tif", "--model", model_file, *extra, "-q")
    assert_clear_error(code, err, words)


def test_cli_unknown_device_is_refused_by_the_parser(tmp_path, capsys, in_tif):
    with pytest.raises(SystemExit) as exit_info:
        main(["upscale", str(in_tif), str(tmp_path / "o.tif"), "--device", "nonsense"])
    assert exit_info.value.code == 2 and "invalid choice: 'nonsense'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("make_model", "words"),
    [
        (lambda tmp: tmp, "is a folder"),
        (lambda tmp: _nan_model(tmp, float("nan")), "NaN or Inf"),
        (lambda tmp: _pickle_payload(tmp), "not a readable safetensors"),
    ],
    ids=["folder", "nan weights", "pickle"],
)
def test_cli_bad_model_files(tmp_path, capsys, in_tif, make_model, words):
    models = tmp_path / "models"
    models.mkdir()
    code, err = cli(capsys, "upscale", in_tif, tmp_path / "out.tif", "--model", make_model(models), "-q")
    assert_clear_error(code, err, words)
    assert not (tmp_path / "out.tif").exists() and not (models / "pwned").exists()


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
@pytest.mark.parametrize(
    ("error", "words", "status"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "no space left", 1),
        (MemoryError(), "out of memory", 1),
        (KeyboardInterrupt(), "interrupted", 130),
    ],
    ids=["disk full", "memory", "ctrl-c"],
)
def test_cli_failure_mid_write_keeps_the_old_output_and_no_temp(
    tmp_path, capsys, monkeypatch, in_tif, error, words, status, suffix
):
    import napari_superres.io.stream as stream

    out = tmp_path / f"out{suffix}"
    assert main(["upscale", str(in_tif), str(out), "--model", "bicubic", "-q"]) == 0
    before = np.asarray(zarr.open_array(str(out), mode="r")[:]) if suffix == ".zarr" else tifffile.imread(out)

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(stream.ComputeRunner, "compute_blocks", broken)
    monkeypatch.setattr(stream.ComputeRunner, "compute_in_order", broken)
    code, err = cli(capsys, "upscale", in_tif, out, "--model", "bicubic", "--scale", "3", "--overwrite", "-q")

    assert_clear_error(code, err, words, status=status)
    after = np.asarray(zarr.open_array(str(out), mode="r")[:]) if suffix == ".zarr" else tifffile.imread(out)
    np.testing.assert_array_equal(after, before)
    assert temps(tmp_path) == []


def test_cli_debug_prints_the_traceback(tmp_path, capsys, monkeypatch, in_tif):
    import napari_superres.io.stream as stream

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(stream.ComputeRunner, "compute_in_order", broken)
    code, err = cli(capsys, "upscale", in_tif, tmp_path / "o.tif", "--model", "bicubic", "-q", "--debug")
    assert code == 1 and "Traceback" in err and err.strip().splitlines()[-1].endswith("Input/output error")


# --- train CLI: inputs never overwritten, output checked before training -------------------------
@pytest.fixture
def hr_tif(tmp_path, rng) -> Path:
    path = tmp_path / "hr.tif"
    tifffile.imwrite(path, (rng.random((64, 64)) * 4000).astype(np.uint16))
    return path


FAST_TRAIN = ["--steps", "2", "--batch-size", "2", "--patch-size", "32", "--channels", "4", "--blocks", "1",
              "--device", "cpu", "--val-every", "0", "--quiet"]  # fmt: skip
TRAIN_CLASHES = [
    (
        "checkpoint is the training image",
        lambda t, hr: ["--checkpoint", hr, "--out", t / "m.safetensors"],
        "is the --hr input",
    ),
    ("log is the training image", lambda t, hr: ["--log", hr, "--out", t / "m.safetensors"], "is the --hr input"),
    (
        "out is the checkpoint",
        lambda t, hr: ["--checkpoint", t / "m.safetensors", "--out", t / "m.safetensors"],
        "same file",
    ),
    ("log is the out", lambda t, hr: ["--log", t / "m.safetensors", "--out", t / "m.safetensors"], "same file"),
    ("out is a folder", lambda t, hr: ["--out", _mkdir(t / "dir.safetensors"), "--overwrite"], "is a folder"),
    ("missing resume", lambda t, hr: ["--resume", t / "none.ckpt", "--out", t / "m.safetensors"], "not found"),
]


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize(("make", "words"), [(m, w) for _, m, w in TRAIN_CLASHES], ids=[n for n, _, _ in TRAIN_CLASHES])
def test_train_refuses_outputs_that_clash(tmp_path, capsys, hr_tif, make, words):
    before = hr_tif.read_bytes()
    code, err = cli(capsys, "train", "--hr", hr_tif, *make(tmp_path, hr_tif), *FAST_TRAIN)
    assert_clear_error(code, err, words)
    assert hr_tif.read_bytes() == before


def test_train_checks_the_output_folder_before_training(tmp_path, capsys, hr_tif, monkeypatch):
    from napari_superres.engine.train.trainer import Trainer

    monkeypatch.setattr(Trainer, "run", lambda *a, **k: pytest.fail("trained although the output cannot be written"))
    code, err = cli(capsys, "train", "--hr", hr_tif, "--out", tmp_path / "gone" / "m.safetensors", *FAST_TRAIN)
    assert_clear_error(code, err, "does not exist", status=1)


@pytest.mark.slow  # trains 2 steps (~10 s on 2 shared cores)
def test_train_keeps_the_model_when_the_final_write_fails(tmp_path, capsys, hr_tif, monkeypatch):
    from napari_superres.engine.train.trainer import Trainer

    out, ckpt = tmp_path / "m.safetensors", tmp_path / "ckpts" / "run.ckpt"
    ckpt.parent.mkdir()
    real_save = Trainer.save_model

    def failing_save(self, path):
        if Path(path) == out:
            raise OSError(errno.ENOSPC, "No space left on device", str(out))
        return real_save(self, path)

    monkeypatch.setattr(Trainer, "save_model", failing_save)
    code, err = cli(capsys, "train", "--hr", hr_tif, "--out", out, "--checkpoint", ckpt, *FAST_TRAIN)
    assert_clear_error(code, err, "no space left", "saved to", status=1)
    kept = [p for p in ckpt.parent.iterdir() if p.suffix == ".safetensors"]
    assert len(kept) == 1 and str(kept[0]) in err
    assert load_model(kept[0]).scale == 2


# --- faults: kill -9 during a write, stale temporaries ---------------------------------------------
SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np, dask.array as da
    from napari_superres.io.stream import ComputeRunner
    from napari_superres.io.writers import OutputInfo, writer_for

    out = Path(sys.argv[1])
    def slow(block):
        time.sleep(0.3)
        return block
    planes = da.from_array(np.full((60, 32, 32), 9, np.uint16), chunks=(1, 32, 32)).map_blocks(slow)
    writer_for(out).write(planes, out, OutputInfo(axes="ZYX"), ComputeRunner(quiet=True))
    """
)


@pytest.mark.slow  # a writer subprocess (~5-10 s on 2 shared cores)
@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_kill_9_during_a_write_keeps_the_old_output_and_the_next_write_cleans_up(tmp_path, suffix):
    import dask.array as da

    from napari_superres.io.stream import ComputeRunner
    from napari_superres.io.writers import OutputInfo, writer_for

    out = tmp_path / f"out{suffix}"
    old = da.from_array(np.full((2, 8, 8), 1, np.uint16))
    writer_for(out).write(old, out, OutputInfo(axes="ZYX"), ComputeRunner(quiet=True))
    script = tmp_path / "slow_writer.py"
    script.write_text(SLOW_WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(out)])
    try:
        deadline = time.monotonic() + 60
        while not temps(tmp_path) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.5)  # some planes written
        assert proc.poll() is None, "the writer finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert temps(tmp_path), "a killed writer leaves its temporary"
    read = (lambda p: zarr.open_array(str(p), mode="r")[:]) if suffix == ".zarr" else tifffile.imread
    np.testing.assert_array_equal(read(out), np.full((2, 8, 8), 1, np.uint16))  # the old output, complete

    new = da.from_array(np.full((3, 8, 8), 2, np.uint16))
    writer_for(out).write(new, out, OutputInfo(axes="ZYX"), ComputeRunner(quiet=True))
    assert temps(tmp_path) == []  # the dead writer's temporary is gone
    np.testing.assert_array_equal(read(out), np.full((3, 8, 8), 2, np.uint16))


def test_stale_temp_of_a_dead_writer_is_removed_by_the_next_model_save(tmp_path, net):
    stale = tmp_path / f"{TEMP_PREFIX}.{temp_path_for('x').name.split('.')[2]}.{dead_pid()}.w0123abcd.m.safetensors"
    stale.write_bytes(b"partial")
    save_model(tmp_path / "m", net)
    assert temps(tmp_path) == [] and load_model(tmp_path / "m.safetensors").scale == 2


def test_old_output_set_aside_by_a_killed_run_is_restored(tmp_path):
    host = temp_path_for("x").name.split(".")[2]
    aside = tmp_path / f"{TEMP_PREFIX}.{host}.{dead_pid()}.o0123abcd.out.zarr"
    aside.mkdir()
    (aside / "data").write_text("old output")
    clean_stale_temps(tmp_path)
    assert (tmp_path / "out.zarr" / "data").read_text() == "old output" and temps(tmp_path) == []


def test_temps_of_live_processes_and_other_machines_are_left_alone(tmp_path):
    host = temp_path_for("x").name.split(".")[2]
    live = tmp_path / f"{TEMP_PREFIX}.{host}.{os.getppid()}.w0123abcd.a.tif"
    other_host = tmp_path / f"{TEMP_PREFIX}.00000000.{dead_pid()}.w0123abcd.b.tif"
    user_file = tmp_path / ".a.tif.1234.tmp"  # not ours: never touched
    for p in (live, other_host, user_file):
        p.write_bytes(b"x")
    atomic_write_bytes(tmp_path / "c.json", b"{}")
    assert live.exists() and other_host.exists() and user_file.exists()


# --- faults: full disk and read-only folder (root: a tiny tmpfs) -----------------------------------
def _mount_tmpfs(path: Path, options: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")


@pytest.fixture
def full_disk(tmp_path):
    """A 200 kB file system."""
    path = tmp_path / "small"
    _mount_tmpfs(path, "size=200k")
    yield path
    subprocess.run(["umount", str(path)], check=False)


@pytest.fixture
def read_only_dir(tmp_path):
    path = tmp_path / "ro"
    if os.geteuid() != 0:  # root ignores permission bits: it gets a read-only tmpfs instead
        path.mkdir()
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    _mount_tmpfs(path, "ro,size=64k")
    yield path
    subprocess.run(["umount", str(path)], check=False)


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_full_disk_is_a_clear_error_and_leaves_nothing(tmp_path, capsys, rng, full_disk, suffix):
    src = tmp_path / "big.tif"
    tifffile.imwrite(src, (rng.random((4, 64, 64)) * 1000).astype(np.uint16), photometric="minisblack")  # x4: 512 kB
    code, err = cli(capsys, "upscale", src, full_disk / f"out{suffix}", "--model", "bicubic", "--scale", "4", "-q")
    assert_clear_error(code, err, "no space left", status=1)
    assert list(full_disk.iterdir()) == []


def test_full_disk_model_save_leaves_the_old_model(full_disk, net):
    small = save_model(full_disk / "m", net)
    before = small.read_bytes()
    torch.manual_seed(1)
    big = SRNet(SRNetConfig(channels=64, blocks=4))  # ~1.2 MB
    with pytest.raises(OSError) as error:
        save_model(small, big)
    assert error.value.errno == errno.ENOSPC
    assert small.read_bytes() == before and temps(full_disk) == []


def test_read_only_output_folder(tmp_path, capsys, in_tif, read_only_dir):
    code, err = cli(capsys, "upscale", in_tif, read_only_dir / "out.tif", "--model", "bicubic", "-q")
    assert_clear_error(code, err, str(read_only_dir), status=1)
    assert "read-only" in err or "permission denied" in err.lower()


def test_train_into_a_read_only_folder_fails_before_training(tmp_path, capsys, hr_tif, read_only_dir):
    start = time.perf_counter()
    code, err = cli(capsys, "train", "--hr", hr_tif, "--out", read_only_dir / "m.safetensors",
                    *FAST_TRAIN[:-1], "--steps", "100000", "--quiet")  # fmt: skip
    assert_clear_error(code, err, str(read_only_dir), status=1)
    assert time.perf_counter() - start < 30  # refused up front, not after 100000 steps


def test_training_out_of_memory_says_what_to_reduce(monkeypatch):
    from napari_superres.engine import TrainConfig, Trainer, make_pair_source
    from napari_superres.engine.samples import synthetic_pair

    low_res, high_res = synthetic_pair((64, 64), 2, seed=0)
    data = make_pair_source([high_res], [low_res], scale=2, patch_size=32)
    trainer = Trainer(TrainConfig(scale=2, steps=2, batch_size=2, patch_size=32, device="cpu",
                                  net={"channels": 4, "blocks": 1}), data)  # fmt: skip

    def exhausted():
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 TB")

    monkeypatch.setattr(trainer, "_train_step", exhausted)
    with pytest.raises(MemoryError, match="out of memory.*batch_size or patch_size"):
        trainer.run()


def test_an_added_writer_takes_its_longer_suffix_and_the_built_ins_stay(tmp_path):
    from napari_superres.io import writers

    class FakeOmeZarr(writers.ArrayWriter):
        suffixes = (".fake.ome.zarr",)

    saved, saved_flag = list(writers._WRITERS), writers._builtins_registered
    writers._WRITERS[:], writers._builtins_registered = [], False  # as at start-up: a plug-in registers first
    try:
        writers.register_writer(FakeOmeZarr())
        assert isinstance(writers.writer_for(tmp_path / "a.fake.ome.zarr"), FakeOmeZarr)
        assert type(writers.writer_for(tmp_path / "a.zarr")).__name__ == "ZarrWriter"
        assert type(writers.writer_for(tmp_path / "a.ome.tif")).__name__ == "TiffWriter"
        with pytest.raises(ValueError, match=r"must end in \.zarr, \.tif"):
            writers.writer_for(tmp_path / "a.png")
    finally:
        writers._WRITERS[:], writers._builtins_registered = saved, saved_flag


@pytest.mark.slow  # trains 2 steps of a 64-channel net (~10 s on 2 shared cores)
def test_train_onto_a_full_disk_keeps_the_model_in_the_temp_folder(tmp_path, capsys, hr_tif, full_disk, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the fallback folder when there is no checkpoint
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    out = full_disk / "big.safetensors"  # a 64-channel, 4-block net is ~1.2 MB: more than the 200 kB disk
    code, err = cli(capsys, "train", "--hr", hr_tif, "--out", out, *FAST_TRAIN, "--channels", "64", "--blocks", "4")
    assert_clear_error(code, err, "no space left", "saved to", status=1)
    kept = sorted(tmp_path.glob("big-unsaved-*.safetensors"))
    assert len(kept) == 1 and load_model(kept[0]).scale == 2
    assert list(full_disk.iterdir()) == []


@pytest.mark.parametrize("extra", [["--channels", "100000"], ["--blocks", "100000"]])
def test_train_refuses_an_absurd_network_before_allocating_it(tmp_path, capsys, hr_tif, extra):
    code, err = cli(capsys, "train", "--hr", hr_tif, "--out", tmp_path / "m.safetensors", *FAST_TRAIN, *extra)
    assert_clear_error(code, err, "at most", "use a smaller network")


# --- issue 27: nothing overwritten, nothing silently wrong ------------------------------------------
@pytest.mark.parametrize("flag", ["--checkpoint", "--log", "--out"])
def test_train_never_replaces_an_existing_output_without_overwrite(tmp_path, capsys, hr_tif, flag):
    existing = tmp_path / {"--checkpoint": "old.ckpt", "--log": "old.json", "--out": "old.safetensors"}[flag]
    existing.write_bytes(b"precious results")
    outputs = {"--out": tmp_path / "m.safetensors", flag: existing}
    code, err = cli(capsys, "train", "--hr", hr_tif, *[str(a) for kv in outputs.items() for a in kv], *FAST_TRAIN)
    assert_clear_error(code, err, flag, str(existing), "--overwrite")
    assert existing.read_bytes() == b"precious results"


def test_train_resume_does_not_replace_an_existing_out(tmp_path, capsys, hr_tif):
    ckpt, out = tmp_path / "c.ckpt", tmp_path / "model.safetensors"
    ckpt.write_bytes(b"a checkpoint")
    out.write_bytes(b"the model of another run")
    code, err = cli(capsys, "train", "--hr", hr_tif, "--resume", ckpt, "--out", out, *FAST_TRAIN)
    assert_clear_error(code, err, "--out", str(out), "--overwrite")
    assert out.read_bytes() == b"the model of another run" and ckpt.read_bytes() == b"a checkpoint"


def test_a_bit_flipped_checkpoint_is_refused_on_resume(tmp_path, capsys, hr_tif):
    from napari_superres.engine.errors import CheckpointError
    from napari_superres.engine.train.trainer import Trainer

    ckpt = tmp_path / "run.ckpt"
    assert main(["train", "--hr", str(hr_tif), "--out", str(tmp_path / "m.safetensors"), "--checkpoint", str(ckpt),
                 *FAST_TRAIN]) == 0  # fmt: skip
    assert Trainer.read_checkpoint(ckpt)["step"] == 2
    # resuming replaces the checkpoint it resumes from (no --overwrite needed for that one)
    assert main(["train", "--hr", str(hr_tif), "--resume", str(ckpt), "--out", str(tmp_path / "m1.safetensors"),
                 "--steps", "3", "--quiet"]) == 0  # fmt: skip
    assert Trainer.read_checkpoint(ckpt)["step"] == 3
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0x04  # one bit, in the middle of the tensors
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{ckpt}.*damaged"):
        Trainer.read_checkpoint(ckpt)
    code, err = cli(capsys, "train", "--hr", hr_tif, "--resume", ckpt, "--out", tmp_path / "m2.safetensors",
                    "--steps", "4", "--quiet")  # fmt: skip
    assert_clear_error(code, err, str(ckpt), "damaged")
    assert not (tmp_path / "m2.safetensors").exists()


def _weights_as(tmp: Path, good: Path, dtype: torch.dtype) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(good), framework="pt") as f:
        meta = f.metadata()
    tensors = {k: v.to(dtype) for k, v in load_file(str(good)).items()}
    path = tmp / f"{str(dtype).split('.')[-1]}.safetensors"
    save_file(tensors, str(path), metadata=meta)
    return path


def _tampered_normalization(tmp: Path, good: Path, text: str) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(good), framework="pt") as f:
        meta = dict(f.metadata())
    meta["normalization"] = text
    path = tmp / "tampered.safetensors"
    save_file(load_file(str(good)), str(path), metadata=meta)
    return path


MODEL_FILES.update({
    "huge finite weights": (lambda tmp, good: _nan_model(tmp, 1e30), "beyond"),
    "int8 weights": (lambda tmp, good: _weights_as(tmp, good, torch.int8), "not a float dtype"),
    "bool weights": (lambda tmp, good: _weights_as(tmp, good, torch.bool), "not a float dtype"),
    "normalization nested 100000 deep": (lambda tmp, good: _tampered_normalization(tmp, good, "[" * 100000),
                                         "damaged model metadata"),
    "normalization not an object": (lambda tmp, good: _tampered_normalization(tmp, good, '"percentile"'),
                                    "damaged model metadata"),
    "normalization unknown mode": (lambda tmp, good: _tampered_normalization(tmp, good, '{"mode": "zscore"}'),
                                   "must be one of"),
    "normalization inverted percentiles": (
        lambda tmp, good: _tampered_normalization(tmp, good, '{"mode": "percentile", "low": 99, "high": 1}'),
        "low < high"),
})  # fmt: skip


@pytest.mark.parametrize("case", ["huge finite weights", "int8 weights", "bool weights",
                                  "normalization nested 100000 deep", "normalization not an object",
                                  "normalization unknown mode", "normalization inverted percentiles"])  # fmt: skip
def test_suspicious_model_files_are_refused(tmp_path, model_file, case):
    test_bad_model_files_are_refused_before_any_allocation(tmp_path, model_file, case)


def test_a_network_that_outputs_nan_or_inf_is_an_error_not_a_black_image(engine, tmp_path):
    from napari_superres.engine.errors import NonFiniteOutputError

    class Overflowing(torch.nn.Module):
        scale, in_channels = 2, 1

        def receptive_field(self) -> int:
            return 1

        def forward(self, x):
            return F.interpolate(x, scale_factor=2) * float("inf")

    import torch.nn.functional as F

    for image in (np.ones((16, 16), np.uint16), np.ones((16, 16, 3), np.uint8)):
        with pytest.raises(NonFiniteOutputError, match="NaN or Inf.*nothing was returned or written"):
            engine.upscale(image, Overflowing(), backend="torch")


@pytest.mark.parametrize("dtype", ["int64", "uint64", "int32", "uint32", "int16", "uint16", "int8", "uint8"])
def test_integer_outputs_saturate_at_their_limits_never_wrap(engine, dtype):
    """A step from half range to the limit: bicubic overshoots past the limit, which must saturate."""
    info = np.iinfo(dtype)
    for limit, other in ((info.max, info.max // 2), (info.min, info.min // 2 if info.min else info.max // 2)):
        image = np.full((16, 16), other, dtype)
        image[:, 8:] = limit
        out = engine.upscale(image, "bicubic", normalization="dtype")
        assert out.dtype == np.dtype(dtype)
        assert (out[:, 20:] == limit).all()  # the limit's side: exactly the limit
        wrapped = (
            out.min() <= info.min + (info.max // 4) if limit == info.max else out.max() >= info.max - info.max // 4
        )
        assert not (wrapped and other != 0), (limit, out.min(), out.max())


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("normalization", ["dtype", "percentile"])
def test_float_images_at_their_limits_stay_finite(engine, net, dtype, normalization):
    info = np.finfo(dtype)
    image = np.zeros((16, 16), dtype)
    image[4:8, 4:8], image[10:12] = info.max, info.min
    for model in ("bicubic", net):
        out = engine.upscale(image, model, normalization=normalization)
        assert np.isfinite(out).all() and out.max() == info.max and out.min() == info.min


def test_a_trailing_axis_of_two_needs_axes(engine):
    image = np.zeros((64, 64, 2), np.float32)
    with pytest.raises(ValueError, match=r"ambiguous.*axes='YXC'"):
        engine.upscale(image, "bicubic")
    assert engine.upscale(image, "bicubic", axes="YXC").shape == (128, 128, 2)
    assert engine.upscale(image, "bicubic", axes="QYX").shape == (64, 128, 4)


@pytest.mark.parametrize(
    ("normalization", "words"),
    [({"mode": "zscore"}, "must be one of"), ({"mode": "percentile", "low": 99.8, "high": 1}, "low < high"),
     ({"mode": "percentile", "low": 5, "high": 5}, "low < high"), ("zscore", "must be one of")],
)  # fmt: skip
def test_unknown_or_inverted_normalization_is_refused(engine, net, normalization, words):
    with pytest.raises(ValueError, match=words):
        engine.upscale(np.ones((16, 16), np.uint16), net, normalization=normalization)


def test_onnx_runtime_out_of_memory_says_what_to_reduce(engine, net, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException

    def exhausted(self, *args, **kwargs):
        raise RuntimeException(
            "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node. "
            "/onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:376 Failed to allocate memory for requested "
            "buffer of size 9663676416"
        )

    monkeypatch.setattr(ort.InferenceSession, "run", exhausted)
    with pytest.raises(MemoryError, match=r"out of memory .*ONNX Runtime could not allocate.*smaller tile.*now \d+"):
        engine.upscale(np.ones((32, 32), np.uint16), net, backend="onnxruntime")


@pytest.mark.parametrize("name", ["out.tif", "out.zarr"])
def test_read_only_output_folder_names_the_output_not_the_temporary(tmp_path, capsys, in_tif, read_only_dir, name):
    code, err = cli(capsys, "upscale", in_tif, read_only_dir / name, "--model", "bicubic", "-q")
    assert_clear_error(code, err, str(read_only_dir / name), status=1)
    assert TEMP_PREFIX not in err


def test_saving_a_model_into_a_read_only_folder_names_the_model_file(read_only_dir, net):
    with pytest.raises(OSError) as error:
        save_model(read_only_dir / "m", net)
    assert error.value.filename == str(read_only_dir / "m.safetensors")


@pytest.mark.parametrize("shape", [(4, 0, 16), (4, 16, 0)])
def test_upscale_z_on_an_empty_axis_says_so(shape):
    from napari_superres.engine.axial import upscale_z

    with pytest.raises(ValueError, match=r"volume is empty \(Z=4"):
        upscale_z(np.zeros(shape, np.float32), 2, steps=1)


@pytest.mark.parametrize(
    ("low", "words"),
    [(np.zeros((8, 8, 4), np.uint8), "RGB"), (np.zeros((8, 8, 3), np.float32), "RGB"),
     (np.where(np.eye(8, dtype=bool), np.finfo(np.float32).max, 0).astype(np.float32), "rescale"),
     (np.where(np.eye(8, dtype=bool), np.finfo(np.float64).max, 0), "rescale"),
     (np.where(np.eye(8, dtype=bool), np.iinfo(np.int64).max, 0), "rescale")],
    ids=["rgba", "rgb", "float32 max", "float64 max", "int64 max"],
)  # fmt: skip
def test_consistency_refuses_rgb_and_extreme_values_clearly(low, words):
    from napari_superres.engine.metrics.consistency import consistency

    up = np.repeat(np.repeat(low, 2, axis=0), 2, axis=1)
    with pytest.raises(ValueError, match=words):
        consistency(low, up)


@pytest.mark.parametrize("name", ["out.zarr", "out.tif"])
def test_overwrite_never_deletes_a_folder_that_is_not_a_zarr_store(tmp_path, capsys, in_tif, name):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "thesis.docx").write_bytes(b"years of work")
    code, err = cli(capsys, "upscale", in_tif, folder, "--model", "bicubic", "--overwrite", "-q")
    assert_clear_error(code, err, "not a zarr store", "thesis.docx")
    assert (folder / "thesis.docx").read_bytes() == b"years of work"


def test_overwrite_still_replaces_a_zarr_output(tmp_path, capsys, in_tif):
    out = tmp_path / "out.zarr"
    assert main(["upscale", str(in_tif), str(out), "--model", "bicubic", "-q"]) == 0
    assert main(["upscale", str(in_tif), str(out), "--model", "bicubic", "-q", "--overwrite"]) == 0
    assert zarr.open_array(str(out), mode="r").shape == (2, 48, 40)
