"""``napari-superres train``: train a super-resolution model on image files from the command line.

Examples::

    # registered pairs (low-res files matched to high-res files by sorted order)
    napari-superres train --hr data/hr --lr data/lr --scale 2 --steps 5000 --out my_x2.safetensors

    # high-res images only: low-res patches are synthesised (randomised degradation)
    napari-superres train --hr stack.tif --axes ZYX --scale 2 --preset perceptual --out x2.safetensors \\
        --checkpoint run.ckpt --checkpoint-every 500 --log run.json

    # continue a stopped run (settings come from the checkpoint; --steps may extend it)
    napari-superres train --hr data/hr --lr data/lr --resume run.ckpt --out my_x2.safetensors

    # several GPUs (or CPU processes): one process per device, gradients averaged
    # (torchrun's own options shadow abbreviations: write --log-json rather than --log there)
    torchrun --nproc_per_node 2 -m napari_superres.cli train --hr data/hr --lr data/lr --out x2.safetensors \
        --log-json run.json

PATH arguments are image files (``.tif``/``.tiff`` through tifffile, ``.png``/``.jpg``/
``.bmp`` through Pillow) or folders of them.  Ctrl-C stops after the current step,
writes the checkpoint (if any) and the model trained so far.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.options import (
    DEFAULT_NORMALIZATION,
    DEVICE_CHOICES,
    GAN_LOSSES,
    LOSS_PRESET_NAMES,
    LOSS_TERMS,
    NORMALIZATION_MODES,
    SCHEDULES,
    SUPPORTED_SCALES,
    TIME_BUDGET_STEP_CAP,
    TRAIN_DEFAULTS,
    UPSAMPLING_MODES,
)
from . import CLIError

if TYPE_CHECKING:
    from ..engine.train.trainer import TrainConfig, Trainer

TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES

#: defaults of the options that a resumed run takes from its checkpoint instead
#: (TrainConfig's own defaults, written once in engine/options.py: importing them needs no torch)
_DEFAULTS: dict[str, Any] = {**asdict(TRAIN_DEFAULTS), "normalization": DEFAULT_NORMALIZATION["mode"]}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a super-resolution model on image pairs (or high-res images)",
        description="Train a super-resolution network on low-/high-resolution image pairs, or on high-resolution "
        "images alone (low-res patches synthesised with a randomised degradation), and save it as a model file.",
    )
    d = _DEFAULTS
    io = p.add_argument_group("data")
    io.add_argument("--hr", nargs="+", required=True, metavar="PATH", help="high-res image files or folders")
    io.add_argument("--lr", nargs="+", default=None, metavar="PATH",
                    help="matching low-res image files or folders (paired by sorted order); omit to synthesise")  # fmt: skip
    io.add_argument(
        "--axes", default=None, help="axis letters of every image, e.g. YX, ZYX, YXS (default: from the file)"
    )
    io.add_argument("--in-channels", type=int, choices=(1, 3), default=None,
                    help="1: grayscale / RGB luminance; 3: RGB network (default 1)")  # fmt: skip
    io.add_argument("--normalization", choices=NORMALIZATION_MODES, default=None,
                    help=f"intensity normalisation (default {d['normalization']})")  # fmt: skip
    io.add_argument("--degradation", default=None, metavar="JSON",
                    help="high-res only: DegradationConfig settings as JSON, e.g. "
                    "'{\"methods\": [\"area\"], \"noise_gaussian\": [0, 0.02]}' (default: randomised area/"
                    "bicubic/bilinear/nearest + blur)")  # fmt: skip
    io.add_argument("--degradation-from", default=None, metavar="LR_FILE",
                    help="high-res only: fit the synthetic degradation's blur and noise to this unpaired low-res "
                    "example (another field of view); see napari_superres.estimate_degradation")  # fmt: skip
    io.add_argument("--val-fraction", type=float, default=None,
                    help=f"fraction of each image's columns held out for validation (default {d['val_fraction']})")  # fmt: skip
    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, metavar="FILE", help="model file to write (.safetensors)")
    out.add_argument("--log", "--log-json", dest="log", metavar="LOG.json", default=None,
                     help="write the loss and validation curves as JSON (under torchrun spell it --log-json)")  # fmt: skip
    out.add_argument("--checkpoint", metavar="CKPT", default=None, help="checkpoint file (written atomically)")
    out.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                     help="checkpoint every N steps (default: only at the end or on stop)")  # fmt: skip
    out.add_argument("--resume", metavar="CKPT", default=None, help="continue training from a checkpoint")
    out.add_argument("--overwrite", action="store_true", help="replace --out, --checkpoint and --log if they exist")
    out.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    t = p.add_argument_group("training")
    t.add_argument(
        "--scale", type=int, default=None, choices=SUPPORTED_SCALES, help=f"upscaling factor (default {d['scale']})"
    )
    t.add_argument("--preset", choices=LOSS_PRESET_NAMES, default=None,
                   help=f"loss recipe (default {d['preset']})")  # fmt: skip
    t.add_argument("--weight", action="append", default=[], metavar="TERM=W",
                   help=f"override a loss weight: {', '.join(LOSS_TERMS)} (repeatable)")  # fmt: skip
    t.add_argument("--gan-loss", choices=GAN_LOSSES, default=None)
    t.add_argument("--pretrain-steps", type=int, default=None, help="pixel-only steps first (gan default: steps/4)")
    t.add_argument("--steps", type=int, default=None, help=f"optimisation steps (default {d['steps']})")
    t.add_argument("--seconds", type=float, default=None, metavar="S",
                   help="time budget in seconds (validation included): stop at --steps or S, whichever comes "
                   "first (without --steps: when the time is up); the learning-rate schedule stretches over it")  # fmt: skip
    t.add_argument("--batch-size", type=int, default=None, help=f"patches per step (default {d['batch_size']})")
    t.add_argument(
        "--patch-size", type=int, default=None, help=f"high-res patch edge in px (default {d['patch_size']})"
    )
    t.add_argument(
        "--learning-rate", type=float, default=None, help=f"Adam learning rate (default {d['learning_rate']})"
    )
    t.add_argument("--schedule", choices=SCHEDULES, default=None)
    t.add_argument("--ema", type=float, default=None, help=f"EMA decay of the weights (0 = off; default {d['ema']})")
    t.add_argument("--val-every", type=int, default=None, help=f"validate every N steps (default {d['val_every']})")
    t.add_argument("--device", choices=DEVICE_CHOICES, default=None)
    t.add_argument("--seed", type=int, default=None)
    n = p.add_argument_group("network")
    n.add_argument("--init", default=None, metavar="MODEL|none",
                   help=f"starting network: a model file, 'builtin' (the built-in model of the scale) or 'none' "
                   f"(a new network of --channels/--blocks) (default {d['init']}; --channels/--blocks/--upsampling "
                   f"ask for a new network)")  # fmt: skip
    n.add_argument("--channels", type=int, default=None, help="feature channels (default 32)")
    n.add_argument("--blocks", type=int, default=None, help="residual blocks (default 4)")
    n.add_argument("--upsampling", choices=UPSAMPLING_MODES, default=None)
    return p


# --- reading images -------------------------------------------------------------------------------
def expand_paths(paths: list[str], what: str) -> list[Path]:
    """Files as given, folders as their image files in sorted order."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CLIError(f"{what} folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise CLIError(f"{what} path not found: {path}")
    return files


