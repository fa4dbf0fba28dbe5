"""``napari-superres train`` end to end on tiny image files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_superres.cli import main
from napari_superres.engine import load_model
from napari_superres.engine.samples import synthetic_pair

FAST = ["--steps", "4", "--batch-size", "4", "--patch-size", "32", "--channels", "8", "--blocks", "1",
        "--device", "cpu", "--val-every", "2", "--quiet"]  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every test here trains tiny networks (see conftest.one_torch_thread)."""


@pytest.fixture
def pair_folders(tmp_path):
    (tmp_path / "hr").mkdir()
    (tmp_path / "lr").mkdir()
    for seed in range(2):
        lr, hr = synthetic_pair((96, 128), 2, seed=seed)
        tifffile.imwrite(tmp_path / "hr" / f"cell{seed}.tif", hr)
        tifffile.imwrite(tmp_path / "lr" / f"cell{seed}.tif", lr)
    return tmp_path / "hr", tmp_path / "lr"


def test_train_on_tiff_pairs_writes_a_model_and_a_log(pair_folders, tmp_path, capsys):
    hr, lr = pair_folders
    out, log = tmp_path / "model.safetensors", tmp_path / "log.json"
    code = main(["train", "--hr", str(hr), "--lr", str(lr), "--scale", "2", "--out", str(out), "--log", str(log),
                 "--normalization", "percentile", "--weight", "ssim=0.5", *FAST])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    model = load_model(out)
    assert model.scale == 2 and model.normalization["mode"] == "percentile"
    assert model.metadata["config"]["weights"] == {"ssim": 0.5}
    payload = json.loads(log.read_text())
    assert [h["step"] for h in payload["history"]] == [1, 2, 3, 4]
    assert set(payload["history"][-1]["losses"]) == {"l1", "ssim", "total"}
    assert payload["final_validation"]["psnr"] > 0 and payload["stopped"] is False
    assert payload["data"]["images"] == 2 and len(payload["lr_files"]) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave nothing behind


def test_resume_from_checkpoint_extends_the_run(pair_folders, tmp_path):
    hr, lr = pair_folders
    ckpt, out = tmp_path / "run.ckpt", tmp_path / "m.safetensors"
    assert main(["train", "--hr", str(hr), "--lr", str(lr), "--out", str(out), "--checkpoint", str(ckpt),
                 "--checkpoint-every", "2", *FAST]) == 0  # fmt: skip
    assert main(["train", "--hr", str(hr), "--lr", str(lr), "--out", str(out), "--resume", str(ckpt),
                 "--steps", "6", "--quiet", "--overwrite"]) == 0  # fmt: skip
    assert load_model(out).metadata["steps"] == 6


def test_high_res_only_png_and_rgb(tmp_path):
    from PIL import Image

    rgb = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    out = tmp_path / "rgb.safetensors"
    assert main(["train", "--hr", str(tmp_path / "photo.png"), "--in-channels", "3", "--out", str(out), *FAST]) == 0
    assert load_model(out).in_channels == 3
    assert load_model(out).metadata["data"]["paired"] is False
    tifffile.imwrite(tmp_path / "gray.tif", rgb[..., 0])
    out = tmp_path / "noisy.safetensors"
    assert main(["train", "--hr", str(tmp_path / "gray.tif"), "--degradation", '{"noise_gaussian": [0, 0.02]}',
                 "--out", str(out), *FAST]) == 0  # fmt: skip
    assert load_model(out).metadata["data"]["degradation"]["noise_gaussian"] == [0, 0.02]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lr", "MISSING"], "not found"),
        (["--weight", "ssim"], "TERM=NUMBER"),
        (["--weight", "sharpness=1"], "unknown loss term"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--checkpoint-every", "5"], "needs --checkpoint"),
        (["--patch-size", "31"], "multiple of the scale"),
        (["--degradation", '{"jpeg": 1}'], "unknown degradation settings"),
        (["--degradation", "blur"], "not valid JSON"),
    ],
)
def test_bad_input_is_a_one_line_error(pair_folders, tmp_path, capsys, extra, message):
    hr, _ = pair_folders
    code = main(["train", "--hr", str(hr), "--out", str(tmp_path / "x.safetensors"), *FAST, *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unequal_pair_counts_and_empty_folders(pair_folders, tmp_path, capsys):
    hr, lr = pair_folders
    (tmp_path / "empty").mkdir()
    assert main(["train", "--hr", str(hr), "--lr", str(lr / "cell0.tif"), "--out", str(tmp_path / "a"), *FAST]) == 2
    assert "gives 2 images but --lr gives 1" in capsys.readouterr().err
    assert main(["train", "--hr", str(tmp_path / "empty"), "--out", str(tmp_path / "b"), *FAST]) == 2
    assert "holds no images" in capsys.readouterr().err
    existing = tmp_path / "exists.safetensors"
    existing.write_bytes(b"")
    assert main(["train", "--hr", str(hr), "--out", str(existing), *FAST]) == 2
    assert "--overwrite" in capsys.readouterr().err
