"""The data of the built-in models: which files train, which are held out, and how they load.

The data folder has the layout of ``../shared/data`` (see its README)::

    natural/T91/*.bmp                         91 RGB images (Yang et al. 2010)
    natural/BSD200/*.png                      200 RGB images (BSDS300 train+val)
    microscopy/em_isbi2012_train/*.png        30 ssTEM slices, 512 x 512 uint8
    microscopy/fluorescence/*.tif             real fluorescence images (various dtypes/axes)

A fixed list of images of every kind is HELD OUT: the built-in models never train on
them and ``benchmarks/quality.py`` measures on them.  Synthetic fluorescence
(``napari_superres.engine.samples``) and synthetic cell scenes (``napari_superres.engine.samples_cells``)
use disjoint seed ranges for training and benchmarking.

Run as a script to copy a data folder into the git-ignored ``.data/`` of the project::

    python scripts/prepare_data.py --data ../shared/data --dest .data/data
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NATURAL_T91 = "natural/T91"
NATURAL_BSD200 = "natural/BSD200"
EM = "microscopy/em_isbi2012_train"
FLUORESCENCE = "microscopy/fluorescence"
SOURCE_FOLDERS = (NATURAL_T91, NATURAL_BSD200, EM, FLUORESCENCE)

#: Held-out images (file names per folder): never trained on, benchmarked.
HELD_OUT: dict[str, tuple[str, ...]] = {
    NATURAL_T91: ("tt5.bmp", "tt6.bmp", "tt7.bmp", "tt8.bmp", "tt9.bmp"),  # last 5 by name
    NATURAL_BSD200: (  # last 20 by name
        "65010.png", "65019.png", "65074.png", "65132.png", "66039.png", "66075.png", "67079.png",
        "68077.png", "71046.png", "76002.png", "78019.png", "80099.png", "8049.png", "8143.png",
        "87065.png", "90076.png", "92059.png", "94079.png", "95006.png", "97017.png",
    ),
    EM: ("25.png", "26.png", "27.png", "28.png", "29.png"),
    FLUORESCENCE: ("hela-cells.tif", "membranes_2d.tif"),
}  # fmt: skip

#: Fluorescence training files and how to cut them into 2D planes: (file, plane selector).
#: ``"all"``: every plane of the leading axes; ``"every8"``: every 8th frame of a time stack.
FLUORESCENCE_TRAIN: tuple[tuple[str, str], ...] = (
    ("BPAE_actin.tif", "all"),
    ("BPAE_mito.tif", "all"),
    ("BPAE_nuclei.tif", "all"),
    ("IXMtest_A02_s9.tif", "all"),
    ("cancer_cell_migration_crop.tif", "every8"),
    ("maize_clsm.tif", "all"),
)

#: Synthetic fluorescence fields: training seeds and (disjoint) benchmark seeds.
SYNTHETIC_TRAIN_SEEDS = tuple(range(16))
SYNTHETIC_BENCH_SEEDS = tuple(range(1000, 1004))
SYNTHETIC_TRAIN_SHAPE = (256, 256)
SYNTHETIC_BENCH_SHAPE = (256, 256)
#: Synthetic cell scenes (nuclei, membranes, vesicles; EM-like tissue): training seeds and held-out
#: benchmark seeds, disjoint from each other and from the synthetic fluorescence seeds.  Seed number
#: ``i`` of a list draws the kinds ``CELL_SCENES[i % len(CELL_SCENES)]``, so the four held-out scenes
#: are one of each.
CELL_TRAIN_SEEDS = tuple(range(2000, 2016))
CELL_BENCHMARK_SEEDS = tuple(range(3000, 3004))
CELL_SCENES = (("nuclei", "membranes", "vesicles"), ("nuclei",), ("membranes", "vesicles"), ("em",))
CELL_BENCH_SHAPE = (512, 512)


@dataclass
class Image:
    """One image of a data set: ``array`` is ``(H, W)`` (any dtype) or ``(H, W, 3)`` uint8 RGB."""

    name: str
    kind: str  # "natural", "em", "fluorescence", "synthetic", "cells"
    array: np.ndarray


def _sorted_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder missing: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)


def read_image(path: Path) -> np.ndarray:
    """Read a BMP/PNG/JPEG (PIL) or TIFF (tifffile) into a numpy array, dtype as stored."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        if im.mode not in ("L", "I;16", "I", "F", "RGB"):
            im = im.convert("RGB")
        return np.asarray(im)


def _planes(array: np.ndarray, select: str) -> list[np.ndarray]:
    """2D planes of a fluorescence file: channels last (Y, X, C<=4) or first, stacks along axis 0."""
    if array.ndim == 2:
        return [array]
    if array.ndim == 3 and array.shape[-1] <= 4:  # (Y, X, C)
        return [array[..., c] for c in range(array.shape[-1])]
    flat = array.reshape(-1, *array.shape[-2:])
    step = 8 if select == "every8" else 1
    return [flat[i] for i in range(0, flat.shape[0], step)]


def natural_images(data: Path, split: str) -> list[Image]:
    """T91 + BSD200 RGB images (uint8 ``(H, W, 3)``); ``split`` is ``"train"`` or ``"heldout"``."""
    out = []
    for folder in (NATURAL_T91, NATURAL_BSD200):
        held = set(HELD_OUT[folder])
        for path in _sorted_files(data / folder, (".bmp", ".png", ".jpg")):
            if (path.name in held) == (split == "heldout"):
                rgb = read_image(path)
                if rgb.ndim == 2:
                    rgb = np.repeat(rgb[..., None], 3, axis=-1)
                out.append(Image(f"{Path(folder).name}/{path.name}", "natural", rgb[..., :3]))
    return out


