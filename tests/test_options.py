"""Typed choices, each defined once with its default once (engine/options.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_superres import InvalidRequestError
from napari_superres.engine.options import (
    AUTO_TILE,
    DEFAULT_DEVICE,
    DEFAULT_NORMALIZATION,
    DEFAULT_SCALE,
    DEVICE_CHOICES,
    DEVICE_NAMES,
    TRAINING_NORMALIZATION,
    Normalization,
    parse_device_name,
    reconcile_scale,
    tile_or_auto,
)

ROOT = Path(__file__).resolve().parent.parent


def test_normalization_parses_every_accepted_form():
    percentile = Normalization("percentile", 1.0, 99.8)
    assert Normalization.parse("percentile") == percentile
    assert Normalization.parse({"mode": "percentile", "low": 1, "high": 99.8}) == percentile
    assert Normalization.parse(percentile) is percentile
    # no normalization, or a spec without a mode: the dtype range (what a model that records none uses)
    assert Normalization.parse(None) == Normalization.parse({}) == Normalization.parse("dtype") == Normalization()
    # training passes its own default for "none given"
    assert Normalization.parse(None, TRAINING_NORMALIZATION) == percentile
    assert DEFAULT_NORMALIZATION == percentile.to_dict() == {"mode": "percentile", "low": 1.0, "high": 99.8}
    assert Normalization.parse({"mode": "dtype", "low": 5, "high": 6}).to_dict() == {"mode": "dtype"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("minmax", "normalization must be one of"),
        ({"mode": "percentile", "low": 50, "high": 10}, "percentiles need 0 <= low < high <= 100"),
        ({"mode": "percentile", "lo": 2}, "unknown normalization keys \\['lo'\\]"),
        ({"mode": "percentile", "low": "one"}, "percentiles must be numbers"),
        (3, "normalization must be one of"),
    ],
)
def test_a_bad_normalization_is_an_invalid_request(value, message):
    with pytest.raises(InvalidRequestError, match=message):
        Normalization.parse(value)
    with pytest.raises(ValueError, match=message):  # as before: a ValueError
        Normalization.parse(value)


def test_the_engine_reads_normalization_through_the_one_parser():
    from napari_superres.engine.normalization import intensity_range, normalization_spec

    image = np.linspace(0, 1000, 10_000, dtype=np.float32).reshape(100, 100)
    assert normalization_spec("percentile", 2, 98) == Normalization("percentile", 2, 98).to_dict()
    by_name = intensity_range(image, "percentile")
    assert by_name == intensity_range(image, DEFAULT_NORMALIZATION) == intensity_range(image, TRAINING_NORMALIZATION)
    assert intensity_range(image, None) == intensity_range(image, {}) == (0.0, 1000.0)
    with pytest.raises(InvalidRequestError):
        intensity_range(image, {"mode": "Percentile"})


def test_scale_is_reconciled_in_one_place():
    assert reconcile_scale(None, 4, "superres-x4") == 4
    assert reconcile_scale(4.0, 4, "superres-x4") == 4
    assert reconcile_scale(None, None, "bicubic") == DEFAULT_SCALE
    assert reconcile_scale(3, None, "bicubic") == 3
    with pytest.raises(InvalidRequestError, match="'superres-x4' upscales x4; it cannot upscale x2"):
        reconcile_scale(2, 4, "superres-x4")
    for bad in (0, 2.5, True, "2"):
        with pytest.raises(InvalidRequestError, match="scale must be a whole number"):
            reconcile_scale(bad, None, "bicubic")


def test_tile_zero_means_automatic_everywhere(tmp_path, capsys):
    tifffile = pytest.importorskip("tifffile")
    from napari_superres import upscale
    from napari_superres.cli import main

    assert tile_or_auto(None) is tile_or_auto(AUTO_TILE) is None
    assert tile_or_auto(64) == 64
    with pytest.raises(InvalidRequestError, match="tile must be a whole number of pixels >= 0"):
        tile_or_auto(-1)

    image = np.arange(24 * 20, dtype=np.uint16).reshape(24, 20)
    auto = upscale(image, "bicubic", device="cpu")
    np.testing.assert_array_equal(upscale(image, "bicubic", device="cpu", tile=AUTO_TILE), auto)
    with pytest.raises(InvalidRequestError, match="tile must be"):
        upscale(image, "bicubic", device="cpu", tile=-8)

    tifffile.imwrite(tmp_path / "in.tif", image, photometric="minisblack")
    argv = ["upscale", str(tmp_path / "in.tif"), str(tmp_path / "out.tif"), "--model", "bicubic", "--tile", "0", "-q"]
    assert main([*argv, "--device", "cpu"]) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), auto)


def test_one_device_list():
    yaml = pytest.importorskip("yaml")
    assert DEFAULT_DEVICE in DEVICE_CHOICES and set(DEVICE_CHOICES) < set(DEVICE_NAMES)
    assert parse_device_name(None) == DEFAULT_DEVICE and parse_device_name(" CUDA:1 ") == "cuda:1"
    with pytest.raises(InvalidRequestError, match="unknown device 'gpu'; use one of auto, cpu, cuda, cuda:N, mps"):
        parse_device_name("gpu")
    # the napari Preferences offer the same list and default
    manifest = yaml.safe_load((ROOT / "src" / "napari_superres" / "napari.yaml").read_text())
    device = manifest["contributions"]["configurations"]["defaults"]["properties"]["device"]
    assert device["enum"] == list(DEVICE_CHOICES) and device["default"] == DEFAULT_DEVICE
