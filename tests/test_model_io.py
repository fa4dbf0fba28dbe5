"""Model files: safetensors + JSON config, round trip, and clear rejection of bad files."""

import json

import numpy as np
import pytest
import torch

from napari_superres.engine import Engine, ModelFileError, SRNet, load_model, read_model_metadata, save_model


def test_round_trip_keeps_weights_config_and_metadata(tmp_path):
    net = SRNet(scale=4, channels=8, blocks=2, norm="batch", upsampling="pixelshuffle")
    path = save_model(tmp_path / "m", net, normalization={"mode": "percentile", "low": 1.0, "high": 99.8},
                      training={"steps": 3})  # fmt: skip
    assert path.name == "m.safetensors"
    model = load_model(path)
    assert model.scale == 4 and model.in_channels == 1 and model.name == "m"
    assert model.normalization["mode"] == "percentile"
    assert model.metadata == {"steps": 3}
    for k, v in net.state_dict().items():
        torch.testing.assert_close(model.net.state_dict()[k], v)
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(model.net(x), net.eval()(x))
    assert read_model_metadata(path)["config"]["upsampling"] == "pixelshuffle"


def test_no_temporary_file_is_left_behind(tmp_path):
    save_model(tmp_path / "m.safetensors", SRNet(channels=4, blocks=1))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_model_files_get_the_usual_permissions(tmp_path):
    import os

    path = save_model(tmp_path / "m", SRNet(channels=4, blocks=1))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_corrupt_file_is_rejected_clearly(tmp_path):
    path = save_model(tmp_path / "m", SRNet(channels=4, blocks=1))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="safetensors"):
        load_model(path)


def test_a_pickle_is_never_loaded(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save(SRNet(channels=4, blocks=1).state_dict(), path)  # a pickle-based file with the right suffix
    with pytest.raises(ModelFileError, match="not a readable safetensors"):
        load_model(path)


def test_a_foreign_safetensors_file_is_rejected(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match="not a napari-superres model"):
        load_model(path)


def test_weights_that_do_not_match_the_config_are_rejected(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = save_model(tmp_path / "m", SRNet(channels=8, blocks=1))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(meta["config"])
    config["channels"] = 16
    meta["config"] = json.dumps(config)
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ModelFileError, match="do not match the config"):
        load_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nope.safetensors")


def test_engine_loads_and_upscales_with_a_model_file(tmp_path):
    path = save_model(tmp_path / "tiny-x2", SRNet(channels=4, blocks=1))
    engine = Engine(device="cpu", builtins=False)
    name = engine.load(path)
    assert name == "tiny-x2" and name in engine.names()
    out = engine.upscale(np.zeros((10, 12), np.uint8), name)
    assert out.shape == (20, 24) and out.dtype == np.uint8
    # a path works without registering too
    assert engine.upscale(np.zeros((10, 12), np.float32), str(path)).shape == (20, 24)