def em_images(data: Path, split: str) -> list[Image]:
    """ISBI 2012 ssTEM slices (uint8 ``(512, 512)``)."""
    held = set(HELD_OUT[EM])
    return [
        Image(f"EM/{p.name}", "em", read_image(p))
        for p in _sorted_files(data / EM, (".png", ".tif"))
        if (p.name in held) == (split == "heldout")
    ]


def fluorescence_images(data: Path, split: str) -> list[Image]:
    """Real fluorescence planes (2D, dtype as stored: uint8/uint16/float32)."""
    if split == "heldout":
        files = [(name, "all") for name in HELD_OUT[FLUORESCENCE]]
    else:
        files = list(FLUORESCENCE_TRAIN)
    out = []
    for name, select in files:
        array = read_image(data / FLUORESCENCE / name)
        for i, plane in enumerate(_planes(array, select)):
            out.append(Image(f"fluo/{name}[{i}]", "fluorescence", np.ascontiguousarray(plane)))
    return out


def synthetic_images(split: str, shape: tuple[int, int] | None = None) -> list[Image]:
    """Synthetic fluorescence high-res fields (noise-free, PSF-blurred, uint16 camera scale)."""
    from napari_superres.engine.samples import synthetic_pair

    seeds = SYNTHETIC_BENCH_SEEDS if split == "heldout" else SYNTHETIC_TRAIN_SEEDS
    shape = shape or (SYNTHETIC_BENCH_SHAPE if split == "heldout" else SYNTHETIC_TRAIN_SHAPE)
    out = []
    for seed in seeds:
        _, hr = synthetic_pair(shape=shape, scale=4, seed=seed, noise=False)
        out.append(Image(f"synthetic/seed{seed}", "synthetic", hr))
    return out


def cell_image(index: int, seed: int, shape: tuple[int, int]) -> Image:
    """The ``index``-th synthetic cell scene of a seed list: noise-free, PSF-blurred high-res field on
    the uint16 camera scale of the synthetic fluorescence fields (kinds ``CELL_SCENES[index % 4]``)."""
    from napari_superres.engine.samples_cells import synthetic_cells_pair

    kinds = CELL_SCENES[index % len(CELL_SCENES)]
    _, hr = synthetic_cells_pair(shape=shape, scale=4, seed=seed, noise=False, kinds=kinds)
    return Image(f"cells/seed{seed}-{'+'.join(kinds)}", "cells", hr)


def cell_images(split: str, shape: tuple[int, int] | None = None) -> list[Image]:
    """Synthetic cell scenes (:func:`cell_image`) of ``split`` (``"train"`` or ``"heldout"``)."""
    seeds = CELL_BENCHMARK_SEEDS if split == "heldout" else CELL_TRAIN_SEEDS
    return [cell_image(i, seed, shape or CELL_BENCH_SHAPE) for i, seed in enumerate(seeds)]


def training_images(data: Path) -> list[Image]:
    """Every training image (nothing held out), in a fixed order."""
    data = Path(data)
    return (
        natural_images(data, "train")
        + em_images(data, "train")
        + fluorescence_images(data, "train")
        + (synthetic_images("train"))
        + cell_images("train")
    )


def heldout_sets(data: Path | None, *, synthetic: bool = True) -> dict[str, list[Image]]:
    """The benchmark sets: ``{"natural": [...], "EM": [...], "fluorescence": [...], "synthetic": [...],
    "cells": [...]}`` (the two synthetic sets with ``synthetic``)."""
    sets: dict[str, list[Image]] = {}
    if data is not None:
        data = Path(data)
        sets["natural"] = natural_images(data, "heldout")
        sets["EM"] = em_images(data, "heldout")
        sets["fluorescence"] = fluorescence_images(data, "heldout")
    if synthetic:
        sets["synthetic"] = synthetic_images("heldout")
        sets["cells"] = cell_images("heldout")
    return sets


def source_credits(data: Path) -> dict[str, str]:
    """The ``SOURCE.txt`` of every data folder (for model cards), by folder."""
    out = {}
    for folder in SOURCE_FOLDERS:
        path = Path(data) / folder / "SOURCE.txt"
        if path.is_file():
            out[folder] = path.read_text(encoding="utf-8", errors="replace").strip()
    return out


def copy_data(data: Path, dest: Path) -> None:
    """Copy the folders the built-in models use from ``data`` to ``dest`` (skips existing files)."""
    for folder in SOURCE_FOLDERS:
        src = Path(data) / folder
        if not src.is_dir():
            print(f"missing: {src}")
            continue
        target = Path(dest) / folder
        target.mkdir(parents=True, exist_ok=True)
        n = 0
        for path in src.iterdir():
            if path.is_file() and not (target / path.name).exists():
                shutil.copy2(path, target / path.name)
                (target / path.name).chmod(0o644)
                n += 1
        print(f"{folder}: copied {n} files to {target}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="source data folder (e.g. ../shared/data)")
    parser.add_argument("--dest", type=Path, default=Path(".data/data"), help="git-ignored destination")
    args = parser.parse_args(argv)
    copy_data(args.data, args.dest)
    train = training_images(args.dest)
    held = heldout_sets(args.dest)
    print(f"training images: {len(train)}; held out: " + ", ".join(f"{k} {len(v)}" for k, v in held.items()))


if __name__ == "__main__":
    main()
