"""The synthetic cell scenes: nuclei, membranes, vesicles and EM-like tissue, seeded and acquired like the samples."""

import numpy as np
import pytest
from scipy.ndimage import binary_erosion, label

from napari_superres.engine.samples import PSF_SIGMA, bin_image, gaussian_blur
from napari_superres.engine.samples_cells import (
    EM_PSF_SIGMA,
    FLUORESCENCE_KINDS,
    CellLayout,
    cell_object,
    draw_membranes,
    draw_nuclei,
    draw_rings,
    synthetic_cells,
    synthetic_cells_pair,
)


def test_scene_is_float32_in_unit_range_deterministic_per_seed():
    a = synthetic_cells((96, 128), seed=5)
    assert a.shape == (96, 128) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, synthetic_cells((96, 128), seed=5))
    assert not np.array_equal(a, synthetic_cells((96, 128), seed=6))
    # psf_sigma=0 is the object itself; the PSF only smooths it
    obj = synthetic_cells((96, 128), seed=5, psf_sigma=0)
    np.testing.assert_array_equal(obj, cell_object((96, 128), seed=5))
    assert np.abs(np.diff(a, axis=1)).mean() < np.abs(np.diff(obj, axis=1)).mean()


def test_each_kind_keeps_its_own_random_stream():
    """Asking for fewer kinds leaves the others as they were: the full scene contains the nuclei-only one."""
    nuclei = cell_object((128, 128), seed=2, kinds=("nuclei",))
    everything = cell_object((128, 128), seed=2, kinds=FLUORESCENCE_KINDS)
    assert np.all(everything >= nuclei - 1e-6)
    assert everything.sum() > nuclei.sum() * 1.2  # membranes and vesicles add to it


def test_nuclei_are_large_connected_bright_regions_with_texture():
    nuclei = cell_object((192, 192), seed=0, kinds=("nuclei",))
    regions, n = label(nuclei > 0.25)
    sizes = np.bincount(regions.ravel())[1:]
    assert n >= 3 and sizes.max() > 300  # a nucleus is hundreds of pixels, not a spot
    big = regions == np.argmax(sizes) + 1
    inside = nuclei[big]
    assert inside.std() > 0.05 * inside.mean()  # chromatin-like texture, not a flat fill


def test_a_drawn_nucleus_is_the_ellipse_asked_for_with_a_soft_edge():
    flat = np.full((64, 64), 1.0, np.float32)
    image = draw_nuclei((64, 64), np.array([[32.0, 32.0]]), np.array([[14.0, 8.0]]), np.array([0.0]),
                        np.array([0.8]), texture=flat)  # fmt: skip
    assert image[32, 32] == pytest.approx(0.8, abs=1e-3)
    assert (image > 0.4).sum() == pytest.approx(np.pi * 14 * 8, rel=0.1)  # half height at the ellipse
    row = image[32, 32:]
    assert 0.05 < row[14] / 0.8 < 0.95  # the edge at x = 32 + 14 is a slope, not a step
    assert image[32, 32 + 14 + 6] < 0.01


def test_vesicles_are_rings_with_a_darker_centre():
    image = draw_rings((48, 48), np.array([[24.0, 24.0]]), np.array([6.0]), np.array([0.9]))
    ring = image[24, 24 + 6]
    assert ring == pytest.approx(0.9, rel=0.2)
    assert image[24, 24] < 0.05 * ring
    # through the microscope's PSF a vesicle of radius 4 px still has a darker centre
    small = gaussian_blur(draw_rings((48, 48), np.array([[24.0, 24.0]]), np.array([4.0]), np.array([0.9])), PSF_SIGMA)
    assert small[24, 24] < 0.8 * small[24, 28]
    assert synthetic_cells((128, 128), seed=0, kinds=("vesicles",)).max() > 0.2  # and scenes hold some


def test_membranes_are_thin_bright_walls_shared_by_touching_cells():
    still = np.zeros((2, 64, 64), np.float32)  # no warp: straight walls
    layout = CellLayout((64, 64), np.array([[32.0, 24.0], [32.0, 40.0]]), np.array([14.0, 14.0]), still)
    image = draw_membranes(layout, np.array([0.7, 0.7]), cytoplasm=0.05)
    assert image[32, 32] == pytest.approx(0.7, abs=0.02)  # the shared wall, on the bisector, drawn once
    assert image[32, 24 - 14] == pytest.approx(0.7, abs=0.02)  # a free wall at the cell's radius
    assert image[32, 24] == pytest.approx(0.05)  # cytoplasm at a cell's centre
    assert image[2, 2] < 1e-6  # outside every cell
    walls = image[32] > 0.35
    assert walls.sum() == 3 and np.flatnonzero(walls).tolist() == [10, 32, 54]  # thin: one px each above half height


def test_em_texture_is_thin_dark_membranes_on_mid_grey():
    em = synthetic_cells((128, 128), seed=1, kinds=("em",), psf_sigma=0)
    grey = float(np.median(em))
    assert 0.45 < grey < 0.75
    dark = em < grey - 0.2
    assert 0.05 < dark.mean() < 0.3
    # the dark pixels are thin walls joined into a network, not blobs or isolated specks
    regions, _ = label(dark, np.ones((3, 3)))
    assert np.bincount(regions.ravel())[1:].max() > 0.25 * dark.sum()
    assert binary_erosion(dark, np.ones((3, 3))).sum() < 0.1 * dark.sum()
    # an electron microscope resolves about a pixel: its default blur is narrower than the optical PSF
    blurred = synthetic_cells((128, 128), seed=1, kinds=("em",))
    np.testing.assert_array_equal(blurred, gaussian_blur(em, EM_PSF_SIGMA))


def test_pair_is_the_area_binned_field_acquired_like_synthetic_pair():
    lr, hr = synthetic_cells_pair((64, 96), scale=2, seed=3, noise=False)
    assert lr.shape == (32, 48) and hr.shape == (64, 96) and lr.dtype == hr.dtype == np.uint16
    assert np.abs(lr.astype(np.float64) - bin_image(hr.astype(np.float64), 2)).max() <= 1.0
    noisy_lr, noisy_hr = synthetic_cells_pair((64, 96), scale=2, seed=3)
    assert not np.array_equal(noisy_lr, lr)
    assert abs(float(noisy_lr.mean()) - float(lr.mean())) < 0.02 * float(lr.mean())
    np.testing.assert_array_equal(noisy_lr, synthetic_cells_pair((64, 96), scale=2, seed=3)[0])


@pytest.mark.parametrize("kinds", [("golgi",), (), ("em", "nuclei")])
def test_bad_kinds_name_the_choices(kinds):
    with pytest.raises(ValueError, match="nuclei"):
        synthetic_cells((32, 32), kinds=kinds)
