"""Layer glue: the upscaled layer overlays its source exactly in world coordinates."""

import numpy as np
import pytest
from napari.layers import Image

from napari_superres._napari.layers import (
    METADATA_KEY,
    layer_axes,
    output_layer_kwargs,
    upscaled_layer_transform,
)


def pixel_corners_world(layer: Image) -> np.ndarray:
    """World coordinates of the outer corners of the layer's pixel grid (first and last pixels' edges)."""
    shape = np.asarray(layer.data.shape[: layer.ndim])
    lo, hi = -0.5 * np.ones(layer.ndim), shape - 0.5
    corners = np.array(np.meshgrid(*zip(lo, hi, strict=True), indexing="ij")).reshape(layer.ndim, -1).T
    return np.array([layer.data_to_world(c) for c in corners])


def upscaled_like(source: Image, s: int, **data_kwargs) -> Image:
    shape = list(source.data.shape)
    for ax in (source.ndim - 2, source.ndim - 1):
        shape[ax] *= s
    return Image(np.zeros(shape, source.data.dtype), **output_layer_kwargs(source, s, "model"), **data_kwargs)


def test_transform_of_a_unit_layer():
    scale, translate = upscaled_layer_transform((1, 1), (0, 0), (0, 1), 2)
    assert scale == (0.5, 0.5)
    # output pixel 0 is centred a quarter source pixel before the source's pixel 0
    assert translate == (-0.25, -0.25)


def test_transform_leaves_other_axes_alone():
    scale, translate = upscaled_layer_transform((3.0, 0.5, 2.0), (10.0, 2.0, -4.0), (1, 2), 4)
    assert scale == (3.0, 0.125, 0.5)
    assert translate == pytest.approx((10.0, 2.0 - 0.5 * 3 / 8, -4.0 - 2.0 * 3 / 8))


def test_transform_rejects_bad_factor():
    with pytest.raises(ValueError, match="positive"):
        upscaled_layer_transform((1, 1), (0, 0), (0, 1), 0)


@pytest.mark.parametrize("s", [2, 3, 4])
def test_upscaled_layer_covers_the_source_extent(s):
    source = Image(np.zeros((5, 7), np.uint16), scale=(0.3, 2.0), translate=(4.0, -1.0))
    out = upscaled_like(source, s)
    np.testing.assert_allclose(pixel_corners_world(out), pixel_corners_world(source), atol=1e-9)
    # the output's first and last pixel centres sample the source where bicubic
    # (align_corners=False) puts them: source index (j + 0.5) / s - 0.5
    for j in (0, 5 * s - 1):
        u = (j + 0.5) / s - 0.5
        jx = 7 * s - 1
        ux = (jx + 0.5) / s - 0.5
        np.testing.assert_allclose(out.data_to_world((j, jx)), source.data_to_world((u, ux)), atol=1e-9)


def test_overlay_with_rotation_shear_and_affine():
    source = Image(
        np.zeros((6, 4), np.float32),
        scale=(1.5, 0.5),
        translate=(2.0, 3.0),
        rotate=30.0,
        shear=[0.2],
        affine=np.array([[1.0, 0.1, 5.0], [0.0, 2.0, -1.0], [0, 0, 1]]),
    )
    out = upscaled_like(source, 3)
    np.testing.assert_allclose(pixel_corners_world(out), pixel_corners_world(source), atol=1e-9)


def test_stack_keeps_its_z_scale():
    source = Image(np.zeros((3, 8, 8), np.uint16), scale=(4.0, 0.5, 0.5), translate=(1.0, 0.0, 0.0))
    kwargs = output_layer_kwargs(source, 2, "m")
    assert kwargs["scale"] == (4.0, 0.25, 0.25)
    assert kwargs["translate"][0] == 1.0
    out = Image(np.zeros((3, 16, 16), np.uint16), **kwargs)
    np.testing.assert_allclose(pixel_corners_world(out), pixel_corners_world(source), atol=1e-9)


def test_axes_strings():
    assert layer_axes(Image(np.zeros((4, 5)))) == "YX"
    assert layer_axes(Image(np.zeros((2, 3, 4, 5)))) == "QQYX"
    assert layer_axes(Image(np.zeros((40, 50, 3), np.uint8))) == "YXS"
    assert layer_axes(Image(np.zeros((2, 4, 5, 4), np.uint8), rgb=True)) == "QYXS"
    assert layer_axes(Image(np.zeros((2, 4, 5, 3), np.uint8), rgb=False)) == "QQYX"


def test_output_kwargs_keep_the_look_and_describe_the_model():
    source = Image(
        np.zeros((4, 4), np.uint16),
        name="cells",
        colormap="magma",
        contrast_limits=(100, 3000),
        gamma=0.8,
        blending="additive",
        opacity=0.7,
        metadata={"stage": "x"},
    )
    kwargs = output_layer_kwargs(source, 4, "tiny", model_info={"model_source": "session"})
    assert kwargs["name"] == "cells ×4 (tiny)"
    assert kwargs["colormap"].name == "magma"
    assert kwargs["contrast_limits"] == (100.0, 3000.0)
    assert kwargs["gamma"] == pytest.approx(0.8)
    assert (kwargs["blending"], kwargs["opacity"]) == ("additive", 0.7)
    assert kwargs["metadata"]["stage"] == "x"
    assert kwargs["metadata"][METADATA_KEY] == {
        "model": "tiny", "scale": 4, "source_layer": "cells", "model_source": "session",
    }  # fmt: skip
    # trivial transforms are not passed along
    assert "rotate" not in kwargs and "shear" not in kwargs and "affine" not in kwargs
    out = Image(np.zeros((16, 16), np.uint16), **kwargs)
    assert out.colormap.name == "magma" and out.name == "cells ×4 (tiny)"


def test_rgb_output_kwargs():
    source = Image(np.zeros((4, 6, 3), np.uint8), rgb=True, scale=(2.0, 2.0))
    kwargs = output_layer_kwargs(source, 2, "m")
    assert kwargs["rgb"] is True and "colormap" not in kwargs
    out = Image(np.zeros((8, 12, 3), np.uint8), **kwargs)
    assert out.rgb
    np.testing.assert_allclose(pixel_corners_world(out), pixel_corners_world(source), atol=1e-9)
