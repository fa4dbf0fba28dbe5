"""``napari-superres upscale-z IN OUT --factor 4``: axial (Z) super-resolution of a TIFF stack.

Trains a network on the stack's own lateral planes (self-supervised, see
:func:`napari_superres.engine.axial.upscale_z`) and writes the stack with ``factor`` times
as many Z planes.  The stack is held in memory (input, two float32 passes, output).
Voxel sizes are carried over with Z divided by the factor; ``--factor`` defaults to the
file's Z spacing over its Y pixel size when the file records both.  The output is written
to a temporary file beside it and renamed when complete; it is never the input.
``--save-model`` keeps the trained network for other stacks of the same instrument
(``--model`` reuses it, without training unless ``--steps`` is given).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..engine.options import DEFAULT_DEVICE, DEVICE_NAMES
from . import CLIError

TIFF_SUFFIXES = (".tif", ".tiff")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "upscale-z",
        help="axial (Z) super-resolution of a TIFF stack, trained on the stack itself",
        description="Upsample a TIFF stack along Z with a network trained on its own lateral (XY) planes "
        "degraded like Z (CARE-style isotropic reconstruction); applied to XZ and YZ slices and averaged.",
    )
    p.add_argument("input", help="input TIFF stack (.tif/.tiff/.ome.tif) with a Z axis")
    p.add_argument("output", help="output TIFF (.tif/.ome.tif); never the input")
    p.add_argument("--factor", type=int, default=None,
                   help="Z planes per input plane (default: the file's Z spacing / Y pixel size, rounded)")  # fmt: skip
    p.add_argument("--steps", type=int, default=None,
                   help="training steps (default: 60 fine-tuning the built-in start of the factor, 400 from "
                   "scratch where none is shipped, 0 with --model)")  # fmt: skip
    p.add_argument("--axes", default=None, help="axis letters of the input, e.g. ZYX, CZYX (default: from the file)")
    p.add_argument("--psf-ratio", type=float, default=None,
                   help="axial / lateral PSF width (default: the factor)")  # fmt: skip
    p.add_argument("--model", default=None, help="a saved axial model (.safetensors) to reuse")
    p.add_argument("--save-model", default=None, metavar="PATH", help="write the trained model here (.safetensors)")
    p.add_argument("--fuse", choices=("mean", "xz", "yz"), default="mean",
                   help="average the XZ and YZ passes (default) or run one of them")  # fmt: skip
    p.add_argument("--device", default=DEFAULT_DEVICE,
                   help=f"{', '.join(DEVICE_NAMES)} (default: {DEFAULT_DEVICE})")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    return p


class _Progress:
    """Prints ``done / total`` to stderr at most once a second."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.quiet or (now - self.last < 1.0 and done < total):
            return
        self.last = now
        print(f"\rupscale-z: {done}/{total} ({100 * done / max(total, 1):.0f} %)", end="", file=sys.stderr)
        if done >= total:
            print(file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io.atomic import atomic_path, check_output
    from ..io.tiff import _tiff_metadata, open_tiff, tiff_kind

    src, out = Path(args.input), Path(args.output)
    if not src.is_file():
        raise CLIError(f"input {src} not found (a TIFF stack)")
    if not src.name.lower().endswith(TIFF_SUFFIXES) or not out.name.lower().endswith(TIFF_SUFFIXES):
        raise CLIError("upscale-z reads and writes TIFF files (.tif, .tiff, .ome.tif)")
    check_output(out, [src], overwrite=args.overwrite)
    model_out = None
    if args.save_model:
        model_out = Path(args.save_model)
        if model_out.suffix != ".safetensors":
            model_out = model_out.with_name(model_out.name + ".safetensors")
        check_output(model_out, [src, out], overwrite=args.overwrite, what="model file")
    if args.factor is not None and args.factor < 2:
        raise CLIError(f"--factor must be at least 2, got {args.factor}")
    if args.steps is not None and args.steps < 0:
        raise CLIError(f"--steps must be >= 0, got {args.steps}")

    reader, file_axes, pixel, imagej, _ = open_tiff(src)
    axes = (args.axes or file_axes or "").upper()
    if not axes:
        raise CLIError(f"cannot tell the axes of {src}; pass --axes (e.g. ZYX)")
    if "Z" not in axes:
        raise CLIError(f"{src} has axes {axes} without Z; pass --axes if a plane axis is Z (e.g. --axes ZYX)")
    volume = reader[...]
    factor = args.factor
    scale = None
    if factor is None:
        if pixel.z is None or pixel.y is None:
            raise CLIError(f"{src} does not record its Z spacing and pixel size: pass --factor (e.g. --factor 4)")
        sizes = {"Z": pixel.z, "Y": pixel.y, "X": pixel.x or pixel.y}
        scale = tuple(sizes.get(a, 1.0) for a in axes)

    from ..engine.axial import upscale_z

    result = upscale_z(
        volume, factor, axes=axes, scale=scale, psf_ratio=args.psf_ratio, steps=args.steps,
        model=args.model, fuse=args.fuse, seed=args.seed, device=args.device, progress=_Progress(args.quiet),
    )  # fmt: skip
    if model_out is not None:
        result.model.save(model_out)  # written atomically
    pixel_out = replace(pixel, z=None if pixel.z is None else pixel.z / result.factor)
    kind = tiff_kind(out, axes, result.volume.dtype, imagej, pixel_out)
    metadata, kwargs = _tiff_metadata(kind, axes, pixel_out)
    import tifffile

    with atomic_path(out, protect=[src]) as tmp:
        tifffile.imwrite(tmp, np.ascontiguousarray(result.volume), imagej=kind == "imagej",
                         ome=kind == "ome", metadata=metadata, **kwargs)  # fmt: skip
    if not args.quiet:
        secs = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
        print(f"wrote {out}: {result.volume.shape} {result.volume.dtype}, x{result.factor} along Z ({secs})")
    return 0