def read_image(path: Path) -> tuple[Any, str | None]:
    """``(array, axes or None)``; TIFF axes come from the file (RGB samples moved last)."""
    import numpy as np

    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                data = series.asarray()
                axes = series.axes.upper()
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as e:  # tifffile and its codecs raise many types for damaged or truncated files
            raise CLIError(f"cannot read {path}: {' '.join(str(e).split())} (damaged, truncated or not a TIFF?)") from e
        if "S" in axes and axes[-1] != "S":
            data = np.moveaxis(data, axes.index("S"), -1)
            axes = axes.replace("S", "") + "S"
        # tifffile uses letters our axes also understand; make unknown repeats unique
        if len(set(axes)) != len(axes) or len(axes) != data.ndim:
            axes = None
        return data, axes
    if suffix in PIL_SUFFIXES:
        try:
            from PIL import Image
        except ImportError as e:  # pragma: no cover - napari pulls Pillow in
            raise CLIError(f"reading {suffix} files needs Pillow (pip install pillow); or convert to TIFF") from e
        try:
            with Image.open(path) as im:
                if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                    im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
                elif im.mode == "LA":
                    im = im.convert("L")
                data = np.asarray(im)
        except OSError as e:
            raise CLIError(f"cannot read {path}: {e}") from e
        return data, None
    raise CLIError(f"unsupported image file {path}; use {', '.join(IMAGE_SUFFIXES)} (or a folder of them)")


