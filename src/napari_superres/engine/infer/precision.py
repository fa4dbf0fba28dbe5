"""Reduced-precision CPU inference: bf16 through oneDNN (torch) and int8 through ONNX Runtime.

* ``"fp32"``: the network as it is (ONNX Runtime fp32 on the CPU, see :mod:`.onnx_backend`).
* ``"bf16"``: the network folded to low resolution and run as bf16 oneDNN convolutions with
  their activations and residual sums fused (:mod:`.bf16`; eager ``torch.autocast`` for other
  networks) on AVX-512 BF16 (or AMX) units.  Needs the CPU flag ``avx512_bf16`` or ``amx_bf16``.
* ``"int8"``: the ONNX export of the folded network statically quantized by ONNX Runtime (QDQ
  format, per-channel int8 weights, uint8 activations calibrated on low-res images of the kinds
  the built-in models were trained on, with the degradation maps ``upscale()`` appends,
  :mod:`.calibration`); the first, the upsampling and the last convolutions stay in fp32
  (:data:`KEEP_FP32`).  Where the model has int8-tuned weights (``<model>.int8.safetensors``,
  :func:`int8_tuning`: fine-tuned with the graph's rounding simulated, towards the fp32 output,
  ``scripts/finetune_int8.py``), the graph is built from them with the activation scales they
  were tuned for.  The session's idle threads sleep instead of spinning (:data:`INT8_SPINNING`).
  Needs VNNI (``avx512_vnni``, ``avx_vnni`` or ``amx_int8``) to be faster than fp32.
  Quantized graphs are cached on disk next to the fp32 exports.
* ``"auto"``: the fastest precision whose quality loss against fp32, measured offline on
  held-out images (``benchmarks/precision.py``, a JSON file shipped next to a built-in model:
  ``<model>.precision.json``), is within :data:`AUTO_MAX_LOSS_DB`, among those this CPU
  runs; fp32 for any other model or device.

Both reduced precisions run the network folded to low resolution
(:func:`~napari_superres.engine.nets.folding.fold_upsampling`, the same result as the network).
"""

from __future__ import annotations

import copy
import functools
import json
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..nets import model_file
from ..nets.folding import foldable
from ..nets.srnet import SRNetConfig, bicubic_skip
from ..options import PRECISIONS
from .bf16 import bf16_forward  # noqa: F401 - the bf16 path, re-exported for the pipeline
from .calibration import calibration_inputs
from .onnx_backend import OnnxRunner

#: ``auto`` accepts a reduced precision costing at most this much PSNR (dB) against fp32.
AUTO_MAX_LOSS_DB = 0.05
#: Convolutions kept in fp32 in the int8 graph (of the network folded to low resolution): the first,
#: the last and the upsampling ones (``"hr"``: the folded conv and its border strips; ``"border"``: the
#: strips alone).  Measured on the built-in x2 (``benchmarks/precision.py``, 1024², 2 threads, median of
#: 5; loss: largest mean-PSNR loss against fp32 over the natural, EM and fluorescence sets), with the
#: weights tuned for each graph (``scripts/finetune_int8.py``), the bicubic skip still in the graph:
#: ``"hr"`` in fp32 2.07x ORT fp32 in CPU time (1.91x wall), 0.039 dB; the folded conv quantized
#: 2.35-2.47x (2.18-2.29x wall), 0.061 dB after 600 tuning steps, 0.058 after 1500.  With the skip in
#: torch (:class:`BicubicSkipRunner`), ``"hr"`` in fp32: 2.19x CPU time, 2.18x wall, 0.036 dB.
#: Calibrated only (no tuning), ``"hr"`` in fp32: 0.12-0.14 dB; no single body conv kept in fp32 lowers
#: that by more than 0.02 dB (the error is spread).
KEEP_FP32 = ("first", "hr", "last")
#: Idle threads of the int8 session spin for work (measured, 512² input, 2 threads, load 10.8:
#: without spinning 0.99 CPU-s per call against 1.16 s with it, 2.29x against 1.97x ORT fp32).
INT8_SPINNING = False
#: Version of the calibration inputs (:mod:`.calibration`) and of the graph quantized (c4: folded; c5:
#: folded without the bicubic skip): part of the cached int8 graph's name.
CALIBRATION_VERSION = "c5"
#: ONNX Runtime calibration method (``"minmax"``, ``"percentile"`` or ``"entropy"``) and percentile.
#: Measured (first and last convolutions in fp32; loss on fluorescence / synthetic, bicubic): minmax
#: 0.57 / 2.87 dB, percentile 99.999 0.36 / 1.62, 99.99 0.27 / 1.12, 99.9 0.19 / 1.86 (with ``"hr"``
#: in fp32 too: 99.99 0.16 / 0.54, 99.9 0.14 / 1.61): tighter ranges help the clean fluorescence
#: images and clip the bright synthetic fields.  With the default calibration (synthetic fields alone,
#: ``"hr"`` in fp32; fluorescence / synthetic / EM): 99.999 0.165 / 0.71 / 0.003, 99.99 0.104 / 0.44 /
#: 0.028, 99.9 0.196 / 1.67 / 0.121 dB.
CALIBRATION_METHOD = "percentile"
CALIBRATION_PERCENTILE = 99.99
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
PRECISION_SUFFIX = ".precision.json"
#: Companion file of int8 fine-tuned weights (``scripts/finetune_int8.py``) next to a model file.
INT8_SUFFIX = model_file.INT8_SUFFIX


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_support(precision: str) -> tuple[bool, str]:
    """``(supported, reason)``: whether this CPU runs ``precision`` faster than fp32, and why (not)."""
    if precision == "fp32":
        return True, "fp32 runs everywhere"
    flags = cpu_flags()
    if precision == "bf16":
        if not torch.backends.mkldnn.is_available():
            return False, "torch was built without oneDNN (mkldnn)"
        found = [f for f in _BF16_FLAGS if f in flags]
        capability = torch.backends.cpu.get_cpu_capability()
        if not found:
            return False, f"the CPU has no bf16 instructions ({' or '.join(_BF16_FLAGS)}); capability {capability}"
        return True, f"oneDNN bf16 ({', '.join(found)}; capability {capability})"
    if precision == "int8":
        from .onnx_backend import onnxruntime_available

        if not onnxruntime_available():
            return False, "needs onnxruntime and onnx: pip install 'napari-superres[onnx]'"
        found = [f for f in _INT8_FLAGS if f in flags]
        if not found:
            return False, f"the CPU has no int8 dot-product instructions ({' or '.join(_INT8_FLAGS)})"
        return True, f"ONNX Runtime int8 ({', '.join(found)})"
    raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def check_precision(precision: str | None) -> str:
    """``precision`` lower-cased (default ``"fp32"``); ``ValueError`` naming the choices otherwise."""
    name = (precision or "fp32").lower() if isinstance(precision, str) or precision is None else precision
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return name


