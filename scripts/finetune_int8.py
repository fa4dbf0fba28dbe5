"""Fine-tune a built-in model for its int8 graph (quantization-aware, distilled from its fp32 output).

    python scripts/finetune_int8.py --data ../shared/data --model superres-x2

Writes ``src/napari_superres/models/<model>.int8.safetensors`` (the tuned weights, the activation
scales they were tuned for, and the SHA-256 of the model file they belong to), which
``upscale(..., precision="int8")`` then quantizes instead of the model's own weights.  Inputs:
crops of the training images (``scripts/prepare_data.py``; nothing held out), up to
``--per-kind`` per kind so that fluorescence, EM, synthetic and cell scenes weigh as much as the
many natural images, each degraded in turn by the calibration's acquisitions (bicubic, microscope,
low-photon) and built into network inputs as ``upscale()`` builds them.  After a retrain, run it
again, then ``benchmarks/precision.py`` (which measures the tuned graph).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from prepare_data import training_images  # noqa: E402

#: Low-res crop edge (px) of each input, and inputs per kind of training image.
CROP = 96
PER_KIND = 30
STEPS = 600
LEARNING_RATE = 1e-4


def training_inputs(data: Path, scale: int, cond_channels: int, per_kind: int, seed: int) -> list[np.ndarray]:
    """Network inputs ``(1, 1 + cond, CROP, CROP)`` float32 from the training images (see the module docstring)."""
    from napari_superres.engine.infer.calibration import DEGRADATIONS, degrade, network_input

    rng = np.random.default_rng(seed)
    by_kind: dict[str, list] = {}
    for image in training_images(data):
        by_kind.setdefault(image.kind, []).append(image)
    edge = CROP * scale
    inputs = []
    for images in by_kind.values():
        for k, i in enumerate(rng.permutation(len(images))[:per_kind]):
            plane = np.asarray(images[i].array, dtype=np.float64)
            if plane.ndim == 3:  # RGB -> luminance, as inference feeds a 1-channel model
                plane = plane[..., :3] @ np.array([0.299, 0.587, 0.114])
            if min(plane.shape) < edge:
                continue
            y0, x0 = (int(rng.integers(0, n - edge + 1)) for n in plane.shape)
            low = degrade(plane[y0 : y0 + edge, x0 : x0 + edge], scale, DEGRADATIONS[k % len(DEGRADATIONS)], rng)
            inputs.append(network_input(low, 1, cond_channels))
    return inputs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="data folder (../shared/data layout)")
    parser.add_argument("--model", default="superres-x2", help="built-in model name")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--lr", type=float, default=LEARNING_RATE)
    parser.add_argument("--per-kind", type=int, default=PER_KIND)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="default: next to the built-in model file")
    args = parser.parse_args(argv)

    import torch

    from napari_superres.engine import Engine
    from napari_superres.engine.infer import precision
    from napari_superres.engine.train.int8_tuning import save_int8_tuning, tune_int8

    if args.threads:
        torch.set_num_threads(args.threads)
    model = Engine(device="cpu").get(args.model)
    model_file = precision.measurement_file(model)
    if model_file is None:
        raise SystemExit(f"{args.model} is not a model file")
    weights = model_file.with_name(model_file.name[: -len(precision.PRECISION_SUFFIX)] + ".safetensors")
    net = model.net.eval()
    in_channels = model.in_channels + model.cond_channels
    fp32, _ = precision._folded_bytes(net, in_channels)
    quantized = precision.quantize_int8(fp32, in_channels=model.in_channels, cond_channels=model.cond_channels)
    inputs = training_inputs(args.data, model.scale, model.cond_channels, args.per_kind, args.seed)
    print(f"{len(inputs)} inputs of {CROP} px; {args.steps} steps", flush=True)
    tuning = tune_int8(net, quantized, inputs, steps=args.steps, lr=args.lr, seed=args.seed)
    out = args.out or weights.with_name(weights.stem + precision.INT8_SUFFIX)
    save_int8_tuning(out, tuning, hashlib.sha256(weights.read_bytes()).hexdigest())
    print(f"wrote {out} ({tuning.info})")


if __name__ == "__main__":
    main()