def read_images(paths: list[str], what: str) -> tuple[list[Any], list[str | None], list[Path]]:
    files = expand_paths(paths, what)
    arrays, axes = [], []
    for f in files:
        a, ax = read_image(f)
        arrays.append(a)
        axes.append(ax)
    return arrays, axes, files


# --- running --------------------------------------------------------------------------------------
def _weights(items: list[str]) -> dict[str, float] | None:
    if not items:
        return None
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise CLIError(f"--weight expects TERM=NUMBER (e.g. --weight ssim=0.5), got {item!r}") from None
    return out


def _get(args: argparse.Namespace, name: str) -> Any:
    value = getattr(args, name)
    return _DEFAULTS[name] if value is None else value


def build_config(args: argparse.Namespace) -> Any:
    from ..engine.normalization import normalization_spec
    from ..engine.train.trainer import TrainConfig

    net = {k: getattr(args, k) for k in ("channels", "blocks", "upsampling") if getattr(args, k) is not None}
    steps = _get(args, "steps")
    if args.seconds is not None and args.steps is None:
        steps = TIME_BUDGET_STEP_CAP  # the time budget alone ends the run
    kwargs: dict[str, Any] = dict(
        scale=_get(args, "scale"), preset=_get(args, "preset"), weights=_weights(args.weight),
        gan_loss=_get(args, "gan_loss"), pretrain_steps=args.pretrain_steps, steps=steps, seconds=args.seconds,
        batch_size=_get(args, "batch_size"), patch_size=_get(args, "patch_size"), lr=_get(args, "learning_rate"),
        schedule=_get(args, "schedule"), seed=_get(args, "seed"), device=_get(args, "device"),
        val_every=_get(args, "val_every"), checkpoint_every=_get(args, "checkpoint_every"),
        checkpoint_path=args.checkpoint, net=net, normalization=normalization_spec(_get(args, "normalization")),
        init=_get(args, "init"),
    )  # fmt: skip
    if args.ema is not None:
        kwargs["ema"] = args.ema if args.ema > 0 else None
    if args.degradation:
        if args.lr:
            raise CLIError("--degradation is for high-res-only training; it cannot be used with --lr")
        try:
            degradation = json.loads(args.degradation)
        except json.JSONDecodeError as e:
            raise CLIError(f"--degradation is not valid JSON ({e}): {args.degradation!r}") from None
        if not isinstance(degradation, dict):
            raise CLIError("--degradation must be a JSON object, e.g. '{\"blur_sigma\": [0, 1]}'")
        kwargs["degradation"] = degradation
    return TrainConfig(**kwargs)


#: High-res images whose own blur and noise :func:`_fitted_degradation` measures (the first ones).
FIT_HR_IMAGES = 4


def _fitted_degradation(args: argparse.Namespace, config: Any, hr: list[Any]) -> dict[str, Any]:
    """``--degradation-from``: the degradation fitted to the low-res example (as a settings dict)."""
    from ..engine.train.estimate import estimate_degradation

    if args.lr:
        raise CLIError("--degradation-from is for high-res-only training; it cannot be used with --lr")
    if args.degradation:
        raise CLIError("give either --degradation JSON or --degradation-from LR_FILE, not both")
    if args.resume:
        raise CLIError("--degradation-from cannot change a resumed run (its degradation is in the checkpoint)")
    example, _, _ = read_images([args.degradation_from], "--degradation-from")
    try:
        fitted = estimate_degradation(
            example[0], config.scale, high_res=hr[:FIT_HR_IMAGES], axes=args.axes, normalization=config.normalization
        )
    except ValueError as e:
        raise CLIError(f"--degradation-from {args.degradation_from}: {e}") from None
    settings = fitted.to_dict()
    if not args.quiet:
        print(f"degradation fitted to {args.degradation_from}: {json.dumps(settings)}", file=sys.stderr)
    return settings


