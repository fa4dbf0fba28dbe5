"""The built-in models' training recipe, run for 2 steps on a tiny fake data folder."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import prepare_data  # noqa: E402
import train_builtin  # noqa: E402


def _texture(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Smooth random texture in [0, 1]."""
    from scipy.ndimage import gaussian_filter

    noise = rng.random(shape)
    sigma = [2.0, 2.0] + [0.0] * (len(shape) - 2)
    out = gaussian_filter(noise, sigma)
    return (out - out.min()) / (out.max() - out.min())


@pytest.fixture
def data_folder(tmp_path):
    """The layout of ../shared/data with a few tiny images (and one held-out file per natural folder)."""
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for folder, names, suffix in (
        (prepare_data.NATURAL_T91, ["t1", "t2", "tt5"], ".bmp"),
        (prepare_data.NATURAL_BSD200, ["2092", "97017"], ".png"),
    ):
        (root / folder).mkdir(parents=True)
        (root / folder / "SOURCE.txt").write_text(f"fake {folder} for tests; licence: test data\n")
        for name in names:
            rgb = (_texture(rng, (90, 100, 3)) * 255).astype(np.uint8)
            Image.fromarray(rgb).save(root / folder / f"{name}{suffix}")
    em = root / prepare_data.EM
    em.mkdir(parents=True)
    (em / "SOURCE.txt").write_text("fake EM\n")
    for name in ("0", "1", "29"):
        Image.fromarray((_texture(rng, (96, 96)) * 255).astype(np.uint8)).save(em / f"{name}.png")
    fluo = root / prepare_data.FLUORESCENCE
    fluo.mkdir(parents=True)
    (fluo / "SOURCE.txt").write_text("fake fluorescence\n")
    shapes = {
        "BPAE_actin.tif": ((90, 110), np.float32),
        "BPAE_mito.tif": ((90, 110), np.float32),
        "BPAE_nuclei.tif": ((90, 110), np.float32),
        "IXMtest_A02_s9.tif": ((3, 90, 100), np.uint16),
        "cancer_cell_migration_crop.tif": ((9, 90, 90), np.uint16),
        "maize_clsm.tif": ((100, 100), np.uint8),
    }
    for name, (shape, dtype) in shapes.items():
        top = 4095 if dtype == np.uint16 else 255 if dtype == np.uint8 else 5000.0
        tifffile.imwrite(fluo / name, (_texture(rng, shape[::-1]).T * top).astype(dtype), photometric="minisblack")
    return root


@pytest.fixture(autouse=True)
def few_synthetic_fields(monkeypatch):
    """Two small synthetic fields and cell scenes instead of the recipe's sixteen 512 x 512 ones."""
    monkeypatch.setattr(train_builtin, "SYNTHETIC_TRAIN_SEEDS", (0, 1))
    monkeypatch.setattr(train_builtin, "CELL_TRAIN_SEEDS", (2000, 2001))
    monkeypatch.setattr(train_builtin, "SYNTHETIC_SHAPE", (96, 96))


def test_held_out_images_are_never_training_images(data_folder):
    train = {im.name for im in prepare_data.natural_images(data_folder, "train")}
    held = {im.name for im in prepare_data.natural_images(data_folder, "heldout")}
    assert held == {"T91/tt5.bmp", "BSD200/97017.png"}
    assert train == {"T91/t1.bmp", "T91/t2.bmp", "BSD200/2092.png"}
    assert {im.name for im in prepare_data.em_images(data_folder, "train")} == {"EM/0.png", "EM/1.png"}


def test_training_planes_are_unit_range_and_reproducible(data_folder):
    a, summary = train_builtin.training_planes(data_folder, seed=0, scale=2, patch=64)
    b, _ = train_builtin.training_planes(data_folder, seed=0, scale=2, patch=64)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(p.ndim == 2 and p.dtype == np.float32 and 0.0 <= p.min() and p.max() <= 1.0 for p in a)
    assert set(summary["kinds"]) == {"natural", "em", "fluorescence", "synthetic", "cells"}
    assert summary["kinds"]["fluorescence"]["planes"] == train_builtin.REPEATS["fluorescence"] * (3 + 3 + 2 + 1)
    assert summary["kinds"]["cells"]["planes"] == train_builtin.REPEATS["cells"] * 2


def test_cell_scenes_are_optional_in_the_mix(data_folder, monkeypatch):
    monkeypatch.setattr(train_builtin, "INCLUDE_CELLS", False)
    _, summary = train_builtin.training_planes(data_folder, seed=0, scale=2, patch=64)
    assert "cells" not in summary["kinds"]


def test_synthetic_seed_sets_are_disjoint_and_the_held_out_cells_are_benchmarked(monkeypatch):
    seed_sets = [prepare_data.SYNTHETIC_TRAIN_SEEDS, prepare_data.SYNTHETIC_BENCH_SEEDS,
                 prepare_data.CELL_TRAIN_SEEDS, prepare_data.CELL_BENCHMARK_SEEDS]  # fmt: skip
    assert len(set().union(*seed_sets)) == sum(len(s) for s in seed_sets)
    monkeypatch.setattr(prepare_data, "CELL_BENCH_SHAPE", (64, 64))
    sets = prepare_data.heldout_sets(None)
    assert list(sets) == ["synthetic", "cells"]  # after the data folder's sets, in this order
    cells = sets["cells"]
    assert [im.name for im in cells] == [
        "cells/seed3000-nuclei+membranes+vesicles", "cells/seed3001-nuclei", "cells/seed3002-membranes+vesicles",
        "cells/seed3003-em",
    ]  # fmt: skip
    assert all(im.kind == "cells" and im.array.shape == (64, 64) and im.array.dtype == np.uint16 for im in cells)
    train_names = {im.name for im in train_builtin.cell_training_images((64, 64))}
    assert train_names.isdisjoint(im.name for im in cells)


def test_recipe_writes_a_loadable_model_and_card(data_folder, tmp_path, monkeypatch):
    from napari_superres.engine import Engine, load_model

    monkeypatch.setattr(train_builtin, "BATCH_SIZE", 2)
    out = tmp_path / "models" / "superres-x2.safetensors"
    train_builtin.main(
        ["--data", str(data_folder), "--scale", "2", "--steps", "2", "--out", str(out), "--no-benchmark",
         "--device", "cpu", "--checkpoint", str(tmp_path / "run.ckpt"), "--checkpoint-every", "1"]
    )  # fmt: skip

    model = load_model(out)
    assert model.scale == 2 and model.in_channels == 1
    assert model.normalization == {"mode": "percentile", "low": 1.0, "high": 99.8}
    assert model.metadata["steps"] == 2
    assert model.metadata["config"]["net"] == train_builtin.NET_BY_SCALE[2]
    assert (tmp_path / "run.ckpt").is_file()
    image = (np.arange(32 * 32) % 251).reshape(32, 32).astype(np.uint8)
    assert Engine(device="cpu", builtins=False).upscale(image, model).shape == (64, 64)

    card = out.with_suffix(".md").read_text()
    assert "**2 steps**" in card
    assert "fake natural/T91 for tests" in card  # the SOURCE.txt credits
    assert "tt5.bmp" in card  # the held-out list
    assert "| cells | 2 |" in card  # the mix
    assert "synthetic cell scenes: training seeds 2000-2001, benchmark seeds 3000-3003" in card
