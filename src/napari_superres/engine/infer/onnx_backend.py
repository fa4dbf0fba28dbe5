"""ONNX export of super-resolution networks and the ONNX Runtime inference backend (CPU).

Measured side by side on the built-in networks (``benchmarks/candidates.py``), ONNX
Runtime's CPU provider runs our convolution stacks about twice as fast as eager torch
(NCHW or channels_last), faster than ``torch.compile`` without its compile cost, and
exactly (bf16 autocast is not within one uint16 count of fp32).  So on the CPU the
pipeline runs the network through ONNX Runtime when it is installed (the ``onnx`` extra)
and the network exports; otherwise through torch.

* :func:`export_onnx`: a network -> ONNX bytes (float32, input ``(N, C, H, W)`` with
  dynamic N, H, W; opset >= 17), optionally written atomically to a file;
* :func:`onnx_runner`: a cached :class:`OnnxRunner` for a network (a callable on torch
  tensors, like the network itself), or ``None`` when ONNX Runtime is missing or the
  network cannot be exported (the reason is logged once per network).

Sessions are cached per (network weights, dtype, device) in memory; exported graphs
are also cached on disk (``$NAPARI_SUPERRES_CACHE_DIR``, default the user cache folder)
under the SHA-256 of the weights and architecture, written atomically, so a new process
skips the export.  Set ``NAPARI_SUPERRES_ONNX_DISK_CACHE=0`` to keep nothing on disk.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import io
import json
import logging
import os
import threading
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..options import BACKENDS  # noqa: F401 - re-exported (engine.infer.onnx_backend.BACKENDS)

log = logging.getLogger(__name__)

#: Default ONNX opset of the TorchScript-based exporter (the dynamo exporter needs >= 18).
ONNX_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
Exporter = Literal["legacy", "dynamo"]
#: Exporter used by default: the TorchScript-based one exports the built-in networks in
#: ~1 s (dynamo: ~7 s) to a graph that runs at the same speed with the same values.
DEFAULT_EXPORTER: Exporter = "legacy"
#: How often (s) a stoppable run checks whether it should end (``OnnxRunner.numpy(..., stop=)``).
STOP_POLL_S = 0.05
_CACHE_ENV = "NAPARI_SUPERRES_CACHE_DIR"
_DISK_CACHE_ENV = "NAPARI_SUPERRES_ONNX_DISK_CACHE"


def onnxruntime_available() -> bool:
    """True when ``onnxruntime`` (and ``onnx`` for the exporter) can be imported."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def cache_dir() -> Path:
    """Folder of the on-disk ONNX cache: ``$NAPARI_SUPERRES_CACHE_DIR`` or the user cache folder."""
    env = os.environ.get(_CACHE_ENV)
    if env:
        return Path(env)
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("napari-superres")) / "onnx"
    except ImportError:  # pragma: no cover - platformdirs comes with napari
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "napari-superres" / "onnx"


def _in_channels(net: nn.Module, in_channels: int | None) -> int:
    if in_channels is not None:
        return int(in_channels)
    config = getattr(net, "config", None)
    value = getattr(config, "in_channels", None) or getattr(net, "in_channels", None)
    if value is None:
        first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
        value = first.in_channels if first is not None else 1
    return int(value)