def _resume_settings(args: argparse.Namespace) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """``(config, data description, overrides)`` of the checkpoint to resume."""
    from ..engine.train.trainer import TrainConfig, Trainer

    state = Trainer.read_checkpoint(args.resume)
    config = TrainConfig.from_dict(json.loads(state["config"]))
    data = json.loads(state.get("data", "{}"))
    ignored = [
        f"--{name.replace('_', '-')}"
        for name in ("scale", "preset", "batch_size", "patch_size", "learning_rate", "normalization", "seed",
                     "gan_loss", "schedule", "channels", "blocks", "upsampling", "pretrain_steps", "ema",
                     "val_fraction", "in_channels", "init")
        if getattr(args, name) is not None
    ] + (["--weight"] if args.weight else []) + (["--degradation"] if args.degradation else [])  # fmt: skip
    if ignored:
        print(f"resuming {args.resume}: its settings are used; ignoring {' '.join(ignored)}", file=sys.stderr)
    overrides: dict[str, Any] = {}
    if args.checkpoint:
        overrides["checkpoint_path"] = args.checkpoint
    elif not config.checkpoint_path:
        overrides["checkpoint_path"] = args.resume
    if args.checkpoint_every is not None:
        overrides["checkpoint_every"] = args.checkpoint_every
    if args.val_every is not None:
        overrides["val_every"] = args.val_every
    if args.device is not None:
        overrides["device"] = args.device
    refuse_existing(args, overrides.get("checkpoint_path", config.checkpoint_path), "--checkpoint")
    if args.seconds is not None:
        overrides["seconds"] = args.seconds
    return config, data, overrides


def _write_json(path: str | Path, payload: dict[str, Any]) -> None:
    from ..engine.nets.model_file import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(payload, indent=1, default=str).encode())


def check_output_paths(args: argparse.Namespace, out: Path) -> None:
    """Refuse outputs that would overwrite an input or each other; check their folders are writable.

    Runs before any training, so a run never ends unable to write its result.  The
    checkpoint may be the file resumed from (it is replaced by the newer state, atomically).
    """
    from ..engine.files import check_writable_folder, same_file

    inputs = [(f, "--hr") for f in expand_paths(args.hr, "--hr")]
    inputs += [(f, "--lr") for f in expand_paths(args.lr, "--lr")] if args.lr else []
    if args.resume:
        if not Path(args.resume).is_file():
            raise CLIError(f"--resume checkpoint not found: {args.resume}")
        inputs.append((Path(args.resume), "--resume"))
    outputs = [(out, "--out")]
    if args.checkpoint:
        outputs.append((Path(args.checkpoint), "--checkpoint"))
    if args.log:
        outputs.append((Path(args.log), "--log"))
    for i, (path, flag) in enumerate(outputs):
        for src, src_flag in inputs:
            if same_file(path, src) and not (flag == "--checkpoint" and src_flag == "--resume"):
                raise CLIError(
                    f"{flag} {path} is the {src_flag} input {src}; choose another file (inputs are never overwritten)"
                )
        for other, other_flag in outputs[:i]:
            if same_file(path, other):
                raise CLIError(f"{flag} and {other_flag} are the same file {path}; give each its own file")
        if Path(path).is_dir():
            raise CLIError(f"{flag} {path} is a folder; give a file name")
        if flag != "--out":
            refuse_existing(args, path, flag)
        check_writable_folder(path)  # OSError naming the folder: missing, read-only, no permission


def refuse_existing(args: argparse.Namespace, path: str | Path | None, flag: str) -> None:
    """Refuse to replace an existing file (``--checkpoint``, ``--log``) without ``--overwrite``;
    the checkpoint a run resumes from is replaced by its newer state (that is what resuming means)."""
    from ..engine.files import same_file

    if path is None or args.overwrite or not Path(path).exists():
        return
    if flag == "--checkpoint" and args.resume and same_file(Path(path), Path(args.resume)):
        return
    raise CLIError(f"{flag} {path} exists; pass --overwrite to replace it (or choose another file)")


def save_or_keep(trainer: Any, out: Path, checkpoint: str | None) -> Path:
    """``trainer.save_model(out)``; if that fails (disk full, folder gone), save it elsewhere and say where.

    The fallback is beside the checkpoint (when there is one), else in the temporary
    folder; the error raised names both paths, so the trained network is never lost.
    """
    import os
    import tempfile

    try:
        return trainer.save_model(out)
    except OSError as e:
        places = [Path(checkpoint).parent] if checkpoint else []
        places.append(Path(tempfile.gettempdir()))
        for folder in places:
            fallback = folder / f"{out.stem}-unsaved-{os.getpid()}.safetensors"
            try:
                kept = trainer.save_model(fallback)
            except OSError:
                continue
            raise OSError(e.errno, f"cannot write the model ({e.strerror}); the trained model was saved to {kept} instead",
                          str(out)) from e  # fmt: skip
        raise


