"""CPU inference candidates side by side: one untiled forward of a built-in network, per runtime.

    python benchmarks/candidates.py                   # x2 and x4 built-ins at 1024^2, best of 3
    python benchmarks/candidates.py --sizes 512 --repeats 2 --skip compile

Candidates (all on the same normalised float32 ``(1, 1, H, W)`` input, one process,
interleaved round-robin so background load hits them alike, best of ``--repeats``):

* ``torch``: eager, NCHW weights and input;
* ``torch-cl``: eager, channels_last weights and input (what the pipeline did before);
* ``compile``: ``torch.compile`` (inductor), channels_last; the first call (compilation) timed apart;
* ``bf16``: ``torch.autocast("cpu", torch.bfloat16)``, channels_last; max error vs fp32 in uint16 counts;
* ``ort-legacy`` / ``ort-dynamo``: ONNX Runtime (CPU provider, graph optimisation level ALL,
  intra-op threads = cores) on the graph of the TorchScript-based and the dynamo-based
  ``torch.onnx.export`` (opset 17 / 18, dynamic H/W).

Prints and writes ``benchmarks/results/candidates-<machine>.md`` (and ``.json``): output
Mpx/s by wall time and per CPU-second, and each candidate's max abs difference to the
fp32 eager output in uint16 counts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import RESULTS_DIR, machine_name

U16 = 65535.0


def _image(size: int) -> np.ndarray:
    """A uint16 test image with structure and noise (smoothed noise + fine noise), ``(size, size)``."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 1, size // 16 + 1, size // 16 + 1, generator=g)
    smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0, 0]
    img = 0.7 * smooth.clamp(0, 1) + 0.3 * torch.rand(size, size, generator=g)
    return (img.numpy() * U16).round().astype(np.uint16)


def _counts(y: np.ndarray) -> np.ndarray:
    """Normalised network output -> uint16 counts (as the pipeline's denormalisation)."""
    return np.clip(np.rint(y.astype(np.float32) * np.float32(U16)), 0, U16)


def build_candidates(net: Any, skip: set[str], threads: int) -> tuple[dict[str, Any], dict[str, float]]:
    """name -> callable(float32 numpy (1,1,H,W)) -> float32 numpy output; and set-up seconds."""
    import copy

    import torch

    from napari_superres.engine.infer.onnx_backend import export_onnx, make_session

    setup: dict[str, float] = {}
    cands: dict[str, Any] = {}
    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)

    def torch_fn(module: Any, cl: bool, bf16: bool = False):
        def run(x: np.ndarray) -> np.ndarray:
            t = torch.from_numpy(x)
            if cl:
                t = t.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return module(t).float().contiguous().numpy()

        return run

    if "torch" not in skip:
        cands["torch"] = torch_fn(net, False)
    if "torch-cl" not in skip:
        cands["torch-cl"] = torch_fn(net_cl, True)
    if "bf16" not in skip:
        cands["bf16"] = torch_fn(net_cl, True, bf16=True)
    if "compile" not in skip:
        try:
            compiled = torch.compile(net_cl, dynamic=False)
            cands["compile"] = torch_fn(compiled, True)
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"torch.compile unavailable: {exc!r}")
    for kind in ("legacy", "dynamo"):
        if f"ort-{kind}" in skip:
            continue
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = Path(tmp) / "net.onnx"
            export_onnx(net, path, exporter=kind)
            session = make_session(path.read_bytes(), threads=threads)
        setup[f"ort-{kind}"] = time.perf_counter() - t0
        name = session.get_inputs()[0].name

        def run(x: np.ndarray, session=session, name=name) -> np.ndarray:
            return session.run(None, {name: x})[0]

        cands[f"ort-{kind}"] = run
    return cands, setup


def main() -> None:
    import torch

    from napari_superres.engine.nets.model_file import load_model
    from napari_superres.engine.registry import BUILTIN_MODEL_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024])
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[])
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    load_before = os.getloadavg()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    rows: list[dict[str, Any]] = []
    for scale in args.scales:
        model = load_model(BUILTIN_MODEL_DIR / f"superres-x{scale}.safetensors")
        net = model.net.eval()
        cands, setup = build_candidates(net, set(args.skip), threads)
        for size in args.sizes:
            x = (_image(size).astype(np.float32) / np.float32(U16))[None, None]
            out_px = size * size * scale * scale
            ref = None
            first: dict[str, float] = {}
            best: dict[str, tuple[float, float]] = {}
            err: dict[str, float] = {}
            for name, fn in cands.items():  # warm-up (compilation, ORT allocations), error check
                t0 = time.perf_counter()
                y = fn(x)
                first[name] = time.perf_counter() - t0
                if ref is None:
                    ref = _counts(y)
                err[name] = float(np.abs(_counts(y) - ref).max())
                del y
            for _ in range(args.repeats):
                for name, fn in cands.items():
                    w0, c0 = time.perf_counter(), time.process_time()
                    fn(x)
                    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                    if name not in best or wall < best[name][0]:
                        best[name] = (wall, cpu)
            base = best.get("torch", next(iter(best.values())))[0]
            for name in cands:
                wall, cpu = best[name]
                row = {
                    "scale": scale, "size": size, "candidate": name, "wall_s": wall, "cpu_s": cpu,
                    "mpx_s": out_px / wall / 1e6, "mpx_cpu_s": out_px / cpu / 1e6, "vs_torch": base / wall,
                    "first_call_s": first[name], "setup_s": setup.get(name, 0.0), "max_err_counts": err[name],
                }  # fmt: skip
                rows.append(row)
                print(
                    f"x{scale} {size}^2 {name:11s} {row['mpx_s']:6.2f} Mpx/s {row['mpx_cpu_s']:6.3f} Mpx/CPU-s "
                    f"x{row['vs_torch']:.2f} vs torch; first call {first[name]:.1f}s; max err {err[name]:.0f} counts",
                    flush=True,
                )
    meta = {
        "started": started, "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "threads": threads, "torch": torch.__version__, "load_before": load_before, "load_after": os.getloadavg(),
        "note": args.note,
    }  # fmt: skip
    import onnxruntime

    meta["onnxruntime"] = onnxruntime.__version__
    machine = machine_name()
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"candidates-{machine}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [
        f"# CPU inference candidates on `{machine}`",
        "",
        f"Built-in networks, one untiled forward of a normalised float32 image (best of {args.repeats}, "
        f"interleaved); {threads} threads; torch {torch.__version__}, onnxruntime {meta['onnxruntime']}; "
        f"{started} -> {meta['finished']}; load average before/after "
        f"{'/'.join(f'{v:.1f}' for v in load_before)} / {'/'.join(f'{v:.1f}' for v in meta['load_after'])}. "
        + (args.note or ""),
        "",
        (
            "| scale | input | candidate | output Mpx/s | Mpx/CPU-s | × torch eager | first call s "
            "| export+session s | max diff vs fp32 (uint16 counts) |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| ×{r['scale']} | {r['size']}² | {r['candidate']} | {r['mpx_s']:.2f} | {r['mpx_cpu_s']:.3f} | "
            f"{r['vs_torch']:.2f} | {r['first_call_s']:.1f} | {r['setup_s']:.1f} | {r['max_err_counts']:.0f} |"
        )
    (RESULTS_DIR / f"candidates-{machine}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS_DIR / f'candidates-{machine}.md'}")


if __name__ == "__main__":
    main()
