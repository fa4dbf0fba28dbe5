"""Reduced-precision CPU inference: speed against ONNX Runtime fp32, PSNR loss against fp32 on held-out images.

Speed (one process, ``--threads`` threads, contenders interleaved round by round so
background load hits them alike; median of ``--repeats`` rounds after a warm-up), on the
model's ``--size``² uint16 input (a synthetic fluorescence field):

* **ORT fp32 untiled**: one ONNX Runtime forward of the fp32 export (the engine's session)
  on the whole normalised image: the reference the speed-ups are relative to;
* **ORT int8 untiled**: the same with the statically quantized graph (``precision="int8"``: the
  network folded to low resolution, its int8-tuned weights where ``<model>.int8.safetensors``
  applies, ``scripts/finetune_int8.py``);
* **torch bf16 untiled**: the folded network as fused bf16 oneDNN convolutions (``"bf16"``,
  ``engine/infer/bf16.py``);
* **upscale() fp32 / int8 / bf16**: ``Engine.upscale(image, precision=...)``, the whole path.

Figures: output Mpx/s from wall time and from the process's CPU time (steadier on a
shared machine), and the load average.

Quality: every held-out image (``scripts/prepare_data.py`` ``HELD_OUT``: natural, EM,
fluorescence; plus the synthetic benchmark fields and cell scenes), low-res made by the protocols of
``benchmarks/quality.py``, upscaled by ``Engine.upscale`` at each precision; the mean
PSNR per set and protocol, and its loss against fp32.

Writes ``benchmarks/results/precision.md`` and, unless ``--no-measurement``, the model's
measurement file ``<model>.precision.json`` next to a built-in model (what
``precision="auto"`` reads: the speed-up of ``upscale()`` against fp32 ``upscale()`` and the
largest loss of any set), stamped with the model file's SHA-256.

Usage::

    python benchmarks/precision.py --data ../shared/data            # built-in x2, 1024², 2 threads

After a built-in model is retrained, that one command (on a quiet machine) measures it again and
rewrites both ``benchmarks/results/precision.md`` and ``src/napari_superres/models/<model>.precision.json``
(stamped with the new weights' SHA-256; until then ``precision="auto"`` ignores the stale file and
runs fp32).  ``--skip-quality --no-measurement --size 512`` gives a quick speed check alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for sub in ("scripts", "benchmarks"):
    if str(ROOT / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / sub))

RESULTS = ROOT / "benchmarks" / "results" / "precision.md"
#: Reduced precisions measured through ``upscale()`` and for quality (``--precisions``); bf16 is
#: always timed untiled.
REDUCED = ["int8", "bf16"]


def _image(size: int) -> np.ndarray:
    from napari_superres.engine.samples import synthetic_pair

    low, _ = synthetic_pair(shape=(2 * size, 2 * size), scale=2, seed=7)
    return low


def speed(engine: Any, model: Any, size: int, repeats: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds per contender (see the module docstring)."""
    import torch

    from napari_superres.engine.infer.calibration import network_input
    from napari_superres.engine.infer.onnx_backend import onnx_runner
    from napari_superres.engine.infer.precision import bf16_forward, int8_runner, int8_tuning

    image = _image(size)
    # what upscale() hands the network: the normalised image and, conditioned, its degradation maps
    x = network_input(image, 1, model.cond_channels)
    channels = x.shape[1]
    fp32 = onnx_runner(model.net, in_channels=channels)
    int8 = int8_runner(model.net, in_channels=channels, tuning=int8_tuning(model))  # as upscale() runs it
    bf16_net = __import__("copy").deepcopy(model.net)
    bf16 = bf16_forward(bf16_net)
    tx = torch.from_numpy(x)
    contenders: dict[str, Callable[[], Any]] = {
        "ORT fp32 untiled": lambda: fp32.numpy(x),
        "ORT int8 untiled": lambda: int8.numpy(x),
        **({"torch bf16 untiled": lambda: bf16(tx)} if "bf16" in REDUCED else {}),
        **{f"upscale() {p}": (lambda p=p: engine.upscale(image, model.name, precision=p)) for p in ("fp32", *REDUCED)},
    }
    for fn in contenders.values():  # warm-up: exports, quantization, sessions, arenas
        fn()
    wall: dict[str, list[float]] = {k: [] for k in contenders}
    cpu: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(repeats):
        for name, fn in contenders.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
        print(f"round {r + 1}/{repeats}: " + ", ".join(f"{k} {wall[k][-1]:.2f} s" for k in contenders), flush=True)
    out_mpx = (size * model.scale) ** 2 / 1e6
    return {
        k: {"wall_s": statistics.median(wall[k]), "cpu_s": statistics.median(cpu[k]),
            "mpx_s": out_mpx / statistics.median(wall[k]), "mpx_cpu_s": out_mpx / statistics.median(cpu[k])}
        for k in contenders
    }  # fmt: skip


