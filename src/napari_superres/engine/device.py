"""Device selection and mixed precision."""

from __future__ import annotations

import contextlib
import copy
import os

import torch
from torch import nn

from .errors import DeviceError, DeviceUnavailableError  # noqa: F401 - DeviceError re-exported (its old home)
from .options import (  # noqa: F401 - DEVICE_NAMES re-exported (its old home)
    BASIC_DEVICES,
    DEVICE_NAMES,
    parse_device_name,
)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or ``None``) picks CUDA, then Apple MPS, then CPU; other values are checked.

    Raises :class:`~napari_superres.engine.errors.DeviceError` naming the valid choices for
    anything that is not a device name (:func:`~napari_superres.engine.options.parse_device_name`),
    and its subclass :class:`~napari_superres.engine.errors.DeviceUnavailableError` for a
    device this machine does not have.
    """
    if isinstance(device, torch.device):
        return device
    name = parse_device_name(device)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {name!r} was asked for but no CUDA GPU is available; use device='auto' or 'cpu'"
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceUnavailableError(
            "device 'mps' was asked for but Apple MPS is not available; use device='auto' or 'cpu'"
        )
    return torch.device(name)


def available_devices() -> list[str]:
    """``"auto"``, ``"cpu"`` and the accelerators torch can use on this machine (the widgets' device choices)."""
    devices = list(BASIC_DEVICES)
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is running out of host or device memory (numpy, torch CPU or GPU allocators)."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def out_of_memory_error(exc: BaseException, advice: str) -> MemoryError:
    """A ``MemoryError`` saying what ran out and ``advice`` (what to reduce); raise it ``from exc``."""
    if isinstance(exc, MemoryError) and str(exc).startswith("out of memory"):
        return exc  # already ours
    first = " ".join(str(exc).split())[:200]
    return MemoryError(f"out of memory ({first or type(exc).__name__}); {advice}")


def same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` (the current GPU) are the same device; otherwise type and index must match."""
    if a.type != b.type:
        return False
    if a.type == "cuda" and (a.index is None or b.index is None):
        current = torch.cuda.current_device() if torch.cuda.is_available() else 0
        return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
    return a.index == b.index


def module_device(module: nn.Module) -> torch.device | None:
    """Device of the module's first parameter (or buffer); ``None`` for a module without tensors."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return None


def on_device(module: nn.Module, device: torch.device) -> bool:
    """True when ``module`` runs on ``device`` as it is (its tensors are there, or it has none)."""
    where = module_device(module)
    return where is None or same_device(where, device)


def copy_module_to(module: nn.Module, device: torch.device) -> nn.Module:
    """A copy of ``module`` on ``device`` (same train/eval mode); ``module`` itself is not touched.

    A module shared between threads or widgets is never moved with ``.to(device)`` in
    place (another call may be running it); callers cache the copy per device.
    """
    return copy.deepcopy(module).to(device)


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (when supported); a no-op context elsewhere."""
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure_cpu_threads() -> int:
    """Use every core the process may run on (respects affinity masks and ``OMP_NUM_THREADS``)."""
    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        n = os.cpu_count() or 1
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
