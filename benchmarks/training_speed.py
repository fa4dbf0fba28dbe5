"""Training speed: optimisation steps per second of the engine's :class:`Trainer`.

    python benchmarks/training_speed.py                    # CPU (and CUDA when present), psnr (+ perceptual/gan if VGG weights exist)
    python benchmarks/training_speed.py --device cpu --steps 10 --presets psnr

Setting: batch 16 of 96x96 high-res patches, x2, the default network (``SRNet()``:
32 channels, 4 residual blocks, bilinear upsampling), Adam, EMA, gradient clipping,
cosine schedule -- exactly what :meth:`Trainer.run` does per step (sampling patches from
a 512x512 uint16 synthetic pair, forward, losses, backward, optimiser, EMA).  Validation
is off (``val_every=0``) so only steps are timed; ``--warmup`` steps run first.

For each preset it reports steps/s, high-res megapixels/s, the time share of patch
sampling, and approximate useful GFLOP/s (3x the generator's forward FLOPs per step,
counted by ``benchmarks/run.py``'s :func:`flops_per_input_px`; VGG and discriminator work
not counted).  ``perceptual`` and ``gan`` need VGG-16 weights: without the ImageNet ones in
the torch hub cache they are skipped, unless ``--random-vgg`` times them with a randomly
initialised VGG-16 written to a temporary hub cache (speed does not depend on the weight
values; such runs are labelled ``vgg: random`` and say nothing about quality).

Results are merged into ``benchmarks/results/<machine>.json`` under ``"training"``
(other keys kept; read-modify-write under a lock, atomic) and into the markdown file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import flops_per_input_px, machine_name, merge_results, replace_md_section  # noqa: E402

BATCH = 16
PATCH = 96
SCALE = 2
DATA_EDGE = 512
PRESETS = ("psnr", "perceptual", "gan")


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


def measure(device: str, preset: str, steps: int, warmup: int, batch: int, patch: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from napari_superres.engine.samples import synthetic_pair
    from napari_superres.engine.train.trainer import TrainConfig, Trainer, make_pair_source

    pairs = [synthetic_pair((DATA_EDGE, DATA_EDGE), SCALE, seed=s) for s in range(2)]
    data = make_pair_source([hr for _, hr in pairs], [lr for lr, _ in pairs], scale=SCALE, patch_size=patch)
    config = TrainConfig(scale=SCALE, preset=preset, steps=warmup + steps, batch_size=batch, patch_size=patch,
                         device=device, val_every=0, pretrain_steps=0)  # fmt: skip
    trainer = Trainer(config, data)
    dev = trainer.device

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    # warm-up (allocator, cuDNN autotuning, first-call overheads)
    trainer.config.steps = warmup
    trainer.run()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    trainer.config.steps = warmup + steps
    t0 = time.perf_counter()
    trainer.run()
    sync()
    seconds = time.perf_counter() - t0

    # patch sampling alone (CPU work inside every step)
    s0 = time.perf_counter()
    for _ in range(steps):
        data.sample(batch)
    sample_s = time.perf_counter() - s0

    net = trainer.generator
    lr_px = (patch // SCALE) ** 2 * batch
    flops = 3.0 * flops_per_input_px(net, net.in_channels) * lr_px * steps  # forward + ~2x backward
    out: dict[str, Any] = {
        "preset": preset,
        "device": str(dev),
        "steps": steps,
        "seconds": seconds,
        "it_per_s": steps / seconds,
        "patches_per_s": steps * batch / seconds,
        "hr_mpx_per_s": steps * batch * patch * patch / seconds / 1e6,
        "sampling_share": sample_s / seconds,
        "generator_gflop_s": flops / seconds / 1e9,
        "parameters": net.num_parameters(),
        "threads": torch.get_num_threads(),
        "final_losses": trainer.history[-1]["losses"],
    }
    if dev.type == "cuda":
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
        out["gpu_name"] = torch.cuda.get_device_name(dev)
    assert np.isfinite(out["final_losses"]["total"])
    return out


def _random_vgg_cache() -> None:
    """Point the torch hub cache at a temporary folder holding a random VGG-16 (timing only)."""
    import tempfile

    import torch
    from torchvision.models import vgg16

    from napari_superres.engine.nets.vgg import vgg16_weights_path

    home = Path(tempfile.mkdtemp(prefix="superres-bench-torch-"))
    os.environ["TORCH_HOME"] = str(home)
    torch.hub.set_dir(str(home / "hub"))
    path = vgg16_weights_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(vgg16(weights=None).state_dict(), path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="all", help="cpu, cuda, or all (cpu + cuda when available)")
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated: psnr,perceptual,gan")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=BATCH)
    parser.add_argument("--patch-size", type=int, default=PATCH)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--random-vgg", action="store_true",
                        help="without ImageNet VGG weights, time perceptual/gan with random VGG weights")  # fmt: skip
    parser.add_argument("--no-save", action="store_true", help="print only; do not write results/")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from napari_superres.engine.nets.vgg import vgg16_weights_path

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "all" else [args.device]
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    have_vgg = vgg16_weights_path().is_file()
    vgg_kind = "imagenet" if have_vgg else None
    if not have_vgg and args.random_vgg and any(p != "psnr" for p in presets):
        _random_vgg_cache()
        have_vgg, vgg_kind = True, "random"
    report: dict[str, Any] = {
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "batch_size": args.batch_size,
        "patch_size": args.patch_size,
        "scale": SCALE,
        "net": "SRNet() defaults",
        "load_average_before": _load(),
        "runs": [],
        "skipped": [],
    }
    for device in devices:
        for preset in presets:
            if preset != "psnr" and not have_vgg:
                reason = f"no VGG-16 ImageNet weights at {vgg16_weights_path()} (offline)"
                report["skipped"].append({"device": device, "preset": preset, "reason": reason})
                print(f"{device} {preset}: skipped ({reason})")
                continue
            r = measure(device, preset, args.steps, args.warmup, args.batch_size, args.patch_size)
            r["vgg"] = vgg_kind if preset != "psnr" else None
            report["runs"].append(r)
            print(
                f"{r['device']} {preset}{' (random VGG)' if r['vgg'] == 'random' else ''}: {r['it_per_s']:.2f} it/s ({r['patches_per_s']:.1f} patches/s, "
                f"{r['hr_mpx_per_s']:.3f} HR Mpx/s), sampling {r['sampling_share']:.1%} of the time, "
                f"~{r['generator_gflop_s']:.1f} GFLOP/s (generator), {r['threads']} threads"
                + (f", GPU peak {r['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in r else "")
            )
    report["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    report["load_average_after"] = _load()
    if not args.no_save:
        machine = machine_name()
        path = merge_results(machine, {"training": report})
        replace_md_section(machine, "training", render_markdown(report))
        print(f"results merged into {path}")
    return 0


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        "## Training",
        "",
        f"Batch {report['batch_size']} of {report['patch_size']}×{report['patch_size']} high-res patches, "
        f"×{report['scale']}, {report['net']}; torch {report['torch']}, {report['cpu_count']} CPUs; run "
        f"{report['started']} -> {report['finished']}; load average before/after {report['load_average_before']} / "
        f"{report['load_average_after']} (a loaded machine runs slower).",
        "",
        "| device | preset | VGG weights | it/s | patches/s | HR Mpx/s | sampling share | generator GFLOP/s | threads | GPU peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['device']} | {r['preset']} | {r.get('vgg') or '–'} | {r['it_per_s']:.2f} | {r['patches_per_s']:.1f} | "
            f"{r['hr_mpx_per_s']:.3f} | {r['sampling_share']:.1%} | {r['generator_gflop_s']:.1f} | {r['threads']} | "
            f"{r['gpu_peak_mb']:.0f} |" if "gpu_peak_mb" in r else
            f"| {r['device']} | {r['preset']} | {r.get('vgg') or '–'} | {r['it_per_s']:.2f} | {r['patches_per_s']:.1f} | "
            f"{r['hr_mpx_per_s']:.3f} | {r['sampling_share']:.1%} | {r['generator_gflop_s']:.1f} | {r['threads']} | – |"
        )  # fmt: skip
    if any(r.get("vgg") == "random" for r in report["runs"]):
        lines += ["", "VGG weights *random*: timed with a randomly initialised VGG-16 (no ImageNet weights offline); "
                  "the speed is representative, nothing else is."]
    if report["skipped"]:
        lines += ["", "Skipped:", ""] + [f"- {s['device']} {s['preset']}: {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
