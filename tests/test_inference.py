"""upscale(): shapes, dtypes, axes, RGB handling, tiling exactness and bad input."""

import numpy as np
import pytest
import torch

from napari_superres import upscale
from napari_superres.engine import Cancelled, Engine, SRNet


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return SRNet(channels=8, blocks=2).eval()


@pytest.fixture(scope="module")
def engine():
    return Engine(device="cpu", builtins=False)


def test_uint16_1000px_with_a_2_block_net(net, engine):
    image = np.random.default_rng(0).integers(0, 65535, (1000, 1000), dtype=np.uint16)
    out = upscale(image, net, engine=engine)
    assert out.shape == (2000, 2000) and out.dtype == np.uint16


def test_zyx_stack_is_upscaled_plane_by_plane(net, engine):
    stack = np.random.default_rng(1).random((5, 300, 300), dtype=np.float32)
    out = upscale(stack, net, axes="ZYX", engine=engine)
    assert out.shape == (5, 600, 600) and out.dtype == np.float32
    np.testing.assert_allclose(out[3], upscale(stack[3], net, engine=engine), atol=1e-6)


def test_tiled_equals_untiled(net, engine):
    image = np.random.default_rng(2).random((512, 512), dtype=np.float32)
    whole = upscale(image, net, tile=1024, engine=engine)
    tiled = upscale(image, net, tile=128, engine=engine)
    assert np.abs(whole - tiled).max() <= 1e-4


@pytest.mark.parametrize("mode", ["pixelshuffle", "transposed"])
def test_tiled_equals_untiled_for_every_upsampler_at_x4(mode, engine):
    torch.manual_seed(0)
    net = SRNet(scale=4, upsampling=mode, channels=4, blocks=1).eval()
    image = np.random.default_rng(3).random((150, 170), dtype=np.float32)
    assert (
        np.abs(upscale(image, net, tile=512, engine=engine) - upscale(image, net, tile=64, engine=engine)).max() <= 1e-4
    )


def test_bicubic_baseline_equals_torch_interpolate(engine):
    image = np.random.default_rng(4).random((40, 50), dtype=np.float32)
    out = upscale(image, "bicubic", scale=3, engine=engine)
    expected = torch.nn.functional.interpolate(torch.from_numpy(image)[None, None], scale_factor=3, mode="bicubic",
                                               align_corners=False)[0, 0].numpy()  # fmt: skip
    np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
def test_output_dtype_equals_input_dtype(dtype, net, engine):
    image = (np.random.default_rng(5).random((20, 20)) * 100).astype(dtype)
    out = upscale(image, net, engine=engine)
    assert out.dtype == dtype and out.shape == (40, 40)


def test_float_output_on_request(net, engine):
    out = upscale(np.zeros((8, 8), np.uint8), net, output_dtype=np.float32, engine=engine)
    assert out.dtype == np.float32


def test_integer_output_is_clipped_to_the_dtype_range(engine):
    image = np.zeros((16, 16), np.uint8)
    image[4:12, 4:12] = 255  # bicubic overshoots at edges
    out = upscale(image, "bicubic", engine=engine)
    assert out.max() == 255 and out.min() == 0


def test_rgb_with_a_1_channel_model_runs_on_luminance(net, engine):
    rgb = (np.random.default_rng(6).random((32, 32, 3)) * 255).astype(np.uint8)
    out = upscale(rgb, net, engine=engine)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    gray = np.repeat(rgb[..., :1], 3, axis=2)  # gray RGB: Cb = Cr = 0.5, so all channels equal the net's Y
    out_gray = upscale(gray, net, engine=engine).astype(int)
    assert np.abs(out_gray[..., 0] - upscale(gray[..., 0], net, engine=engine).astype(int)).max() <= 1


def test_rgba_alpha_goes_through_bicubic(net, engine):
    rgba = (np.random.default_rng(7).random((16, 16, 4)) * 255).astype(np.uint8)
    out = upscale(rgba, net, engine=engine)
    alpha = upscale(rgba[..., 3], "bicubic", scale=2, engine=engine)
    np.testing.assert_array_equal(out[..., 3], alpha)