def export_onnx(
    net: nn.Module,
    path: str | os.PathLike | None = None,
    *,
    in_channels: int | None = None,
    opset: int | None = None,
    exporter: Exporter = DEFAULT_EXPORTER,
    probe: int = 64,
) -> bytes:
    """Export ``net`` (float32, CPU copy, eval mode) to ONNX; returns the model bytes.

    The graph takes ``input`` ``(N, C_in, H, W)`` float32 (N, H and W dynamic) and gives
    ``output`` ``(N, C_out, s*H, s*W)``.  ``opset``: default 17 (``"legacy"``, the
    TorchScript-based exporter) or 18 (``"dynamo"``, ``torch.export``-based); at least 17.
    With ``path`` the bytes are also written there atomically (a temporary file in the
    same folder, then a rename).  Raises ``RuntimeError`` naming the exporter when the
    network cannot be exported.
    """
    if exporter not in ("legacy", "dynamo"):
        raise ValueError(f"exporter must be 'legacy' or 'dynamo', got {exporter!r}")
    opset = int(opset or (ONNX_OPSET if exporter == "legacy" else 18))
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    module = copy.deepcopy(net).float().cpu().eval()
    module = module.to(memory_format=torch.contiguous_format)
    x = torch.rand(1, _in_channels(module, in_channels), probe, probe)
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)  # shape checks in forward: constants
            if exporter == "legacy":
                torch.onnx.export(
                    module, (x,), buffer, opset_version=opset, dynamo=False,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                                  OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}},
                )  # fmt: skip
            else:
                from torch.export import Dim

                program = torch.onnx.export(
                    module, (x,), dynamo=True, opset_version=opset, verbose=False,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                    dynamic_shapes=({0: Dim("batch", min=1, max=1024), 2: Dim("height", min=2, max=2**16),
                                     3: Dim("width", min=2, max=2**16)},),
                )  # fmt: skip
                program.save(buffer)
    except Exception as exc:
        raise RuntimeError(
            f"could not export {type(net).__name__} to ONNX with the {exporter} exporter: {exc}"
        ) from exc
    data = buffer.getvalue()
    if path is not None:
        from ..nets.model_file import atomic_write_bytes

        atomic_write_bytes(path, data)
    return data


def make_session(
    model: bytes | str | os.PathLike, *, threads: int | None = None, arena: bool = True, spinning: bool = True
) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU provider, graph optimisation level ALL.

    ``threads``: intra-op threads (default: torch's CPU thread count, i.e. the cores this
    process may use).  ``arena``: ONNX Runtime's CPU memory arena (default on: measured
    ~25 % less CPU time per call than fresh allocations, which page-fault; it keeps the
    largest activations' memory, ~420 B per output px of the built-in networks, for the
    session's lifetime).  ``spinning``: idle intra-op threads spin for work (ONNX Runtime's
    default); ``False`` puts them to sleep (measured on the int8 graph: ~15 % less CPU time
    per call on a loaded 2-core machine, see :mod:`.precision`).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = bool(arena)
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


#: What ONNX Runtime's errors say when its memory arena cannot grow.
_ALLOCATION_FAILURE_WORDS = ("bfc_arena", "failed to allocate", "out of memory", "std::bad_alloc")


def is_allocation_failure(exc: BaseException) -> bool:
    """Whether an ONNX Runtime error is running out of memory (a raw ``[ONNXRuntimeError] ... bfc_arena``)."""
    text = str(exc).lower()
    return any(word in text for word in _ALLOCATION_FAILURE_WORDS)


