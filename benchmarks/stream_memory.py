"""Peak host memory of ``napari-superres upscale`` streaming a large zarr stack.

    python benchmarks/stream_memory.py --planes 200 --model bicubic     # the full (200, 2048, 2048) stack
    python benchmarks/stream_memory.py --planes 2 --model default       # the default SRNet, fewer planes

1. Writes a ``(planes, 2048, 2048)`` uint16 zarr, chunk by chunk (synthetic smooth
   content, so it compresses like microscopy does), chunks ``(1, 1024, 1024)``.
2. Runs the CLI ``upscale IN OUT --model M`` (x2) in a child process under
   ``/usr/bin/time -v`` (maximum resident set size of the child; psutil polling of
   the child when ``time`` is missing), goal: < 3 GB.
3. Checks that the output equals the in-memory ``upscale()`` of the same planes
   (whole planes, so chunk borders are included): exact for bicubic x2, within one count
   (a float rounding flip in very few pixels) for a network.

Results are merged into ``benchmarks/results/<machine>.json`` under
``"stream_memory"`` -> ``<model>`` and into the markdown file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import RESULTS_DIR, _load, _locked, machine_name, replace_md_section  # noqa: E402

EDGE = 2048
CHUNK = (1, 1024, 1024)
GOAL_GB = 3.0


def synthetic_plane(k: int, edge: int = EDGE) -> Any:
    """A smooth uint16 plane (blobs and ridges), different for every ``k``; cheap to make."""
    import numpy as np

    y, x = np.ogrid[0:edge, 0:edge]
    y, x = y.astype(np.float32) / edge, x.astype(np.float32) / edge
    phase = 0.37 * k
    v = np.sin(2 * np.pi * (3 * x + 2 * y) + phase) * np.cos(2 * np.pi * (5 * y - x) - phase) + 0.5 * np.sin(
        2 * np.pi * 17 * (x + 0.3 * np.sin(2 * np.pi * y + phase))
    )
    return (20000 + 15000 * v).astype(np.uint16)


def make_input(path: Path, planes: int) -> None:
    import zarr

    z = zarr.open_array(str(path), mode="w", shape=(planes, EDGE, EDGE), chunks=CHUNK, dtype="uint16")
    z.attrs.update({"axes": "ZYX", "pixel_size": {"x": 0.1, "y": 0.1, "z": 0.3, "unit": "µm"}})
    for k in range(planes):
        z[k] = synthetic_plane(k)


def run_cli(args: list[str]) -> tuple[float, float, str]:
    """Run the CLI in a child; returns (seconds, peak RSS in MB, how it was measured)."""
    cli = [sys.executable, "-m", "napari_superres.cli", "upscale", *args]
    t0 = time.perf_counter()
    if shutil.which("time") or Path("/usr/bin/time").exists():
        proc = subprocess.run(["/usr/bin/time", "-v", *cli], capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"upscale failed ({proc.returncode}): {proc.stderr[-2000:]}")
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        return seconds, int(m.group(1)) / 1024, "/usr/bin/time -v (max RSS of the CLI process)"
    import psutil

    child = psutil.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, child.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.05)
    seconds = time.perf_counter() - t0
    if child.returncode != 0:
        raise RuntimeError(f"upscale failed ({child.returncode})")
    return seconds, peak / 2**20, "psutil polling every 50 ms"


def check_planes(src: Path, out: Path, model_arg: str, planes: list[int]) -> dict[str, Any]:
    import numpy as np
    import zarr

    from napari_superres.engine import Engine

    engine = Engine(device="cpu")
    model = engine.prepare(model_arg)
    zin, zout = zarr.open_array(str(src), mode="r"), zarr.open_array(str(out), mode="r")
    worst, differing, total = 0, 0, 0
    for k in planes:
        expected = engine.upscale(zin[k], model, scale=2)
        got = zout[k]
        diff = np.abs(got.astype(np.int64) - expected)
        worst = max(worst, int(diff.max()))
        differing += int((diff > 0).sum())
        total += diff.size
    return {"planes_checked": planes, "max_abs_diff": worst, "fraction_differing": differing / total}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--planes", type=int, default=200)
    p.add_argument(
        "--model", default="bicubic", help="'bicubic', 'default' (SRNet(scale=2), random weights), a name or file"
    )
    p.add_argument("--workdir", default=None, help="where the zarr stores go (default: a temporary folder, removed)")
    p.add_argument("--machine", default=None)
    p.add_argument("--note", action="append", default=[])
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="superres-stream-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        src, out = work / "in.zarr", work / "out.zarr"
        model_arg = args.model
        if args.model == "default":
            import torch

            from napari_superres.engine import SRNet, save_model

            torch.manual_seed(0)
            model_arg = str(save_model(work / "default_x2", SRNet(scale=2)))
        t0 = time.perf_counter()
        make_input(src, args.planes)
        make_s = time.perf_counter() - t0
        print(f"wrote {src} ({args.planes}, {EDGE}, {EDGE}) uint16 in {make_s:.0f} s", flush=True)
        load_before = _load()
        cli_args = [str(src), str(out), "--model", model_arg, "--scale", "2", "--quiet", "--overwrite"]
        seconds, peak_mb, how = run_cli(cli_args)
        load_after = _load()
        out_mpx = args.planes * (2 * EDGE) ** 2 / 1e6
        print(f"upscale x2 with {args.model}: {seconds:.0f} s, {out_mpx / seconds:.2f} output Mpx/s, "
              f"peak RSS {peak_mb:.0f} MB ({how})", flush=True)  # fmt: skip
        check = sorted({0, args.planes // 2, args.planes - 1})
        check_result = check_planes(src, out, model_arg, check)
        print(f"check against in-memory upscale of planes {check}: max |diff| {check_result['max_abs_diff']}, "
              f"{check_result['fraction_differing']:.2e} of pixels differ", flush=True)  # fmt: skip
        entry = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "input_shape": [args.planes, EDGE, EDGE], "input_chunks": list(CHUNK), "scale": 2,
            "input_gb": args.planes * EDGE * EDGE * 2 / 1e9, "output_gb": args.planes * (2 * EDGE) ** 2 * 2 / 1e9,
            "seconds": seconds, "out_mpx_s": out_mpx / seconds, "peak_rss_mb": peak_mb,
            "peak_rss_measured_by": how, "goal_mb": GOAL_GB * 1024, "meets_goal": peak_mb < GOAL_GB * 1024,
            "check": check_result, "load_average_before": load_before, "load_average_after": load_after,
            "cpu_count": os.cpu_count(), "notes": args.note,
        }  # fmt: skip
        if not args.no_save:
            machine = args.machine or machine_name()
            save(machine, args.model, entry)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def save(machine: str, model: str, entry: dict[str, Any]) -> None:
    path = RESULTS_DIR / f"{machine}.json"
    with _locked(path):
        data = json.loads(path.read_text()) if path.exists() else {}
        data.setdefault("stream_memory", {})[model] = entry
        data["machine"] = machine
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    replace_md_section(machine, "stream_memory", render_markdown(data["stream_memory"]))
    print(f"wrote {path}")


def render_markdown(entries: dict[str, Any]) -> str:
    lines = [
        "## Streaming memory (`napari-superres upscale` zarr -> zarr, x2)",
        "",
        f"Peak host RSS of the CLI process (goal < {GOAL_GB:.0f} GB) while streaming a uint16 zarr stack of "
        f"{EDGE}×{EDGE} planes (chunks {CHUNK}); output checked against the in-memory `upscale()` of whole planes.",
        "",
        "| model | planes | input GB | output GB | time s | output Mpx/s | peak RSS MB | < 3 GB | max abs diff (fraction) | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, e in entries.items():
        c = e["check"]
        lines.append(
            f"| {model} | {e['input_shape'][0]} | {e['input_gb']:.2f} | {e['output_gb']:.2f} | {e['seconds']:.0f} | "
            f"{e['out_mpx_s']:.2f} | {e['peak_rss_mb']:.0f} | {'yes' if e['meets_goal'] else 'NO'} | "
            f"{c['max_abs_diff']} ({c['fraction_differing']:.1e}) | {e['load_average_before']} |"
        )
    notes = [f"{m}: {n}" for m, e in entries.items() for n in e.get("notes", [])]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
