"""OME-Zarr (OME-NGFF 0.5, or 0.4 on request) output and input of ``napari-superres upscale``: valid NGFF, scale,
translation, pyramid, read back by ome-zarr-py and napari-ome-zarr."""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
import pytest
import tifffile
import zarr

from napari_superres.cli import main
from napari_superres.io import ImageFileError
from napari_superres.io.ome_zarr import (
    level_transform,
    ngff_axes_order,
    read_ome_zarr,
    upscaled_transform,
)


def _read_with_ome_zarr(path):
    """Read back with the ome-zarr package's reader (what napari-ome-zarr uses): level shapes and metadata."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    nodes = list(Reader(parse_url(str(path), mode="r"))())
    image = next(n for n in nodes if n.load(Multiscales) is not None)
    return [np.asarray(level) for level in image.data], image.metadata, zarr.open_group(str(path), mode="r").attrs


def test_upscaled_pixel_centres_stay_in_place():
    # x2: an input pixel of size 1 at 0 covers [-0.5, 0.5]; its halves are centred at -0.25 and 0.25
    assert upscaled_transform(1.0, 0.0, 2) == (0.5, -0.25)
    s, t = upscaled_transform(0.3, 5.0, 3)
    assert s == pytest.approx(0.1) and t == pytest.approx(5.0 - 0.1)  # centres 4.9, 5.0, 5.1
    # level 1 of an x2 output (2x2 mean) is back on the input's grid
    assert level_transform(0.5, -0.25, 1) == (1.0, 0.0)


def test_axes_go_to_ngff_order_with_rgb_samples_as_channels():
    assert ngff_axes_order("YXS") == ([2, 0, 1], "cyx")
    assert ngff_axes_order("ZCYX") == ([1, 0, 2, 3], "czyx")
    with pytest.raises(ImageFileError, match="OME-NGFF"):
        ngff_axes_order("QYX")


def _multiscales(attrs, ngff):
    """The multiscales entry of a group's attributes: under ``ome`` in 0.5 (zarr v3), at the top in 0.4."""
    if ngff == "0.5":
        assert attrs["ome"]["version"] == "0.5" and "multiscales" not in attrs
        return attrs["ome"]["multiscales"][0]
    assert attrs["multiscales"][0]["version"] == "0.4"
    return attrs["multiscales"][0]


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_tiff_with_pixel_size_to_ome_zarr_is_valid_ngff_with_scale_translation_and_pyramid(tmp_path, rng, ngff):
    image = rng.integers(100, 4000, size=(2, 64, 80), dtype=np.uint16)
    src, out = tmp_path / "in.ome.tif", tmp_path / "out.ome.zarr"
    tifffile.imwrite(src, image, ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2, "PhysicalSizeZ": 1.5,
        "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm", "PhysicalSizeZUnit": "µm"})  # fmt: skip
    ngff_option = [] if ngff == "0.5" else ["--ngff", "0.4"]  # 0.5 is the default
    assert main(["upscale", str(src), str(out), "--model", "bicubic", "--scale", "2", "--quiet", *ngff_option]) == 0

    levels, meta, attrs = _read_with_ome_zarr(out)
    assert zarr.open_group(str(out), mode="r").metadata.zarr_format == (3 if ngff == "0.5" else 2)
    assert [lv.shape for lv in levels] == [(2, 128, 160), (2, 64, 80)]  # down to 64 px edges
    ms = _multiscales(attrs, ngff)
    assert ms["axes"] == [
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    (s0, t0), (s1, t1) = ([t["scale"] if "scale" in t else t["translation"] for t in d["coordinateTransformations"]]
                          for d in ms["datasets"])  # fmt: skip
    np.testing.assert_allclose(s0, [1.5, 0.1, 0.1])
    np.testing.assert_allclose(t0, [0.0, -0.05, -0.05])  # t - (s/2)(1 - 1/f) with s = 0.2, f = 2
    np.testing.assert_allclose(s1, [1.5, 0.2, 0.2])  # level 1 lies on the input's grid again
    np.testing.assert_allclose(t1, [0.0, 0.0, 0.0], atol=1e-12)
    # ome-zarr-py's reader gives the same transforms
    assert meta["coordinateTransformations"][0] == ms["datasets"][0]["coordinateTransformations"]
    # level 1 is the 2x2 mean of level 0; level 0 is the upscaled image
    np.testing.assert_array_equal(
        levels[1], np.rint(levels[0].reshape(2, 64, 2, 80, 2).astype(np.float64).mean(axis=(2, 4))).astype(np.uint16)
    )
    assert levels[0].dtype == np.uint16
    assert attrs["napari_superres"]["scale"] == 2


def test_ome_zarr_input_keeps_its_scale_translation_and_units(tmp_path, rng):
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscales_metadata

    image = rng.integers(0, 255, size=(3, 40, 48), dtype=np.uint8)
    src, out = tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr"
    root = zarr.open_group(str(src), mode="w", zarr_format=2)
    root.create_array("0", shape=image.shape, chunks=(1, 40, 48), dtype=image.dtype,
                      chunk_key_encoding={"name": "v2", "separator": "/"})[:] = image  # fmt: skip
    write_multiscales_metadata(
        root, [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 30.0, 30.0]},
                                                           {"type": "translation", "translation": [0.0, 600.0, -90.0]}]}],
        fmt=FormatV04(), axes=[{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "nanometer"},
                               {"name": "x", "type": "space", "unit": "nanometer"}],
    )  # fmt: skip
    assert main(["upscale", str(src), str(out), "--model", "bicubic", "--scale", "3", "--quiet"]) == 0

    data, axes, scale, shift, units = read_ome_zarr(out)
    assert axes == "CYX" and data.shape == (3, 120, 144)
    np.testing.assert_allclose(scale, [1.0, 10.0, 10.0])
    np.testing.assert_allclose(shift, [0.0, 600.0 - 10.0, -90.0 - 10.0])  # t - (30/2)(1 - 1/3)
    assert units == {"Y": "nanometer", "X": "nanometer"}


