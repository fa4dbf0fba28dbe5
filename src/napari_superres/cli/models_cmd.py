"""``napari-superres models``: list the registered models (name, scale, channels, source)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "models",
        help="list the available models",
        description="List the models `upscale --model NAME` accepts: built-ins and the bicubic baseline. "
        "Any .safetensors model file can be passed as a path too.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    return p


def model_rows() -> list[dict[str, Any]]:
    """One dict per registered model: name, scale, in_channels, source, default, parameters."""
    from ..engine.registry import Engine

    engine = Engine(device="cpu")
    rows = []
    for name in engine.names():
        model = engine.get(name)
        rows.append({
            "name": name,
            "scale": model.scale,
            "in_channels": model.in_channels,
            "source": model.source,
            "default": name == engine.default_model,
            "parameters": sum(p.numel() for p in model.net.parameters()),
        })  # fmt: skip
    return rows


def run(args: argparse.Namespace) -> int:
    rows = model_rows()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    table = [("NAME", "SCALE", "CHANNELS", "PARAMS", "SOURCE")]
    for r in rows:
        table.append((
            r["name"] + (" *" if r["default"] else ""),
            f"x{r['scale']}" if r["scale"] else "any",
            str(r["in_channels"]) if r["in_channels"] else "any",
            f"{r['parameters']:,}",
            r["source"],
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print("(* = default; any .safetensors model file can also be passed to --model)")
    return 0
