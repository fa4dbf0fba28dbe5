"""Axial (Z) super-resolution: upscale_z trains on the stack's own lateral planes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_superres.engine.axial import AxialResult, factor_from_scale, upscale_z  # noqa: E402
from napari_superres.engine.errors import ModelFileError  # noqa: E402
from napari_superres.engine.nets.axial_net import AxialNet, load_axial_model, upsample_axis  # noqa: E402
from napari_superres.engine.samples3d import anisotropic_acquisition, synthetic_object_3d  # noqa: E402

#: A small, fast network for tests.
TINY = dict(channels=16, blocks=2)


def _interp_z(volume: np.ndarray, factor: int, mode: str) -> np.ndarray:
    """Linear or cubic interpolation along Z, input plane k on output plane k * factor."""
    v = torch.from_numpy(volume.astype(np.float32)).permute(1, 0, 2)[:, None]  # (Y, 1, Z, X)
    return upsample_axis(v, factor, mode)[:, 0].permute(1, 0, 2).numpy()


def _psnr(x: np.ndarray, gt: np.ndarray) -> float:
    n = gt.shape[0]
    err = np.mean((np.asarray(x[:n], dtype=np.float64) - gt) ** 2)
    return float(10 * np.log10(np.ptp(gt) ** 2 / err))


def test_upsample_axis_keeps_input_rows_on_the_fine_grid():
    x = torch.rand(2, 1, 5, 7)
    for mode in ("linear", "cubic"):
        y = upsample_axis(x, 3, mode)
        assert y.shape == (2, 1, 15, 7)
        torch.testing.assert_close(y[:, :, ::3], x, atol=1e-5, rtol=0)


def test_untrained_net_is_cubic_interpolation_and_shapes_are_right():
    net = AxialNet(factor=4, **TINY)
    x = torch.rand(3, 1, 6, 20)
    y = net(x)
    assert y.shape == (3, 1, 24, 20)
    torch.testing.assert_close(y, upsample_axis(x, 4, "cubic"))


def test_upscale_z_shape_dtype_finite_and_model_reuse(tmp_path, one_torch_thread):
    rng = np.random.default_rng(0)
    vol = (rng.poisson(50, size=(4, 24, 28)) + 100).astype(np.uint16)
    result = upscale_z(vol, 3, steps=3, net=TINY, patch_size=12)
    assert isinstance(result, AxialResult)
    out, model = result  # unpacks as (volume, model)
    assert out.shape == (12, 24, 28) and out.dtype == np.uint16
    assert model.factor == 3 and len(result.losses) == 3

    path = model.save(tmp_path / "axial")
    again = upscale_z(vol, axes="ZYX", model=str(path))  # no training: reuse as is
    assert again.losses == [] and again.factor == 3
    np.testing.assert_array_equal(again.volume, out)
    assert load_axial_model(path).metadata["steps"] == 3

    floats = upscale_z(vol.astype(np.float32), 2, steps=1, net=TINY, patch_size=12, fuse="xz").volume
    assert floats.shape == (8, 24, 28) and floats.dtype == np.float32 and np.all(np.isfinite(floats))


def test_mean_fusion_is_the_average_of_the_xz_and_yz_passes(one_torch_thread, monkeypatch):
    from napari_superres.engine.infer import axial as infer_axial

    vol = np.random.default_rng(2).random((5, 20, 30)).astype(np.float32)
    model = upscale_z(vol, 2, steps=2, net=TINY, patch_size=8).model
    passes = {f: upscale_z(vol, model=model, fuse=f).volume for f in ("mean", "xz", "yz")}
    np.testing.assert_allclose(passes["mean"], (passes["xz"] + passes["yz"]) / 2, atol=1e-5)
    assert not np.allclose(passes["xz"], passes["yz"])  # two different passes
    monkeypatch.setattr(infer_axial, "MAX_WIDTH", 16)  # slices cut along their width: same result
    np.testing.assert_allclose(upscale_z(vol, model=model).volume, passes["mean"], atol=1e-5)


def test_extra_axes_are_looped_over(one_torch_thread):
    vol = np.random.default_rng(1).random((2, 3, 16, 16)).astype(np.float32)  # C, Z, Y, X
    out = upscale_z(vol, 2, axes="CZYX", steps=1, net=TINY, patch_size=8).volume
    assert out.shape == (2, 6, 16, 16)
    tz = upscale_z(vol.transpose(1, 0, 2, 3), 2, axes="ZCYX", steps=1, net=TINY, patch_size=8).volume
    assert tz.shape == (6, 2, 16, 16)


def test_factor_from_scale_and_clear_errors(tmp_path):
    assert factor_from_scale((2.0, 0.5, 0.5)) == 4
    assert factor_from_scale((0.1, 1.0, 0.1, 0.1), axes="YZCX") == 10
    vol = np.zeros((4, 16, 16), np.float32)
    with pytest.raises(ValueError, match="factor="):
        upscale_z(vol)
    with pytest.raises(ValueError, match="nothing to upsample"):
        upscale_z(vol, scale=(0.5, 0.5, 0.5))
    assert upscale_z(vol, scale=(1.0, 0.5, 0.5), steps=1, net=TINY, patch_size=8).scale == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="one Z"):
        upscale_z(np.zeros((16, 16), np.float32), 2, axes="YX")
    with pytest.raises(ValueError, match="at least 2"):
        upscale_z(np.zeros((1, 16, 16), np.float32), 2)
    with pytest.raises(ValueError, match="too small"):
        upscale_z(np.zeros((4, 5, 5), np.float32), 4, steps=1)
    with pytest.raises(ValueError, match="NaN"):
        upscale_z(np.full((4, 16, 16), np.nan, np.float32), 2)
    (tmp_path / "not_a_model.safetensors").write_bytes(b"junk")
    with pytest.raises(ModelFileError):
        upscale_z(vol, 2, model=tmp_path / "not_a_model.safetensors")


def test_upscale_z_beats_linear_interpolation_on_a_synthetic_stack(one_torch_thread):
    """Filaments and puncta imaged with a 3x elongated PSF every 3rd plane: the network restores
    the isotropic ground truth better than linear (and cubic) interpolation along Z."""
    torch.set_num_threads(2)
    factor = 3
    acq = anisotropic_acquisition(synthetic_object_3d((34, 64, 64), seed=4), factor, photons=300.0, seed=4)
    result = upscale_z(acq.low_z, factor, steps=40, net=TINY, patch_size=48, learning_rate=3e-3, seed=0)
    gt = acq.ground_truth[: (acq.low_z.shape[0] - 1) * factor + 1]
    ours = _psnr(result.volume, gt)
    linear = _psnr(_interp_z(acq.low_z, factor, "linear"), gt)
    cubic = _psnr(_interp_z(acq.low_z, factor, "cubic"), gt)
    assert ours > linear + 1.0, (ours, linear)  # measured: +3.3 dB
    assert ours > cubic, (ours, cubic)


def test_cli_upscale_z_writes_a_tiff_with_z_spacing_divided(tmp_path, one_torch_thread):
    import tifffile

    from napari_superres.cli import main

    src, out, model = tmp_path / "stack.tif", tmp_path / "iso.tif", tmp_path / "axial.safetensors"
    vol = (np.random.default_rng(0).poisson(40, size=(5, 40, 40)) + 100).astype(np.uint16)
    tifffile.imwrite(
        src, vol, imagej=True, resolution=(1 / 0.2, 1 / 0.2), metadata={"spacing": 0.6, "unit": "um", "axes": "ZYX"}
    )
    before = src.read_bytes()
    # no --factor: 0.6 um Z steps / 0.2 um pixels = 3
    assert main(["upscale-z", str(src), str(out), "--steps", "2", "--save-model", str(model), "-q"]) == 0
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].shape == (15, 40, 40) and tif.series[0].dtype == np.uint16
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.2)
    assert src.read_bytes() == before
    again = tmp_path / "again.tif"
    assert main(["upscale-z", str(src), str(again), "--model", str(model), "-q"]) == 0
    np.testing.assert_array_equal(tifffile.imread(again), tifffile.imread(out))


def test_cli_upscale_z_refuses_bad_requests_in_one_line(tmp_path, capsys):
    import tifffile

    from napari_superres.cli import main

    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, np.zeros((4, 32, 32), np.uint16), photometric="minisblack")
    assert main(["upscale-z", str(src), str(src), "--factor", "2"]) == 2  # never over the input
    assert main(["upscale-z", str(src), str(tmp_path / "o.tif"), "--axes", "ZYX"]) == 2  # no factor, no spacing
    assert main(["upscale-z", str(tmp_path / "missing.tif"), str(tmp_path / "o.tif"), "--factor", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("napari-superres upscale-z: error:") for line in err)
    assert "--factor" in err[1]
    assert not (tmp_path / "o.tif").exists()


def test_progress_reaches_the_total_and_should_stop_cancels(one_torch_thread):
    from napari_superres.engine.errors import Cancelled

    vol = np.random.default_rng(3).random((3, 16, 20)).astype(np.float32)
    calls = []
    upscale_z(vol, 2, steps=4, net=TINY, patch_size=8, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (4 + 16 + 20, 4 + 16 + 20)  # training steps + XZ slices + YZ slices
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    stop_after = iter(range(3, -1, -1))
    with pytest.raises(Cancelled):
        upscale_z(vol, 2, steps=100, net=TINY, patch_size=8, should_stop=lambda: next(stop_after, 0) == 0)


@pytest.mark.slow  # three short trainings
def test_upscale_z_starts_from_the_builtin_model_of_the_factor(tmp_path, monkeypatch, one_torch_thread):
    import napari_superres.engine.axial as axial
    from napari_superres.engine.nets.axial_net import AxialModel

    monkeypatch.setattr(axial, "BUILTIN_AXIAL_DIR", tmp_path)
    AxialModel(net=AxialNet(factor=2, **TINY), psf_ratio=2.0).save(tmp_path / "axial-x2.safetensors")
    vol = np.random.default_rng(1).random((6, 40, 40)).astype(np.float32)
    tuned = upscale_z(vol, 2, steps=2, patch_size=8)
    assert tuned.model.metadata["start"] == "axial-x2" and len(tuned.losses) == 2  # fine-tuned on the stack
    assert tuned.model.net.config.channels == TINY["channels"]
    other_psf = upscale_z(vol, 2, steps=1, patch_size=8, psf_ratio=4.0, net=None)  # made for another PSF: scratch
    assert "start" not in other_psf.model.metadata
    scratch = upscale_z(vol, 2, steps=1, patch_size=8, pretrained=False)
    assert "start" not in scratch.model.metadata


def test_onnx_runtime_passes_equal_torch_passes(one_torch_thread):
    pytest.importorskip("onnxruntime")
    from napari_superres.engine.infer.axial import upsample_volume

    torch.manual_seed(0)
    net = AxialNet(factor=3, **TINY)
    torch.nn.init.normal_(net.tail.weight, std=0.05)  # not the identity-like start
    vol = np.random.default_rng(2).random((5, 24, 20)).astype(np.float32)
    cpu = torch.device("cpu")
    ort = upsample_volume(net, vol, device=cpu, backend="onnxruntime")
    eager = upsample_volume(net, vol, device=cpu, backend="torch")
    np.testing.assert_allclose(ort, eager, atol=1e-4)
