"""Side by side: ``napari-superres train`` defaults against careamics CARE on the same pairs.

Both systems train on the 4 training pairs of :mod:`fluo_pairs` (uint16, 512 x 512, x2) at
1 thread and are scored on its 6 held-out pairs with CARE's own metric
(:func:`fluo_pairs.care_metric`: percentile-normalised reference, affine-fitted prediction,
PSNR / SSIM on a data range of 1), by this script, from the predictions each side writes.

* **ours**: ``python -m napari_superres.cli train --hr HR --lr LR --scale 2 --steps 1000 --out M``
  (every other option at its default) in a subprocess of the project's Python, then
  ``Engine.upscale`` of each held-out low-res image with the model written;
* **CARE**: careamics (``--care-python``, a virtual environment of its own since careamics
  pins torchvision) runs this same file with ``--side care``: a UNet on bicubic-upsampled
  low-res input (torch ``interpolate(mode="bicubic")``), patch 64, batch 16, 63 epochs of
  16 steps (1008 steps; early stopping's patience set to all epochs, so every step runs;
  data loading in the training process, ``num_workers=0``), careamics' defaults otherwise (its own normalisation, augmentation, 8 validation patches,
  prediction with the checkpoint of lowest validation loss), then tiled prediction of the
  upsampled held-out images.

CPU seconds are ``getrusage`` user + system time of each side's whole process (imports,
data, training, writing the model; the scoring of the held-out images is not included),
and, for CARE, also of its ``train`` call alone.  ``OMP_NUM_THREADS=1`` and
``torch.set_num_threads(1)`` on both sides.

Usage::

    python benchmarks/peer_care.py --data ../shared/data/microscopy/fluorescence \\
        --care-python /work/venv-care/bin/python --work /tmp/peer_care

prints both rows and writes ``benchmarks/results/peer_care.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import fluo_pairs  # noqa: E402

#: CARE's recipe (issue 22): patch edge, batch, epochs x steps per epoch.
CARE_PATCH = 64
CARE_BATCH = 16
CARE_EPOCHS = 63
CARE_STEPS_PER_EPOCH = 16
#: Our command's steps (every other option at its default).
OUR_STEPS = 1000
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _read_folder(folder: Path) -> tuple[list[np.ndarray], list[str]]:
    import tifffile

    files = sorted(folder.glob("*.tif"))
    return [tifffile.imread(f) for f in files], [f.stem for f in files]


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished child processes."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# --- the careamics side (runs in careamics' own environment) ------------------------------------
def care_side(pairs: Path, out: Path, epochs: int, steps_per_epoch: int) -> None:
    """Train CARE on ``pairs/train`` and write ``out/<name>.npy`` predictions plus ``out/care.json``."""
    import torch

    torch.set_num_threads(1)
    from careamics import CAREamist
    from careamics.config import create_advanced_care_config

    hrs, _ = _read_folder(pairs / "train" / "hr")
    lrs, _ = _read_folder(pairs / "train" / "lr")
    config = create_advanced_care_config(
        experiment_name="care_x2", data_type="array", axes="YX", patch_size=[CARE_PATCH, CARE_PATCH],
        batch_size=CARE_BATCH, num_epochs=epochs, num_steps=steps_per_epoch,
        early_stopping_params={"monitor": "val_loss", "mode": "min", "patience": epochs},  # all epochs run
        num_workers=0,  # one process, one thread (its Linux default is a data-loading worker process)
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    careamist = CAREamist(config, work_dir=out / "work", enable_progress_bar=False)
    t0 = _cpu_seconds()
    careamist.train(train_data=[upsample(lr) for lr in lrs], train_data_target=[hr.astype(np.float32) for hr in hrs])
    train_cpu = _cpu_seconds() - t0
    total_cpu = _cpu_seconds()
    trainer = careamist.trainer
    steps = int(getattr(trainer, "global_step", 0))
    params = sum(p.numel() for p in careamist.model.parameters())
    _care_predict(careamist, pairs, out)
    info = {"train_cpu_s": train_cpu, "process_cpu_s": total_cpu, "steps": steps, "params": params}
    (out / "care.json").write_text(json.dumps(info))


def upsample(lr: np.ndarray) -> np.ndarray:
    """CARE's input: torch bicubic x2 upsampling of a low-res image, float32."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(lr.astype(np.float32))[None, None]
    return F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)[0, 0].numpy()


def _care_predict(careamist: Any, pairs: Path, out: Path) -> None:
    test_lr, names = _read_folder(pairs / "test" / "lr")
    for lr, name in zip(test_lr, names):
        pred, _ = careamist.predict(upsample(lr), data_type="array", axes="YX", tile_size=(256, 256))
        np.save(out / f"{name}.npy", np.asarray(pred[0] if isinstance(pred, list) else pred).squeeze())


