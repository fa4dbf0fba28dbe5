"""Inference benchmarks: throughput, tiling overhead, peak memory and (GPU) achieved TFLOP/s.

    python benchmarks/run.py                 # full set: 1024^2 .. 8192^2, x2 and x4, a 64-plane stack
    python benchmarks/run.py --quick         # 1024^2 and 2048^2, a 4-plane stack, 5-minute budget each
    python benchmarks/run.py --sizes 1024 --scales 2 --device cpu --model default

For every scale and input size, one subprocess (so its peak RSS is its own) measures:

* ``tiled``: the engine's full path, ``Engine.upscale(uint16 image)`` (normalise, tiles,
  network, denormalise into a uint16 output), with the automatic tile and batch size;
* ``untiled``: one forward pass of the same network over the whole (normalised float32)
  image, host -> device -> host included: the tiling overhead is ``tiled / untiled``
  (goal >= 90 %); skipped where the activations would not fit in memory;
* ``bicubic``: ``torch.nn.functional.interpolate(mode="bicubic")`` on the same float
  image (the floor any network is compared with), transfers included.

Throughput is in output megapixels per second.  Memory: host peak RSS
(``resource.getrusage`` max RSS of the subprocess) against its RSS before the run
(interpreter, torch, model, input), and the part above the uint16 output buffer; on CUDA
``torch.cuda.max_memory_allocated``.  FLOPs are counted from the architecture
(:func:`flops_per_input_px`: ``2*Cin*Cout*k*k`` per output pixel of every convolution,
8 per output element of bilinear and 32 of the bicubic skip), so achieved TFLOP/s is
*useful* work (the untiled network's FLOPs) per second; on CUDA also as a fraction of
the device's bf16 dense peak.

Results are merged into ``benchmarks/results/<machine>.json`` under the key
``"inference"`` (other keys, e.g. ``"training"``, are kept; read-modify-write under a
lock, written atomically) and rendered to ``benchmarks/results/<machine>.md``.  The
machine name is ``$SUPERRES_MACHINE`` or ``platform.node()``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FULL_SIZES = (1024, 2048, 4096, 8192)
QUICK_SIZES = (1024, 2048)
SCALES = (2, 4)
FULL_STACK_PLANES = 64
QUICK_STACK_PLANES = 4
STACK_EDGE = 1024
#: bf16 dense peak of known GPUs (TFLOP/s, no sparsity), by a substring of the device name.
BF16_PEAK_TFLOPS = {"H200": 790.0, "H100": 790.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "RTX 4090": 165.0}
#: Fraction of available memory an untiled pass may need before it is skipped.
UNTILED_MEMORY_SHARE = 0.6
MB = 2**20


# --- results file ----------------------------------------------------------------------------------
def machine_name() -> str:
    return os.environ.get("SUPERRES_MACHINE") or platform.node() or "unknown"


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive advisory lock for ``path`` (every writer of the results files goes through here).

    The lock file lives in the temporary folder, not next to the results (nothing to commit).
    """
    import fcntl
    import hashlib

    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"napari-superres-results-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def merge_results(machine: str, updates: dict[str, Any]) -> Path:
    """Set ``updates``' top-level keys in ``results/<machine>.json``, keeping every other key.

    Read-modify-write under a lock; the new file replaces the old atomically.
    """
    path = RESULTS_DIR / f"{machine}.json"
    with _locked(path):
        data = json.loads(path.read_text()) if path.exists() else {}
        data.update(updates)
        data["machine"] = machine
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    return path


def replace_md_section(machine: str, key: str, markdown: str) -> Path:
    """Replace (or append) the ``<!-- key -->`` section of ``results/<machine>.md``, keeping the rest."""
    path = RESULTS_DIR / f"{machine}.md"
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}\n"
    with _locked(path):
        text = path.read_text() if path.exists() else f"# Benchmarks on `{machine}`\n\n"
        if start in text and end in text:
            head, rest = text.split(start, 1)
            text = head + block + rest.split(end, 1)[1].lstrip("\n")
        else:
            text = text.rstrip("\n") + "\n\n" + block
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    return path


