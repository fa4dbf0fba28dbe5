"""Wall-clock time of ``upscale`` with and without ``self_ensemble=True`` (x8) on a 512x512 uint16 image, CPU.

    python benchmarks/self_ensemble_speed.py

Prints the median of three runs per model after one warm-up; the degradation is estimated once and passed to every
call, so only the network's passes differ.
"""

from __future__ import annotations

import time

import numpy as np

from napari_superres import upscale
from napari_superres.engine import Engine

EDGE = 512
RUNS = 3


def main() -> None:
    engine = Engine(device="cpu")
    image = (np.random.default_rng(0).poisson(200, (EDGE, EDGE)) + 100).astype(np.uint16)
    degradation = engine.estimate_degradation(image)
    for name in ("superres-x2", "superres-x4"):
        for ensemble in (False, True):
            upscale(image, name, engine=engine, degradation=degradation, self_ensemble=ensemble)  # warm-up
            times = []
            for _ in range(RUNS):
                t0 = time.perf_counter()
                upscale(image, name, engine=engine, degradation=degradation, self_ensemble=ensemble)
                times.append(time.perf_counter() - t0)
            print(f"{name} {EDGE}x{EDGE} self_ensemble={ensemble}: {np.median(times):.2f} s (median of {RUNS})")


if __name__ == "__main__":
    main()