def measurement_file(model: Any) -> Path | None:
    """Where the offline measurement of an :class:`SRModel` would be: ``<model file stem>.precision.json``.

    Built-in models: next to their file in the package; models loaded from a file: next to
    that file; anything else (session, Python objects): ``None``.
    """
    source = str(getattr(model, "source", "") or "")
    if source == "builtin":
        path = Path(__file__).resolve().parents[2] / "models" / f"{model.name}.safetensors"
    elif source.endswith(".safetensors"):
        path = Path(source)
    else:
        return None
    return path.with_name(path.stem + PRECISION_SUFFIX)


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def measured_precisions(model: Any) -> dict[str, Any]:
    """The offline measurement of ``model`` (``benchmarks/precision.py``), or ``{}`` when none applies.

    Format: ``{"model_sha256": ..., "precisions": {"bf16": {"speedup": 1.4, "loss_db": 0.003}, ...}}``:
    ``speedup`` against ONNX Runtime fp32 and ``loss_db`` the largest mean PSNR loss of any
    held-out set.  Ignored unless ``model_sha256`` is the SHA-256 of the model file as it is
    now (a retrained model is measured again).
    """
    path = measurement_file(model)
    if path is None:
        return {}
    weights = path.with_name(path.name[: -len(PRECISION_SUFFIX)] + ".safetensors")
    try:
        measured = json.loads(path.read_text())
        stat = weights.stat()
        digest = _file_sha256(str(weights), stat.st_mtime_ns, stat.st_size)
    except (OSError, ValueError):
        return {}
    if not isinstance(measured, dict) or measured.get("model_sha256") != digest:
        return {}
    return measured


def int8_tuning(model: Any) -> tuple[dict[str, torch.Tensor], dict[str, tuple[float, int]]] | None:
    """The int8 fine-tuned weights of ``model`` and their activation scales, or ``None``.

    Read from ``<model file stem>.int8.safetensors`` (:mod:`~napari_superres.engine.train.int8_tuning`)
    when its ``model_sha256`` is the SHA-256 of the model file as it is now (a retrained model is
    quantized after calibration until it is tuned again).  safetensors: no code runs on loading.
    Read once per version of the two files (the pipeline asks on every int8 job).
    """
    path = measurement_file(model)
    if path is None:
        return None
    tuned = path.with_name(path.name[: -len(PRECISION_SUFFIX)] + INT8_SUFFIX)
    weights = path.with_name(path.name[: -len(PRECISION_SUFFIX)] + ".safetensors")
    try:
        t, w = tuned.stat(), weights.stat()
    except OSError:
        return None
    return _read_int8_tuning(str(tuned), t.st_mtime_ns, t.st_size, str(weights), w.st_mtime_ns, w.st_size)


