"""Pretrain the built-in axial (Z) model of one factor on synthetic anisotropic stacks.

``upscale_z`` starts from this model (when its PSF ratio fits) and fine-tunes it on the
user's own stack for a few steps, instead of training a network from scratch.  The
pretraining uses the same self-supervised recipe as ``upscale_z`` itself
(:class:`~napari_superres.engine.train.axial_data.AxialPairSampler`: lateral planes degraded
along one axis the way Z is), on the lateral planes of synthetic acquisitions
(:mod:`napari_superres.engine.samples3d`, seeds 100 and up; ``benchmarks/axial.py`` uses
seeds below 100) at several photon counts; it never sees a ground-truth volume.

Usage::

    python scripts/train_axial_builtin.py --factor 4 --steps 1500 \\
        --out src/napari_superres/models/axial/axial-x4.safetensors

Writes the model (safetensors + JSON metadata) and a model card next to it (``.md``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

#: Pretraining stacks: seeds (disjoint from the benchmark's), photons at object value 1.
SEEDS = tuple(range(100, 124))
PHOTONS = (50.0, 100.0, 200.0, 500.0, 2000.0, 10000.0)
SHAPE = (128, 128)
PLANES = 16


class MixedSampler:
    """Draws each batch from one of several samplers (one per noise level), in turn."""

    def __init__(self, samplers: list) -> None:
        self.samplers = samplers
        self.patch = samplers[0].patch
        self._i = 0

    def sample(self, batch_size: int):
        sampler = self.samplers[self._i % len(self.samplers)]
        self._i += 1
        return sampler.sample(batch_size)


def build_sampler(factor: int, patch: int, seed: int) -> MixedSampler:
    from napari_superres.engine.noise import estimate_noise
    from napari_superres.engine.normalization import default_normalization, intensity_range, normalize
    from napari_superres.engine.samples3d import anisotropic_acquisition, synthetic_object_3d
    from napari_superres.engine.train.axial_data import AxialDegradation, AxialPairSampler, axial_blur_sigma

    blur = axial_blur_sigma(float(factor))
    samplers = []
    per_level = len(SEEDS) // len(PHOTONS)
    for i, photons in enumerate(PHOTONS):
        volumes = []
        for s in SEEDS[i * per_level : (i + 1) * per_level]:
            fine = PLANES * factor
            acq = anisotropic_acquisition(synthetic_object_3d((fine, *SHAPE), seed=s), factor, photons=photons, seed=s)
            lo, hi = intensity_range(acq.low_z, default_normalization())
            volumes.append(normalize(acq.low_z, lo, hi))
        noise = estimate_noise(np.concatenate(volumes))
        samplers.append(
            AxialPairSampler(volumes, AxialDegradation(factor, blur, noise), patch_size=patch, seed=seed + i)
        )
    return MixedSampler(samplers)


def card(
    path: Path, factor: int, steps: int, patch: int, batch: int, seconds: float, final: float, threads: int
) -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"""# axial-x{factor}: built-in axial (Z) upsampling start, x{factor}

An `AxialNet` (default configuration, {path.stat().st_size // 1024} KiB) that `upscale_z(..., factor={factor})`
starts from when no model is given and the PSF ratio is close to {factor} (the default): it is then fine-tuned
on the stack itself for a few steps (self-supervised, as before) instead of trained from scratch.

## Training

Self-supervised, the same recipe as `upscale_z`: lateral planes of synthetic anisotropic acquisitions
(`napari_superres.engine.samples3d`: filaments and puncta, Gaussian PSF sigma 1 voxel laterally and {factor}
axially, every {factor}th plane kept, Poisson noise at {", ".join(f"{p:g}" for p in PHOTONS)} photons at object
value 1, {len(SEEDS)} stacks of {PLANES} x {SHAPE[0]} x {SHAPE[1]} voxels, seeds {SEEDS[0]}-{SEEDS[-1]}) degraded
along one axis the way Z is. No ground-truth volume is used. {steps} steps, batch {batch}, patches of {patch} px,
Adam with a cosine schedule; final L1 {final:.4f} (normalised units). {seconds / 60:.1f} min of wall time on a
shared CPU, {threads} torch thread(s) (load average {load}).

## Limits

Synthetic fluorescence only: on other structures (EM, dense tissue) the fine-tuning on the user's stack does the
adapting, as the from-scratch training did. `benchmarks/axial.py` tests on seed 0, a stack of the same synthetic
kind as this pretraining (other seeds), so its figures may flatter this start on real data.

## Reproduce

```
python scripts/train_axial_builtin.py --factor {factor} --steps {steps} --patch {patch} --threads {threads} --out {path}
```
"""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--factor", type=int, default=4)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    import torch

    from napari_superres.engine.axial import train_axial
    from napari_superres.engine.nets.axial_net import AxialModel, AxialNet, AxialNetConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    sampler = build_sampler(args.factor, args.patch, args.seed)
    net = AxialNet(AxialNetConfig(factor=args.factor))
    t0 = time.perf_counter()
    losses = train_axial(
        net, sampler, args.steps, device=torch.device("cpu"), batch_size=args.batch, learning_rate=args.lr,
        progress=lambda step, loss: print(f"step {step} L1 {loss:.4f}", flush=True) if step % 100 == 0 else None,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    final = float(np.mean(losses[-50:]))
    meta = {"steps": args.steps, "pretrained": "synthetic", "patch_size": sampler.patch, "batch_size": args.batch,
            "final_l1": final, "psf_ratio": float(args.factor)}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    path = AxialModel(net=net, psf_ratio=float(args.factor), metadata=meta, source="builtin").save(args.out)
    md = path.with_suffix(".md")
    md.write_text(card(path, args.factor, args.steps, sampler.patch, args.batch, seconds, final, args.threads))
    print(f"wrote {path} and {md} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
