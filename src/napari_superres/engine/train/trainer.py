"""Training loop for :class:`~napari_superres.engine.nets.srnet.SRNet` on a :class:`PairSource`.

>>> data = make_pair_source(hr_images, lr_images, scale=2, patch_size=64)   # doctest: +SKIP
>>> trainer = Trainer(TrainConfig(scale=2, steps=2000, patch_size=64), data)  # doctest: +SKIP
>>> result = trainer.run(callback=print)                                      # doctest: +SKIP
>>> trainer.save_model("my_x2.safetensors")                                   # doctest: +SKIP

The trainer puts together the network(s), the data and the training method's step
strategy (:mod:`~napari_superres.engine.train.steps`: :class:`PixelStep` for the pixel and
perceptual recipes, :class:`GANStep` for the adversarial one), and runs them in the shared
fit loop (:mod:`~napari_superres.engine.train.loop`).  A step: sample a batch of aligned
patches -> generator forward (bf16 autocast on CUDA) -> weighted loss terms (pixel,
perceptual, adversarial once pixel pre-training is over) -> Adam step with gradient
clipping -> learning-rate schedule -> discriminator step(s) (adversarial recipe); then the
loop updates the EMA of the generator weights.  Every ``val_every`` steps the EMA generator
and bicubic are scored (PSNR, SSIM) on the validation region of the data, with a preview crop.

Everything random comes from seeded generators, and a checkpoint holds all of it
(weights, EMA, discriminator, optimizers, schedules, sampler state), so training
resumed from a checkpoint continues exactly as if it had not stopped.  Checkpoints are
``torch.save`` files of tensors and primitives, read back with ``weights_only=True``.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..device import autocast, resolve_device
from ..errors import InvalidRequestError
from ..infer.precision import cpu_support
from ..metrics.pixel import psnr_from_mse
from ..metrics.ssim import ssim as ssim_value
from ..nets.discriminator import build_discriminator
from ..nets.model_file import SRModel, atomic_write_bytes, save_model
from ..nets.srnet import SRNet, SRNetConfig
from ..nets.vgg import VGGFeatures
from ..normalization import default_normalization
from ..options import SCHEDULES
from .checkpoint_file import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, checkpoint_bytes
from .checkpoint_file import read_checkpoint as read_checkpoint_file
from .config import TrainConfig
from .data import PairSource, make_pair_source
from .distributed import DistributedContext, any_rank, init_from_env, process_device, unwrap, wrap_ddp
from .loop import EMA, FitLoop
from .losses import PerceptualLoss
from .reports import VALIDATION_RANGE, StepReport, TrainResult, ValidationReport
from .schedule import Schedule, TimeBudget
from .steps import GANStep, PixelStep, StepOutcome, StepStrategy
from .warm_start import initial_network

if TYPE_CHECKING:
    from torch import device as _Device


class EngineLike(Protocol):
    """What a :class:`Trainer` uses of an :class:`~napari_superres.engine.Engine`: its default
    device and its shared VGG-16 (per device), for the perceptual loss."""

    device: _Device

    def vgg(self, layers: Sequence[str] | None = None, device: Any = None) -> nn.Module: ...


#: Settings a resumed run may change (they do not change what is learned).
RESUME_OVERRIDES = ("device", "checkpoint_path", "checkpoint_every", "val_every", "seconds")


def warn_emulated_bf16() -> None:
    """Warn that ``cpu_bf16=True`` runs emulated on this CPU (no native bf16): measured on 2 AVX2 cores, 3.6 s
    per step of the default configuration against 0.35 s in float32."""
    ok, reason = cpu_support("bf16")
    if not ok:
        warnings.warn(
            f"cpu_bf16=True on a CPU without native bf16 ({reason}): the training step is emulated, about 10x "
            "slower than float32; set cpu_bf16=False",
            UserWarning,
            stacklevel=3,
        )


class Trainer:
    """Train a super-resolution network on a :class:`PairSource`.

    Parameters
    ----------
    config : :class:`TrainConfig` (validated here: :class:`~napari_superres.engine.errors.InvalidRequestError`,
        a ``ValueError``, with the fix).
    data : the training data; its ``scale``, ``patch_size`` and ``normalization`` must match ``config``.
        Its patch sampler is reseeded from ``config.seed`` (and the process rank).
    engine : an :class:`~napari_superres.engine.Engine`, for its device and its shared VGG-16
        (perceptual loss); one is created when needed.
    net : an existing :class:`SRNet` to fine-tune (default: a new one from ``config.net``).

    Raises :class:`~napari_superres.engine.nets.vgg.VGGWeightsUnavailable` here, before any
    step, when the recipe needs VGG-16 weights that are not available offline.
    Under ``torchrun`` the networks are wrapped in ``DistributedDataParallel`` (see
    :mod:`~napari_superres.engine.train.distributed`) and only rank 0 writes files.
    """

    def __init__(
        self,
        config: TrainConfig,
        data: PairSource,
        *,
        engine: EngineLike | None = None,
        net: SRNet | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.data = data
        self._check_data(config, data)
        wanted = net.in_channels if isinstance(net, SRNet) else (config.net or {}).get("in_channels")
        if wanted is not None and int(wanted) != data.in_channels:
            data.set_in_channels(int(wanted))  # RGB images: luminance for 1-channel nets, RGB for 3-channel ones
        self.weights = config.resolved_weights()
        self.pretrain_steps = config.resolved_pretrain_steps()
        self.adversarial = "gan" in self.weights

        if config.device == "auto" and engine is not None:
            device = engine.device
        else:
            device = resolve_device(config.device)
        self.ctx: DistributedContext = init_from_env(device)
        self.device = process_device(device, self.ctx)
        if self.device.type == "cpu" and config.cpu_bf16:
            warn_emulated_bf16()
        data.reseed(config.seed, self.ctx.rank)

        # perceptual loss: VGG-16 weights checked before anything trains
        self.perceptual: PerceptualLoss | None = None
        if "perceptual" in self.weights:
            if engine is not None:  # the engine's VGG-16 (loaded once), its copy on this device
                vgg = engine.vgg(config.perceptual_layers, device=self.device)
            else:  # loaded for this trainer only
                vgg = VGGFeatures(config.perceptual_layers).to(self.device)
            self.perceptual = PerceptualLoss(vgg, config.perceptual_layers, criterion=config.perceptual_criterion)
        self.engine = engine

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            start = None  # the model file training starts from (None: a new network or one passed in)
            if net is None:
                net, start = initial_network(config.init, int(config.scale), data.in_channels, config.net)
            self.started_from = None if start is None else str(start)
            if net is None:
                net = SRNet(self._net_config(config, data))
            disc = None
            if self.adversarial:
                d_cfg = dict(config.discriminator or {})
                kind = d_cfg.pop("kind", "patchgan")
                disc = build_discriminator(kind, net.out_channels, **d_cfg)
        if isinstance(net, SRNet) and net.cond_channels != data.cond_channels:
            data.set_condition(bool(net.cond_channels))  # the data gives what the network reads (its maps)
        self._check_net(net, config, data)
        self._memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        net.to(self.device, memory_format=self._memory_format)
        if disc is not None:
            disc.to(memory_format=self._memory_format)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick the fastest kernels
        self.ema_net: SRNet | None = None
        if config.ema is not None:
            self.ema_net = copy.deepcopy(net).requires_grad_(False).eval()
        self.net = wrap_ddp(net, self.device, self.ctx)
        disc = wrap_ddp(disc.to(self.device), self.device, self.ctx) if disc is not None else None
        self.strategy: StepStrategy = self._step_strategy(disc)
        ema = EMA(self.ema_net, lambda: self.generator, config.ema) if self.ema_net is not None else None
        self.loop = FitLoop(
            self.strategy, self._batch, seconds=config.seconds, ema=ema,
            agree=lambda stop: any_rank(stop, self.ctx, self.device), memory_hint=self._memory_hint,
            train_step=lambda: self._train_step(),
        )  # fmt: skip
        self.last_validation: ValidationReport | None = None
        self._stop_requested = False

    # --- construction helpers ----------------------------------------------------------------
    @staticmethod
    def _check_data(config: TrainConfig, data: PairSource) -> None:
        if data.scale != int(config.scale):
            raise InvalidRequestError(
                f"the data was prepared for x{data.scale} but the config trains x{config.scale}; use the same scale"
            )
        if data.patch_size != int(config.patch_size):
            raise InvalidRequestError(
                f"the data samples {data.patch_size}-px patches but the config says patch_size={config.patch_size}; "
                f"build the data with make_pair_source(..., patch_size={config.patch_size})"
            )
        if dict(data.normalization) != dict(config.normalization or default_normalization()):
            raise InvalidRequestError(
                f"the data is normalised with {data.normalization} but the config says {config.normalization}; "
                f"build the data with make_pair_source(..., normalization=config.normalization)"
            )
        if config.degradation is not None:
            if data.paired:
                warnings.warn("config.degradation is ignored: the data has low-res images", stacklevel=3)
            else:
                wanted_config = config.degradation_config(data.scale)
                assert wanted_config is not None
                wanted = wanted_config.for_normalization(data.normalization).to_dict()
                if data.degradation is None or data.degradation.to_dict() != wanted:
                    raise InvalidRequestError(
                        "config.degradation differs from the data's degradation; build the data with "
                        "make_pair_source(..., degradation=config.degradation)"
                    )

    @staticmethod
    def _net_config(config: TrainConfig, data: PairSource) -> SRNetConfig:
        overrides = dict(config.net or {})
        if "scale" in overrides and int(overrides["scale"]) != int(config.scale):
            raise InvalidRequestError(f"net scale {overrides['scale']} differs from the training scale {config.scale}")
        for key in ("in_channels", "out_channels"):
            if key in overrides and int(overrides[key]) != data.in_channels:
                raise InvalidRequestError(
                    f"net {key}={overrides[key]} but the data gives {data.in_channels}-channel patches; "
                    f"a network's in_channels and out_channels must match the data (1, or 3 for RGB images)"
                )
        return config.net_config(
            in_channels=data.in_channels, out_channels=data.in_channels, cond_channels=data.cond_channels
        )

    @staticmethod
    def _check_net(net: nn.Module, config: TrainConfig, data: PairSource) -> None:
        if not isinstance(net, SRNet):
            raise TypeError(f"Trainer trains an SRNet, got {type(net).__name__}")
        if net.scale != int(config.scale):
            raise InvalidRequestError(f"the network upscales x{net.scale} but the config trains x{config.scale}")
        if net.in_channels != data.in_channels:
            raise InvalidRequestError(
                f"the network takes {net.in_channels}-channel input but the data gives {data.in_channels} channel(s)"
            )
        if net.cond_channels != data.cond_channels:
            raise InvalidRequestError(
                f"the network reads {net.cond_channels} degradation maps but the data gives {data.cond_channels}: "
                "build the data with condition=True for a conditioned network (and False for a blind one)"
            )

    def _step_strategy(self, disc: nn.Module | None) -> StepStrategy:
        """The training method's step: pixel (and perceptual) losses, or adversarial with ``disc``."""
        cfg = self.config
        pixel: dict[str, Any] = dict(
            lr=cfg.lr, schedule=Schedule(cfg.schedule, cfg.steps), weights=self.weights,
            pretrain_steps=self.pretrain_steps, perceptual=self.perceptual, grad_clip=cfg.grad_clip,
            autocast=self._autocast,
        )  # fmt: skip
        if disc is None:
            return PixelStep(self.net, **pixel)
        return GANStep(
            self.net, disc, d_lr=cfg.d_lr or cfg.lr, d_schedule=Schedule(cfg.schedule, cfg.steps - self.pretrain_steps),
            gan_loss=cfg.gan_loss, d_steps=cfg.d_steps, **pixel,
        )  # fmt: skip

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch of patches on the device, in the networks' memory format."""
        lq_b, gt_b = self.data.sample(self.config.batch_size)
        lq_b = lq_b.to(self.device, non_blocking=True).contiguous(memory_format=self._memory_format)
        gt_b = gt_b.to(self.device, non_blocking=True).contiguous(memory_format=self._memory_format)
        return lq_b, gt_b

    def _train_step(self) -> StepOutcome:
        """The fit loop's step: the strategy's step on the next batch."""
        return self.strategy.step(*self._batch(), self.step)

    def _memory_hint(self, step: int) -> str:
        cfg = self.config
        return (
            f"training step {step} with batch {cfg.batch_size} of {cfg.patch_size}-px patches: "
            "use a smaller batch_size or patch_size, or a smaller network (channels, blocks)"
        )

    # --- the fit loop's state --------------------------------------------------------------------
    @property
    def step(self) -> int:
        """Steps done (resumed ones included)."""
        return self.loop.step

    @step.setter
    def step(self, value: int) -> None:
        self.loop.step = int(value)

    @property
    def history(self) -> list[dict[str, Any]]:
        """One :meth:`StepReport.to_dict` per step done."""
        return self.loop.history

    @history.setter
    def history(self, value: list[dict[str, Any]]) -> None:
        self.loop.history = value

    @property
    def budget(self) -> TimeBudget:
        """Seconds of training spent, against ``config.seconds``."""
        return self.loop.budget

    @property
    def disc(self) -> nn.Module | None:
        """The discriminator (adversarial recipe), else ``None``."""
        return getattr(self.strategy, "disc", None)

    @property
    def opt_g(self) -> torch.optim.Optimizer:
        return self.strategy.opt_g  # type: ignore[attr-defined]

    @property
    def opt_d(self) -> torch.optim.Optimizer | None:
        return getattr(self.strategy, "opt_d", None)

    @property
    def sched_g(self) -> torch.optim.lr_scheduler.LambdaLR:
        return self.strategy.sched_g  # type: ignore[attr-defined]

    @property
    def sched_d(self) -> torch.optim.lr_scheduler.LambdaLR | None:
        return getattr(self.strategy, "sched_d", None)

    @property
    def pretrain_weights(self) -> dict[str, float]:
        """The loss weights of the pre-training steps (the pixel terms)."""
        return self.strategy.pretrain_weights  # type: ignore[attr-defined]

    # --- public API ----------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        """True in the process that writes files (always, unless distributed)."""
        return self.ctx.is_main

    @property
    def generator(self) -> SRNet:
        """The generator being optimised (not the EMA copy)."""
        return unwrap(self.net)  # type: ignore[return-value]

    def trained_net(self) -> SRNet:
        """The weights to use: the EMA generator when EMA is on, else the generator."""
        return self.ema_net if self.ema_net is not None else self.generator

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop after the current step (thread-safe flag)."""
        self._stop_requested = True

    def set_total_steps(self, steps: int) -> None:
        """Change the run's length (e.g. train longer after :meth:`run` returned); the schedule stretches to it."""
        steps = int(steps)
        if steps < max(1, self.step):
            raise InvalidRequestError(f"steps must be at least {max(1, self.step)} (steps already done), got {steps}")
        self.config.steps = steps
        self.strategy.retarget(steps)

    def current_lr(self) -> float:
        return self.strategy.lr()

    def run(
        self,
        callback: Callable[[StepReport], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainResult:
        """Train until ``config.steps``, the ``config.seconds`` budget or a stop request; return a :class:`TrainResult`.

        ``callback(report)`` is called after every step (main process only).
        ``should_stop()`` is checked between steps; on stop a checkpoint is written
        (when ``checkpoint_path`` is set) and the result has ``stopped=True``.
        """
        cfg = self.config
        self._stop_requested = False
        stopped = self.loop.run(
            int(cfg.steps),
            val_every=cfg.val_every,
            validate=self.validate,
            checkpoint_every=cfg.checkpoint_every,
            checkpoint=self.save_checkpoint if cfg.checkpoint_path else None,
            callback=callback if self.is_main else None,
            should_stop=lambda: self._stop_requested or bool(should_stop is not None and should_stop()),
        )
        return TrainResult(
            steps_done=self.step,
            stopped=stopped,
            history=self.history,
            final_validation=self.last_validation,
            net=self.trained_net(),
        )

    # --- one step ----------------------------------------------------------------------------
    def _autocast(self) -> Any:
        """The training step's autocast: bf16 on CUDA (``mixed_precision``) or on the CPU (``cpu_bf16``)."""
        if self.device.type == "cpu" and self.config.cpu_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return autocast(self.device, self.config.mixed_precision)

    # --- validation --------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> ValidationReport | None:
        """PSNR / SSIM of the trained net (EMA) and of bicubic on the data's validation region.

        Scored on the data's own range (see :class:`ValidationReport`): ``data_range`` is the
        high-res region's max - min, predictions are not clipped.
        """
        regions = self.data.validation()
        if not regions:
            return None
        net = self.trained_net()
        was_training = net.training
        net.eval()
        s = self.config.scale
        scores = {"psnr": [], "ssim": [], "bicubic_psnr": [], "bicubic_ssim": []}
        for lq, gt in regions:
            x = torch.from_numpy(lq)[None].to(self.device)
            y = torch.from_numpy(gt)[None].to(self.device)
            with autocast(self.device, self.config.mixed_precision):
                sr = net(x)
            sr = sr.float()
            bic = F.interpolate(x[:, : y.shape[1]], scale_factor=s, mode="bicubic", align_corners=False)
            data_range = float(y.max() - y.min()) or 1.0
            for name, pred in (("", sr), ("bicubic_", bic)):
                scores[name + "psnr"].append(_psnr(pred, y, data_range))
                scores[name + "ssim"].append(
                    float(ssim_value(pred, y, data_range)) if min(y.shape[-2:]) >= 11 else float("nan")
                )
        preview = preview_lr = preview_hr = None
        crop = self.data.preview_region()
        if crop is not None:
            lq_c, gt_c = crop
            with autocast(self.device, self.config.mixed_precision):
                sr_c = net(torch.from_numpy(lq_c)[None].to(self.device))
            preview = _to_image(sr_c[0].float().clamp(0.0, 1.0).cpu().numpy())
            preview_lr = _to_image(np.clip(lq_c[: gt_c.shape[0]], 0.0, 1.0))
            preview_hr = _to_image(np.clip(gt_c, 0.0, 1.0))
        net.train(was_training)
        report = ValidationReport(
            step=self.step,
            psnr=float(np.mean(scores["psnr"])),
            ssim=float(np.mean(scores["ssim"])),
            bicubic_psnr=float(np.mean(scores["bicubic_psnr"])),
            bicubic_ssim=float(np.mean(scores["bicubic_ssim"])),
            preview=preview,
            preview_lr=preview_lr,
            preview_hr=preview_hr,
        )
        self.last_validation = report
        return report

    # --- files -------------------------------------------------------------------------------
    def training_metadata(self) -> dict[str, Any]:
        """JSON-able description of this run, stored in model files."""
        return {
            "config": self.config.to_dict(),
            "started_from": Path(self.started_from).name if self.started_from else None,
            "steps": self.step,
            "weights": self.weights,
            "pretrain_steps": self.pretrain_steps,
            "ema": self.ema_net is not None,
            "data": self.data.describe(),
            "final_validation": self.last_validation.to_dict() if self.last_validation else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "torch": torch.__version__,
        }

    def save_model(self, path: str | Path) -> Path:
        """Write the trained network (EMA weights when used) as a model file with normalisation and metadata."""
        path = Path(path)
        if not self.is_main:
            return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")
        return save_model(
            path, self.trained_net(), normalization=dict(self.data.normalization), training=self.training_metadata()
        )

    def model(self, name: str) -> SRModel:
        """A copy of the trained network as an :class:`SRModel`, ready for ``Engine.register``."""
        net = copy.deepcopy(self.trained_net()).eval()
        return SRModel(
            name=name,
            net=net,
            scale=net.scale,
            in_channels=net.in_channels,
            normalization=dict(self.data.normalization),
            metadata=self.training_metadata(),
            source="session",
        )

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to resume: tensors, numbers and JSON strings only."""
        numpy_state = self.data.rng_state()
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": json.dumps(self.config.to_dict()),
            "net_config": json.dumps(self.generator.config.to_dict()),
            "step": int(self.step),
            "elapsed_s": float(self.budget.elapsed),
            "generator": _cpu_state(self.generator.state_dict()),
            "ema": _cpu_state(self.ema_net.state_dict()) if self.ema_net is not None else None,
            "discriminator": None,
            "opt_d": None,
            "sched_d": None,
            **self.strategy.state_dict(),  # optimisers, schedules (and the discriminator)
            "data_rng": json.dumps(numpy_state["numpy"]),
            "data_torch_rng": numpy_state["torch"],
            "history": json.dumps(self.history),
            "last_validation": json.dumps(self.last_validation.to_dict() if self.last_validation else None),
            "normalization": json.dumps(self.data.normalization),
            "data": json.dumps(self.data.describe()),
        }

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write a checkpoint atomically (main process only) and return its path."""
        path = Path(path or self.config.checkpoint_path or "")
        if not str(path):
            raise InvalidRequestError("no checkpoint path: pass one or set config.checkpoint_path")
        if not self.is_main:
            return path
        atomic_write_bytes(path, checkpoint_bytes(self.checkpoint_state()))  # with its SHA-256
        return path

    @staticmethod
    def read_checkpoint(path: str | Path) -> dict[str, Any]:
        """Load a checkpoint's state dict, checksum verified (``weights_only=True``: no code is unpickled).

        :class:`~napari_superres.engine.errors.CheckpointError` (a ``ValueError``) names a damaged file.
        """
        return read_checkpoint_file(path)

    @classmethod
    def resume(
        cls,
        path: str | Path,
        data: PairSource,
        *,
        engine: EngineLike | None = None,
        steps: int | None = None,
        **overrides: Any,
    ) -> Trainer:
        """Rebuild a trainer from a checkpoint; :meth:`run` then continues exactly where it stopped.

        ``data`` must be the same data (same images, patch size, normalisation, validation
        fraction: :meth:`checkpoint_data` tells what it was); its sampler state is restored
        from the checkpoint.  ``steps`` extends (or shortens) the run; the learning-rate
        schedule is stretched to the new length.  ``overrides`` may change settings that do
        not affect the result: ``device``, ``checkpoint_path``, ``checkpoint_every``, ``val_every``.
        """
        state = cls.read_checkpoint(path)
        config = TrainConfig.from_dict(json.loads(state["config"]))
        bad = sorted(set(overrides) - set(RESUME_OVERRIDES))
        if bad:
            raise InvalidRequestError(f"cannot change {bad} when resuming; only {list(RESUME_OVERRIDES)} (and steps)")
        for key, value in overrides.items():
            setattr(config, key, value)
        if steps is not None:
            if int(steps) < int(state["step"]):
                raise InvalidRequestError(f"the checkpoint is already at step {state['step']}; steps must be >= that")
            config.steps = int(steps)
        net = SRNet(SRNetConfig.from_dict(json.loads(state["net_config"])))
        trainer = cls(config, data, engine=engine, net=net)
        trainer._load_state(state)
        if steps is not None:
            trainer.set_total_steps(int(steps))
        return trainer

    @classmethod
    def checkpoint_data(cls, path: str | Path) -> dict[str, Any]:
        """The data description stored in a checkpoint (``PairSource.describe()``: val_fraction, in_channels...)."""
        return json.loads(cls.read_checkpoint(path).get("data", "{}"))

    def _load_state(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        if self.ema_net is not None and state.get("ema") is not None:
            self.ema_net.load_state_dict(state["ema"])
        self.strategy.load_state_dict(state)
        self.step = int(state["step"])
        self.budget.elapsed = float(state.get("elapsed_s", 0.0))
        self.history = json.loads(state["history"])
        last = json.loads(state.get("last_validation") or "null")
        scores = {f.name for f in fields(ValidationReport)}
        self.last_validation = ValidationReport(**{k: v for k, v in last.items() if k in scores}) if last else None
        if self.ctx.rank == 0:
            self.data.set_rng_state({"numpy": json.loads(state["data_rng"]), "torch": state["data_torch_rng"]})
        else:  # other ranks: a fresh stream per (seed, rank, step)
            self.data.reseed(self.config.seed + self.step, self.ctx.rank)


def _cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> float:
    return psnr_from_mse(float(torch.mean((pred.float() - target.float()) ** 2)), data_range)


def _to_image(chw: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W)`` for one channel, ``(H, W, 3)`` for RGB; float32."""
    chw = np.asarray(chw, dtype=np.float32)
    return chw[0] if chw.shape[0] == 1 else np.ascontiguousarray(np.moveaxis(chw, 0, -1))


__all__ = [
    "CHECKPOINT_FORMAT",
    "SCHEDULES",
    "StepReport",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "VALIDATION_RANGE",
    "ValidationReport",
    "make_pair_source",
]