def _checked_out(args: argparse.Namespace) -> Path:
    """The model file to write (``.safetensors`` added); raises :class:`CLIError` for outputs that
    cannot work (an existing ``--out`` without ``--overwrite``, unusable output paths)."""
    out = Path(args.out)
    if out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    if out.exists() and not args.overwrite:  # resuming too: the model file is not the checkpoint
        raise CLIError(f"--out {out} exists; pass --overwrite to replace it")
    if args.checkpoint_every and not (args.checkpoint or args.resume):
        raise CLIError("--checkpoint-every needs --checkpoint CKPT (where to write)")
    check_output_paths(args, out)
    return out


#: TrainConfig settings spelt otherwise on the command line (the others: ``--`` + the name with dashes).
_FLAGS = {"lr": "--learning-rate", "weights": "--weight", "net": "--channels/--blocks/--upsampling",
          "checkpoint_path": "--checkpoint"}  # fmt: skip
#: TrainConfig settings with no flag (a resumed run's checkpoint may hold them).
_NO_FLAG = ("d_lr", "d_steps", "grad_clip", "perceptual_criterion", "discriminator")


def _validated(config: TrainConfig) -> TrainConfig:
    """``config`` once :meth:`TrainConfig.validate` accepts it; its error calls the setting by its flag."""
    from ..engine.train.config import TrainSettingError

    try:
        config.validate()
    except TrainSettingError as e:
        if e.setting in _NO_FLAG:
            raise
        raise e.named(_FLAGS.get(e.setting, "--" + e.setting.replace("_", "-"))) from e
    return config


def _run_settings(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any], float, int]:
    """``(config, overrides, val_fraction, in_channels)``: a resumed run's settings from its checkpoint
    (with the ``overrides`` it may change), or a new run's config, checked (network size included)."""
    overrides: dict[str, Any] = {}
    if args.resume:
        config, described, overrides = _resume_settings(args)
        _validated(replace(config, **overrides))  # the overrides are checked before the images are read
        val_fraction = described.get("val_fraction", _DEFAULTS["val_fraction"])
        in_channels = described.get("in_channels", args.in_channels)
    else:
        config = _validated(build_config(args))
        from ..engine.nets.model_file import check_config_size

        check_config_size({"scale": config.scale, **(config.net or {})}, "--channels/--blocks", "use a smaller network")
        val_fraction = args.val_fraction if args.val_fraction is not None else _DEFAULTS["val_fraction"]
        in_channels = args.in_channels
    return config, overrides, val_fraction, in_channels


def _read_training_images(
    args: argparse.Namespace,
) -> tuple[list[Any], list[Any] | None, list[Any], list[Path], list[Path]]:
    """``(hr, lr, axes, hr_files, lr_files)`` read from ``--hr`` / ``--lr`` (``lr`` ``None`` without
    ``--lr``); raises :class:`CLIError` when the two do not pair up one to one."""
    hr, hr_axes, hr_files = read_images(args.hr, "--hr")
    lr, lr_files = None, []
    if args.lr:
        lr, _, lr_files = read_images(args.lr, "--lr")
        if len(lr_files) != len(hr_files):
            raise CLIError(
                f"--hr gives {len(hr_files)} images but --lr gives {len(lr_files)}; pairs need one low-res image "
                f"per high-res image (matched by sorted file name)"
            )
    axes = [args.axes] * len(hr) if args.axes else hr_axes
    return hr, lr, axes, hr_files, lr_files


def _announce(trainer: Trainer, config: TrainConfig, data: Any, n_files: int, until: str) -> None:
    """One line on stderr: what is trained on what, the network, the device and the steps."""
    net = trainer.generator
    print(
        f"training x{config.scale} {config.preset}: {data.n_planes} plane(s) from {n_files} image(s), "
        f"{'pairs' if data.paired else 'high-res only (synthetic low-res)'}, net {net.num_parameters():,} "
        f"parameters (from {Path(trainer.started_from).name if trainer.started_from else 'scratch'}), device {trainer.device}, steps {until}",
        file=sys.stderr,
    )


