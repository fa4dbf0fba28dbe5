"""Axial (Z) super-resolution benchmark: upscale_z against interpolation along Z, on synthetic stacks.

Each test stack is a synthetic fluorescence object (3D filaments of random orientation and
puncta, :mod:`napari_superres.engine.samples3d`) on an isotropic voxel grid, imaged as
an anisotropic microscope does (:func:`~napari_superres.engine.samples3d.anisotropic_acquisition`):
a Gaussian PSF of sigma 1 voxel laterally and ``psf_ratio`` voxels axially, every
``factor``-th plane kept, Poisson noise (``--photons`` at object value 1), uint16.  The
ground truth is the same object under an isotropic PSF (sigma 1 voxel), noise free, on
the fine grid.  ``upscale_z`` never sees it: it trains on the acquisition's own lateral
planes (self-supervised), so the whole ground-truth volume is held out.

Methods, all putting input plane ``k`` on output plane ``k * factor``: nearest (each
plane repeated), linear and cubic-spline interpolation along Z (``scipy`` splines of
order 1 and 3), and ``upscale_z`` per ``--recipes`` (``mean`` of the XZ and YZ passes, and
the XZ pass alone):

* ``default``: ``upscale_z``'s defaults: the built-in axial model of the factor fine-tuned
  on the stack (``FINETUNE_STEPS`` steps of 32-px patches), passes through ONNX Runtime;
* ``scratch``: the recipe before the built-in starts (a network from scratch,
  ``DEFAULT_STEPS`` = 400 steps of 64-px patches, eager torch passes):
  ``upscale_z(..., pretrained=False, backend="torch")``.

Time: wall and CPU seconds (``time.process_time``, all threads of the process) of the
``upscale_z`` call, run in the same process one after the other.  Metrics on the planes inside
the sampled range (``(Z - 1) * factor + 1``), data range = ground truth max - min:
PSNR over the volume, SSIM (Gaussian window 11, sigma 1.5) averaged over XZ slices.

Usage::

    python benchmarks/axial.py                       # factor 4, one 16 x 128 x 128 stack, both recipes
    python benchmarks/axial.py --factors 3 4 --seeds 0 1 --steps 800

Writes ``benchmarks/results/axial.md`` (table) and ``docs/axial_xz.png`` (an XZ slice:
acquisition with nearest and linear upscaling, ours, ground truth).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "axial.md"
FIGURE = ROOT / "docs" / "axial_xz.png"


#: ``upscale_z`` keyword arguments per recipe (see the module docstring).
RECIPES = {"scratch": {"pretrained": False, "backend": "torch"}, "default": {}}


def interpolate_z(volume: np.ndarray, factor: int, order: int) -> np.ndarray:
    """Spline interpolation along Z (order 0: nearest = repeat, 1: linear, 3: cubic) to ``(Z - 1) * factor + 1`` planes."""
    from scipy.interpolate import make_interp_spline

    n = (volume.shape[0] - 1) * factor + 1
    if order == 0:
        return np.repeat(volume.astype(np.float32), factor, axis=0)[:n]
    z = np.arange(volume.shape[0]) * factor
    return make_interp_spline(z, volume.astype(np.float64), k=order, axis=0)(np.arange(n)).astype(np.float32)


def scores(result: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """PSNR over the volume and mean SSIM over XZ slices, data range = GT max - min."""
    from napari_superres.engine.metrics.pixel import psnr, ssim

    n = gt.shape[0]
    vol = np.asarray(result[:n], dtype=np.float32)
    rng = float(gt.max() - gt.min())
    xz_a, xz_b = vol.transpose(1, 0, 2), gt.transpose(1, 0, 2)  # (Y, Z, X): one XZ slice per Y
    return psnr(vol, gt, data_range=rng), ssim(xz_a, xz_b, data_range=rng, axes="QYX")


def figure(path: Path, acquisition: np.ndarray, ours: np.ndarray, gt: np.ndarray, factor: int, y: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = gt.shape[0]
    panels = [
        ("acquisition (nearest)", interpolate_z(acquisition, factor, 0)[:, y]),
        ("linear along Z", interpolate_z(acquisition, factor, 1)[:, y]),
        ("upscale_z (ours)", ours[:n, y].astype(np.float32)),
        ("ground truth", gt[:, y]),
    ]
    lo, hi = np.percentile(gt[:, y], [0.5, 99.8])
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2 * n / gt.shape[2] + 0.6))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img, cmap="magma", vmin=lo, vmax=hi, interpolation="nearest", aspect="equal")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_ylabel(f"Z (x{factor})")
    fig.suptitle(f"XZ slice (y = {y}): Z sampled every {factor} voxels, axial PSF {factor}x the lateral", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--factors", type=int, nargs="+", default=[4])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--shape", type=int, nargs=2, default=[128, 128], metavar=("Y", "X"))
    p.add_argument("--planes", type=int, default=16, help="Z planes of the acquisition")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: upscale_z's per recipe)")
    p.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    p.add_argument("--photons", type=float, default=200.0)
    p.add_argument("--assumed-psf-ratio", type=float, default=None,
                   help="psf_ratio given to upscale_z (default: its default, the factor = the true ratio)")  # fmt: skip
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-figure", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()

    import torch

    from napari_superres.engine.axial import upscale_z
    from napari_superres.engine.samples3d import anisotropic_acquisition, synthetic_object_3d

    torch.set_num_threads(args.threads)
    assumed = "" if args.assumed_psf_ratio is None else f", assumed psf_ratio {args.assumed_psf_ratio:g}"
    rows = []
    load_before = os.getloadavg()[0]
    for factor in args.factors:
        for seed in args.seeds:
            fine = (args.planes - 1) * factor + factor
            acq = anisotropic_acquisition(
                synthetic_object_3d((fine, *args.shape), seed=seed), factor, photons=args.photons, seed=seed
            )
            gt = acq.ground_truth[: (acq.low_z.shape[0] - 1) * factor + 1]
            for name, order in (("nearest", 0), ("linear", 1), ("cubic spline", 3)):
                rows.append((factor, seed, name, *scores(interpolate_z(acq.low_z, factor, order), gt), "", ""))
            print(*(f"{r[2]:28s} x{r[0]} seed {r[1]}: PSNR {r[3]:.2f} dB  SSIM {r[4]:.4f}"
                    for r in rows[-3:]), sep="\n", flush=True)  # fmt: skip
            for recipe in args.recipes:
                kwargs = RECIPES[recipe]
                t0, c0 = time.perf_counter(), time.process_time()
                result = upscale_z(acq.low_z, factor, steps=args.steps, seed=seed, psf_ratio=args.assumed_psf_ratio,
                                   **kwargs)  # fmt: skip
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                start = result.model.metadata.get("start", "from scratch")
                label = f"upscale_z {recipe} ({start}, {len(result.losses)} steps{assumed})"
                rows.append((factor, seed, label, *scores(result.volume, gt),
                             f"{wall:.1f} s", f"{cpu:.1f} s"))  # fmt: skip
                xz = upscale_z(acq.low_z, factor, model=result.model, fuse="xz", **kwargs).volume
                rows.append((factor, seed, "  same model, XZ pass only", *scores(xz, gt), "", ""))
                print(*(f"{r[2]:28s} x{r[0]} seed {r[1]}: PSNR {r[3]:.2f} dB  SSIM {r[4]:.4f}  {r[5]} {r[6]}"
                        for r in rows[-2:]), sep="\n", flush=True)  # fmt: skip
            if not args.no_figure and factor == args.factors[0] and seed == args.seeds[0]:
                y = int(np.argmax(gt.max(axis=(0, 2)) * (np.arange(gt.shape[1]) > 8)))  # a slice with bright structure
                try:
                    figure(FIGURE, acq.low_z, result.volume, gt, factor, y)
                    print(f"wrote {FIGURE}")
                except ImportError as exc:  # matplotlib is optional: the table is the result
                    print(f"figure skipped ({exc}); install matplotlib to draw {FIGURE.name}")
    load_after = os.getloadavg()[0]
    shape = f"{args.planes} x {args.shape[0]} x {args.shape[1]}"
    lines = [
        "# Axial (Z) super-resolution: synthetic anisotropic stacks",
        "",
        f"Acquisition {shape} voxels (Z x Y x X), Z step = factor x the lateral pixel, axial PSF "
        f"factor x the lateral (sigma 1 voxel), Poisson noise ({args.photons:g} photons at object 1). "
        "Ground truth: isotropic PSF on the fine grid, never seen by upscale_z (self-supervised). "
        "PSNR over the sampled range, SSIM mean over XZ slices. "
        f"Time: `upscale_z` training + inference on {args.threads} CPU threads, shared machine "
        f"(load average {load_before:.1f} before, {load_after:.1f} after).",
        "",
        "| factor | seed | method | PSNR (dB) | SSIM (XZ) | wall | CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| x{r[0]} | {r[1]} | {r[2].strip()} | {r[3]:.2f} | {r[4]:.4f} | {r[5]} | {r[6]} |" for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