def care_checkpoint_side(pairs: Path, out: Path, checkpoint: Path, cpu_s: float, steps: int) -> None:
    """Predict the held-out pairs with a CARE checkpoint of an unfinished run (``cpu_s``, ``steps``: its figures)."""
    import torch

    torch.set_num_threads(1)
    from careamics import CAREamist

    careamist = CAREamist(checkpoint_path=checkpoint, work_dir=out / "work", enable_progress_bar=False)
    out.mkdir(parents=True, exist_ok=True)
    _care_predict(careamist, pairs, out)
    params = sum(p.numel() for p in careamist.model.parameters())
    info = {"process_cpu_s": cpu_s, "steps": steps, "params": params, "checkpoint": str(checkpoint)}
    (out / "care.json").write_text(json.dumps(info))


# --- the driver --------------------------------------------------------------------------------
def run_care(care_python: str, pairs: Path, out: Path, epochs: int, steps_per_epoch: int) -> dict[str, Any]:
    cmd = [care_python, str(Path(__file__).resolve()), "--side", "care", "--pairs", str(pairs), "--work", str(out),
           "--care-epochs", str(epochs), "--care-steps-per-epoch", str(steps_per_epoch)]  # fmt: skip
    env = {**os.environ, **ONE_THREAD}
    env.pop("PYTHONPATH", None)
    subprocess.run(cmd, check=True, env=env)
    return score_care(pairs, out)


def score_care(pairs: Path, out: Path) -> dict[str, Any]:
    """CARE's figures and held-out scores from the files its side wrote to ``out``."""
    info = json.loads((out / "care.json").read_text())
    hrs, names = _read_folder(pairs / "test" / "hr")
    rows = [fluo_pairs.care_metric(np.load(out / f"{n}.npy"), hr) for hr, n in zip(hrs, names)]
    return {**info, "per_image": dict(zip(names, rows))}


def our_command(pairs: Path, out: Path, steps: int, extra: list[str]) -> list[str]:
    """``napari-superres train`` on the training pairs, every option not given at its default."""
    model = out / "ours.safetensors"
    return [sys.executable, "-m", "napari_superres.cli", "train", "--hr", str(pairs / "train" / "hr"),
           "--lr", str(pairs / "train" / "lr"), "--scale", "2", "--steps", str(steps), "--out", str(model),
           "--overwrite", "--quiet", "--log", str(out / "ours-log.json"), *extra]  # fmt: skip


def run_ours(pairs: Path, out: Path, steps: int, extra: list[str]) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    cmd = our_command(pairs, out, steps, extra)
    env = {**os.environ, **ONE_THREAD}
    before = _children_cpu()
    done = subprocess.run(cmd, env=env)
    if done.returncode not in (0, 130):  # 130: stopped by Ctrl-C / SIGINT, the model so far is written
        raise subprocess.CalledProcessError(done.returncode, cmd)
    return score_ours(pairs, out, _children_cpu() - before, " ".join(cmd[1:]))


def score_ours(pairs: Path, out: Path, cpu: float, command: str) -> dict[str, Any]:
    """Our figures and held-out scores from the model and log in ``out`` (``cpu``: the run's CPU seconds)."""
    import torch

    torch.set_num_threads(1)
    from napari_superres.engine.nets.model_file import load_model
    from napari_superres.engine.registry import Engine

    engine = Engine(device="cpu", builtins=False)
    loaded = load_model(out / "ours.safetensors")
    lrs, names = _read_folder(pairs / "test" / "lr")
    hrs, _ = _read_folder(pairs / "test" / "hr")
    rows = [fluo_pairs.care_metric(np.asarray(engine.upscale(lr, loaded, scale=2), np.float64), hr)
            for lr, hr in zip(lrs, hrs)]  # fmt: skip
    log = json.loads((out / "ours-log.json").read_text())
    result = {
        "process_cpu_s": cpu, "steps": log["steps_done"], "params": loaded.net.num_parameters(),
        "per_image": dict(zip(names, rows)), "command": command, "stopped": log.get("stopped"),
        "final_validation": log["final_validation"], "loadavg_after": os.getloadavg(),
    }  # fmt: skip
    (out / "ours.json").write_text(json.dumps(result, default=float))
    return result


def _bicubic_rows(pairs: Path) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    lrs, names = _read_folder(pairs / "test" / "lr")
    hrs, _ = _read_folder(pairs / "test" / "hr")
    rows = {}
    for lr, hr, n in zip(lrs, hrs, names):
        up = F.interpolate(torch.from_numpy(lr.astype(np.float32))[None, None], scale_factor=2, mode="bicubic")
        rows[n] = fluo_pairs.care_metric(up[0, 0].double().numpy(), hr)
    return {"per_image": rows}


def _mean(rows: dict[str, Any], k: int) -> float:
    return float(np.mean([v[k] for v in rows.values()]))