def _progress_bar(trainer: Trainer, total: int) -> Any:
    """A tqdm bar on stderr over the steps the trainer expects to reach (``total`` or the time budget)."""
    from tqdm import tqdm

    return tqdm(
        total=trainer.budget.estimate_total(trainer.step, total),
        initial=trainer.step,
        unit="step",
        dynamic_ncols=True,
        file=sys.stderr,
    )


def run(args: argparse.Namespace) -> int:
    out = _checked_out(args)

    from ..engine.train.data import make_pair_source
    from ..engine.train.trainer import Trainer

    config, overrides, val_fraction, in_channels = _run_settings(args)

    hr, lr, axes, hr_files, lr_files = _read_training_images(args)
    if args.degradation_from:
        config.degradation = _fitted_degradation(args, config, hr)
    data = make_pair_source(
        hr, lr, scale=config.scale, axes=axes, patch_size=config.patch_size, degradation=config.degradation,
        val_fraction=val_fraction, seed=config.seed, normalization=config.normalization, in_channels=in_channels,
    )  # fmt: skip

    if args.resume:
        trainer = Trainer.resume(args.resume, data, steps=args.steps, **overrides)
    else:
        trainer = Trainer(config, data)
    main = trainer.is_main
    total = trainer.config.steps
    budget = trainer.config.seconds
    until = f"{trainer.step}->{total}" if total < TIME_BUDGET_STEP_CAP else f"{trainer.step}->"
    until += f" or {budget:g} s" if budget else ""
    if main and not args.quiet:
        _announce(trainer, config, data, len(hr_files), until)

    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    bar = _progress_bar(trainer, total) if main and not args.quiet else None

    def log_payload(result_stopped: bool | None = None) -> dict[str, Any]:
        return {
            "config": trainer.config.to_dict(),
            "data": data.describe(),
            "hr_files": [str(f) for f in hr_files],
            "lr_files": [str(f) for f in lr_files] if args.lr else None,
            "steps_done": trainer.step,
            "stopped": result_stopped,
            "final_validation": trainer.last_validation.to_dict() if trainer.last_validation else None,
            "history": trainer.history,
        }

    log_failed: list[OSError] = []

    def on_step(report: Any) -> None:
        if bar is not None:
            post = {k: f"{v:.4g}" for k, v in report.losses.items()}
            if report.d_acc_real is not None:
                post["D_acc"] = f"{report.d_acc_real:.2f}/{report.d_acc_fake:.2f}"
            if trainer.last_validation is not None:
                v = trainer.last_validation
                post["val_psnr"] = f"{v.psnr:.2f} (bicubic {v.bicubic_psnr:.2f})"
            bar.set_postfix(post, refresh=False)
            if budget:
                bar.total = report.total_steps  # the steps the time budget allows at this speed
            bar.update(1)
        if report.validation is not None and args.log and not log_failed:
            try:
                _write_json(args.log, log_payload())
            except OSError as e:  # a log must not end the training; the final write retries
                log_failed.append(e)
                print(f"warning: cannot write the log {args.log} ({e}); training continues", file=sys.stderr)

    try:
        result = trainer.run(callback=on_step, should_stop=stop.is_set)
    except OSError as e:  # a checkpoint write failed mid-run: keep the network trained so far
        if not main:
            raise
        try:
            kept = save_or_keep(trainer, out, args.checkpoint or args.resume)
        except OSError as again:
            raise again from e
        raise OSError(e.errno, f"{e.strerror}; training stopped at step {trainer.step}, the model so far was saved to "
                      f"{kept}", e.filename) from e  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    path = save_or_keep(trainer, out, args.checkpoint or args.resume)
    if main:
        if args.log:
            _write_json(args.log, log_payload(result.stopped))
        if not args.quiet:
            v = result.final_validation
            scores = f"; validation PSNR {v.psnr:.2f} dB (bicubic {v.bicubic_psnr:.2f})" if v else ""
            state_msg = f"stopped at step {result.steps_done}" if result.stopped else f"{result.steps_done} steps"
            print(f"{state_msg}{scores}; model written to {path}", file=sys.stderr)
    _finish_distributed()
    return 130 if result.stopped else 0


def _finish_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