# --- FLOPs -----------------------------------------------------------------------------------------
def flops_per_input_px(net: Any, in_channels: int = 1, probe: int = 32) -> float:
    """FLOPs of one forward pass per *input* pixel, counted from the modules actually run.

    Convolutions: ``2 * Cin/groups * Cout * kh * kw`` per output pixel (transposed: per
    input pixel); ``nn.Upsample``: 8 per output element (bilinear, 4 taps); the bicubic
    global skip of an ``SRNet``: 32 per output element (16 taps).  Counted on a
    ``probe``-px square and divided by its area (every term is proportional to pixels).
    """
    import torch
    from torch import nn

    from napari_superres.engine.nets.srnet import Bicubic, SRNet

    total = 0.0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        x = inputs[0]
        if isinstance(module, nn.ConvTranspose2d):
            kh, kw = module.kernel_size
            total += 2 * module.in_channels * module.out_channels / module.groups * kh * kw * x.shape[-2] * x.shape[-1]
        elif isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += 2 * module.in_channels / module.groups * module.out_channels * kh * kw * output[0, 0].numel()
        elif isinstance(module, nn.Upsample):
            total += 8 * output[0].numel()

    handles = [
        m.register_forward_hook(hook)
        for m in net.modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Upsample)
    ]
    try:
        with torch.inference_mode():
            dev = next(iter(net.parameters()), torch.empty(0)).device
            out = net(torch.zeros(1, in_channels, probe, probe, device=dev))
    finally:
        for h in handles:
            h.remove()
    if isinstance(net, Bicubic) or (isinstance(net, SRNet) and net.config.global_skip):
        total += 32 * out[0].numel()
    return total / (probe * probe)


# --- one measurement (runs in a subprocess) --------------------------------------------------------
def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _build_model(spec: str, scale: int, engine: Any) -> Any:
    import torch

    from napari_superres.engine import SRNet

    if spec == "default":
        torch.manual_seed(0)
        return engine.prepare(SRNet(scale=scale).eval())
    if spec == "builtin":
        return engine.prepare(f"superres-x{scale}")
    return engine.prepare(spec)


