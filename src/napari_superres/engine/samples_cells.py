"""Deterministic synthetic cell scenes: nuclei, membranes, vesicles and an EM-like texture (numpy only).

The companion of :mod:`.samples` (filaments and puncta) for the other content microscopists
image.  A scene is drawn from a seed in three steps:

1. a **layout** (:func:`cell_layout`): cells as discs on a jittered grid, some missing, clipped
   against each other (a Voronoi tessellation of their centres, on slightly warped coordinates so
   the walls curve), so neighbours may touch and share a wall;
2. **structures** drawn on it, each by its own function that takes explicit geometry:
   :func:`draw_nuclei` (filled ellipses, chromatin-like texture, soft edge), :func:`draw_membranes`
   (thin bright cell contours), :func:`draw_rings` (vesicles: rings with a darker centre), and
   :func:`em_texture` (a dense grainy tissue of dark membranes and organelles on mid-grey, the look
   of an electron micrograph);
3. the **object** (float32, values in ``[0, 1]``) blurred by a Gaussian PSF, as
   :func:`.samples.synthetic_pair` blurs its scenes; :func:`synthetic_cells_pair` acquires it with
   the very same camera model (area-binned low-res, Poisson + read noise, ``uint16``).

Units: lengths and positions are in high-res pixels, ``(y, x)`` order; object values are in object
units (1 = the brightest structure), the scale of :func:`.samples.synthetic_object`.  Each kind
draws from its own random stream (``[seed, k]``), so asking for fewer kinds leaves the others as
they were.  A 512 x 512 scene takes well under a second (see ``tests/test_samples_cells.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .filters import gaussian_blur
from .samples import PSF_SIGMA, STRUCTURE_SIGMA, _check_scale, _check_shape, _pair_from_blurred, _splat

#: Kinds of structure :func:`synthetic_cells` composes.  ``"em"`` is a transmission-contrast scene
#: (dark on grey) and is drawn alone; the others are fluorescence (bright on dark) and combine.
FLUORESCENCE_KINDS = ("nuclei", "membranes", "vesicles")
KINDS = (*FLUORESCENCE_KINDS, "em")
#: Cell radius range (high-res px) of fluorescence scenes, and of the dense EM-like tissue.
CELL_RADIUS = (26.0, 46.0)
EM_CELL_RADIUS = (9.0, 24.0)
#: Share of grid sites left empty (gaps between cells) in fluorescence scenes.
EMPTY_SITES = 0.2
#: Amplitude of the smooth warp that curves cell walls, as a fraction of the cell spacing.
WARP = 0.12
#: Gaussian sigma (px) of a membrane's cross-section before the PSF, and a nucleus edge's half-width.
MEMBRANE_SIGMA = STRUCTURE_SIGMA
NUCLEUS_EDGE_PX = 1.5
#: Vesicles per cell and their radius range (px).
VESICLES_PER_CELL = 4
VESICLE_RADIUS = (2.5, 7.0)
#: Default blur (Gaussian sigma, high-res px) of the EM-like scene: an electron microscope resolves
#: about a pixel, so its grain survives (fluorescence scenes use the optical ``samples.PSF_SIGMA``).
EM_PSF_SIGMA = 0.7
#: Faint cytoplasm level (object units) inside cells of a membrane scene.
CYTOPLASM = 0.06
#: Step (px) between points drawn along a ring.
_STEP = 0.5
_STREAM = {"layout": 0, "nuclei": 1, "membranes": 2, "vesicles": 3, "em": 4}


@dataclass(frozen=True)
class CellLayout:
    """Cells of one field of view: ``centres`` ``(n, 2)`` float64 ``(y, x)`` px, ``radii`` ``(n,)`` px,
    and ``warp`` ``(2, H, W)`` float32: the ``(dy, dx)`` px added to pixel coordinates before the
    tessellation (curved walls)."""

    shape: tuple[int, int]
    centres: np.ndarray
    radii: np.ndarray
    warp: np.ndarray


def smooth_field(shape: tuple[int, int], rng: np.random.Generator, wavelength: tuple[float, float]) -> np.ndarray:
    """A smooth random field, float32 ``shape``, about zero mean and unit peak: four plane cosines
    of wavelengths (px) drawn in ``wavelength``."""
    h, w = shape
    k = 4
    freq = 2 * np.pi / rng.uniform(*wavelength, k)
    angle = rng.uniform(0, 2 * np.pi, k)
    phase = rng.uniform(0, 2 * np.pi, k)
    yy = np.arange(h, dtype=np.float64)[:, None] * (freq * np.sin(angle))[None, :]  # (h, k)
    xx = np.arange(w, dtype=np.float64)[:, None] * (freq * np.cos(angle))[None, :] + phase  # (w, k)
    # sum of cos(u + v), separable: cos u cos v - sin u sin v
    field = np.cos(yy) @ np.cos(xx).T - np.sin(yy) @ np.sin(xx).T
    return (field / k).astype(np.float32)


def cell_layout(
    shape: tuple[int, int],
    rng: np.random.Generator,
    radius: tuple[float, float] = CELL_RADIUS,
    empty: float = EMPTY_SITES,
) -> CellLayout:
    """Random cells covering ``shape`` (and a margin past its edges): a jittered grid whose spacing
    makes neighbours touch, ``empty`` of the sites left out, radii uniform in ``radius`` (px)."""
    h, w = _check_shape(shape)
    spacing = 1.7 * float(np.mean(radius))
    ys = np.arange(-spacing / 2, h + spacing, spacing)
    xs = np.arange(-spacing / 2, w + spacing, spacing)
    grid = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)
    grid[:, 1] += (np.arange(len(grid)) // len(xs) % 2) * spacing / 2  # hexagonal-ish rows
    centres = grid + rng.uniform(-0.25, 0.25, grid.shape) * spacing
    keep = rng.uniform(size=len(centres)) >= empty
    keep[len(keep) // 2] = True  # never an empty field
    centres = centres[keep]
    radii = rng.uniform(*radius, len(centres))
    warp = np.stack([smooth_field((h, w), rng, (1.5 * spacing, 4 * spacing)) for _ in range(2)]) * (WARP * spacing)
    return CellLayout((h, w), centres, radii, warp)


def _nearest_two(layout: CellLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: squared (warped) distances to the nearest and second-nearest centre and their indices.

    Each centre only reaches pixels within twice the largest radius plus the warp (inf elsewhere),
    which is all the walls need and keeps dense layouts fast.
    """
    h, w = layout.shape
    yy = np.arange(h, dtype=np.float32)[:, None] + layout.warp[0]
    xx = np.arange(w, dtype=np.float32)[None, :] + layout.warp[1]
    d1 = np.full((h, w), np.inf, np.float32)
    d2 = d1.copy()
    i1 = np.zeros((h, w), np.int64)
    i2 = i1.copy()
    reach = 2.0 * float(layout.radii.max(initial=1.0)) + float(np.abs(layout.warp).max(initial=0.0))
    for k, (cy, cx) in enumerate(layout.centres):
        y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
        x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        win = np.s_[y0:y1, x0:x1]
        d = (yy[win] - np.float32(cy)) ** 2 + (xx[win] - np.float32(cx)) ** 2
        a1, a2, j1, j2 = d1[win], d2[win], i1[win], i2[win]
        closer = d < a1
        i2[win] = np.where(closer, j1, np.where(d < a2, k, j2))
        d2[win] = np.minimum(a2, np.maximum(a1, d))
        i1[win] = np.where(closer, k, j1)
        d1[win] = np.minimum(a1, d)
    return d1, d2, i1, i2