def quality(engine: Any, model: Any, data: Path | None) -> dict[str, dict[str, float]]:
    """Mean PSNR per ``set/protocol`` and precision: ``{"natural/bicubic": {"fp32": .., "int8": ..}}``."""
    from prepare_data import heldout_sets
    from quality import PROTOCOLS, care_comparable, comparable, make_low_res, modcrop, psnr, reference

    scale = model.scale
    sums: dict[str, dict[str, list[float]]] = {}
    for set_name, images in heldout_sets(data).items():
        for i, image in enumerate(images):
            hr = modcrop(image.array, scale)
            for protocol in PROTOCOLS:
                if protocol == "lowphoton" and hr.ndim == 3:
                    continue  # a camera protocol: grayscale images only (as benchmarks/quality.py)
                seed = 1000 * scale + i  # the seeds of benchmarks/quality.py
                lr = make_low_res(hr, scale, protocol, seed=seed)
                ref = reference(hr, scale, protocol, seed=seed)
                row = sums.setdefault(f"{set_name}/{protocol}", {})
                for p in ("fp32", *REDUCED):
                    sr = engine.upscale(lr, model.name, rgb=lr.ndim == 3, precision=p)
                    pair = care_comparable(sr, ref, scale) if protocol == "lowphoton" else comparable(sr, hr, scale)
                    row.setdefault(p, []).append(psnr(*pair))
        print(f"{set_name}: " + ", ".join(
            f"{k} " + " ".join(f"{p} {np.mean(v):.3f}" for p, v in r.items())
            for k, r in sums.items() if k.startswith(set_name)), flush=True)  # fmt: skip
    return {k: {p: float(np.mean(v)) for p, v in r.items()} for k, r in sums.items()}


