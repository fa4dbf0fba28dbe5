"""The residual SR network: shapes, presets, upsampling modes and receptive field."""

import pytest
import torch

from napari_superres.engine import SRNet, SRNetConfig, build_preset, receptive_field_radius
from napari_superres.engine.nets.srnet import Upsample


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("mode", ["bilinear", "pixelshuffle", "transposed"])
def test_output_is_scale_times_larger(scale, mode):
    net = SRNet(scale=scale, upsampling=mode, channels=8, blocks=1).eval()
    with torch.no_grad():
        y = net(torch.rand(2, 1, 10, 12))
    assert y.shape == (2, 1, 10 * scale, 12 * scale)


def test_rgb_and_batchnorm_options():
    net = SRNet(in_channels=3, out_channels=3, norm="batch", activation="prelu", channels=8, blocks=2).eval()
    assert net(torch.rand(1, 3, 16, 16)).shape == (1, 3, 32, 32)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_global_skip_makes_an_untrained_zero_residual_equal_bicubic():
    net = SRNet(channels=8, blocks=1).eval()
    torch.nn.init.zeros_(net.tail[0].weight)
    torch.nn.init.zeros_(net.tail[0].bias)
    x = torch.rand(1, 1, 16, 16)
    expected = torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(net(x), expected)


def test_seed_preset_layer_shapes_and_parameter_count():
    net = build_preset("seed").eval()
    x = torch.rand(1, 3, 64, 64)
    shapes = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(out.shape)))
        for name, m in net.named_modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    with torch.no_grad():
        y = net(x)
    for h in hooks:
        h.remove()
    assert y.shape == (1, 3, 256, 256)
    convs = list(shapes.values())  # conv_1 .. conv_10 in forward order
    assert len(convs) == 10
    assert convs[:3] == [(1, 128, 64, 64)] * 3
    assert convs[3:6] == [(1, 64, 128, 128)] * 3
    assert convs[6:9] == [(1, 64, 256, 256)] * 3
    assert convs[9] == (1, 3, 256, 256)
    # conv weights+biases: 3*128*9+128, 2*(128*128*9+128), 128*64*9+64, 5*(64*64*9+64), 64*3*9+3
    conv_params = 3584 + 2 * 147584 + 73792 + 5 * 36928 + 1731
    bn_params = 2 * (2 * 128) + 4 * (2 * 64)  # BatchNorm after conv 2,3 (128) and 5,6,8,9 (64)
    assert net.num_parameters() == conv_params + bn_params == 559939
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 6


def test_icnr_pixel_shuffle_keeps_a_constant_image_constant():
    torch.manual_seed(0)
    up = Upsample(4, 4, factor=2, mode="pixelshuffle")
    y = up(torch.ones(1, 4, 8, 8))
    interior = y[..., 2:-2, 2:-2]  # away from the conv's zero padding
    assert torch.allclose(interior, interior[..., :1, :1].expand_as(interior), atol=1e-6)


def test_untrained_transposed_conv_makes_a_checkerboard_of_a_constant_image():
    """Documents why transposed conv is not the default: overlapping kernels tile unevenly."""
    torch.manual_seed(0)
    up = Upsample(4, 4, factor=2, mode="transposed")
    y = up(torch.ones(1, 4, 8, 8))[..., 2:-2, 2:-2]
    assert (y[..., 0::2, :] - y[..., 1::2, :]).abs().max() > 1e-3


def test_receptive_field_covers_what_an_output_pixel_sees():
    net = SRNet(channels=4, blocks=2).eval()
    r = net.receptive_field()
    assert r == receptive_field_radius(net.config)
    x = torch.rand(1, 1, 40, 40, requires_grad=True)
    net(x)[0, 0, 40, 40].backward()  # output pixel (40, 40) ~ input (20, 20)
    ys, xs = torch.nonzero(x.grad[0, 0]).unbind(1)
    assert ys.min() >= 20 - r - 1 and ys.max() <= 20 + r
    assert xs.min() >= 20 - r - 1 and xs.max() <= 20 + r


def test_bad_config_says_what_is_allowed():
    with pytest.raises(ValueError, match="scale must be one of"):
        SRNetConfig(scale=5)
    with pytest.raises(ValueError, match="upsampling"):
        SRNetConfig(upsampling="deconv")
    with pytest.raises(ValueError, match="global_skip"):
        SRNetConfig(in_channels=1, out_channels=3)


def test_config_round_trips_through_dict():
    cfg = SRNetConfig(scale=4, channels=16, upsample_channels=(8, 8))
    assert SRNetConfig.from_dict(cfg.to_dict()) == cfg