def measure(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run the measurements of one (scale, shape) in this process; returns a JSON-able dict.

    After a first run of the full path alone (its peak RSS), ``cfg["repeats"]`` rounds
    run, in turn, the full path, ONNX Runtime untiled and torch untiled (interleaved, so
    background load hits all alike); each keeps its best wall time (and that run's CPU time).
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from napari_superres.engine import Engine
    from napari_superres.engine.device import autocast
    from napari_superres.engine.infer.onnx_backend import onnx_runner
    from napari_superres.engine.infer.pipeline import model_width, plan_upscale
    from napari_superres.engine.infer.tiling import plan_overlap

    engine = Engine(device=cfg["device"], builtins=cfg["model"] != "default")
    device = engine.device
    model = _build_model(cfg["model"], cfg["scale"], engine)
    scale = model.scale or cfg["scale"]
    shape = tuple(cfg["shape"])
    cuda = device.type == "cuda"
    backend = cfg.get("backend") or "auto"
    repeats = int(cfg.get("repeats") or 1)
    image = np.random.default_rng(0).integers(0, 65535, shape, dtype=np.uint16)
    planes = image.reshape(-1, *shape[-2:])
    out_px = planes.shape[0] * shape[-2] * shape[-1] * scale * scale
    kwargs = {"scale": scale, "tile": cfg.get("tile"), "batch_size": cfg.get("batch"), "backend": backend}

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    # warm up every code path on a small input (kernels, threads, export); keeps the RSS baseline low
    engine.upscale(image[(0,) * (len(shape) - 2)][:64, :64], model, **kwargs)
    sync()
    job = plan_upscale(image, model, device=device, **kwargs)
    result: dict[str, Any] = {
        "scale": scale, "shape": list(shape), "out_mpx": out_px / 1e6, "tile": job.tile,
        "batch": job.batch_size, "tiles_per_plane": job.tiles_per_plane(), "backend": job.backend,
        "input_mb": image.nbytes / MB, "output_mb": out_px * 2 / MB, "threads": torch.get_num_threads(),
        "repeats": repeats,
    }  # fmt: skip

    def full() -> None:
        out = engine.upscale(image, model, **kwargs)
        sync()
        del out

    rss_before = _rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    first = _timed_once(full)
    peak = _rss_mb()
    result["tiled"] = {
        "first_seconds": first[0], "rss_before_mb": rss_before, "peak_rss_mb": peak,
        "rss_increase_mb": peak - rss_before, "above_output_mb": peak - rss_before - result["output_mb"],
    }  # fmt: skip
    if cuda:
        result["tiled"]["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / MB

    floats = [(p.astype(np.float32) / np.float32(65535))[None, None] for p in planes]
    net = model.net

    def torch_untiled() -> None:
        for x in floats:
            with torch.inference_mode(), autocast(device):
                y = net(torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last))
                y.float().cpu()
        sync()

    runner = onnx_runner(net, in_channels=model.in_channels or 1) if not cuda else None

    def ort_untiled() -> None:
        for x in floats:
            runner.numpy(x)

    def bicubic() -> None:
        for x in floats:
            F.interpolate(torch.from_numpy(x).to(device), scale_factor=scale, mode="bicubic", align_corners=False).cpu()
        sync()

    # untiled passes only where their activations fit (~3 float32 maps of the model's width at the output size)
    width = model_width(net)
    plane_out_px = shape[-2] * shape[-1] * scale * scale
    bytes_needed = 3.3 * width * plane_out_px * (2 if cuda else 4)
    if cuda:
        available = torch.cuda.mem_get_info(device)[0]
    else:
        import psutil

        available = psutil.virtual_memory().available
    contenders: dict[str, Any] = {"tiled": full}
    if bytes_needed > UNTILED_MEMORY_SHARE * available:
        why = f"needs ~{bytes_needed / 2**30:.1f} GiB of activations, {available / 2**30:.1f} GiB available"
        result["untiled"] = {"skipped": why}
        result["ort_untiled"] = {"skipped": why}
    elif cuda and width * plane_out_px >= 2**31:
        result["untiled"] = {"skipped": "activation tensors over 2^31 elements (int32 kernel indexing)"}
    else:
        contenders["untiled"] = torch_untiled
        if runner is not None:
            contenders["ort_untiled"] = ort_untiled
    if runner is None and "ort_untiled" not in result:
        result["ort_untiled"] = {"skipped": "ONNX Runtime not installed, network not exportable, or not on the CPU"}
    # the tiling overhead, measured: where the plane fits one tile, the same full path with the fewest
    # tiles that still tile it (2 x 2: what a memory limit just below this plane makes the planner do)
    if job.tiles_per_plane() == 1 and "untiled" in contenders:
        edge = max(shape[-2], shape[-1])
        forced_kwargs = {**kwargs, "tile": (edge + plan_overlap(model.receptive_field, edge) + 1) // 2}
        forced_job = plan_upscale(image, model, device=device, **forced_kwargs)
        result["forced_tiles"] = {"tile": forced_job.tile, "tiles_per_plane": forced_job.tiles_per_plane()}

        def forced() -> None:
            out = engine.upscale(image, model, **forced_kwargs)
            sync()
            del out

        contenders["forced_tiles"] = forced
    contenders["bicubic"] = bicubic
    # the first upscale() run counts too, and every contender runs ``repeats`` more times (best kept):
    # for big inputs (repeats 1) the first run grows ONNX Runtime's arena to the new tile shape (the
    # warm-up ran a small input), which the untiled references, timed warm, do not pay
    best: dict[str, tuple[float, float]] = {"tiled": first}
    for _ in range(repeats):
        for name, fn in contenders.items():
            best[name] = min(best.get(name, (math.inf, math.inf)), _timed_once(fn))
    for name, (wall, cpu) in best.items():
        result.setdefault(name, {}).update({
            "seconds": wall, "out_mpx_s": out_px / 1e6 / wall, "cpu_seconds": cpu, "out_mpx_per_cpu_s": out_px / 1e6 / cpu,
        })  # fmt: skip
    seconds = best["tiled"][0]
    for ref in ("untiled", "ort_untiled"):
        if ref in best:
            result[f"tiled_vs_{ref}"] = best[ref][0] / seconds
            result[f"tiled_vs_{ref}_cpu_time"] = best[ref][1] / best["tiled"][1]
    if "forced_tiles" in best:
        # forced tiles against one tile (the automatic plan here) and against ORT untiled
        result["forced_vs_one_tile"] = best["tiled"][0] / best["forced_tiles"][0]
        result["forced_vs_one_tile_cpu_time"] = best["tiled"][1] / best["forced_tiles"][1]
        if "ort_untiled" in best:
            result["forced_vs_ort_untiled"] = best["ort_untiled"][0] / best["forced_tiles"][0]
            result["forced_vs_ort_untiled_cpu_time"] = best["ort_untiled"][1] / best["forced_tiles"][1]

    flops = flops_per_input_px(model.net, model.in_channels or 1) * planes.shape[0] * shape[-2] * shape[-1]
    result["useful_tflop"] = flops / 1e12
    result["tiled"]["tflop_s"] = flops / 1e12 / seconds
    if cuda:
        name = torch.cuda.get_device_name(device)
        peak_tf = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
        result["device_name"] = name
        if peak_tf:
            result["tiled"]["fraction_of_bf16_peak"] = result["tiled"]["tflop_s"] / peak_tf
            result["bf16_peak_tflops"] = peak_tf
    return result


def _timed_once(fn: Any) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


# --- driver ----------------------------------------------------------------------------------------
def _run_subprocess(cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--_measure", json.dumps(cfg)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"ran past the {timeout:.0f} s limit and was stopped"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"skipped": f"failed (exit {proc.returncode}): {tail[0][:300]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}, a {QUICK_STACK_PLANES}-plane stack")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="square 2D input edges (px)")
    p.add_argument("--scales", type=int, nargs="+", default=list(SCALES))
    p.add_argument(
        "--stack-planes", type=int, default=None, help=f"planes of the (N, {STACK_EDGE}, {STACK_EDGE}) stack; 0: none"
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--model", default="builtin",
                   help="'builtin' (the shipped superres-x<scale>), 'default' (SRNet(scale=s) defaults, random weights), "
                   "a name or a file")  # fmt: skip
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime"), help="upscale(backend=...)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (best of); sizes over 4 Mpx: 1")
    p.add_argument("--tile", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--budget-s", type=float, default=None,
                   help="skip a measurement predicted (from the previous size) to take longer (default 300 quick, 1800 full)")  # fmt: skip
    p.add_argument("--machine", default=None)
    p.add_argument("--note", action="append", default=[], help="free-text note stored with the results")
    p.add_argument("--append", action="store_true",
                   help="add these measurements to the saved ones (same scale and input: replaced) instead of replacing all")  # fmt: skip
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--render-only", action="store_true", help="rewrite results/<machine>.md from the saved JSON")
    p.add_argument("--_measure", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._measure:
        print(json.dumps(measure(json.loads(args._measure))))
        return 0

    machine = args.machine or machine_name()
    if args.render_only:
        saved = json.loads((RESULTS_DIR / f"{machine}.json").read_text())["inference"]
        print(replace_md_section(machine, "inference", render_markdown(saved)))
        return 0

    import torch

    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    planes = (
        args.stack_planes
        if args.stack_planes is not None
        else (QUICK_STACK_PLANES if args.quick else FULL_STACK_PLANES)
    )
    budget = args.budget_s or (300.0 if args.quick else 1800.0)
    device = args.device
    notes = list(args.note)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    load_before = _load()
    runs: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    shapes = [[s, s] for s in sorted(sizes)] + ([[planes, STACK_EDGE, STACK_EDGE]] if planes else [])
    for scale in args.scales:
        rate: float | None = None  # tiled output Mpx/s of the previous size: predicts the next
        for shape in shapes:
            out_mpx = math.prod(shape) * scale * scale / 1e6
            # per round: full path + ORT + torch untiled ~ 3.5x the full path; start and warm-up ~ 30 s
            rounds = args.repeats if math.prod(shape) <= 4 * 2**20 else 1
            predicted = None if rate is None else 3.5 * rounds * out_mpx / rate + 30
            label = f"x{scale} {'x'.join(map(str, shape))}"
            if predicted is not None and predicted > budget:
                reason = f"predicted {predicted:.0f} s at {rate:.2f} output Mpx/s > budget {budget:.0f} s"
                skipped.append({"scale": scale, "shape": shape, "reason": reason})
                print(f"{label}: skipped ({reason})", flush=True)
                continue
            cfg = {"scale": scale, "shape": shape, "device": device, "model": args.model, "tile": args.tile,
                   "batch": args.batch, "backend": args.backend,
                   "repeats": args.repeats if math.prod(shape) <= 4 * 2**20 else 1}  # fmt: skip
            t0 = time.time()
            res = _run_subprocess(cfg, timeout=max(budget * 1.5, 120))
            if "skipped" in res:
                skipped.append({"scale": scale, "shape": shape, "reason": res["skipped"]})
                print(f"{label}: skipped ({res['skipped']})", flush=True)
                continue
            res["wall_s"] = time.time() - t0
            runs.append(res)
            if len(shape) == 2:
                rate = res["tiled"]["out_mpx_s"]
            print(_summary_line(res), flush=True)
    report = {
        "started": started,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": str(_resolve(device)),
        "device_name": torch.cuda.get_device_name()
        if _resolve(device).type == "cuda"
        else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "model": args.model,
        "backend": args.backend,
        "onnxruntime": _ort_version(),
        "quick": bool(args.quick),
        "budget_s": budget,
        "load_average_before": load_before,
        "load_average_after": _load(),
        "notes": notes,
        "runs": runs,
        "skipped": skipped,
    }
    if not args.no_save:
        if args.append:
            report = _appended(machine, report)
        path = merge_results(machine, {"inference": report})
        md = replace_md_section(machine, "inference", render_markdown(report))
        print(f"wrote {path} and {md}")
    return 0


def _appended(machine: str, report: dict[str, Any]) -> dict[str, Any]:
    """``report`` merged into the saved inference report: runs and skips keyed by (scale, input)."""
    path = RESULTS_DIR / f"{machine}.json"
    old = (json.loads(path.read_text()) if path.exists() else {}).get("inference")
    if not old:
        return report

    def key(r: dict[str, Any]) -> tuple:
        return (r["scale"], tuple(r["shape"]))

    new_keys = {key(r) for r in report["runs"]} | {key(s) for s in report["skipped"]}
    merged = dict(report)
    merged["runs"] = sorted([r for r in old["runs"] if key(r) not in new_keys] + report["runs"],
                            key=lambda r: (r["scale"], len(r["shape"]), r["shape"]))  # fmt: skip
    merged["skipped"] = [s for s in old["skipped"] if key(s) not in new_keys] + report["skipped"]
    merged["notes"] = list(dict.fromkeys(old.get("notes", []) + report["notes"]))
    merged["started"] = old.get("started", report["started"])
    merged["load_average_before"] = (
        f"{old.get('load_average_before')} (first run), {report['load_average_before']} (appended)"
    )
    merged["quick"] = old.get("quick", False) and report["quick"]
    return merged


def _ort_version() -> str:
    try:
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:
        return "not installed"


def _resolve(device: str) -> Any:
    from napari_superres.engine.device import resolve_device

    return resolve_device(device)


def _fmt(d: dict[str, Any], key: str, spec: str = ".2f") -> str:
    return format(d[key], spec) if key in d else "–"


def _summary_line(r: dict[str, Any]) -> str:
    t, o, u = r["tiled"], r.get("ort_untiled", {}), r.get("untiled", {})
    parts = [
        f"x{r['scale']} {'x'.join(map(str, r['shape']))}: upscale() [{r.get('backend', 'torch')}] "
        f"{t['out_mpx_s']:.2f} Mpx/s ({t['seconds']:.1f} s, {t['cpu_seconds']:.1f} CPU-s)",
        f"ORT untiled {_fmt(o, 'out_mpx_s')} ({_fmt(o, 'seconds', '.1f')} s, {_fmt(o, 'cpu_seconds', '.1f')} CPU-s)",
        f"torch untiled {_fmt(u, 'out_mpx_s')} ({_fmt(u, 'seconds', '.1f')} s, {_fmt(u, 'cpu_seconds', '.1f')} CPU-s)",
        f"upscale/ORT {_fmt(r, 'tiled_vs_ort_untiled', '.0%')} wall, {_fmt(r, 'tiled_vs_ort_untiled_cpu_time', '.0%')} CPU",
        f"upscale/torch {_fmt(r, 'tiled_vs_untiled', '.0%')} wall",
        f"tiles/plane {r['tiles_per_plane']}",
        *(
            [
                f"{r['forced_tiles']['tiles_per_plane']} forced tiles / one tile {_fmt(r, 'forced_vs_one_tile', '.0%')} wall, "
                f"{_fmt(r, 'forced_vs_one_tile_cpu_time', '.0%')} CPU"
            ]
            if "forced_tiles" in r
            else []
        ),
        f"RSS +{t['rss_increase_mb']:.0f} MB",
    ]
    return ", ".join(parts)


def _reference(report: dict[str, Any], r: dict[str, Any]) -> tuple[str, str]:
    """upscale() / ORT untiled (wall, CPU time); where untiled did not fit, against ORT's untiled
    rate (Mpx/s) at the largest input of the same scale where it ran (marked †)."""
    if "tiled_vs_ort_untiled" in r:
        return f"{r['tiled_vs_ort_untiled']:.0%}", f"{r['tiled_vs_ort_untiled_cpu_time']:.0%}"
    refs = [q for q in report["runs"] if q["scale"] == r["scale"] and "out_mpx_s" in q.get("ort_untiled", {})]
    if not refs:
        return "–", "–"
    q = max(refs, key=lambda q: math.prod(q["shape"]))
    o, t = q["ort_untiled"], r["tiled"]
    return f"{t['out_mpx_s'] / o['out_mpx_s']:.0%}†", f"{t['out_mpx_per_cpu_s'] / o['out_mpx_per_cpu_s']:.0%}†"


def _forced_cell(r: dict[str, Any]) -> str:
    """``n, one-tile ratio wall/CPU, ORT ratio wall/CPU`` of the forced-tile run, or ``–``."""
    if "forced_tiles" not in r or "forced_vs_one_tile" not in r:
        return "–"
    n = r["forced_tiles"]["tiles_per_plane"]
    one = f"{r['forced_vs_one_tile']:.0%}/{r['forced_vs_one_tile_cpu_time']:.0%}"
    ort = (
        f"{r['forced_vs_ort_untiled']:.0%}/{r['forced_vs_ort_untiled_cpu_time']:.0%}"
        if "forced_vs_ort_untiled" in r
        else "–"
    )
    return f"{n}, {one}, {ort}"


def render_markdown(report: dict[str, Any]) -> str:
    """The inference section of ``results/<machine>.md``."""
    lines = [
        "## Inference",
        "",
        f"Device `{report['device']}` ({report['device_name']}), {report['cpu_count']} CPUs, torch {report['torch']}, "
        f"onnxruntime {report.get('onnxruntime', '?')}; model `{report['model']}`; upscale() backend "
        f"`{report.get('backend', 'torch')}`; run {report['started']} -> {report['finished']}; "
        f"load average before/after {report['load_average_before']} / {report['load_average_after']}"
        f"{' (--quick)' if report['quick'] else ''}.",
        "",
        "Output megapixels per second (Mpx/s) by wall time and per CPU-second (all threads: on a shared machine "
        "a steadier measure of the work).  *upscale()*: the engine's full path on a uint16 image (normalise, "
        "tiles, network, uint16 output) with the automatic tile and backend (column *backend*).  *ORT untiled*: "
        "one ONNX Runtime forward of the same network (exported graph, graph optimisation ALL, intra-op threads "
        "= cores) on the whole normalised float32 image.  *torch untiled*: one eager torch forward "
        "(channels_last) of the same.  The three run interleaved in one process, best of *n* rounds.  "
        "*upscale/ORT*: ORT untiled time / upscale() time (goal >= 90 %); † where untiled does not fit in "
        "memory: upscale()'s rate against ORT's untiled rate at the largest input of that scale where it ran.  "
        "Tiles: the automatic tile edge and the balanced tiles per plane run.  *Forced tiles*: where a plane "
        "runs as one tile, upscale() also runs with the fewest tiles that tile it (2 × 2, as a memory limit just "
        "below the plane makes the planner choose; tiles per plane, then its time against the one-tile upscale() "
        "and against ORT untiled, wall / CPU): the cost of tiling where untiled fits.  *n*: timed rounds after "
        "the first run (best of all).  "
        "RSS: peak host memory of the first upscale() run above the process's state before it.",
        "",
        "| scale | input | backend | tile, tiles/plane | n | upscale() Mpx/s | ORT untiled Mpx/s | torch untiled Mpx/s "
        "| upscale/ORT wall | upscale/ORT CPU | upscale/torch wall | forced tiles: n, /one tile, /ORT (wall/CPU) "
        "| upscale() s (CPU s) | ORT s (CPU s) "
        "| torch s (CPU s) | upscale() Mpx/CPU-s | ORT Mpx/CPU-s | bicubic Mpx/s | RSS +MB | GPU peak MB | % bf16 peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        t, o, u = r["tiled"], r.get("ort_untiled", {}), r.get("untiled", {})
        vs_ort, vs_ort_cpu = _reference(report, r)

        def secs(d: dict[str, Any]) -> str:
            return f"{d['seconds']:.1f} ({d['cpu_seconds']:.1f})" if "seconds" in d else "–"

        cells = [
            f"×{r['scale']}", "×".join(map(str, r["shape"])), r.get("backend", "torch"),
            f"{r['tile']}, {r['tiles_per_plane']}", str(r.get("repeats", 1)), f"{t['out_mpx_s']:.2f}",
            _fmt(o, "out_mpx_s") if o.get("out_mpx_s") else "skipped",
            _fmt(u, "out_mpx_s") if u.get("out_mpx_s") else "skipped",
            vs_ort, vs_ort_cpu, _fmt(r, "tiled_vs_untiled", ".0%"), _forced_cell(r), secs(t), secs(o), secs(u),
            _fmt(t, "out_mpx_per_cpu_s", ".3f"), _fmt(o, "out_mpx_per_cpu_s", ".3f"),
            _fmt(r.get("bicubic", {}), "out_mpx_s", ".1f"), f"{t['rss_increase_mb']:.0f}",
            _fmt(t, "gpu_peak_mb", ".0f"), _fmt(t, "fraction_of_bf16_peak", ".1%"),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    untiled_skips = [(r, r["untiled"]["skipped"]) for r in report["runs"] if "skipped" in r.get("untiled", {})]
    if report["skipped"] or untiled_skips:
        lines += ["", "Skipped:", ""]
        for s in report["skipped"]:
            lines.append(f"- ×{s['scale']} {'×'.join(map(str, s['shape']))}: {s['reason']}")
        for r, why in untiled_skips:
            lines.append(f"- untiled passes (ORT and torch) at ×{r['scale']} {'×'.join(map(str, r['shape']))}: {why}")
    if report["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
