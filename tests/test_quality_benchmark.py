"""The quality benchmark on two tiny generated images: bicubic, Lanczos and a tiny random model."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import quality  # noqa: E402


def _smooth(h: int, w: int, phase: float) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return 0.5 + 0.35 * np.sin(x / 7.0 + phase) * np.cos(y / 9.0 - phase)


@pytest.fixture
def hr_folder(tmp_path):
    """A grayscale uint16 TIFF and an RGB PNG, both smooth, 48 x 64 px."""
    import tifffile
    from PIL import Image

    folder = tmp_path / "hr"
    folder.mkdir()
    tifffile.imwrite(folder / "gray.tif", (_smooth(48, 64, 0.3) * 4000).astype(np.uint16))
    rgb = np.stack([_smooth(48, 64, p) for p in (0.0, 1.0, 2.0)], axis=-1)
    Image.fromarray((rgb * 255).astype(np.uint8)).save(folder / "color.png")
    return folder


@pytest.fixture
def tiny_model(tmp_path):
    import torch

    from napari_superres.engine import SRNet, save_model

    torch.manual_seed(0)
    return save_model(tmp_path / "tiny-x2.safetensors", SRNet(scale=2, channels=4, blocks=1))


def test_benchmark_writes_json_and_markdown(hr_folder, tiny_model, tmp_path):
    out = tmp_path / "results" / "quality"
    results = quality.main(["--folder", str(hr_folder), "--scales", "2", "--model", str(tiny_model), "--out", str(out)])

    data = json.loads(out.with_suffix(".json").read_text())
    assert data["sets"] == {"hr": ["color.png", "gray.tif"]}
    methods = {(r["protocol"], r["method"]) for r in data["results"]}
    assert methods == {(p, m) for p in quality.PROTOCOLS for m in ("bicubic", "Lanczos", "tiny-x2")}
    for row in data["results"]:
        n = 1 if row["protocol"] == "lowphoton" else 2  # the camera protocol: the grayscale image only
        assert row["n_images"] == n and len(row["per_image"]) == n
        assert 0.0 < row["ssim"] <= 1.0
    assert data["metrics"]["perceptual"] == quality.PERCEPTUAL_NA or "VGG" in data["metrics"]["perceptual"]
    assert results["results"] == data["results"]

    md = out.with_suffix(".md").read_text()
    assert "| held-out set (images) | low-res made by | bicubic | Lanczos | tiny-x2 | model - bicubic |" in md
    assert "| hr (2) | bicubic |" in md and "| hr (2) | microscope |" in md and "| hr (1) | lowphoton |" in md
    assert "nan" not in md.lower()  # (images straight in the folder once gave "by source" lines of empty means)


def test_bicubic_round_trip_of_a_smooth_image_is_accurate(hr_folder):
    images = quality.folder_set(hr_folder)
    results = quality.run_benchmark(
        {"smooth": images}, [2], [quality.Method("bicubic")], protocols=["bicubic"], log=None
    )
    (row,) = results["results"]
    assert all(math.isfinite(r["psnr"]) for r in row["per_image"])
    assert row["psnr"] > 35.0  # a smooth image survives bicubic down + up almost unchanged


def test_microscope_protocol_is_seeded_and_noisy():
    hr = (_smooth(32, 32, 0.0) * 60000).astype(np.uint16)
    a = quality.make_low_res(hr, 2, "microscope", seed=1)
    b = quality.make_low_res(hr, 2, "microscope", seed=1)
    c = quality.make_low_res(hr, 2, "microscope", seed=2)
    assert a.shape == (16, 16) and a.dtype == np.uint16
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_low_photon_psf_can_be_set_for_another_reading_of_the_regime(monkeypatch):
    monkeypatch.setattr(quality, "LOWPHOTON_BLUR_LR", quality.LOWPHOTON_BLUR_LR)
    monkeypatch.setattr(quality, "LOWPHOTON_REF_BLUR_PER_SCALE", quality.LOWPHOTON_REF_BLUR_PER_SCALE)
    hr = np.zeros((64, 64), np.uint16)
    hr[::8] = 60000  # lines: the wider the PSF, the lower their contrast
    wide = quality.make_low_res(hr, 2, "lowphoton", seed=1).astype(float)
    quality.set_lowphoton_psf(0.5, 0.25)
    narrow = quality.make_low_res(hr, 2, "lowphoton", seed=1).astype(float)
    assert narrow.std() > 1.5 * wide.std()
    with pytest.raises(SystemExit, match="narrower"):
        quality.set_lowphoton_psf(0.5, 0.6)


def test_luminance_metric_matches_the_literature_convention():
    white = np.full((8, 8, 3), 255, np.uint8)
    black = np.zeros((8, 8, 3), np.uint8)
    assert quality.y_channel(white)[0, 0] == pytest.approx(235.0)
    assert quality.y_channel(black)[0, 0] == pytest.approx(16.0)
    a, b, data_range = quality.comparable(white, black, scale=2)
    assert a.shape == (4, 4) and data_range == 255.0
    assert quality.psnr(a, b, data_range) == pytest.approx(20 * math.log10(255 / 219))


def test_train_on_your_data_table_runs_on_the_synthetic_set(monkeypatch):
    """A smoke run of the 'train on your data' table (one image, 1-step budgets): structure, not quality."""
    import prepare_data

    from napari_superres.engine.samples import synthetic_pair

    def small(split, shape=None):  # 96 / 160 px fields instead of 256 (160: room for a 96 px training patch)
        seed, edge = (1000, 96) if split == "heldout" else (0, 160)
        return [prepare_data.Image(f"synthetic/seed{seed}", "synthetic", synthetic_pair((edge, edge), 4, seed=seed,
                                                                                        noise=False)[1])]  # fmt: skip

    monkeypatch.setattr(prepare_data, "synthetic_images", small)
    monkeypatch.setattr(quality, "heldout_sets", lambda data, synthetic=True: {"synthetic": small("heldout")})
    monkeypatch.setattr(quality, "YOUR_DATA_TRAIN_CROP", 160)
    from napari_superres.engine import Engine

    if not Engine(device="cpu").names()[0].startswith("superres"):
        pytest.skip("no built-in model shipped")
    seen = []
    results = quality.your_data_benchmark(None, kinds=("synthetic",), n_images=1, adapt_steps=1, train_steps=1,
                                          n_train=1, own_pair_steps=1, log=None, on_kind=seen.append)  # fmt: skip
    (row,) = results["results"]
    assert row["kind"] == "synthetic" and row["n_images"] == 1 and len(seen) == 1
    gains = (
        "gain_builtin",
        "gain_adapt",
        "gain_adapt_x8",
        "gain_adapt_told",
        "gain_paired",
        "gain_own_pair",
        "gain_own_field",
    )
    assert all(math.isfinite(row[k]) for k in ("bicubic_psnr", *gains))
    table = quality.your_data_markdown(results)
    assert "| synthetic (1) |" in table and "(b) adapt" in table and "(b8) adapt, x8" in table
    assert "(d) own pair" in table and "steps=1, on the held-out image's own low-res image" in table
    assert "(d') own field" in table and "another acquisition of the field" in table
    assert "the noise split by recorruption" in table  # how the stated-PSF route (b') ran


def test_the_binned_fluorescence_kind_is_the_planes_area_binned():
    from prepare_data import Image

    plane = np.arange(20, dtype=np.uint16).reshape(5, 4)
    binned = quality.area_binned(Image("cells.tif", "fluorescence", plane))
    assert binned.name == "cells.tif binned 2x" and binned.array.shape == (2, 2)
    np.testing.assert_array_equal(binned.array, [[2.5, 4.5], [10.5, 12.5]])  # the last row left out
    assert quality.BINNED_FLUORESCENCE in quality.YOUR_DATA_KINDS
