"""Multi-process data-parallel training (``torchrun --nproc_per_node N``).

Under ``torchrun`` the environment holds ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``.  :func:`init_from_env` joins the process group
(NCCL on CUDA, gloo on CPU), the trainer wraps the generator and discriminator in
:class:`~torch.nn.parallel.DistributedDataParallel` (gradients are averaged across
processes, so every rank holds identical weights), each rank draws its own patches
(the sampler is seeded with ``(seed, rank)``), and only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job; ``world_size == 1`` means plain single-process training."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes checkpoints, models and logs."""
        return self.rank == 0


def env_context() -> DistributedContext:
    """Read ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (all default to single-process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"inconsistent distributed environment: RANK={rank}, WORLD_SIZE={world}")
    return DistributedContext(rank=rank, world_size=world, local_rank=local)


def init_from_env(device: torch.device) -> DistributedContext:
    """Join the process group described by the environment (no-op for a single process).

    On CUDA, each process uses GPU ``LOCAL_RANK`` and the NCCL backend; elsewhere gloo.
    Returns the context; the group is reused if already initialised.
    """
    ctx = env_context()
    if not ctx.enabled:
        return ctx
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this PyTorch build")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size)
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=ctx.local_rank)


def process_device(device: torch.device, ctx: DistributedContext) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` when training on CUDA with several processes."""
    if ctx.enabled and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def wrap_ddp(module: nn.Module, device: torch.device, ctx: DistributedContext) -> nn.Module:
    """``DistributedDataParallel(module)`` when distributed, else ``module`` unchanged."""
    if not ctx.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(module, device_ids=[device.index], output_device=device.index)
    return DistributedDataParallel(module)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a ``DistributedDataParallel`` wrapper."""
    return module.module if hasattr(module, "module") and isinstance(module.module, nn.Module) else module


def any_rank(flag: bool, ctx: DistributedContext, device: torch.device) -> bool:
    """``True`` on every rank when ``flag`` is true on at least one (e.g. a stop request)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


__all__ = [
    "DistributedContext",
    "any_rank",
    "env_context",
    "init_from_env",
    "process_device",
    "unwrap",
    "wrap_ddp",
]
