"""Rank training choices on the paired fluorescence benchmark (benchmarks/fluo_pairs.py), one variant per call.

Each call trains one variant in this process at 1 thread, measures its CPU time
(``time.process_time``: data preparation + training + validation, not the scoring), scores
the trained model on the held-out pairs with CARE's metric and appends one JSON line to
``--results``::

    python benchmarks/train_choices.py --pairs /tmp/pairs --name builtin-b8p64 \\
        --set batch_size=8 --set patch_size=64 --init builtin --steps 300 --held-out 2

``--set KEY=VALUE`` sets a :class:`TrainConfig` field (JSON values; ``net.KEY=VALUE`` a network
setting), ``--val-fraction`` the data's validation fraction, ``--init`` ``builtin`` / ``none`` /
a model file.  ``--held-out N`` scores the first N held-out pairs only (the reduced protocol).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fluo_pairs import care_metric  # noqa: E402


def _read(folder: Path) -> tuple[list[np.ndarray], list[str]]:
    import tifffile

    files = sorted(folder.glob("*.tif"))
    return [tifffile.imread(f) for f in files], [f.stem for f in files]


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def score(model: Any, pairs: Path, held_out: int) -> list[dict[str, Any]]:
    """CARE-metric rows of ``model`` (an SRModel) on the first ``held_out`` held-out pairs."""
    from napari_superres.engine.registry import Engine

    engine = Engine(device="cpu", builtins=False)
    lrs, names = _read(pairs / "test" / "lr")
    hrs, _ = _read(pairs / "test" / "hr")
    rows = []
    for lr, hr, name in list(zip(lrs, hrs, names))[:held_out]:
        sr = engine.upscale(lr, model, scale=2)
        p, s = care_metric(np.asarray(sr, dtype=np.float64), hr)
        rows.append({"image": name, "psnr": p, "ssim": s})
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--init", default="none")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--val-fraction", type=float, default=None)
    ap.add_argument("--held-out", type=int, default=2)
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results/train_choices.jsonl"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from napari_superres.engine.train.data import make_pair_source
    from napari_superres.engine.train.trainer import TrainConfig, Trainer

    kwargs: dict[str, Any] = {"steps": args.steps, "device": "cpu"}
    if args.seconds is not None:
        kwargs["seconds"] = args.seconds
    net: dict[str, Any] = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        if key.startswith("net."):
            net[key[4:]] = _value(raw)
        else:
            kwargs[key] = _value(raw)
    if net:
        kwargs["net"] = net
    if args.init != "none":
        kwargs["init"] = args.init
    t0 = time.process_time()
    config = TrainConfig(**kwargs)
    hrs, _ = _read(args.pairs / "train" / "hr")
    lrs, _ = _read(args.pairs / "train" / "lr")
    data_kw = {} if args.val_fraction is None else {"val_fraction": args.val_fraction}
    data = make_pair_source(
        hrs, lrs, scale=2, patch_size=config.patch_size, normalization=config.normalization, seed=config.seed, **data_kw
    )
    trainer = Trainer(config, data)
    result = trainer.run()
    cpu = time.process_time() - t0
    rows = score(trainer.model(args.name), args.pairs, args.held_out)
    v = result.final_validation
    record = {
        "name": args.name,
        "init": args.init,
        "settings": {**kwargs, "val_fraction": args.val_fraction},
        "steps_done": result.steps_done,
        "params": trainer.generator.num_parameters(),
        "cpu_s": round(cpu, 1),
        "psnr": float(np.mean([r["psnr"] for r in rows])),
        "ssim": float(np.mean([r["ssim"] for r in rows])),
        "per_image": rows,
        "val_psnr": v.psnr if v else None,
        "loadavg": os.getloadavg(),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"{args.name}: {record['psnr']:.2f} dB SSIM {record['ssim']:.3f}, {cpu:.0f} CPU s, "
          f"{result.steps_done} steps, {record['params']:,} params")  # fmt: skip
    return record


if __name__ == "__main__":
    main()
