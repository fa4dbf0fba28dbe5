"""Folding upsampling to low resolution (the reduced-precision paths' form of the network) changes no result."""

from __future__ import annotations

import pytest
import torch

from napari_superres.engine import SRNet
from napari_superres.engine.infer import bf16 as bf16_mod
from napari_superres.engine.infer import precision as prec
from napari_superres.engine.nets.folding import FoldedSRNet, fold_upsampling, foldable


def _net(**config) -> SRNet:
    torch.manual_seed(0)
    net = SRNet(**{"channels": 8, "blocks": 2, **config}).eval()
    with torch.no_grad():  # biases away from zero, so border handling shows in the result
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


@pytest.mark.parametrize(
    "config",
    [
        {"scale": 2, "upsample_channels": [6]},
        {"scale": 4, "upsample_channels": [6, 5]},
        {"scale": 2, "upsample_channels": [6], "cond_channels": 2, "activation": "relu"},
        {"scale": 2, "upsample_channels": [6], "final_activation": True},
    ],
)
def test_folded_network_equals_the_network_borders_included(config):
    net = _net(upsampling="bilinear", **config)
    folded = fold_upsampling(net)
    assert isinstance(folded, FoldedSRNet)
    x = torch.rand(2, net.in_channels + net.cond_channels, 13, 18)
    with torch.no_grad():
        expected, got = net(x), folded(x)
    assert got.shape == expected.shape == (2, 1, 13 * net.scale, 18 * net.scale)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_folded_network_without_skip_leaves_the_bicubic_to_the_caller():
    net = _net(scale=2, upsampling="bilinear", upsample_channels=[6], cond_channels=2)
    x = torch.rand(1, 3, 11, 9)
    with torch.no_grad():
        residual = fold_upsampling(net, skip=False)(x)
        bicubic = torch.nn.functional.interpolate(x[:, :1], scale_factor=2, mode="bicubic", align_corners=False)
        torch.testing.assert_close(residual + bicubic, net(x), atol=1e-5, rtol=1e-5)
    assert (residual - net(x)).abs().max() > 0.1  # the skip is really left out


@pytest.mark.skipif(not prec.cpu_support("int8")[0], reason=prec.cpu_support("int8")[1])
def test_int8_graph_leaves_the_bicubic_skip_to_torch(tmp_path, monkeypatch):
    import onnx

    monkeypatch.setenv("NAPARI_SUPERRES_CACHE_DIR", str(tmp_path))
    net = _net(scale=2, upsampling="bilinear", upsample_channels=[6])
    x = torch.rand(1, 1, 24, 20)
    monkeypatch.setattr(prec, "calibration_inputs", lambda *args: [x.numpy()])  # calibrate on x alone: quick
    runner = prec.int8_runner(net, in_channels=1)
    (graph,) = tmp_path.glob("*-int8-*.onnx")
    modes = {
        a.s for n in onnx.load(str(graph)).graph.node if n.op_type == "Resize" for a in n.attribute if a.name == "mode"
    }
    assert modes == {b"linear"}  # the border strips' bilinear upsampling; no bicubic of the output plane
    with torch.no_grad():
        expected = net(x)
    got = runner(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().mean() < 0.02 * expected.abs().mean()  # the network's sum, int8-rounded


@pytest.mark.parametrize("upsampling", ["pixelshuffle", "transposed"])
def test_other_upsampling_is_left_as_it_is(upsampling):
    net = _net(scale=2, upsampling=upsampling, upsample_channels=[6])
    assert not foldable(net)
    assert fold_upsampling(net) is net


@pytest.mark.skipif(not prec.cpu_support("bf16")[0], reason=prec.cpu_support("bf16")[1])
def test_fused_bf16_is_close_to_fp32_and_leaves_the_network_alone():
    net = _net(scale=2, upsampling="bilinear", upsample_channels=[6], cond_channels=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    forward = bf16_mod.bf16_forward(net)
    assert isinstance(forward, bf16_mod.FusedBf16)  # this torch has oneDNN's fused convolution
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        expected = net(x)
    got = forward(x)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()  # bf16: ~3 significant digits
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert bf16_mod.bf16_forward(net) is forward  # cached per network and weights


def test_bf16_falls_back_to_autocast_for_networks_it_cannot_fuse():
    net = _net(scale=2, upsampling="pixelshuffle", upsample_channels=[6])
    forward = bf16_mod.bf16_forward(net)
    assert not isinstance(forward, bf16_mod.FusedBf16)
    x = torch.rand(1, 1, 12, 12)
    assert forward(x).shape == (1, 1, 24, 24)