def wall_distance(layout: CellLayout) -> tuple[np.ndarray, np.ndarray]:
    """``(distance, cell)``: per pixel the distance (px, float32) to the nearest cell wall (the
    bisector with a neighbour or the cell's own disc edge), and the index of its cell (int64;
    ``distance`` is negative outside every cell)."""
    d1, d2, i1, i2 = _nearest_two(layout)
    c = layout.centres
    sep = np.hypot(*(c[:, None] - c[None]).transpose(2, 0, 1)).astype(np.float32)[i1, i2]  # (n, n) -> pixels
    with np.errstate(invalid="ignore", divide="ignore"):
        bisector = np.where(np.isfinite(d2) & (sep > 0), (d2 - d1) / (2 * sep), np.inf)
    edge = layout.radii[i1].astype(np.float32) - np.sqrt(d1)
    inside = np.isfinite(d1) & (edge > 0)
    return np.where(inside, np.minimum(bisector, edge), np.where(np.isfinite(edge), edge, -np.inf)), i1


def draw_membranes(
    layout: CellLayout, brightness: np.ndarray, sigma: float = MEMBRANE_SIGMA, cytoplasm: float = 0.0
) -> np.ndarray:
    """Cell contours: a Gaussian ridge of ``sigma`` px across every wall, peak ``brightness[cell]``
    (``(n,)`` object units), plus ``cytoplasm`` inside cells; float32 ``layout.shape``.

    Touching cells share one wall (drawn once).
    """
    dist, cell = wall_distance(layout)
    level = np.asarray(brightness, np.float32)[cell]
    ridge = np.exp(-0.5 * (np.minimum(np.abs(dist), 8 * sigma) / sigma) ** 2)
    return (level * ridge + np.float32(cytoplasm) * (dist > 0)).astype(np.float32)


