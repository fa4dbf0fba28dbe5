"""``napari-superres upscale IN OUT``: upscale a TIFF or zarr image, streaming it chunk by chunk.

The input is opened lazily, the request planned once by the engine (``Engine.plan``: every
check before any work) and upscaled with ``Engine.run_lazy``
(:func:`napari_superres.engine.infer.lazy.upscale_dask`); the output's writer
(:func:`napari_superres.io.writers.writer_for`: ``.zarr`` folder, ``.tif``/``.ome.tif``
file) pulls it chunk by chunk (zarr) or plane by plane (TIFF), so host memory stays flat.
Outputs are written under a hidden temporary name beside OUT and renamed when complete
(:mod:`napari_superres.io.atomic`); an output that is, contains or lies inside the input
is refused.  Pixel sizes are carried over with Y and X divided by the scale; axes come
from the file unless ``--axes`` is given.  ``--scheduler ADDRESS`` runs the chunks on a
``dask.distributed`` cluster (workers need the paths on a shared file system).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from ..engine.options import (
    ADAPT_SECONDS,
    AUTO_TILE,
    DEFAULT_DEVICE,
    DEVICE_CHOICES,
    NORMALIZATION_MODES,
    PRECISIONS,
    reconcile_scale,
)
from . import CLIError

#: Above this many output bytes a TIFF output gets a warning (a zarr output is chunked and faster).
BIG_TIFF_WARNING_BYTES = 2**36
#: See :data:`napari_superres.io.stream.OUTPUT_CHUNK_EDGE` (repeated: ``--help`` imports nothing heavy).
OUTPUT_CHUNK_EDGE = 2048


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "upscale",
        help="upscale a TIFF or zarr image (streamed chunk by chunk)",
        description="Upscale a TIFF or zarr image with a super-resolution model, chunk by chunk "
        "(memory stays flat), keeping pixel-size metadata (divided by the scale).",
    )
    p.add_argument("input", help="input image: .tif/.tiff/.ome.tif file or .zarr directory")
    p.add_argument("output", help="output: .zarr directory, .ome.zarr (OME-NGFF multiscale image), "
                   "or .tif/.ome.tif file (written plane by plane)")  # fmt: skip
    p.add_argument("--model", "-m", default=None,
                   help="registered model name (see `napari-superres models`) or a .safetensors file "
                   "(default: the built-in default model)")  # fmt: skip
    p.add_argument("--scale", type=int, default=None, help="upscaling factor (fixed by the model; bicubic: any)")
    p.add_argument("--tile", type=int, default=None,
                   help=f"tile edge in input pixels ({AUTO_TILE} or unset: automatic, from free memory)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=None, help="tiles per network call (default: automatic)")
    p.add_argument(
        "--axes", default=None, help="axis letters of the input, e.g. ZYX, TCYX, YXS (default: from the file)"
    )
    p.add_argument("--device", default=DEFAULT_DEVICE, choices=DEVICE_CHOICES,
                   help=f"where the network runs (default: {DEFAULT_DEVICE})")  # fmt: skip
    p.add_argument("--normalization", choices=NORMALIZATION_MODES, default=None,
                   help="intensity normalisation (default: the model's)")  # fmt: skip
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="dask.distributed scheduler address (e.g. tcp://10.0.0.5:8786); default: local threads")  # fmt: skip
    p.add_argument("--chunk-planes", type=int, default=1, metavar="N",
                   help="planes per chunk along the innermost plane axis (default 1)")  # fmt: skip
    p.add_argument("--chunk-size", type=int, default=None, metavar="PX",
                   help=f"Y/X chunk edge in input pixels (default: about {OUTPUT_CHUNK_EDGE} output px)")  # fmt: skip
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local dask threads (default: 1 on CPU, 3 on a GPU); ignored with --scheduler")  # fmt: skip
    p.add_argument("--adapt", type=int, nargs="?", const=0, default=None, metavar="STEPS",
                   help="first adapt the model to this image (self-supervised fine-tuning, no high-res needed; "
                   "with --blur, through that PSF by consistency at its own scale, which must be within about 10 %% of the "
                   "true PSF, e.g. measured on beads; see napari_superres.adapt): "
                   "no STEPS: as many steps as the time budget plans (--adapt-seconds, default "
                   f"{ADAPT_SECONDS:g} s); STEPS: exactly that many, with no time limit unless "
                   "--adapt-seconds is given")  # fmt: skip
    p.add_argument("--adapt-seconds", type=float, default=None, metavar="S",
                   help="time budget of --adapt in seconds (implies --adapt): it plans the steps and ends them "
                   "when it runs out")  # fmt: skip
    p.add_argument("--blur", type=float, default=None, metavar="SIGMA",
                   help="the input's blur: Gaussian PSF sigma in its own pixels (default: estimated from the image; "
                   "conditioned models such as the built-ins)")  # fmt: skip
    p.add_argument("--noise", type=float, default=None, metavar="PHOTONS",
                   help="the input's noise: photons at its bright end (default: estimated from the image; "
                   "conditioned models)")  # fmt: skip
    p.add_argument("--ngff", choices=("0.5", "0.4"), default=None,
                   help="OME-NGFF version of a .ome.zarr output: 0.5 (zarr v3, default) or 0.4 (zarr v2, for "
                   "readers that predate 0.5)")  # fmt: skip
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="CPU arithmetic: fp32 (default), bf16 (AVX-512 BF16/AMX), int8 (VNNI, quantized once "
                   "and cached), auto (the fastest measured within 0.05 dB of fp32 on this CPU, else fp32)")  # fmt: skip
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the network over the eight flips and quarter turns of each tile (EDSR+'s x8): "
                   "8x the compute, the same memory, about +0.1 dB on noisy microscopy")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--trust-code", action="store_true",
                   help="allow a model package (bioimage.io .zip) to run Python code it brings (a "
                   "pytorch_state_dict architecture file); only for files whose source you trust")  # fmt: skip
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def _check_arguments(args: argparse.Namespace) -> None:
    if args.tile is not None and args.tile < 0:
        raise CLIError(f"--tile must be >= 0 ({AUTO_TILE}: automatic), got {args.tile}")
    for name in ("batch_size", "chunk_size", "workers", "chunk_planes", "scale"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if args.adapt is not None and args.adapt < 0:
        raise CLIError(f"--adapt takes a positive number of steps (or none: the time budget's), got {args.adapt}")
    if args.adapt_seconds is not None and not (math.isfinite(args.adapt_seconds) and args.adapt_seconds > 0):
        raise CLIError(f"--adapt-seconds must be a number of seconds > 0, got {args.adapt_seconds}")
    if args.blur is not None and not (math.isfinite(args.blur) and args.blur >= 0):
        raise CLIError(f"--blur must be a number >= 0 (PSF sigma in input pixels), got {args.blur}")
    if args.noise is not None and not (math.isfinite(args.noise) and args.noise > 0):
        raise CLIError(f"--noise must be a number > 0 (photons at the bright end), got {args.noise}")


def _degradation(args: argparse.Namespace) -> dict[str, float]:
    """``--blur`` / ``--noise`` as overrides of the estimate (``upscale(..., degradation=...)``)."""
    overrides = {}
    if args.blur is not None:
        overrides["blur_sigma"] = float(args.blur)
    if args.noise is not None:
        overrides["peak_photons"] = float(args.noise)
    return overrides


def _connect(address: str) -> Any:
    try:
        from distributed import Client
    except ImportError as e:
        raise CLIError("--scheduler needs the 'distributed' package: pip install distributed") from e
    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError) as e:
        raise CLIError(f"cannot connect to the dask scheduler at {address}: {e}") from e


#: ``--adapt`` fine-tunes on at most this central crop (px per side) of at most ADAPT_PLANES planes.
ADAPT_CROP = 1024
ADAPT_PLANES = 4


def _adapted(args: argparse.Namespace, model: Any, source: Any, scale: int, engine: Any) -> Any:
    """``--adapt [STEPS]`` / ``--adapt-seconds S``: the model fine-tuned on (a central crop of) the input.

    No STEPS: the steps the time budget plans (``S``, default ``adapt``'s 30 s), ended when it runs out; STEPS:
    exactly that many, limited in time only by an explicit ``--adapt-seconds``."""
    import numpy as np

    from ..engine.errors import SuperresError
    from ..engine.layout import parse_axes
    from ..engine.train.adapt import adapt

    array = source.array
    info = parse_axes(tuple(array.shape), source.axes)
    crop: list[Any] = [slice(None)] * array.ndim
    for ax in info.plane_axes:
        crop[ax] = slice(0, ADAPT_PLANES)
    for ax in (info.y, info.x):
        n = array.shape[ax]
        start = max(0, (n - ADAPT_CROP) // 2)
        crop[ax] = slice(start, start + ADAPT_CROP)
    sample = np.asarray(array[tuple(crop)])
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=args.adapt or None, unit="step", desc="adapting", dynamic_ncols=True, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        assert bar is not None
        bar.total = total
        bar.update(done - bar.n)

    steps = args.adapt or None  # None: what the time budget plans
    budget = {} if args.adapt_seconds is None and steps is None else {"seconds": args.adapt_seconds}
    try:
        adapted = adapt(
            sample, model if model.name != "bicubic" else None, scale=scale, axes=source.axes, steps=steps,
            engine=engine, progress=progress if bar is not None else None,
            blur_sigma=args.blur or None,  # the stated PSF (0: sharp, nothing to fit through)
            **budget,
        )  # fmt: skip
    except (SuperresError, ValueError) as e:  # the family (bad request, cancelled) or a plain check
        raise CLIError(f"--adapt: {e}") from None
    finally:
        if bar is not None:
            bar.close()
    return adapted


def run(args: argparse.Namespace) -> int:
    from ..io.atomic import check_output
    from ..io.writers import OutputInfo, writer_for

    src_path, out = Path(args.input), Path(args.output)
    _check_arguments(args)
    if not src_path.exists():
        raise CLIError(f"input not found: {src_path}")
    writer = writer_for(out)
    if args.ngff is not None:
        from ..io.ome_zarr import OmeZarrWriter

        if not isinstance(writer, OmeZarrWriter):
            raise CLIError(f"--ngff applies to .ome.zarr outputs only, not {out.name}")
        writer = OmeZarrWriter(ngff_version=args.ngff)
    check_output(out, [src_path], overwrite=args.overwrite)

    from ..engine.infer.lazy import global_value_ranges, with_one_condition
    from ..engine.registry import Engine
    from ..engine.request import UpscaleRequest
    from ..io.runner import ComputeRunner
    from ..io.stream import LOCAL_WORKERS, open_source

    engine = Engine(device=args.device)  # --device cuda without a GPU: DeviceUnavailableError, one line
    request = UpscaleRequest(
        model=args.model, scale=args.scale, tile=args.tile, batch_size=args.batch_size, device=args.device,
        normalization=args.normalization, precision=args.precision, degradation=_degradation(args),
        trust_code=args.trust_code, self_ensemble=args.self_ensemble,
    )  # fmt: skip
    model = engine.get(request.model, trust_code=request.trust_code)
    scale = reconcile_scale(args.scale, model.scale, model.name)  # the output's chunks are sized by it
    source = open_source(
        src_path, scale=scale, halo=max(model.receptive_field, 2), chunk_planes=args.chunk_planes,
        chunk_size=args.chunk_size, axes=args.axes,
    )  # fmt: skip
    if args.adapt is not None or args.adapt_seconds is not None:
        request = request.replace(model=_adapted(args, model, source, scale, engine))
    job = engine.plan(source.array, request.replace(axes=source.axes))  # every check, once, before any work
    provenance: dict[str, Any] = {"model": job.model.name, "scale": job.scale, "source": str(src_path)}
    if job.self_ensemble:
        provenance["self_ensemble"] = True
    ranges = global_value_ranges(source.array, job.normalization, job.axes.channel)  # one pass, if any
    job, condition = with_one_condition(source.array, job, ranges)
    if condition is not None:  # a conditioned model: estimated once, reported, used for every chunk
        from ..engine.infer.blur_check import trained_blur_ceiling
        from ..engine.infer.conditioning import describe_condition

        provenance["degradation"] = condition.to_dict()
        if not args.quiet:
            print(f"degradation: {describe_condition(condition, trained_blur_ceiling(job.model))}", file=sys.stderr)
    client = _connect(args.scheduler) if args.scheduler else None
    try:
        result = engine.run_lazy(source.array, job, value_range=ranges)
        info = job.axes
        workers = args.workers or LOCAL_WORKERS.get(engine.device.type, 2)
        runner = ComputeRunner(client, quiet=args.quiet, workers=workers)
        if not args.quiet:
            print(f"{src_path} {source.array.shape} {source.array.dtype} axes {info.axes} -> {out} "
                  f"{result.shape}, model {job.model.describe()}, {result.npartitions} chunks", file=sys.stderr)  # fmt: skip
        letters = info.axes
        if writer.planes_first:  # plane axes first, then Y, X (, S)
            order = info.plane_axes + (info.y, info.x) + ((info.rgb,) if info.rgb is not None else ())
            letters = "".join(info.axes[i] for i in order)
            result = result.transpose(order)
            if math.prod(result.shape) * result.dtype.itemsize > BIG_TIFF_WARNING_BYTES:
                print("warning: writing a >64 GB TIFF; a .zarr output is faster and chunked", file=sys.stderr)
        output = OutputInfo(
            axes=letters, pixel_size=source.pixel_size.upscaled(scale), source_attrs=source.attrs,
            provenance=provenance,
            source_imagej=source.imagej, chunk_planes=args.chunk_planes,
        )  # fmt: skip
        writer.write(result, out, output, runner)
    finally:
        if client is not None:
            client.close()
    return 0