def test_plain_zarr_output_stays_a_plain_array(tmp_path, rng):
    src, out = tmp_path / "in.tif", tmp_path / "out.zarr"
    tifffile.imwrite(src, rng.integers(0, 255, size=(20, 24), dtype=np.uint8))
    assert main(["upscale", str(src), str(out), "--model", "bicubic", "--quiet"]) == 0
    assert zarr.open_array(str(out), mode="r").shape == (40, 48)


def _napari_ome_zarr(tmp_path, rng, ngff):
    """Upscale a 0.3 µm TIFF x2 to OME-Zarr ``ngff`` and open it with napari-ome-zarr's reader: (levels, kwargs, kind)."""
    reader_plugin = pytest.importorskip("napari_ome_zarr")
    image = rng.integers(0, 4000, size=(64, 72), dtype=np.uint16)
    src, out = tmp_path / "in.ome.tif", tmp_path / "out.ome.zarr"
    tifffile.imwrite(src, image, ome=True, metadata={"axes": "YX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3,
                                                     "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"})  # fmt: skip
    assert main(["upscale", str(src), str(out), "--model", "bicubic", "--scale", "2", "--quiet", "--ngff", ngff]) == 0
    ((levels, kwargs, kind),) = reader_plugin.napari_get_reader(str(out))(str(out))
    return levels, kwargs, kind


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_napari_ome_zarr_reader_opens_the_output_at_the_upscaled_pixel_size(tmp_path, rng, ngff):
    """napari's OME-Zarr reader plugin: all levels and the divided pixel size (and, from napari-ome-zarr 0.9 on,
    which passes them, the axis labels and units)."""
    levels, kwargs, kind = _napari_ome_zarr(tmp_path, rng, ngff)
    assert kind == "image" and [lv.shape for lv in levels] == [(128, 144), (64, 72)]
    np.testing.assert_allclose(kwargs["scale"], [0.15, 0.15])
    if _napari_ome_zarr_drops_dataset_translations():  # 0.9+: labels and units (0.8 passes neither)
        assert tuple(kwargs["axis_labels"]) == ("y", "x") and tuple(kwargs["units"]) == ("micrometer", "micrometer")


def _napari_ome_zarr_drops_dataset_translations() -> bool:
    """napari-ome-zarr 0.9 and 0.10 apply only the first transform of a dataset (0.7 and 0.8 apply both; the
    ``all`` and ``testing`` extras pin 0.8.2)."""
    try:
        major, minor = (int(p) for p in version("napari-ome-zarr").split(".")[:2])
    except Exception:  # noqa: BLE001 - not installed or an odd version string: the test itself decides
        return False
    return (major, minor) >= (0, 9)


@pytest.mark.xfail(
    _napari_ome_zarr_drops_dataset_translations(), strict=True,
    reason="napari-ome-zarr >= 0.9 reads only the scale of an NGFF 0.4/0.5 dataset and drops its translation "
    "(the half-pixel shift of an upscaled image); ome-zarr-py's reader and napari-ome-zarr <= 0.8 apply it",
)  # fmt: skip
def test_napari_ome_zarr_reader_places_the_output_over_the_input(tmp_path, rng):
    """The layer's translation keeps pixel centres in place: ``t' = -(s/2)(1 - 1/f)`` = -0.075 µm."""
    _levels, kwargs, _kind = _napari_ome_zarr(tmp_path, rng, "0.5")
    translate = kwargs.get("translate")
    if translate is None and kwargs.get("affine") is not None:  # napari-ome-zarr >= 0.9 returns an affine
        translate = np.asarray(kwargs["affine"].translate)
    np.testing.assert_allclose(translate, [-0.075, -0.075])


def test_ome_zarr_input_to_ome_tiff_keeps_the_physical_pixel_size(tmp_path, rng):
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscales_metadata

    src, out = tmp_path / "in.ome.zarr", tmp_path / "out.ome.tif"
    root = zarr.open_group(str(src), mode="w", zarr_format=2)
    root.create_array("0", shape=(32, 40), chunks=(32, 40), dtype=np.uint16,
                      chunk_key_encoding={"name": "v2", "separator": "/"})[:] = rng.integers(0, 9, (32, 40))  # fmt: skip
    write_multiscales_metadata(
        root, [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [0.4, 0.4]}]}], fmt=FormatV04(),
        axes=[{"name": "y", "type": "space", "unit": "micrometer"}, {"name": "x", "type": "space", "unit": "micrometer"}],
    )  # fmt: skip
    assert main(["upscale", str(src), str(out), "--model", "bicubic", "--scale", "2", "--quiet"]) == 0
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].shape == (64, 80)
        ome = tif.ome_metadata
    assert 'PhysicalSizeX="0.2"' in ome and 'PhysicalSizeXUnit="µm"' in ome
