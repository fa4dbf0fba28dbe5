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


def compare_precision(steps: int, chunk: int, batch: int, patch: int) -> dict[str, Any]:
    """CPU training in float32 vs bf16 autocast (both channels_last), interleaved, same seed and batches.

    Two :class:`Trainer` objects (``cpu_bf16`` off / on) on identical data sources take
    ``chunk`` steps in turn until each has taken ``steps``; each chunk's wall and CPU time
    is summed per precision.  Then both validate (float32) on the same held-out region:
    final validation PSNR / SSIM of the EMA network, and bicubic for reference.
    """
    import torch

    from napari_superres.engine.samples import synthetic_pair
    from napari_superres.engine.train.trainer import TrainConfig, Trainer, make_pair_source

    pairs = [synthetic_pair((DATA_EDGE, DATA_EDGE), SCALE, seed=s) for s in range(2)]
    trainers: dict[str, Any] = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        data = make_pair_source([hr for _, hr in pairs], [lq for lq, _ in pairs], scale=SCALE, patch_size=patch)
        config = TrainConfig(scale=SCALE, preset="psnr", steps=steps, batch_size=batch, patch_size=patch, device="cpu",
                             val_every=0, pretrain_steps=0, channels_last=True, cpu_bf16=bf16)  # fmt: skip
        trainers[name] = Trainer(config, data)
    totals = {name: [0.0, 0.0] for name in trainers}
    done = 0
    while done < steps:
        n = min(chunk, steps - done)
        for name, trainer in trainers.items():
            trainer.config.steps = done + n
            w0, c0 = time.perf_counter(), time.process_time()
            trainer.run()
            totals[name][0] += time.perf_counter() - w0
            totals[name][1] += time.process_time() - c0
        done += n
    out: dict[str, Any] = {"steps": steps, "batch_size": batch, "patch_size": patch, "threads": torch.get_num_threads()}
    for name, trainer in trainers.items():
        report = trainer.validate()
        wall, cpu = totals[name]
        out[name] = {
            "seconds": wall, "cpu_seconds": cpu, "it_per_s": steps / wall, "it_per_cpu_s": steps / cpu,
            "val_psnr": report.psnr, "val_ssim": report.ssim, "bicubic_psnr": report.bicubic_psnr,
            "final_loss": trainer.history[-1]["losses"]["total"],
        }  # fmt: skip
    return out


def render_precision(report: dict[str, Any]) -> str:
    r = report
    lines = [
        "## Training precision on the CPU (float32 vs bf16 autocast)",
        "",
        f"{r['steps']} steps each, batch {r['batch_size']} of {r['patch_size']}×{r['patch_size']} high-res patches, ×{SCALE}, "
        f"SRNet() defaults, channels_last, psnr preset, same seed and batches, interleaved in chunks of {r['chunk']} "
        f"steps; {r['threads']} threads; run {r['started']} -> {r['finished']}; load average before/after "
        f"{r['load_average_before']} / {r['load_average_after']}.  Validation in float32 on the same held-out region.",
        "",
        "| precision | it/s | it/CPU-s | wall s | CPU s | final val PSNR dB | val SSIM | bicubic PSNR dB | final loss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("fp32", "bf16"):
        q = r[name]
        lines.append(
            f"| {name} | {q['it_per_s']:.2f} | {q['it_per_cpu_s']:.2f} | {q['seconds']:.0f} | {q['cpu_seconds']:.0f} | "
            f"{q['val_psnr']:.2f} | {q['val_ssim']:.4f} | {q['bicubic_psnr']:.2f} | {q['final_loss']:.4f} |"
        )
    f, b = r["fp32"], r["bf16"]
    lines += ["", f"bf16 / fp32: {b['it_per_s'] / f['it_per_s']:.2f}x it/s, {b['it_per_cpu_s'] / f['it_per_cpu_s']:.2f}x "
              f"it/CPU-s; val PSNR {b['val_psnr'] - f['val_psnr']:+.2f} dB."]  # fmt: skip
    return "\n".join(lines)


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
    parser.add_argument("--compare-precision", action="store_true",
                        help="CPU: float32 vs bf16 autocast training, interleaved, with final validation figures")  # fmt: skip
    parser.add_argument("--chunk", type=int, default=10, help="--compare-precision: steps per turn")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compare_precision:
        started, load_before = dt.datetime.now().isoformat(timespec="seconds"), _load()
        res = compare_precision(args.steps, args.chunk, args.batch_size, args.patch_size)
        res.update(started=started, finished=dt.datetime.now().isoformat(timespec="seconds"), chunk=args.chunk,
                   load_average_before=load_before, load_average_after=_load())  # fmt: skip
        text = render_precision(res)
        print(text)
        if not args.no_save:
            machine = machine_name()
            merge_results(machine, {"training_precision": res})
            replace_md_section(machine, "training_precision", text)
        return 0

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
        lines += [
            "",
            "VGG weights *random*: timed with a randomly initialised VGG-16 (no ImageNet weights offline); "
            "the speed is representative, nothing else is.",
        ]
    if report["skipped"]:
        lines += ["", "Skipped:", ""] + [f"- {s['device']} {s['preset']}: {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