def chromatin_texture(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A grainy, clumpy texture in ``[0, 1]`` (float32 ``shape``, mean ~0.5): band-passed white noise
    (features of 1-4 px, like condensed chromatin) with a few bright clumps (chromocenters)."""
    h, w = shape
    noise = rng.standard_normal((h, w)).astype(np.float32)
    band = gaussian_blur(noise, 1.0) - gaussian_blur(noise, 3.5)
    band /= float(band.std()) or 1.0
    n_spots = max(1, h * w // 600)
    spots = _splat((h, w), rng.uniform(0, h, n_spots), rng.uniform(0, w, n_spots), rng.uniform(10, 30, n_spots))
    return np.clip(0.5 + 0.2 * band + gaussian_blur(spots, 1.5), 0.0, 1.0)


def draw_nuclei(
    shape: tuple[int, int],
    centres: np.ndarray,
    semi_axes: np.ndarray,
    angles: np.ndarray,
    brightness: np.ndarray,
    texture: np.ndarray | None = None,
    edge: float = NUCLEUS_EDGE_PX,
) -> np.ndarray:
    """Filled ellipses, float32 ``shape``: ``centres`` ``(n, 2)`` and ``semi_axes`` ``(n, 2)`` px,
    ``angles`` ``(n,)`` rad, peak ``brightness`` ``(n,)``.  The edge is a smooth step ``edge`` px wide
    (tanh); the interior is modulated by ``texture`` (``shape``, values in ``[0, 1]``: value
    ``brightness * (0.45 + 0.55 * texture)``).  Overlapping nuclei take the brighter value."""
    h, w = _check_shape(shape)
    out = np.zeros((h, w), np.float32)
    for (cy, cx), (a, b), theta, level in zip(centres, semi_axes, angles, brightness):
        r = max(a, b) + 3 * edge
        y0, y1 = max(0, int(cy - r)), min(h, int(cy + r) + 2)
        x0, x1 = max(0, int(cx - r)), min(w, int(cx + r) + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        inside = 0.5 * (1 + np.tanh((1 - rho) * np.sqrt(a * b) / edge))
        fill = 1.0 if texture is None else 0.45 + 0.55 * texture[y0:y1, x0:x1]
        np.maximum(out[y0:y1, x0:x1], (level * inside * fill).astype(np.float32), out=out[y0:y1, x0:x1])
    return out


def draw_rings(
    shape: tuple[int, int],
    centres: np.ndarray,
    radii: np.ndarray,
    brightness: np.ndarray,
    sigma: float = STRUCTURE_SIGMA,
) -> np.ndarray:
    """Rings (vesicles), float32 ``shape``: circles of ``radii`` ``(n,)`` px around ``centres`` ``(n, 2)``
    with a Gaussian cross-section of ``sigma`` px and peak about ``brightness`` ``(n,)``."""
    h, w = _check_shape(shape)
    ys, xs, ws = [], [], []
    for (cy, cx), r, level in zip(centres, radii, brightness):
        n = max(8, int(2 * np.pi * r / _STEP))
        t = np.arange(n) * (2 * np.pi / n)
        ys.append(cy + r * np.sin(t))
        xs.append(cx + r * np.cos(t))
        ws.append(np.full(n, level * (2 * np.pi * r / n) * np.sqrt(2 * np.pi) * sigma))
    if not ys:
        return np.zeros((h, w), np.float32)
    return gaussian_blur(_splat((h, w), np.concatenate(ys), np.concatenate(xs), np.concatenate(ws)), sigma)


def _around(layout: CellLayout, rng: np.random.Generator, per_cell: int, inner: float, outer: float) -> np.ndarray:
    """``(n, 2)`` random points at ``inner``-``outer`` of each cell's radius from its centre."""
    n = len(layout.centres) * per_cell
    cell = np.repeat(np.arange(len(layout.centres)), per_cell)
    r = layout.radii[cell] * rng.uniform(inner, outer, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    return layout.centres[cell] + np.stack([r * np.sin(phi), r * np.cos(phi)], axis=1)


def _nuclei_of(layout: CellLayout, rng: np.random.Generator) -> np.ndarray:
    """One textured nucleus in most cells, small enough to stay inside the cell's wall."""
    c, n = layout.centres, len(layout.centres)
    gaps = np.hypot(*(c[:, None] - c[None]).transpose(2, 0, 1)) + np.eye(n) * 1e9 if n > 1 else np.full((1, 1), 1e9)
    room = np.minimum(0.5 * gaps.min(axis=1), layout.radii)
    offset = _around(layout, rng, 1, 0.0, 0.12) - c
    a = np.minimum(room * rng.uniform(0.4, 0.6, n), 0.85 * room - np.hypot(*offset.T) - 2 * NUCLEUS_EDGE_PX)
    axes = np.stack([a, a * rng.uniform(0.65, 1.0, n)], axis=1)
    keep = (rng.uniform(size=n) < 0.9) & (a > 3)
    return draw_nuclei(
        layout.shape, (c + offset)[keep], axes[keep], rng.uniform(0, np.pi, n)[keep],
        rng.uniform(0.55, 1.0, n)[keep], chromatin_texture(layout.shape, rng),
    )  # fmt: skip


def em_texture(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """An EM-like tissue, float32 ``shape`` in ``[0, 1]``: a dense tessellation of small cells whose
    dark membranes (about 1 px) lie on a mid-grey (~0.6) grainy background, with darker organelles
    (mitochondria-like ellipses with a textured interior) and small dark vesicle rings."""
    h, w = _check_shape(shape)
    layout = cell_layout((h, w), rng, EM_CELL_RADIUS, empty=0.0)
    layout = CellLayout(layout.shape, layout.centres, 1.2 * layout.radii, layout.warp)  # no gaps: polygons
    n = len(layout.centres)
    walls = draw_membranes(layout, rng.uniform(0.75, 1.0, n), sigma=0.9)
    organelles = np.zeros((h, w), np.float32)
    picked = rng.uniform(size=n) < 0.3
    if picked.any():
        m = int(picked.sum())
        a = layout.radii[picked] * rng.uniform(0.3, 0.5, m)
        organelles = draw_nuclei(
            (h, w), _around(layout, rng, 1, 0.0, 0.3)[picked], np.stack([a, a * rng.uniform(0.4, 0.7, m)], axis=1),
            rng.uniform(0, np.pi, m), rng.uniform(0.5, 0.9, m), chromatin_texture((h, w), rng), edge=0.8,
        )  # fmt: skip
    vesicle_centres = _around(layout, rng, 2, 0.2, 0.8)
    rings = draw_rings(
        (h, w), vesicle_centres, rng.uniform(1.5, 3.5, len(vesicle_centres)), np.full(len(vesicle_centres), 0.7)
    )
    noise = rng.standard_normal((h, w)).astype(np.float32)
    grain = gaussian_blur(noise, 0.7) - gaussian_blur(noise, 2.5)
    grain /= float(grain.std()) or 1.0
    base = 0.6 + 0.06 * smooth_field((h, w), rng, (60.0, 300.0)) + 0.05 * grain
    return np.clip(base - 0.5 * walls - 0.3 * organelles - 0.35 * rings, 0.0, 1.0).astype(np.float32)


def _check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(kinds))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {tuple(kinds)}")
    if "em" in kinds and len(kinds) > 1:
        raise ValueError(
            f'"em" is a dark-on-grey scene and is drawn alone; ask for ("em",) or for {FLUORESCENCE_KINDS}'
        )
    return kinds


def cell_object(shape: tuple[int, int], seed: int, kinds: Sequence[str] = FLUORESCENCE_KINDS) -> np.ndarray:
    """The unblurred object of :func:`synthetic_cells`: float32 ``shape``, values in ``[0, 1]``."""
    h, w = _check_shape(shape)
    kinds = _check_kinds(kinds)
    if kinds == ("em",):
        return em_texture((h, w), np.random.default_rng([seed, _STREAM["em"]]))
    layout = cell_layout((h, w), np.random.default_rng([seed, _STREAM["layout"]]))
    n = len(layout.centres)
    obj = np.zeros((h, w), np.float32)
    if "nuclei" in kinds:
        obj = np.maximum(obj, _nuclei_of(layout, np.random.default_rng([seed, _STREAM["nuclei"]])))
    if "membranes" in kinds:
        rng = np.random.default_rng([seed, _STREAM["membranes"]])
        obj += draw_membranes(layout, rng.uniform(0.4, 0.9, n), cytoplasm=CYTOPLASM)
    if "vesicles" in kinds:
        rng = np.random.default_rng([seed, _STREAM["vesicles"]])
        centres = _around(layout, rng, VESICLES_PER_CELL, 0.45, 0.9)
        obj += draw_rings(
            (h, w), centres, rng.uniform(*VESICLE_RADIUS, len(centres)), rng.uniform(0.4, 1.0, len(centres))
        )
    return np.clip(obj, 0.0, 1.0)


def synthetic_cells(
    shape: tuple[int, int] = (256, 256),
    seed: int = 0,
    kinds: Sequence[str] = FLUORESCENCE_KINDS,
    *,
    psf_sigma: float | None = None,
) -> np.ndarray:
    """A cell scene seen through the microscope: float32 ``shape``, the object of ``kinds`` (a subset
    of :data:`FLUORESCENCE_KINDS`, or ``("em",)``) blurred by a Gaussian PSF of ``psf_sigma`` high-res
    px (``0``: the object itself; default :data:`.samples.PSF_SIGMA`, or :data:`EM_PSF_SIGMA` for
    ``("em",)``).  Values in object units (``[0, 1]``); same arguments, same image."""
    if psf_sigma is None:
        psf_sigma = EM_PSF_SIGMA if _check_kinds(kinds) == ("em",) else PSF_SIGMA
    return gaussian_blur(cell_object(shape, seed, kinds), psf_sigma)


def synthetic_cells_pair(
    shape: tuple[int, int] = (256, 256),
    scale: int = 2,
    seed: int = 0,
    noise: bool = True,
    kinds: Sequence[str] = FLUORESCENCE_KINDS,
    *,
    psf_sigma: float | None = None,
    peak_photons: float = 60.0,
    hr_photons: float = 1000.0,
    background: float = 0.05,
    read_noise: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(low_res (H/s, W/s), high_res (H, W))`` ``uint16`` of a :func:`synthetic_cells` scene, acquired
    exactly as :func:`.samples.synthetic_pair` acquires its fields (same arguments and noise model:
    low-res = the blurred object area-binned over ``scale x scale`` blocks; ``psf_sigma`` as
    :func:`synthetic_cells`)."""
    h, w = _check_shape(shape)
    scale = _check_scale((h, w), scale)
    blurred = synthetic_cells((h, w), seed, kinds, psf_sigma=psf_sigma)
    return _pair_from_blurred(blurred, scale, seed, noise, peak_photons, hr_photons, background, read_noise)