@functools.lru_cache(maxsize=4)
def _read_int8_tuning(
    tuned: str, tuned_mtime_ns: int, tuned_size: int, weights: str, mtime_ns: int, size: int
) -> tuple[dict[str, torch.Tensor], dict[str, tuple[float, int]]] | None:
    try:
        from safetensors import safe_open

        with safe_open(tuned, framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("model_sha256") != _file_sha256(weights, mtime_ns, size):
                return None
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
        params = {k: (float(v[0]), int(v[1])) for k, v in json.loads(metadata["activation_params"]).items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return state, params


def choose_auto(measured: dict[str, Any], device: torch.device) -> str:
    """The fastest precision of ``measured`` within :data:`AUTO_MAX_LOSS_DB` that this CPU runs; else fp32."""
    if device.type != "cpu":
        return "fp32"
    best, best_speed = "fp32", 1.0
    for name, figures in (measured.get("precisions") or {}).items():
        if name not in ("bf16", "int8") or not isinstance(figures, dict):
            continue
        try:
            speed, loss = float(figures["speedup"]), float(figures["loss_db"])
        except (KeyError, TypeError, ValueError):
            continue
        if loss <= AUTO_MAX_LOSS_DB and speed > best_speed and cpu_support(name)[0]:
            best, best_speed = name, speed
    return best


def resolve_precision(precision: str | None, device: torch.device, model: Any = None) -> str:
    """What runs ``model`` (an :class:`SRModel`): ``"fp32"``, ``"bf16"`` or ``"int8"``.

    An explicit reduced precision must be possible: a ``ValueError`` names the fix when the
    device is not a CPU or the CPU lacks the instructions (``"auto"`` falls back to fp32).
    Parameter-free networks (bicubic) always run in fp32.
    """
    name = check_precision(precision)
    net = getattr(model, "net", None)
    if net is not None and next(iter(net.parameters()), None) is None:
        return "fp32"
    if name == "auto":
        return choose_auto(measured_precisions(model), device)
    if name == "fp32":
        return name
    if device.type != "cpu":
        raise ValueError(f"precision {name!r} is a CPU option; use precision='fp32' (or 'auto') on {device}")
    ok, reason = cpu_support(name)
    if not ok:
        raise ValueError(f"precision {name!r} cannot run here: {reason}; use precision='fp32' or 'auto'")
    return name


# --- int8 (ONNX Runtime static quantization) ----------------------------------------------------
class _Reader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over a list of inputs."""

    def __init__(self, name: str, inputs: list[np.ndarray]) -> None:
        self._it: Iterator[np.ndarray] = iter(inputs)
        self.name = name

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self.name: x}

    def rewind(self) -> None:  # pragma: no cover - not used by quantize_static
        raise NotImplementedError


def quantize_int8(
    fp32_model: bytes,
    *,
    in_channels: int = 1,
    cond_channels: int = 0,
    keep_fp32: tuple[str, ...] = KEEP_FP32,
    method: str = CALIBRATION_METHOD,
    inputs: list[np.ndarray] | None = None,
    activation_params: dict[str, tuple[float, int]] | None = None,
) -> bytes:
    """Statically quantize an fp32 ONNX graph (:func:`~.onnx_backend.export_onnx`) to int8 QDQ bytes.

    Convolutions only, per-channel int8 weights, uint8 activations calibrated on ``inputs``
    (default :func:`~.calibration.calibration_inputs` for ``in_channels`` image channels and
    ``cond_channels`` degradation maps) by ``method``; ``keep_fp32`` names the convolutions left in
    fp32 (``"first"``, ``"last"``, ``"hr"``: the upsampling convolutions (unfolded: the one before
    the last), ``"border"``: a folded graph's border-strip convolutions, or node names).
    ``activation_params``: ``{tensor name: (scale, zero point)}`` that override the calibrated ones
    (:func:`activation_params` of another graph: those a network was fine-tuned for).
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .onnx_backend import INPUT_NAME

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="superres-int8-") as tmp:
        src, pre, dst = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(fp32_model)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre)).graph
        convs = [n.name for n in graph.node if n.op_type == "Conv"]
        upsampling = [c for c in convs if "/upsampler/" in c]  # folded: the folded conv and its border strips
        border = [c for c in upsampling if "/folded/" not in c] if any("/folded/" in c for c in upsampling) else []
        names = {"first": convs[:1], "last": convs[-1:], "hr": upsampling or convs[-2:-1], "border": border}
        exclude = sorted({c for k in keep_fp32 for c in names.get(k, [k])})
        quantize_static(
            str(pre), str(dst), _Reader(INPUT_NAME, inputs or calibration_inputs(in_channels, cond_channels)),
            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"], nodes_to_exclude=exclude,
            calibrate_method=methods[method],
            extra_options={"CalibTensorRangeSymmetric": False, "CalibPercentile": CALIBRATION_PERCENTILE,
                           "TensorQuantOverrides": {name: [{"scale": np.array(scale, np.float32), "zero_point": np.array(zp, np.uint8)}]
                                                    for name, (scale, zp) in (activation_params or {}).items()}},
        )  # fmt: skip
        return dst.read_bytes()