class OnnxRunner:
    """A network exported to ONNX and run by ONNX Runtime: ``runner(x) -> y`` on CPU tensors.

    ``x``: ``(N, C_in, H, W)`` float32 (any memory layout); returns ``(N, C_out, sH, sW)``
    float32, a fresh tensor the caller owns.  Thread-safe (ONNX Runtime sessions are).
    """

    #: seconds without a call after which the session's arena hands its memory back
    RELEASE_AFTER_S = 20.0

    def __init__(self, session: Any, key: str = "") -> None:
        self.session = session
        self.key = key
        self.input_name = session.get_inputs()[0].name
        self._state = threading.Lock()
        self._active = 0
        self._timer: threading.Timer | None = None

    def numpy(self, x: np.ndarray, stop: Callable[[], bool] | None = None) -> np.ndarray:
        """Run on a float32 ``(N, C, H, W)`` numpy array.

        ``stop``: polled every :data:`STOP_POLL_S` s while the graph runs; when it returns True,
        ONNX Runtime ends the run between two nodes (``RunOptions.terminate``) and
        :class:`~napari_superres.engine.errors.Cancelled` is raised: cancelling does not wait
        for the rest of a large tile.
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        with self._state:
            self._active += 1
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        try:
            if stop is not None:
                return self._run_stoppable(x, stop)
            return self.session.run(None, {self.input_name: x})[0]
        except Exception as exc:
            if is_allocation_failure(exc):  # ORT's own exception types, not MemoryError: make it one
                raise MemoryError(
                    f"ONNX Runtime could not allocate memory for a batch of {x.shape[0]} tile(s) of "
                    f"{x.shape[2]}x{x.shape[3]} px ({' '.join(str(exc).split())[:160]}); use smaller tiles "
                    "(tile=) or batch_size"
                ) from exc
            raise
        finally:
            with self._state:
                self._active -= 1

    def _run_stoppable(self, x: np.ndarray, stop: Callable[[], bool]) -> np.ndarray:
        import onnxruntime as ort

        from ..errors import Cancelled

        options = ort.RunOptions()
        finished = threading.Event()

        def watch() -> None:
            while not finished.wait(STOP_POLL_S):
                if stop():
                    options.terminate = True
                    return

        watcher = threading.Thread(target=watch, name="onnx-stop-watch", daemon=True)
        watcher.start()
        try:
            return self.session.run(None, {self.input_name: x}, options)[0]
        except Exception:
            if options.terminate:
                raise Cancelled("cancelled") from None
            raise
        finally:
            finished.set()

    def release_later(self, delay: float | None = None) -> None:
        """Hand the arena's memory back after ``delay`` s (default :attr:`RELEASE_AFTER_S`) without calls.

        Called at the end of an upscale job: back-to-back jobs keep the warm arena (fresh
        allocations cost ~25 % more CPU time: page faults), an idle session holds no memory.
        """
        with self._state:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.RELEASE_AFTER_S if delay is None else delay, self._release_if_idle)
            self._timer.daemon = True
            self._timer.start()

    def _release_if_idle(self) -> None:
        with self._state:
            self._timer = None
            if self._active:
                return
            self._active += 1  # no other call while shrinking
        try:
            self.release_memory()
        except Exception:  # a failed shrink only keeps memory
            log.warning("could not release ONNX Runtime arena memory", exc_info=True)
        finally:
            with self._state:
                self._active -= 1

    def release_memory(self) -> None:
        """Shrink the session's CPU arena: a tiny run that frees the unused arena chunks after it.

        The largest activations' memory (~420 B per output px) is then not held; the next
        call grows the arena again.  See :meth:`release_later`.
        """
        import onnxruntime as ort

        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        channels = self.session.get_inputs()[0].shape[1]
        channels = channels if isinstance(channels, int) else 1
        self.session.run(None, {self.input_name: np.zeros((1, channels, 8, 8), np.float32)}, options)
        log.debug("ONNX Runtime arena shrunk (%s)", self.key[:12])

    def __call__(self, x: torch.Tensor, stop: Callable[[], bool] | None = None) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.numpy(array, stop))


def weights_digest(net: nn.Module, *, exporter: str = DEFAULT_EXPORTER, opset: int | None = None) -> str:
    """SHA-256 (hex) of the architecture, the weights and the export settings: the disk cache key."""
    h = hashlib.sha256()
    config = getattr(net, "config", None)
    h.update(type(net).__qualname__.encode())
    if config is not None:
        try:
            from dataclasses import asdict

            h.update(json.dumps(asdict(config), sort_keys=True, default=str).encode())
        except TypeError:
            h.update(repr(config).encode())
    for name, tensor in net.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(f"{exporter}:{opset}:{torch.__version__.split('+')[0]}".encode())
    return h.hexdigest()


def _fingerprint(net: nn.Module) -> tuple[tuple[int, int], ...]:
    """Cheap identity of a network's current weights: storage and in-place version of every tensor."""
    return tuple((t.data_ptr(), t._version) for t in net.state_dict(keep_vars=True).values())


