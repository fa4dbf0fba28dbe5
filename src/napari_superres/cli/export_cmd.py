"""``napari-superres export MODEL --onnx OUT.onnx | --bioimageio OUT.zip``: a model in another format.

One option per target format; each is a function in :data:`TARGETS` taking
``(model, out_path, args)`` and returning a one-line summary, so adding a format is
an option plus an entry there.  Every file is written atomically (temporary file,
then rename) and never over the model file it reads.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import CLIError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX or as a bioimage.io model package",
        description="Export a model (a registered name such as the built-in superres-x2, or a .safetensors "
        "file) to other formats. ONNX: float32 input (N, C, H, W) named 'input' with dynamic N, H and W; "
        "output 'output' (N, C, scale*H, scale*W); values normalised to [0, 1] as the model file's "
        "normalisation says.",
    )
    p.add_argument("model", help="model name (see `napari-superres models`) or .safetensors path")
    p.add_argument("--onnx", metavar="OUT.onnx", help="write an ONNX graph here")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (>= 17; default 17, dynamo exporter 18)")
    p.add_argument(
        "--exporter", choices=("legacy", "dynamo"), default="legacy",
        help="torch.onnx exporter: the TorchScript-based one (default, fast) or torch.export-based",
    )  # fmt: skip
    p.add_argument(
        "--bioimageio", metavar="OUT.zip",
        help="write a BioImage Model Zoo (bioimage.io spec 0.5) model package: pytorch_state_dict + torchscript "
        "+ onnx weights, test tensors, cover, model card; checked with bioimageio.core.test_model with --test",
    )  # fmt: skip
    p.add_argument("--test", action="store_true", help="with --bioimageio: run bioimageio.core's test_model on it")
    p.add_argument("--name", default=None, help="with --bioimageio: the package's name (default: the model's)")
    p.add_argument(
        "--author", action="append", metavar="'NAME [<GITHUB_USER>]'",
        help="with --bioimageio: an author (repeat for several; default: napari-deep-superres developers)",
    )  # fmt: skip
    p.add_argument(
        "--maintainer", action="append", metavar="GITHUB_USER",
        help="with --bioimageio: a maintainer's GitHub user, or 'Name <github_user>' (repeat for several; "
        "default: none; a BioImage Model Zoo upload needs one)",
    )  # fmt: skip
    p.add_argument("--package-version", default=None, metavar="X.Y.Z",
                   help="with --bioimageio: the package's version (default 0.1.0)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace existing output files")
    return p


def _export_onnx(model: Any, out: Path, args: argparse.Namespace) -> str:
    from ..engine.infer.onnx_backend import export_onnx

    if args.opset is not None and args.opset < 17:
        raise CLIError(f"--opset must be >= 17, got {args.opset}")
    data = export_onnx(model.net, out, in_channels=model.in_channels or 1, opset=args.opset, exporter=args.exporter)
    return f"wrote {out} (ONNX, {len(data) / 1e6:.1f} MB, x{model.scale}, {model.in_channels or 1} channel(s) in)"


def _export_bioimageio(model: Any, out: Path, args: argparse.Namespace) -> str:
    from ..io.bioimageio import export_bioimageio
    from ..io.bioimageio_metadata import DEFAULT_AUTHORS, DEFAULT_VERSION

    export_bioimageio(
        model, out, overwrite=args.force, test=args.test, name=args.name,
        authors=args.author or DEFAULT_AUTHORS, maintainers=args.maintainer or (),
        version=args.package_version or DEFAULT_VERSION,
    )  # fmt: skip
    tested = ", bioimageio.core test_model passed" if args.test else ""
    return f"wrote {out} (bioimage.io model package, x{model.scale}{tested})"


#: option name (``args`` attribute) -> writer
TARGETS: dict[str, Callable[[Any, Path, argparse.Namespace], str]] = {
    "onnx": _export_onnx,
    "bioimageio": _export_bioimageio,
}


def _check_output(out: Path, inputs: list[Path], force: bool) -> None:
    for src in inputs:
        if out.resolve() == src.resolve() or (out.exists() and os.path.samefile(src, out)):
            raise CLIError(f"{out} is the model file being exported; choose another output path")
    if out.exists() and not force:
        raise CLIError(f"{out} exists; choose another path or pass --force to replace it")
    if out.is_dir():
        raise CLIError(f"{out} is a folder; give a file path")
    if not out.parent.exists():
        raise CLIError(f"the folder {out.parent} does not exist")


def run(args: argparse.Namespace) -> int:
    wanted = {name: Path(getattr(args, name)) for name in TARGETS if getattr(args, name, None)}
    if not wanted:
        raise CLIError(f"nothing to export: give {' or '.join('--' + n for n in TARGETS)}")
    from ..engine.registry import BUILTIN_MODEL_DIR, Engine

    candidates = [Path(args.model), BUILTIN_MODEL_DIR / f"{args.model}.safetensors"]
    inputs = [p for p in candidates if p.is_file()]
    for out in wanted.values():
        _check_output(out, inputs, args.force)
    engine = Engine(device="cpu")
    model = engine.get(args.model)
    if next(iter(model.net.parameters()), None) is None:
        raise CLIError(f"model {model.name!r} has no network to export (the bicubic baseline); choose a trained model")
    for name, out in wanted.items():
        print(TARGETS[name](model, out, args))
    return 0
