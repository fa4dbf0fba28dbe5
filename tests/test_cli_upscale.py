"""``napari-superres upscale``: TIFF and zarr in and out, streamed, with pixel sizes kept."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_superres.cli import main
from napari_superres.engine import Engine, load_model
from napari_superres.io.metadata import pixel_size_from_tiff as _pixel_size_from_tiff


@pytest.fixture
def stack(rng) -> np.ndarray:
    """A small (Z, Y, X) uint16 stack."""
    return (rng.random((3, 50, 40)) * 60000).astype(np.uint16)


def in_memory(image: np.ndarray, model_file, **kwargs) -> np.ndarray:
    engine = Engine(device="cpu", builtins=False)
    return engine.upscale(image, load_model(model_file), **kwargs)


def assert_close_uint(result: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to a float rounding flip of one count in a few pixels (conv sums in shape-dependent order)."""
    diff = np.abs(result.astype(np.int64) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.005


def test_imagej_tiff_to_tiff_keeps_scaled_pixel_size(tmp_path, stack, model_file):
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    tifffile.imwrite(
        src, stack, imagej=True, resolution=(2.0, 2.0), metadata={"axes": "ZYX", "unit": "um", "spacing": 3.0}
    )

    assert main(["upscale", str(src), str(out), "--model", str(model_file), "-q"]) == 0

    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZYX"
        pixel = _pixel_size_from_tiff(tif)
        result = tif.asarray()
    assert (pixel.x, pixel.y, pixel.z) == pytest.approx((0.25, 0.25, 3.0))  # 0.5 um / 2; Z unchanged
    assert result.shape == (3, 100, 80) and result.dtype == np.uint16
    assert_close_uint(result, in_memory(stack, model_file))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out.tif"]  # no temp file left


def test_ome_tiff_to_zarr_streams_chunks(tmp_path, stack, model_file):
    src, out = tmp_path / "in.ome.tif", tmp_path / "out.zarr"
    tifffile.imwrite(src, stack, ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeX": 0.4, "PhysicalSizeY": 0.4, "PhysicalSizeXUnit": "µm", "PhysicalSizeZ": 1.0,
    })  # fmt: skip

    code = main(
        ["upscale", str(src), str(out), "-m", str(model_file), "--chunk-size", "24", "--chunk-planes", "2", "-q"]
    )

    assert code == 0
    z = zarr.open_array(str(out), mode="r")
    assert z.shape == (3, 100, 80) and z.chunks == (2, 48, 48)  # input chunks (2, 24, 24) x2 in Y/X
    assert z.attrs["axes"] == "ZYX"
    assert z.attrs["pixel_size"] == pytest.approx({"x": 0.2, "y": 0.2, "z": 1.0, "unit": "µm"})
    assert_close_uint(z[:], in_memory(stack, model_file))
    assert not (tmp_path / "out.zarr.tmp").exists()


def test_zarr_to_ome_tiff_with_axes_from_the_command_line(tmp_path, rng):
    image = rng.random((2, 30, 36), dtype=np.float32)
    src, out = tmp_path / "in.zarr", tmp_path / "out.ome.tif"
    z = zarr.open_array(str(src), mode="w", shape=image.shape, chunks=(1, 16, 16), dtype=image.dtype)
    z[:] = image
    z.attrs["pixel_size"] = {"x": 0.3, "y": 0.3, "unit": "µm"}

    assert main(["upscale", str(src), str(out), "--model", "bicubic", "--scale", "3", "--axes", "TYX", "-q"]) == 0

    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome and tif.series[0].axes == "TYX"
        assert _pixel_size_from_tiff(tif).x == pytest.approx(0.1)
        result = tif.asarray()
    expected = Engine(device="cpu", builtins=False).upscale(image, "bicubic", scale=3)
    np.testing.assert_allclose(result, expected, atol=1e-5)


def test_rgb_tiff_with_bicubic_is_exact(tmp_path, rng):
    image = (rng.random((20, 24, 3)) * 255).astype(np.uint8)
    src, out = tmp_path / "rgb.tif", tmp_path / "rgb_x2.tif"
    tifffile.imwrite(src, image, photometric="rgb")

    assert main(["upscale", str(src), str(out), "--model", "bicubic", "-q"]) == 0

    result = tifffile.imread(out)
    np.testing.assert_array_equal(result, Engine(device="cpu", builtins=False).upscale(image, "bicubic"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.tif", "out.tif"], "input not found"),
        (["in.tif", "out.zarr", "--model", "no-such-model"], "no model named 'no-such-model'"),
        (["in.tif", "out.zarr", "--axes", "YX"], "axes 'YX' has 2 letters"),
        (["in.tif", "out.png"], "must end in .zarr"),
        (["in.tif", "in.tif"], "is the input"),
        (["in.tif", "out.tif", "--model", "bicubic", "--tile", "-1"], "--tile must be >= 0 (0: automatic)"),
        (["in.tif", "out.tif", "--model", "bicubic", "--batch-size", "0"], "--batch-size must be a positive integer"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, stack, argv, message):
    monkeypatch.chdir(tmp_path)
    tifffile.imwrite(tmp_path / "in.tif", stack, photometric="minisblack")

    assert main(["upscale", *argv]) == 2

    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_a_failed_run_leaves_the_previous_output_intact(tmp_path, monkeypatch, stack):
    import napari_superres.io.zarr_store as zarr_store

    src, out = tmp_path / "in.tif", tmp_path / "out.zarr"
    tifffile.imwrite(src, stack, photometric="minisblack")
    assert main(["upscale", str(src), str(out), "--model", "bicubic", "-q"]) == 0
    before = zarr.open_array(str(out), mode="r")[:]

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(zarr_store, "write_block", broken)
    assert main(["upscale", str(src), str(out), "--model", "bicubic", "--scale", "3", "--overwrite", "-q"]) == 1

    np.testing.assert_array_equal(zarr.open_array(str(out), mode="r")[:], before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out.zarr"]


def test_overwrite_replaces_the_output(tmp_path, stack):
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    tifffile.imwrite(src, stack, photometric="minisblack")
    assert main(["upscale", str(src), str(out), "--model", "bicubic", "-q"]) == 0

    assert main(["upscale", str(src), str(out), "--model", "bicubic", "--scale", "4", "--overwrite", "-q"]) == 0

    assert tifffile.imread(out).shape == (3, 200, 160)


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["NAME", "SCALE", "CHANNELS", "PARAMS", "SOURCE"]
    assert any(line.startswith("bicubic") for line in out.splitlines())


def test_planar_rgb_tiff_is_read_with_samples_last(tmp_path, rng):
    image = (rng.random((3, 20, 24)) * 255).astype(np.uint8)  # samples stored as separate planes
    src, out = tmp_path / "planar.tif", tmp_path / "out.tif"
    tifffile.imwrite(src, image, photometric="rgb", planarconfig="separate")

    assert main(["upscale", str(src), str(out), "--model", "bicubic", "-q"]) == 0

    expected = Engine(device="cpu", builtins=False).upscale(np.moveaxis(image, 0, -1), "bicubic")
    np.testing.assert_array_equal(tifffile.imread(out), expected)