def markdown(sp: dict[str, dict[str, float]], q: dict[str, dict[str, float]], meta: dict[str, Any]) -> str:
    ref = sp.get("ORT fp32 untiled", {"wall_s": 1.0, "cpu_s": 1.0})
    lines = [
        "# Reduced-precision CPU inference (`benchmarks/precision.py`)",
        "",
        f"Model `{meta['model']}`, {meta['size']}² uint16 input, {meta['threads']} threads, {meta['cpu']}; "
        f"CPU flags: {meta['flags']}. One process, contenders interleaved, median of {meta['repeats']} rounds; "
        f"shared machine, load average {meta['load_before']} before, {meta['load_after']} after.",
        "",
        "| contender | wall (s) | out Mpx/s | x ORT fp32 (wall) | CPU (s) | x ORT fp32 (CPU time) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k, v in sp.items():
        lines.append(f"| {k} | {v['wall_s']:.2f} | {v['mpx_s']:.3f} | {ref['wall_s'] / v['wall_s']:.2f} | "
                     f"{v['cpu_s']:.2f} | {ref['cpu_s'] / v['cpu_s']:.2f} |")  # fmt: skip
    lines += [
        "",
        "Quality: mean PSNR (dB) of `Engine.upscale` per held-out set and low-res protocol "
        "(`benchmarks/quality.py` protocols and metrics), and the loss against fp32 (negative: worse).",
        "",
        "| set / protocol | fp32 | " + " | ".join(f"{p} | {p} loss" for p in REDUCED) + " |",
        "|---|---:|" + "---:|---:|" * len(REDUCED),
    ]
    for k, r in q.items():
        cells = " | ".join(f"{r[p]:.3f} | {r[p] - r['fp32']:+.3f}" for p in REDUCED)
        lines.append(f"| {k} | {r['fp32']:.3f} | {cells} |")
    lines += ["", 'Largest loss against fp32 over all sets (what `precision="auto"` checks, limit 0.05 dB):', ""]
    for p in REDUCED:
        real = [r["fp32"] - r[p] for k, r in q.items() if not k.startswith(("synthetic", "cells"))]
        every = [r["fp32"] - r[p] for r in q.values()]
        lines.append(f"- {p}: natural and microscopy (EM, fluorescence) sets {max(real, default=0):.3f} dB; "
                     f"including the noise-free synthetic sets {max(every, default=0):.3f} dB")  # fmt: skip
    return "\n".join(lines) + "\n"


def measurement(sp: dict[str, dict[str, float]], q: dict[str, dict[str, float]], model_file: Path) -> dict[str, Any]:
    """The ``<model>.precision.json`` content: what ``precision="auto"`` reads."""
    ref = sp["upscale() fp32"]
    return {
        "model_sha256": hashlib.sha256(model_file.read_bytes()).hexdigest(),
        "written_by": "benchmarks/precision.py",
        "precisions": {
            p: {"speedup": round(ref["cpu_s"] / sp[f"upscale() {p}"]["cpu_s"], 3),
                "loss_db": round(max(r["fp32"] - r[p] for r in q.values()), 4)}
            for p in REDUCED
        },
    }  # fmt: skip


def _part(args: argparse.Namespace, part: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The ``part`` figures: loaded (``--load-<part>``) or measured, and saved (``--save-<part>``)."""
    loaded = getattr(args, f"load_{part}")
    if loaded is not None:
        return json.loads(Path(loaded).read_text())
    figures = measure()
    saved = getattr(args, f"save_{part}")
    if saved is not None:
        saved.write_text(json.dumps({**figures, "_load_before": ", ".join(f"{v:.1f}" for v in os.getloadavg())}
                                    if part == "speed" else figures))  # fmt: skip
    return figures


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=None, help="the shared data folder (held-out natural/microscopy)")
    p.add_argument("--model", default="superres-x2")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    for part in ("speed", "quality"):  # run the two parts in two processes, then combine them
        p.add_argument(f"--save-{part}", type=Path, default=None, help=f"write the {part} figures (JSON) here")
        p.add_argument(f"--load-{part}", type=Path, default=None, help=f"read the {part} figures instead of measuring")
    p.add_argument("--precisions", nargs="+", choices=("int8", "bf16"), default=list(REDUCED),
                   help="reduced precisions run through upscale() and the quality sets")  # fmt: skip
    p.add_argument("--no-measurement", action="store_true", help="do not write <model>.precision.json")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    REDUCED[:] = args.precisions

    import torch

    from napari_superres.engine.infer.precision import cpu_flags, cpu_support
    from napari_superres.engine.registry import BUILTIN_MODEL_DIR, Engine

    torch.set_num_threads(args.threads)
    engine = Engine(device="cpu")
    torch.set_num_threads(args.threads)
    model = engine.get(args.model)
    for name in REDUCED:
        ok, reason = cpu_support(name)
        print(f"{name}: {'supported' if ok else 'NOT supported'} ({reason})")
    load_before = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    sp = _part(args, "speed", lambda: {} if args.skip_speed else speed(engine, model, args.size, args.repeats))
    q = _part(args, "quality", lambda: {} if args.skip_quality else quality(engine, model, args.data))
    if args.load_speed is not None:
        load_before = sp.pop("_load_before", load_before)
    meta = {
        "model": model.name, "size": args.size, "threads": args.threads, "repeats": args.repeats,
        "cpu": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").exists() else "?",
        "flags": ", ".join(sorted(f for f in cpu_flags() if "vnni" in f or "bf16" in f or "amx" in f)) or "none",
        "load_before": load_before, "load_after": ", ".join(f"{v:.1f}" for v in os.getloadavg()),
    }  # fmt: skip
    text = markdown(sp, q, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    print(text)
    model_file = BUILTIN_MODEL_DIR / f"{model.name}.safetensors"
    if q and sp and not args.no_measurement and model_file.is_file():
        target = model_file.with_name(f"{model.name}.precision.json")
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(json.dumps(measurement(sp, q, model_file), indent=1) + "\n")
        os.replace(tmp, target)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