def markdown(results: dict[str, Any]) -> str:
    sides = results["sides"]
    lines = [
        "# Peer benchmark: napari-superres train vs careamics CARE (issue 22)",
        "",
        f"Pairs: `benchmarks/fluo_pairs.py` (4 training, 6 held-out uint16 pairs, 512² x2). Metric: CARE's "
        f"(percentile {fluo_pairs.METRIC_PERCENTILES} normalised reference, affine-fitted prediction, data range 1). "
        f"1 thread each; CPU s = getrusage user+system of the whole process (CARE's `train` call alone in brackets). "
        f"Machine: {results['machine']}; load average at the end {results['loadavg']}.",
        "",
        "| system | params | steps | CPU s | PSNR | SSIM |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in sides.items():
        cpu = s.get("process_cpu_s")
        cpu_txt = "-" if cpu is None else f"{cpu:.0f}"
        if "train_cpu_s" in s:
            cpu_txt += f" ({s['train_cpu_s']:.0f})"
        lines.append(
            f"| {name} | {s.get('params', 0):,} | {s.get('steps', '-')} | {cpu_txt} | "
            f"{_mean(s['per_image'], 0):.2f} | {_mean(s['per_image'], 1):.3f} |"
        )
    names = list(next(iter(sides.values()))["per_image"])
    lines += ["", "Per held-out image (PSNR dB):", "", "| image | " + " | ".join(sides) + " |",
              "|---|" + "---:|" * len(sides)]  # fmt: skip
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{s['per_image'][n][0]:.2f}" for s in sides.values()) + " |")
    if "ours" in sides:
        lines += ["", f"Our command: `napari-superres {sides['ours']['command'].split(' ', 2)[-1]}`"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--side", choices=("driver", "care", "care-checkpoint"), default="driver", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint-cpu", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint-steps", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "microscopy" / "fluorescence",
                    help="the real fluorescence images the pairs are made from")  # fmt: skip
    ap.add_argument("--care-python", default="/work/venv-care/bin/python",
                    help="Python of careamics' virtual environment ('' skips CARE)")  # fmt: skip
    ap.add_argument("--work", type=Path, default=Path("/tmp/peer_care"))
    ap.add_argument("--pairs", type=Path, default=None, help="existing pairs folder (default: WORK/pairs, written)")
    ap.add_argument("--steps", type=int, default=OUR_STEPS, help="our --steps")
    ap.add_argument("--ours-arg", action="append", default=[], help="extra argument of our command (repeatable)")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--reuse-ours", action="store_true", help="reuse our side's figures already in WORK/ours")
    ap.add_argument("--ours-cpu", type=float, default=None, help="with --reuse-ours: score WORK/ours's model, "
                    "from a run stopped early, that took this many CPU seconds")  # fmt: skip
    ap.add_argument("--reuse-care", action="store_true", help="score the CARE predictions already in WORK/care")
    ap.add_argument("--care-epochs", type=int, default=CARE_EPOCHS)
    ap.add_argument("--care-steps-per-epoch", type=int, default=CARE_STEPS_PER_EPOCH)
    ap.add_argument("--note", default="", help="a paragraph added to the markdown (how the figures were obtained)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "peer_care")
    args = ap.parse_args(argv)
    if args.side == "care":
        care_side(args.pairs, args.work, args.care_epochs, args.care_steps_per_epoch)
        return None
    if args.side == "care-checkpoint":
        care_checkpoint_side(args.pairs, args.work, args.checkpoint, args.checkpoint_cpu, args.checkpoint_steps)
        return None
    pairs = args.pairs or args.work / "pairs"
    if args.pairs is None:
        fluo_pairs.write_pairs(pairs, args.data)
    sides: dict[str, Any] = {"bicubic": _bicubic_rows(pairs)}
    if args.reuse_care and (args.work / "care" / "care.json").is_file():
        sides["careamics CARE"] = score_care(pairs, args.work / "care")
    elif args.care_python:
        sides["careamics CARE"] = run_care(args.care_python, pairs, args.work / "care", args.care_epochs,
                                           args.care_steps_per_epoch)  # fmt: skip
    if args.reuse_ours and args.ours_cpu is not None:  # a run stopped early: its model, log and CPU seconds
        sides["ours"] = score_ours(
            pairs,
            args.work / "ours",
            args.ours_cpu,
            " ".join(our_command(pairs, args.work / "ours", args.steps, args.ours_arg)[1:]),
        )
    elif args.reuse_ours and (args.work / "ours" / "ours.json").is_file():
        sides["ours"] = json.loads((args.work / "ours" / "ours.json").read_text())
    elif not args.skip_ours:
        sides["ours"] = run_ours(pairs, args.work / "ours", args.steps, args.ours_arg)
    results = {"machine": platform.node(), "loadavg": os.getloadavg(), "time": time.strftime("%Y-%m-%d %H:%M"),
               "sides": sides}  # fmt: skip
    results["note"] = args.note
    text = markdown(results) + (f"\n{args.note}\n" if args.note else "")
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    args.out.with_suffix(".md").write_text(text)
    return results


if __name__ == "__main__":
    main()