_lock = threading.Lock()
#: network -> {(weights fingerprint, dtype, device): OnnxRunner or the export error}
_sessions: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], OnnxRunner | str]] = weakref.WeakKeyDictionary()


def _disk_cache_enabled() -> bool:
    return os.environ.get(_DISK_CACHE_ENV, "1") != "0"


def cached_bytes(path: Path, make: Callable[[], bytes], what: str) -> bytes:
    """``path``'s bytes when the disk cache holds them, else ``make()``'s, stored there atomically.

    A cache that cannot be read or written only logs a warning (inference goes on); the cache is
    off with ``NAPARI_SUPERRES_ONNX_DISK_CACHE=0``.
    """
    if _disk_cache_enabled() and path.is_file():
        try:
            return path.read_bytes()
        except OSError:
            log.warning("cannot read the cached %s %s; making it again", what, path, exc_info=True)
    data = make()
    if _disk_cache_enabled():
        try:
            from ..nets.model_file import atomic_write_bytes

            atomic_write_bytes(path, data)
        except OSError:
            log.warning("cannot write the %s cache %s (inference goes on)", what, path, exc_info=True)
    return data


def _exported_bytes(
    net: nn.Module, in_channels: int | None, *, folded: bool = False, skip: bool = True
) -> tuple[bytes, str]:
    """The network's ONNX bytes and weights digest, from the disk cache when there (else exported and stored).

    ``folded``: the export of :func:`~napari_superres.engine.nets.folding.fold_upsampling` ``(net)``
    (every conv at low resolution, the same result), which the reduced-precision paths quantize;
    ``skip=False`` with it: without the bicubic global skip (the int8 runner adds it in torch).
    """
    from ..nets.folding import fold_upsampling

    digest = weights_digest(net)
    if folded:
        module, name = fold_upsampling(net, skip=skip), f"{digest}-folded{'' if skip else '-noskip'}.onnx"
    else:
        module, name = net, f"{digest}.onnx"
    data = cached_bytes(cache_dir() / name, lambda: export_onnx(module, in_channels=in_channels), "ONNX graph")
    return data, digest


def onnx_runner(
    net: nn.Module, *, in_channels: int | None = None, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> OnnxRunner | None:
    """The cached ONNX Runtime runner of ``net``, or ``None`` (no ONNX Runtime, or not exportable).

    Exported once per (weights, ``dtype``, ``device``); a network whose weights change in
    place (training) is exported again on its next use.  Only float32 on the CPU is
    supported; anything else returns ``None``.
    """
    if dtype != torch.float32 or torch.device(device).type != "cpu" or not onnxruntime_available():
        return None
    if next(iter(net.parameters()), None) is None:
        return None  # nothing to gain for parameter-free baselines (bicubic)
    key = (_fingerprint(net), str(dtype), str(device))
    with _lock:
        per_net = _sessions.setdefault(net, {})
        cached = per_net.get(key)
        if cached is None:
            try:
                data, digest = _exported_bytes(net, in_channels)
                cached = OnnxRunner(make_session(data), key=digest)
            except Exception as exc:  # any export/session failure means: use torch
                log.warning("ONNX Runtime backend unavailable for %s; using torch", type(net).__name__, exc_info=True)
                cached = f"{type(exc).__name__}: {exc}"
            per_net.clear()  # older weights of this network are no longer needed
            per_net[key] = cached
    return cached if isinstance(cached, OnnxRunner) else None


def onnx_failure(net: nn.Module) -> str | None:
    """Why :func:`onnx_runner` returned ``None`` for ``net`` last time (``None`` if it did not fail)."""
    with _lock:
        for value in _sessions.get(net, {}).values():
            if isinstance(value, str):
                return value
    return None
