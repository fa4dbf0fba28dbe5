"""Train a built-in model (x2 or x4) with one command and a fixed seed, and write its model card.

    python scripts/train_builtin.py --data ../shared/data --scale 2 --steps 20000 \
        --out src/napari_superres/models/superres-x2.safetensors

The recipe (network, data mix, degradations, optimiser) is fixed in this file; only the
step count, seed and device are parameters, so the same command on a GPU trains the
same recipe for longer.  What the script does:

1. loads every training image of the data folder (``scripts/prepare_data.py`` holds the
   fixed held-out lists: they are never trained on), as 2-D planes in ``[0, 1]``:
   natural RGB -> luminance (BT.601 Y, as inference feeds a 1-channel model), EM and
   fluorescence planes -> min/max, synthetic fluorescence and cell scenes (seeded) -> their uint16 scale;
   microscopy planes are repeated to balance the mix; each plane is then normalised by its own
   1st/99.8th percentiles (as inference normalises every image), so dim 12-bit data in a 16-bit
   container and bright 8-bit data reach the network alike;
2. trains a 1-channel :class:`~napari_superres.engine.SRNet` (bilinear upsampling,
   global bicubic skip) with the engine's :class:`~napari_superres.engine.train.trainer.Trainer`
   on high-res patches degraded on the fly (random area / bicubic / bilinear / nearest
   downsampling, optional Gaussian blur, optional Poisson-Gaussian noise);
3. writes the model file (EMA weights, normalisation ``percentile``, training metadata), and,
   every ``--checkpoint-every`` steps, a resumable checkpoint plus the model so far;
4. runs ``benchmarks/quality.py`` on the held-out images at the model's scale
   (unless ``--no-benchmark``) and writes the model card ``<out>.md`` next to the file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for sub in ("scripts", "benchmarks"):
    if str(ROOT / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / sub))

from prepare_data import (  # noqa: E402
    CELL_BENCHMARK_SEEDS,
    CELL_TRAIN_SEEDS,
    HELD_OUT,
    SYNTHETIC_TRAIN_SEEDS,
    Image,
    cell_image,
    em_images,
    fluorescence_images,
    natural_images,
    source_credits,
)

# --- the recipe ----------------------------------------------------------------------------------
#: Network: small enough to train on a CPU, same recipe on a GPU (only --steps changes).
#: All convolutions of the body run at low resolution; each x2 stage is bilinear upsampling + a 3x3
#: conv into a narrower feature map (``upsample_channels``), so the high-resolution work stays small.
#: ``cond_channels``: the network reads the image's noise and blur maps (SRMD-style conditioning,
#: ``engine/nets/conditioning.py``), estimated from the image at inference.
NET_BY_SCALE = {
    2: {
        "channels": 48,
        "blocks": 8,
        "upsampling": "bilinear",
        "upsample_channels": [24],
        "activation": "leaky_relu",
        "global_skip": True,
        "cond_channels": 2,
    },
    4: {
        "channels": 32,
        "blocks": 4,
        "upsampling": "bilinear",
        "upsample_channels": [32, 32],
        "global_skip": True,
        "cond_channels": 2,
    },
}
#: High-res patch edge per scale (px) and patches per step.
PATCH_SIZE = {2: 64, 4: 96}
BATCH_SIZE = 16
#: Peak learning rate (cosine schedule).  The first conditioned stage started from the blind built-in
#: file at 5e-4 (``--init``; the new maps' head weights start at zero, so step 0 computes the blind
#: model); later stages fine-tune the conditioned file.
LEARNING_RATE = 1e-4
SCHEDULE = "cosine"
GRAD_CLIP = 1.0
VAL_FRACTION = 0.1
VAL_EVERY = 250
#: Downsampling methods drawn per patch (repeats weight them): bicubic (the SR literature's protocol and
#: the most common resize), area (a camera's larger pixels) and bilinear.
DEGRADATION_METHODS = ("area", "bicubic", "bicubic", "bicubic", "bicubic", "bilinear")
#: Blur sigma range (high-res px) per unit of scale, drawn for ``blur_prob`` of the patches: either no
#: added blur or a clearly wide one (0.9-1.7 low-res px on top of the source's own blur).  The
#: estimator reads the blur of the *image*, content included, so a continuous range down to 0 makes a
#: moderately smooth scene (HeLa, synthetic fields: ~0.8 low-res px when merely downsampled) look like
#: added blur and the network over-sharpens it (a 250-step probe: HeLa channel 1 -3.7 dB below bicubic
#: under the bicubic protocol); with the gap, readings up to ~0.9 px mean "content", beyond "optics".
BLUR_RANGE_PER_SCALE = (0.9, 1.7)
#: Noise: shot noise from 30 photons at intensity 1.0 (a percentile-normalised low-photon acquisition)
#: to 10 000 (nearly clean), log-uniform, plus read noise.  The conditioned network is told each
#: patch's blur and noise, so wide blur and strong noise no longer teach it to sharpen or smooth clean
#: inputs (which the blind models' minority-blur mix had to guard against); about a third of the
#: patches stay clean and sharp (bicubic or area only).  Percentile-normalised planes are not
#: clipped to [0, 1] (``clip`` resolved from the normalisation).
DEGRADATION = {
    "blur_prob": 0.4,
    "noise_poisson": (30.0, 10000.0),  # photons at intensity 1.0, log-uniform
    "noise_gaussian": (0.001, 0.03),
    "noise_prob": 0.3,
}
#: Intensity normalisation of training planes, stored in the model file and repeated at inference:
#: per-image percentiles (as CSBDeep/CARE), so dim 16-bit data and bright 8-bit data look alike.
NORMALIZATION = {"mode": "percentile", "low": 1.0, "high": 99.8}
#: How often each kind of plane appears in the training list (balances the pixel mix).  Tried and not
#: kept (blind models): natural images twice (about 60 % of patches) for a fourth x2 stage of 24 000
#: steps; BSD images gained only +0.03 dB under the bicubic protocol while HeLa channel 1 fell from
#: -0.34 to -1.61 dB.
REPEATS = {"natural": 2, "em": 2, "fluorescence": 4, "synthetic": 3, "cells": 3}
SYNTHETIC_SHAPE = (512, 512)
#: Whether the synthetic cell scenes (``engine.samples_cells``: nuclei, membranes, vesicles, EM-like
#: tissue; kind "cells", ``SYNTHETIC_SHAPE``) join the training planes.
INCLUDE_CELLS = True


def ema_decay(steps: int) -> float:
    """EMA decay for a run of ``steps``: 0.999 for long runs, shorter memory for short ones."""
    return float(min(0.999, 1.0 - 20.0 / max(steps, 40)))


#: Target of an optically blurred patch: the same field through optics ``scale`` times finer (a
#: PSF ``1 / scale`` as wide; ``DegradationConfig.target_blur``), as a microscope's high-res reference
#: is, instead of the infinitely sharp patch.  Without it the network deconvolves a wide PSF as far as
#: it can and amplifies noise and ringing doing so (stage 3, four held-out low-photon fluorescence
#: images: blurring its output by a 1-high-res-px Gaussian gained +0.63 dB against the reference).
#: Unblurred patches (the bicubic/area share) keep their sharp targets.
TARGET_BLUR_OF_SCALE = 1.0


def degradation_config(scale: int) -> dict[str, Any]:
    return {
        "scale": scale,
        "methods": DEGRADATION_METHODS,
        "blur_sigma": (BLUR_RANGE_PER_SCALE[0] * scale, BLUR_RANGE_PER_SCALE[1] * scale),
        "target_blur": TARGET_BLUR_OF_SCALE / scale,
        **DEGRADATION,
    }


# --- data ----------------------------------------------------------------------------------------
def _unit_range(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def to_training_plane(image: Image) -> np.ndarray:
    """``(H, W)`` float32 in ``[0, 1]``: RGB -> BT.601 luminance (as inference), synthetic uint16 / 65535,
    everything else min/max (EM, fluorescence of any dtype)."""
    from napari_superres.engine.normalization import rgb_luminance

    a = image.array
    if a.ndim == 3:
        return rgb_luminance(np.moveaxis(a[..., :3], -1, 0).astype(np.float32) / 255.0)
    if image.kind in ("synthetic", "cells"):
        return a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    return _unit_range(a)


def synthetic_training_images(shape: tuple[int, int]) -> list[Image]:
    from napari_superres.engine.samples import synthetic_pair

    out = []
    for seed in SYNTHETIC_TRAIN_SEEDS:
        _, hr = synthetic_pair(shape=shape, scale=4, seed=seed, noise=False)
        out.append(Image(f"synthetic/seed{seed}", "synthetic", hr))
    return out


def cell_training_images(shape: tuple[int, int]) -> list[Image]:
    """The synthetic cell scenes of ``CELL_TRAIN_SEEDS`` (kind "cells", uint16 high-res fields of ``shape``)."""
    return [cell_image(i, seed, shape) for i, seed in enumerate(CELL_TRAIN_SEEDS)]


def fits(shape: tuple[int, ...], scale: int, patch: int) -> bool:
    """Whether a plane holds a training patch left of its validation strip (as ``PairSource`` cuts it)."""
    h_lr, w_lr, p_lr = shape[0] // scale, shape[1] // scale, patch // scale
    val_w = max(int(np.ceil(w_lr * VAL_FRACTION)), int(np.ceil(16 / scale)))
    return h_lr >= p_lr and w_lr - val_w >= p_lr


def training_planes(
    data: Path, *, seed: int, scale: int, patch: int, synthetic_shape: tuple[int, int] | None = None
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """All training planes (float32 ``[0, 1]``, fixed order) and a summary for the card.

    Planes too small for a ``patch`` plus the validation strip are skipped (listed in the summary).
    """
    data = Path(data)
    images = (
        natural_images(data, "train")
        + em_images(data, "train")
        + fluorescence_images(data, "train")
        + synthetic_training_images(synthetic_shape or SYNTHETIC_SHAPE)
        + (cell_training_images(synthetic_shape or SYNTHETIC_SHAPE) if INCLUDE_CELLS else [])
    )
    planes: list[np.ndarray] = []
    summary: dict[str, Any] = {"kinds": {}, "skipped": []}
    for image in images:
        if not fits(image.array.shape, scale, patch):
            summary["skipped"].append(image.name)
            continue
        base = to_training_plane(image)
        k = summary["kinds"].setdefault(image.kind, {"images": 0, "planes": 0, "megapixels": 0.0})
        k["images"] += 1
        for _ in range(REPEATS[image.kind]):
            planes.append(base)
            k["planes"] += 1
            k["megapixels"] += base.size / 1e6
    for k in summary["kinds"].values():
        k["megapixels"] = round(k["megapixels"], 2)
    return planes, summary


# --- training ------------------------------------------------------------------------------------
def build(
    data: Path, scale: int, steps: int, seed: int, device: str, *, synthetic_shape: tuple[int, int] | None = None
) -> tuple[Any, Any, dict[str, Any]]:
    """``(TrainConfig, PairSource, data summary)`` of the recipe."""
    from napari_superres.engine.train.trainer import TrainConfig, make_pair_source

    patch = PATCH_SIZE[scale]
    planes, summary = training_planes(data, seed=seed, scale=scale, patch=patch, synthetic_shape=synthetic_shape)
    degradation = degradation_config(scale)
    config = TrainConfig(
        scale=scale, preset="psnr", steps=steps, batch_size=BATCH_SIZE, patch_size=patch, lr=LEARNING_RATE,
        schedule=SCHEDULE, grad_clip=GRAD_CLIP, ema=ema_decay(steps), seed=seed, device=device,
        val_every=VAL_EVERY, net=dict(NET_BY_SCALE[scale]), normalization=dict(NORMALIZATION), degradation=dict(degradation),
    )  # fmt: skip
    source = make_pair_source(
        planes, scale=scale, patch_size=patch, degradation=degradation, val_fraction=VAL_FRACTION, seed=seed,
        normalization=dict(NORMALIZATION), in_channels=1, condition=bool(NET_BY_SCALE[scale].get("cond_channels")),
    )  # fmt: skip
    return config, source, summary


def initial_net(config: Any, init: Path | None = None) -> Any:
    """The recipe's network, seeded as the trainer seeds it, in channels-last memory format
    (about 1.6x faster convolutions on CPU for 32 channels; the weights are the same).

    ``init``: a model file of the same architecture whose weights start the run (a warm start,
    e.g. the previous built-in model), instead of the seeded random initialisation.  A blind
    model starts a conditioned recipe through :func:`~napari_superres.engine.nets.srnet.conditioned_copy`
    (the maps' weights start at zero).
    """
    import torch

    from napari_superres.engine import SRNet, SRNetConfig, load_model
    from napari_superres.engine.nets.srnet import conditioned_copy

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = SRNet(SRNetConfig.from_dict({**config.net, "scale": config.scale, "in_channels": 1, "out_channels": 1}))
    if init is not None:
        start = load_model(init).net
        if net.config.cond_channels and not start.config.cond_channels:
            start = conditioned_copy(start, net.config.cond_channels)
        if start.config.to_dict() != net.config.to_dict():
            raise SystemExit(
                f"--init {init}: its network {start.config.to_dict()} is not the recipe's {net.config.to_dict()}"
            )
        net.load_state_dict(start.state_dict())
    return net.to(memory_format=torch.channels_last)


def reproduce_command(args: argparse.Namespace) -> str:
    """The one command that trains this file again (paths inside the project made relative)."""

    def show(path: Path) -> str:
        path = Path(path).resolve()
        if path.is_relative_to(ROOT):
            return str(path.relative_to(ROOT))
        if path.is_relative_to(ROOT.parent):  # e.g. ../shared/data beside the checkout
            return str(Path("..") / path.relative_to(ROOT.parent))
        return str(path)

    init = f" --init {show(args.init)}" if getattr(args, "init", None) else ""
    return (
        f"python scripts/train_builtin.py --data {show(args.data)} --scale {args.scale} --steps {args.steps} "
        f"--out {show(args.out)} --seed {args.seed} --device {args.device}{init}"
    )


def hardware() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "device": "cpu",
        "processor": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            info["processor"] = names[0]
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return info


def train(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from napari_superres.engine.device import configure_cpu_threads
    from napari_superres.engine.train.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        configure_cpu_threads()
    t0 = time.perf_counter()
    config, source, summary = build(args.data, args.scale, args.steps, args.seed, args.device)
    config.checkpoint_path = str(args.checkpoint) if args.checkpoint else None
    config.checkpoint_every = args.checkpoint_every if args.checkpoint else 0
    print(
        f"data: {source.n_planes} planes, {json.dumps(summary['kinds'])}; prepared in {time.perf_counter() - t0:.0f}s"
    )
    if args.resume and args.checkpoint and Path(args.checkpoint).is_file():
        trainer = Trainer.resume(args.checkpoint, source, steps=args.steps)
        print(f"resumed from {args.checkpoint} at step {trainer.step}")
    else:
        trainer = Trainer(config, source, net=initial_net(config, args.init))
    net = trainer.generator
    print(f"network: {net.num_parameters()} parameters, config {net.config.to_dict()}")
    partial = Path(args.out).with_suffix(".partial.safetensors") if args.checkpoint else None
    start_step = trainer.step  # > 0 when resumed: this process trains only the steps after it
    t_train = time.perf_counter()
    every = max(1, args.log_every)

    def on_step(report) -> None:
        if report.step % every == 0 or report.validation is not None or report.step == report.total_steps:
            val = ""
            if report.validation is not None:
                v = report.validation
                val = f" | val PSNR {v.psnr:.2f} dB (bicubic {v.bicubic_psnr:.2f})"
            print(
                f"step {report.step}/{report.total_steps} loss {report.losses.get('total', float('nan')):.5f} "
                f"lr {report.lr:.2e} {report.it_per_s:.2f} it/s eta {report.eta_s / 60:.1f} min{val}",
                flush=True,
            )
        if partial is not None and args.checkpoint_every and report.step % args.checkpoint_every == 0:
            trainer.save_model(partial)

    result = trainer.run(callback=on_step)
    train_seconds = time.perf_counter() - t_train
    out = trainer.save_model(args.out)
    info = {
        "steps_done": result.steps_done,
        "train_seconds": round(train_seconds, 1),
        "seconds_per_step": round(train_seconds / max(1, result.steps_done - start_step), 3),
        "resumed_at_step": start_step,
        "parameters": net.num_parameters(),
        "hardware": hardware(),
        "data": summary,
        "final_validation": result.final_validation.to_dict() if result.final_validation else None,
        "command": reproduce_command(args),
    }
    print(f"wrote {out} after {result.steps_done} steps in {train_seconds / 60:.1f} min")
    return {"model": out, "info": info, "config": config}


# --- model card ----------------------------------------------------------------------------------
def benchmark_markdown(model: Path, data: Path, scale: int) -> tuple[str, dict[str, Any]]:
    """Run the quality benchmark on the held-out sets for this model only; its markdown and JSON."""
    import quality

    from napari_superres.engine import Engine

    engine = Engine(device="cpu", builtins=False)
    methods = [quality.Method(b) for b in quality.BASELINES] + quality.model_methods([str(model)], engine)
    results = quality.run_benchmark(quality.heldout_sets(data), [scale], methods, engine=engine)
    return quality.markdown(results), results


def results_markdown(path: Path, model_name: str, scale: int) -> str:
    """The benchmark table of one model (and the baselines) at its scale, from a saved quality JSON."""
    import quality

    results = json.loads(Path(path).read_text())
    keep = set(quality.BASELINES) | {model_name}
    rows = [r for r in results["results"] if r["scale"] == scale and r["method"] in keep]
    if not any(r["method"] == model_name for r in rows):
        raise ValueError(f"{path} has no x{scale} results for {model_name!r}")
    return quality.markdown({**results, "results": rows})


def write_card(model: Path, scale: int, data: Path, info: dict[str, Any], bench_md: str | None, note: str = "") -> Path:
    """Write ``<model>.md``: what the model is for, its data (credited), recipe, cost and benchmark."""
    from napari_superres.engine.nets.model_file import atomic_write_bytes, load_model

    loaded = load_model(model)
    meta = loaded.metadata
    cfg = meta.get("config", {})
    hw = info.get("hardware", {})
    credits = source_credits(data)
    kinds = info.get("data", {}).get("kinds", {})
    mix = "\n".join(f"| {kind} | {v['images']} | {v['planes']} | {v['megapixels']} |" for kind, v in kinds.items())
    held = "\n".join(f"- `{folder}`: {', '.join(names)}" for folder, names in HELD_OUT.items())
    skipped = info.get("data", {}).get("skipped", [])
    steps = info.get("steps_done", meta.get("steps"))
    hours = info.get("train_seconds", 0) / 3600
    resumed = info.get("resumed_at_step", 0)
    timed = f"; the last {steps - resumed} steps (resumed at step {resumed}) took" if resumed else " in"
    lines = [
        f"# {model.stem}: built-in x{scale} super-resolution model",
        "",
        f"A 1-channel residual CNN (`SRNet`, {loaded.net.num_parameters():,} parameters, "
        f"{model.stat().st_size / 1024:.0f} KiB) that upscales x{scale}. It serves every layer type: grayscale "
        "images, each channel of a multichannel image, and the luminance (Y) of RGB images (chroma is "
        "upscaled bicubically). It is conditioned on the image's degradation (SRMD-style): next to the image it "
        "reads a noise-level map and a blur map, estimated once per image at inference "
        "(`upscale(..., degradation=...)` shows and overrides them), so one model serves clean and noisy, sharp "
        "and blurred data. Intensities are normalised per image by percentiles "
        '(`{"mode": "percentile", "low": 1.0, "high": 99.8}`, as CSBDeep/CARE) in training and '
        "at inference, so dim 16-bit data is treated like bright 8-bit data.",
        "",
        "## Status and honesty note",
        "",
        f"Trained for **{steps} steps** on a CPU ({hw.get('processor', '?')}, {hw.get('cpu_cores', '?')} cores "
        f"shared with other jobs; 1/5/15-minute load averages {hw.get('load_average_at_end', '?')} at the end; "
        f"{hw.get('torch_threads', '?')} torch thread(s)){timed} {hours * 60:.1f} minutes of wall time "
        f"({info.get('seconds_per_step', '?')} s per step). This is a short run of the recipe below; the same command "
        "with more steps (e.g. `--steps 200000` on a GPU) trains the same recipe further and should "
        "improve the figures. " + note,
        "",
        "## Reproduce",
        "",
        "```",
        info.get("command", f"python scripts/train_builtin.py --data ../shared/data --scale {scale} --steps {steps}"),
        "```",
        "",
        "Seeded (network initialisation, patch order, degradations); on the same hardware "
        "and torch version the run repeats (CPU float arithmetic may differ across machines).",
        "",
        "## Training data",
        "",
        "| kind | images | planes (after repeats) | megapixels |",
        "|---|---:|---:|---:|",
        mix,
        "",
        "Held out (never trained on; the benchmark below uses them):",
        "",
        held,
        "- synthetic fluorescence: training seeds "
        f"{SYNTHETIC_TRAIN_SEEDS[0]}-{SYNTHETIC_TRAIN_SEEDS[-1]}, benchmark seeds 1000-1003",
        "- synthetic cell scenes: training seeds "
        f"{CELL_TRAIN_SEEDS[0]}-{CELL_TRAIN_SEEDS[-1]}{'' if INCLUDE_CELLS else ' (not used by this recipe)'}, "
        f"benchmark seeds {CELL_BENCHMARK_SEEDS[0]}-{CELL_BENCHMARK_SEEDS[-1]}",
        "",
    ]
    if skipped:
        lines += [f"Skipped (smaller than a patch plus the validation strip): {', '.join(skipped)}.", ""]
    lines += ["### Sources and licences", ""]
    for folder, text in credits.items():
        lines += [f"**{folder}**", "", "```", text, "```", ""]
    lines += [
        "Synthetic fluorescence: `napari_superres.engine.samples`; synthetic cell scenes (nuclei, membranes, "
        "vesicles, EM-like tissue): `napari_superres.engine.samples_cells` (generated, no licence restrictions).",
        "",
        "## Recipe",
        "",
        f"- network: `{json.dumps(cfg.get('net', NET_BY_SCALE[scale]))}` (bilinear upsampling + 3x3 conv per x2 stage, "
        "global bicubic skip: the network learns a residual over bicubic)",
        f"- loss: L1 (preset `psnr`); Adam (betas 0.9/0.99), learning rate {cfg.get('lr')}, "
        f"{cfg.get('schedule')} schedule, gradient clipping {cfg.get('grad_clip')}, EMA {cfg.get('ema')}",
        f"- patches: {cfg.get('batch_size')} x {cfg.get('patch_size')} px (high-res) per step, random flips/rotations",
        f"- degradation (per patch, from high-res only): `{json.dumps(cfg.get('degradation'))}`",
        *degradation_ranges(cfg.get("degradation") or degradation_config(scale), scale),
        f"- intensity: each plane normalised by `{json.dumps(NORMALIZATION)}`; repeats per kind {REPEATS}",
        f"- final validation (last {VAL_FRACTION:.0%} columns of up to 8 training planes, normalised units): "
        f"{json.dumps(info.get('final_validation'))}",
        "",
        "## Benchmark (held-out images)",
        "",
        bench_md or "Not run for this file (`--no-benchmark`); see `benchmarks/results/quality.md` for the figures.",
        "",
        "Protocols and metrics: see `benchmarks/quality.py` (bicubic = the SR literature's antialiased "
        "bicubic downsampling; microscope = blur + area + Poisson-Gaussian noise). Perceptual distance: "
        "n/a (no VGG-16 weights offline).",
        "",
    ]
    card = Path(model).with_suffix(".md")
    atomic_write_bytes(card, "\n".join(lines).encode())
    return card


def degradation_ranges(deg: dict[str, Any], scale: int) -> list[str]:
    """The training degradation ranges in a user's terms (model card lines)."""
    methods = list(deg.get("methods", ()))
    shares = ", ".join(f"{m} {methods.count(m) / len(methods):.0%}" for m in dict.fromkeys(methods))
    lines = [f"- downsampling per patch: {shares}"]
    blur = deg.get("blur_sigma")
    if blur:
        lo, hi = blur
        eff = math.sqrt(hi**2 / scale**2 + (scale**2 - 1) / (12 * scale**2))
        lines.append(
            f"- blur: Gaussian sigma {lo:g}-{hi:g} high-res px added before downsampling, for {deg.get('blur_prob', 1):.0%} of "
            f"the patches: on a sharp source the low-res PSF reaches sigma ~{eff:.1f} low-res px"
        )
    poisson, read = deg.get("noise_poisson"), deg.get("noise_gaussian")
    if poisson:
        lines.append(
            f"- shot noise: {poisson[0]:g}-{poisson[1]:g} photons at the normalised intensity 1 (log-uniform), for "
            f"{deg.get('noise_prob', 1):.0%} of the patches; the rest clean"
        )
    if read:
        lines.append(
            f"- read noise: sigma {read[0]:g}-{read[1]:g} of the normalised range, for {deg.get('noise_prob', 1):.0%} of the patches"
        )
    lines.append(
        "- conditioning: each patch's noise and blur (as the estimator reads them, jittered) are given to the network "
        "as maps; at inference they are estimated once per image (`upscale(..., degradation=...)` overrides)"
    )
    return lines


def _info_path(args: argparse.Namespace) -> Path | None:
    """Where the run's figures (time, hardware, data mix) are kept for --card-only: beside the checkpoint."""
    return Path(str(args.checkpoint) + ".train.json") if args.checkpoint else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Train a built-in napari-superres model (fixed recipe).")
    parser.add_argument("--data", type=Path, required=True, help="data folder (../shared/data layout)")
    parser.add_argument("--scale", type=int, choices=sorted(PATCH_SIZE), required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="model file to write (.safetensors)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all cores)")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file (resumable); also writes <out>.partial")
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint when it exists")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--no-benchmark", action="store_true", help="skip the held-out benchmark in the card")
    parser.add_argument("--card-only", action="store_true", help="only (re)write the card of an existing --out")
    parser.add_argument("--note", default="", help="extra sentence for the card's status section")
    parser.add_argument(
        "--init", type=Path, help="warm start: a model file of the recipe's network whose weights start the run"
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="take the card's benchmark from this benchmarks/quality.py JSON instead of running it",
    )
    args = parser.parse_args(argv)

    if args.card_only:
        from napari_superres.engine.nets.model_file import read_model_metadata

        info_path = _info_path(args)
        info = json.loads(info_path.read_text()) if info_path and info_path.is_file() else {}
        info.setdefault("steps_done", read_model_metadata(args.out)["training"].get("steps"))
        info["command"] = reproduce_command(args)
        model, run = Path(args.out), {"info": info}
    else:
        run = train(args)
        model, info = Path(run["model"]), run["info"]
        from napari_superres.engine.nets.model_file import atomic_write_bytes

        if _info_path(args):
            atomic_write_bytes(_info_path(args), json.dumps(info, indent=1).encode())
    bench_md = None
    if args.results:
        bench_md = results_markdown(args.results, model.stem, args.scale)
    elif not args.no_benchmark:
        bench_md, _ = benchmark_markdown(model, args.data, args.scale)
        print(bench_md)
    card = write_card(model, args.scale, args.data, run["info"], bench_md, args.note)
    print(f"wrote {card}")
    return run


if __name__ == "__main__":
    main()