def activation_params(quantized: bytes) -> dict[str, tuple[float, int]]:
    """``{tensor name: (scale, zero point)}`` of every quantized activation of a QDQ graph (weights excluded)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(quantized).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    return {
        node.input[0]: (float(constants[node.input[1]]), int(constants[node.input[2]]))
        for node in graph.node
        if node.op_type == "QuantizeLinear" and node.input[0] not in constants and node.input[1] in constants
    }


def _folded_bytes(net: nn.Module, in_channels: int) -> tuple[bytes, str]:
    """The fp32 ONNX bytes of the graph int8 quantizes (cached on disk) and the weights' digest: ``net``
    folded to low resolution, without its bicubic global skip (:func:`int8_runner` adds that in torch)."""
    from .onnx_backend import _exported_bytes

    return _exported_bytes(net, in_channels, folded=True, skip=False)


class BicubicSkipRunner(OnnxRunner):
    """An int8 graph that lacks the network's bicubic global skip, with the skip added in torch.

    Called as :class:`~.onnx_backend.OnnxRunner`: ``(N, C_in [+ maps], H, W)`` -> ``(N, C_out, sH, sW)``
    float32, the network's sum.  ONNX Runtime's bicubic ``Resize`` of the output plane took an eighth of
    the int8 graph's time at 1024² (0.3 s; torch's ``F.interpolate`` of the same plane: 0.03 s).
    """

    def __init__(self, session: Any, key: str = "", *, config: SRNetConfig) -> None:
        super().__init__(session, key)
        self.config = config  #: the network's configuration (image channels, scale)

    def numpy(self, x: np.ndarray, stop: Callable[[], bool] | None = None) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = super().numpy(x, stop)
        with torch.no_grad():
            torch.from_numpy(out).add_(bicubic_skip(torch.from_numpy(x), self.config))  # out: a fresh array
        return out


_lock = threading.Lock()
_int8: weakref.WeakKeyDictionary[nn.Module, dict[Any, Any]] = weakref.WeakKeyDictionary()


def int8_runner(net: nn.Module, *, in_channels: int = 1, tuning: Any = None) -> Any:
    """The cached int8 :class:`~.onnx_backend.OnnxRunner` of ``net`` (quantized once, cached on disk).

    ``tuning``: :func:`int8_tuning`'s ``(state, activation_params)``: the graph is built from those
    weights with those activation scales instead of from ``net`` with calibrated ones.
    Raises ``RuntimeError`` naming the reason when the network cannot be exported or quantized.
    """
    from .onnx_backend import _fingerprint, cache_dir, cached_bytes, make_session

    cond = int(getattr(getattr(net, "config", None), "cond_channels", 0) or 0)
    cond = cond if in_channels > cond else 0  # a graph of the image alone computes its maps itself
    key = (_fingerprint(net), KEEP_FP32, CALIBRATION_METHOD, CALIBRATION_VERSION, tuning is not None)
    with _lock:
        per_net = _int8.setdefault(net, {})
        if key in per_net:
            return per_net[key]
        try:
            params = None
            if tuning is not None:
                state, params = tuning
                net = copy.deepcopy(net)
                net.load_state_dict(state)
            data, digest = _folded_bytes(net, in_channels)
            tag = f"{'-'.join(KEEP_FP32) or 'all'}-{'tuned' if params else CALIBRATION_METHOD}-{CALIBRATION_VERSION}"
            path = cache_dir() / f"{digest}-int8-{tag}.onnx"
            make = functools.partial(quantize_int8, data, in_channels=in_channels - cond, cond_channels=cond,
                                     activation_params=params)  # fmt: skip
            quantized = cached_bytes(path, make, "int8 graph")
            session = make_session(quantized, spinning=INT8_SPINNING)
            # the graph of a foldable network leaves its global skip out (_folded_bytes): added in torch
            skip_outside = foldable(net) and net.config.global_skip
            runner = (
                BicubicSkipRunner(session, key=f"{digest}-int8", config=net.config) if skip_outside
                else OnnxRunner(session, key=f"{digest}-int8")
            )  # fmt: skip
        except Exception as exc:
            raise RuntimeError(f"could not quantize {type(net).__name__} to int8: {type(exc).__name__}: {exc}") from exc
        per_net.clear()
        per_net[key] = runner
        return runner
