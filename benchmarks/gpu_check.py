"""GPU check: what the CUDA path does, in under 8 minutes on one GPU; a CPU-only dry run elsewhere.

On a CUDA machine it measures, on the built-in x2 model (or ``--model``):

1. **network throughput** on one ``--size``² input (output Mpx/s, median of ``--repeats``
   after warm-up, ``torch.cuda.synchronize`` around each): fp32 NCHW, fp32 channels_last,
   bf16 autocast channels_last, and ``torch.compile`` (bf16 autocast, channels_last);
   the peak memory of each (``torch.cuda.max_memory_allocated`` after a reset);
2. **upscale() end to end** on a ``--size``² uint16 image with ``device="cuda"`` (the
   engine's tiles, normalisation, bf16 autocast) and its peak memory, and once with ``self_ensemble=True``;
3. **equality with the CPU path**: the same uint16 crop upscaled on the CPU (fp32) and on
   CUDA (fp32 with TF32 off, the engine's default bf16, and bf16 with ``self_ensemble=True``
   against the CPU's self-ensemble): largest difference in counts
   and PSNR of CUDA against CPU; fp32 must be within :data:`FP32_MAX_COUNTS` counts,
   bf16 above :data:`BF16_MIN_PSNR` dB;
4. **training steps per second**: the model's architecture, L1 loss, Adam, batches of
   ``--batch`` 64² low-res patches, bf16 autocast (as the Trainer on CUDA), and peak memory;
5. **upscale_z** x4 on a 16 x 128 x 128 stack on CUDA (fine-tuning plus both passes), seconds.

Figures are printed and appended to ``benchmarks/results/gpu_check.md`` (``--out``) with
the device name, torch/CUDA versions and the date.  Each part checks the time left
(``--budget-s``, default 420 s) and is skipped with a reason when it would not fit.
Exit status 1 when a check fails (CPU/CUDA equality, a variant that errors), else 0.

Without CUDA (or with ``--dry-run``) it runs the same code on the CPU at tiny sizes (a
smoke test of the script itself: the test suite runs it), prints ``SKIP`` with the reason
for every CUDA-only part, writes nothing unless ``--out`` is given, and exits 0.

Usage::

    python benchmarks/gpu_check.py                 # on a CUDA machine: the full check (< 8 min)
    python benchmarks/gpu_check.py --dry-run       # anywhere: CPU-only smoke run, seconds
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "gpu_check.md"
#: CPU vs CUDA tolerances: fp32 (TF32 off) within this many uint16 counts; bf16 above this PSNR (dB).
FP32_MAX_COUNTS = 2
BF16_MIN_PSNR = 45.0
#: The whole CUDA check must end within this many seconds (the issue's limit is 8 minutes).
DEFAULT_BUDGET_S = 420.0


class Report:
    """Collects ``(part, figure, value)`` rows and SKIP reasons; prints each as it comes."""

    def __init__(self, budget_s: float) -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.failures: list[str] = []
        self.t0 = time.perf_counter()
        self.budget_s = budget_s

    def add(self, part: str, figure: str, value: str) -> None:
        self.rows.append((part, figure, value))
        print(f"{part:24s} {figure:40s} {value}", flush=True)

    def skip(self, part: str, reason: str) -> None:
        self.add(part, "SKIP", reason)

    def fail(self, part: str, message: str) -> None:
        self.failures.append(f"{part}: {message}")
        self.add(part, "FAIL", message)

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t0)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: Any) -> str:
    import torch

    if device.type != "cuda":
        return "n/a (CPU)"
    return f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB"


def _time(fn: Callable[[], Any], device: Any, repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after one warm-up run."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def network_throughput(report: Report, model: Any, device: Any, size: int, repeats: int, compile_ok: bool) -> None:
    """Part 1: the network alone on one ``size``² input, four ways."""
    import copy

    import torch

    scale = model.scale
    out_mpx = (size * scale) ** 2 / 1e6
    x = torch.rand(1, 1, size, size, device=device)
    base = copy.deepcopy(model.net).to(device).eval()
    nhwc = copy.deepcopy(base).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    bf16 = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16

    def run(net: Any, inp: Any, autocast: bool) -> Callable[[], Any]:
        def fn() -> Any:
            with torch.inference_mode(), torch.autocast(device.type, dtype=bf16, enabled=autocast):
                return net(inp)

        return fn

    variants: list[tuple[str, Callable[[], Any]]] = [
        ("fp32 NCHW", run(base, x, False)),
        ("fp32 channels_last", run(nhwc, x_cl, False)),
        (f"{str(bf16).split('.')[-1]} autocast channels_last", run(nhwc, x_cl, True)),
    ]
    if compile_ok:
        variants.append(("compile bf16 channels_last", run(torch.compile(nhwc, dynamic=False), x_cl, True)))
    else:
        report.skip("network", "torch.compile: measured on CUDA only (the CPU dry run skips its compile time)")
    for name, fn in variants:
        if report.left() < 30:
            report.skip("network", f"{name}: out of time budget")
            continue
        _peak_reset(device)
        t0 = time.perf_counter()
        try:
            seconds = _time(fn, device, repeats)
        except Exception as exc:  # noqa: BLE001 - e.g. a compile failure: reported as a FAIL, the rest goes on
            report.fail("network", f"{name}: {type(exc).__name__}: {exc}")
            continue
        report.add("network", f"{name} ({size}² -> x{scale})",
                   f"{out_mpx / seconds:,.1f} out Mpx/s ({seconds * 1e3:.1f} ms), peak {_peak_mib(device)}, "
                   f"first+{repeats} runs {time.perf_counter() - t0:.1f} s")  # fmt: skip


def _image(size: int, seed: int = 0) -> np.ndarray:
    from napari_superres.engine.samples import synthetic_pair

    low, _ = synthetic_pair(shape=(size * 2, size * 2), scale=2, seed=seed)
    return low


def upscale_end_to_end(report: Report, engine: Any, model: Any, device: Any, size: int, repeats: int) -> None:
    """Part 2: ``Engine.upscale`` on a uint16 image on ``device``."""
    image = _image(size)
    scale = model.scale
    _peak_reset(device)
    seconds = _time(lambda: engine.upscale(image, model, device=device), device, repeats)
    report.add("upscale()", f"{size}² uint16 on {device.type}",
               f"{(size * scale) ** 2 / 1e6 / seconds:,.1f} out Mpx/s ({seconds:.3f} s), peak {_peak_mib(device)}")  # fmt: skip
    seconds = _time(lambda: engine.upscale(image, model, device=device, self_ensemble=True), device, 1)
    report.add("upscale()", f"{size}² uint16 on {device.type}, self_ensemble=True",
               f"{(size * scale) ** 2 / 1e6 / seconds:,.1f} out Mpx/s ({seconds:.3f} s)")  # fmt: skip


def _psnr_counts(a: np.ndarray, b: np.ndarray) -> float:
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(diff**2))
    span = float(b.max()) - float(b.min()) or 1.0
    return float("inf") if mse == 0 else 10 * np.log10(span**2 / mse)


def equality(report: Report, engine: Any, model: Any, device: Any, size: int) -> None:
    """Part 3: CUDA against the CPU path on one uint16 crop (fp32 with TF32 off, and bf16)."""
    import torch

    image = _image(size, seed=1)
    cpu = engine.upscale(image, model, device="cpu", precision="fp32")
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        net = engine.prepare(model, device).net
        with torch.inference_mode():  # fp32 on CUDA: the network without autocast, then the engine's mapping
            from napari_superres.engine.normalization import denormalize, intensity_range, normalize

            lo, hi = intensity_range(image, model.normalization)
            x = torch.from_numpy(normalize(image, lo, hi))[None, None].to(device)
            fp32 = denormalize(net(x)[0, 0].float().cpu().numpy(), lo, hi, image.dtype)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
    bf16 = engine.upscale(image, model, device=device)
    cpu_x8 = engine.upscale(image, model, device="cpu", precision="fp32", self_ensemble=True)
    bf16_x8 = engine.upscale(image, model, device=device, self_ensemble=True)
    for name, result, reference in (
        ("fp32, TF32 off", fp32, cpu),
        ("engine default (bf16 autocast)", bf16, cpu),
        ("self_ensemble=True (bf16 autocast)", bf16_x8, cpu_x8),
    ):
        counts = int(np.abs(result.astype(np.int64) - reference.astype(np.int64)).max())
        psnr = _psnr_counts(result, reference)
        line = f"max |diff| {counts} counts, PSNR vs CPU {psnr:.1f} dB"
        ok = counts <= FP32_MAX_COUNTS if name.startswith("fp32") else psnr >= BF16_MIN_PSNR
        limit = f"<= {FP32_MAX_COUNTS} counts" if name.startswith("fp32") else f">= {BF16_MIN_PSNR} dB"
        if ok:
            report.add("equal to CPU", f"{name} ({size}²)", f"{line} (ok: {limit})")
        else:
            report.fail("equal to CPU", f"{name} ({size}²): {line}, needs {limit}")


def training_speed(report: Report, model: Any, device: Any, batch: int, steps: int) -> None:
    """Part 4: training steps per second of the model's architecture (L1, Adam, bf16 autocast on CUDA)."""
    import copy

    import torch

    from napari_superres.engine.device import autocast
    from napari_superres.engine.train.losses import l1_loss

    net = copy.deepcopy(model.net).to(device).train()
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    s = model.scale
    x = torch.rand(batch, 1, 64, 64, generator=g).to(device)
    y = torch.rand(batch, 1, 64 * s, 64 * s, generator=g).to(device)

    def step() -> None:
        with autocast(device):
            loss = l1_loss(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (cuDNN autotune, allocator)
    _peak_reset(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - t0
    report.add("training", f"batch {batch} x 64² -> x{s}, {steps} steps",
               f"{steps / seconds:,.1f} steps/s, peak {_peak_mib(device)}")  # fmt: skip


def axial(report: Report, device: Any, shape: tuple[int, int, int], steps: int | None) -> None:
    """Part 5: ``upscale_z`` x4 end to end on a synthetic stack."""
    from napari_superres.engine.axial import upscale_z
    from napari_superres.engine.samples3d import anisotropic_acquisition, synthetic_object_3d

    z, h, w = shape
    acq = anisotropic_acquisition(synthetic_object_3d((z * 4, h, w), seed=0), 4, seed=0)
    _peak_reset(device)
    t0 = time.perf_counter()
    result = upscale_z(acq.low_z, 4, steps=steps, device=device)
    _sync(device)
    report.add("upscale_z", f"x4 on {z}x{h}x{w} ({len(result.losses)} steps)",
               f"{time.perf_counter() - t0:.2f} s, peak {_peak_mib(device)}")  # fmt: skip


def write_markdown(path: Path, report: Report, device_name: str, args: argparse.Namespace) -> None:
    import torch

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {stamp}: {device_name}",
        "",
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, size {args.size}², "
        f"{'dry run (CPU) ' if args.dry_run else ''}total {time.perf_counter() - report.t0:.0f} s, "
        f"load average {os.getloadavg()[0]:.1f}.",
        "",
        "| part | figure | value |",
        "|---|---|---|",
        *(f"| {p} | {f} | {v} |" for p, f, v in report.rows),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.is_file() else "# GPU check (`benchmarks/gpu_check.py`)\n\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(old + "\n".join(lines) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="CPU only, tiny sizes: skip the CUDA parts (seconds)")
    p.add_argument("--model", default=None, help="model name or .safetensors (default: the built-in x2)")
    p.add_argument("--size", type=int, default=1024, help="input edge (px) of the throughput runs")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=16, help="training batch")
    p.add_argument("--steps", type=int, default=50, help="timed training steps")
    p.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S)
    p.add_argument("--out", type=Path, default=None, help=f"append figures here (default on CUDA: {RESULTS})")
    args = p.parse_args(argv)

    import torch

    from napari_superres.engine.registry import Engine

    report = Report(args.budget_s)
    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda:
        reason = "--dry-run" if args.dry_run else "no CUDA device (torch.cuda.is_available() is False)"
        args.dry_run = True
        args.size, args.repeats, args.batch, args.steps = min(args.size, 64), 1, 2, 2
        print(f"CPU-only dry run ({reason}): CUDA parts are skipped", flush=True)
    device = torch.device("cuda" if cuda else "cpu")
    engine = Engine(device=device)
    model = engine.get(args.model or next(n for n in engine.names() if n.endswith("x2")))
    device_name = torch.cuda.get_device_name(device) if cuda else "CPU (dry run)"
    print(f"device: {device_name}; model {model.name}", flush=True)

    network_throughput(report, model, device, args.size, args.repeats, compile_ok=cuda)
    upscale_end_to_end(report, engine, model, device, args.size, args.repeats)
    if cuda:
        equality(report, engine, model, device, min(args.size, 512))
    else:
        report.skip("equal to CPU", "needs CUDA (the CPU path is the reference)")
    training_speed(report, model, device, args.batch, args.steps)
    if not cuda:
        report.skip("upscale_z", "measured on CUDA only (the CPU figures are in benchmarks/results/axial.md)")
    elif report.left() > 60:
        axial(report, device, (16, 128, 128), None)
    else:
        report.skip("upscale_z", "out of time budget")
    out = args.out or (RESULTS if cuda else None)
    if out is not None:
        write_markdown(out, report, device_name, args)
        print(f"appended to {out}")
    print(f"total {time.perf_counter() - report.t0:.1f} s; {len(report.failures)} failure(s)")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