def test_rgb_with_a_3_channel_model(engine):
    net = SRNet(in_channels=3, out_channels=3, channels=4, blocks=1).eval()
    out = upscale(np.zeros((2, 16, 16, 3), np.uint8), net, engine=engine)
    assert out.shape == (2, 32, 32, 3)


def test_channel_axis_runs_channel_by_channel_with_its_own_range(net, engine):
    rng = np.random.default_rng(8)
    image = np.stack([rng.random((24, 24)) * 10, rng.random((24, 24)) * 1000]).astype(np.float32)
    out = upscale(image, net, axes="CYX", normalization="percentile", engine=engine)
    assert out.shape == (2, 48, 48)
    np.testing.assert_allclose(out[1], upscale(image[1], net, normalization="percentile", engine=engine), rtol=1e-5)


def test_axes_can_put_y_and_x_anywhere(net, engine):
    image = np.random.default_rng(9).random((12, 3, 14), dtype=np.float32)  # Y, Z, X
    out = upscale(image, net, axes="YZX", engine=engine)
    assert out.shape == (24, 3, 28)
    np.testing.assert_allclose(
        out[:, 1, :], upscale(np.ascontiguousarray(image[:, 1, :]), net, engine=engine), atol=1e-6
    )


def test_progress_is_reported_and_cancel_stops(net, engine):
    seen = []
    upscale(np.zeros((300, 300), np.float32), net, tile=64, progress=lambda d, t: seen.append((d, t)), engine=engine)
    assert seen[-1][0] == seen[-1][1] > 1
    with pytest.raises(Cancelled):
        upscale(np.zeros((300, 300), np.float32), net, tile=64, should_stop=lambda: True, engine=engine)


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (np.zeros((0, 5)), {}, "empty"),
        (np.zeros((1, 1)), {}, "too small"),
        (np.zeros(5), {}, "at least 2 dimensions"),
        (np.array([[np.nan, 1.0], [1.0, 1.0]], np.float32), {}, "NaN"),
        (np.zeros((4, 8, 8)), {"axes": "CYXC"}, "letters"),
        (np.zeros((2, 3, 8, 8)), {"axes": "CSYX"}, "more than one channel axis"),
        (np.zeros((8, 8)), {"axes": "ZY"}, "exactly one 'Y' and one 'X'"),
        (np.zeros((8, 8), np.complex64), {}, "dtype"),
    ],
)
def test_bad_input_gets_a_message_with_the_fix(image, kwargs, message, net, engine):
    with pytest.raises(ValueError, match=message):
        upscale(image, net, engine=engine, **kwargs)


def test_a_3_channel_model_refuses_grayscale(engine):
    net = SRNet(in_channels=3, out_channels=3, channels=4, blocks=1)
    with pytest.raises(ValueError, match="choose a 1-channel model"):
        upscale(np.zeros((8, 8)), net, engine=engine)


def test_a_fixed_scale_model_refuses_another_scale(net, engine):
    with pytest.raises(ValueError, match="cannot upscale x4"):
        upscale(np.zeros((8, 8)), net, scale=4, engine=engine)


def test_unknown_model_name_lists_the_registered_ones(engine):
    with pytest.raises(KeyError, match="bicubic"):
        upscale(np.zeros((8, 8)), "no-such-model", engine=engine)


class _NeedsSmallTiles(torch.nn.Module):
    """Bicubic x2 that raises CUDA's out-of-memory error for tiles wider than ``limit`` px."""

    scale = 2
    in_channels = 1

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.widths: list[int] = []

    def receptive_field(self) -> int:
        return 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.widths.append(x.shape[-1])
        if x.shape[-1] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)


def test_out_of_memory_halves_the_tile_and_retries(engine):
    image = np.random.default_rng(10).random((200, 200), dtype=np.float32)
    net = _NeedsSmallTiles(limit=64)
    out = upscale(image, net, tile=128, engine=engine)
    assert max(net.widths) > 64 and net.widths[-1] <= 64  # it failed big, then ran small
    np.testing.assert_allclose(out, upscale(image, "bicubic", scale=2, engine=engine), atol=1e-5)
