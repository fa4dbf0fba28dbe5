"""Inference cost of the degradation estimate: a conditioned built-in vs. a blind network of the same size.

    python benchmarks/conditioned_speed.py [--threads 2] [--size 1024] [--repeats 3]

Upscales one uint16 image (a noisy camera-like field) with the shipped conditioned x2 model
(``degradation="auto"``: the noise and blur estimate once, then the network with its maps) and with
a blind copy of it (the same weights without the maps), interleaved in one process, and prints
the median CPU seconds of each and of the estimate alone.  Writes
``benchmarks/results/conditioned_speed.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def blind_twin(model):
    """The same network without its degradation maps (what a blind model of that size costs)."""
    from napari_superres.engine import SRNet, SRNetConfig

    config = SRNetConfig.from_dict({**model.net.config.to_dict(), "cond_channels": 0})
    net = SRNet(config)
    state = model.net.state_dict()
    state["head.0.weight"] = state["head.0.weight"][:, : config.in_channels]
    net.load_state_dict(state)
    return replace(model, name="blind twin", net=net.eval())


def main(argv: list[str] | None = None) -> dict:
    import torch

    from napari_superres.engine import Engine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "conditioned_speed.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    engine = Engine(device="cpu")
    model = engine.get(engine.default_model)
    if not model.cond_channels:
        raise SystemExit(f"{model.name} is not a conditioned model")
    twin = blind_twin(model)
    rng = np.random.default_rng(0)
    image = (rng.poisson(300, (args.size, args.size)) + 100).astype(np.uint16)
    for m in (model, twin):  # warm-up: ONNX export / session
        engine.upscale(image[:128, :128], m)
    times: dict[str, list[float]] = {"conditioned (estimate + network)": [], "blind twin": [], "estimate alone": []}
    for _ in range(args.repeats):
        t = time.process_time()
        engine.upscale(image, model)
        times["conditioned (estimate + network)"].append(time.process_time() - t)
        t = time.process_time()
        engine.upscale(image, twin)
        times["blind twin"].append(time.process_time() - t)
        t = time.process_time()
        engine.estimate_degradation(image, model)
        times["estimate alone"].append(time.process_time() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    ratio = med["conditioned (estimate + network)"] / med["blind twin"]
    load = os.getloadavg()
    lines = [
        f"# Conditioned inference cost ({model.name}, {args.size}x{args.size} uint16, {args.threads} threads)",
        "",
        "| what | median CPU s |",
        "|---|---:|",
        *[f"| {k} | {v:.2f} |" for k, v in med.items()],
        "",
        f"Conditioned / blind: **{ratio:.2f}x** (median of {args.repeats}, interleaved in one process; "
        f"{platform.processor() or platform.machine()}, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return {"median": med, "ratio": ratio}


if __name__ == "__main__":
    main()
