"""Quantization-aware fine-tuning of a network for its int8 graph, distilled from its own fp32 output.

Post-training int8 quantization (:func:`~napari_superres.engine.infer.precision.quantize_int8`)
rounds every activation of the body to 256 levels; on clean, high-PSNR images (47-57 dB) that
noise costs 0.1-0.5 dB.  Here the body's weights are fine-tuned with the int8 graph's rounding
simulated in the forward pass (``torch.fake_quantize_*``: per-channel int8 weights, the graph's
own per-tensor uint8 activation scales, straight-through gradients), towards the fp32 network's
output on the same inputs, so the int8 graph built from the tuned weights with those same
activation scales computes what the fp32 network computes, as closely as 8 bits allow.

Only the body's quantized convolutions change (the first, the upsampling and the last stay fp32
in the built-ins' graph; a folded upsampling conv that is quantized keeps the weights it is folded
from, and the body learns around its rounding); the tuned weights live in a companion file next to the
model (``<model>.int8.safetensors``, :func:`save_int8_tuning`), read by ``precision="int8"``.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nets.folding import fold_upsampling

#: Tensor names of the legacy ONNX exporter: ``/<scope>/<scope>/<Op>_output_0``.
_TENSOR = re.compile(r"^/(?P<scope>.+)/(?P<op>[A-Za-z]+)(?:_\d+)?_output_0$")
_NODE = re.compile(r"^/(?P<scope>.+)/(?P<op>[A-Za-z]+)(?:_\d+)?$")


def module_of(scope: str) -> str:
    """The module path (``"body.0.conv1"``) of an exporter scope (``"body/body.0/conv1"``)."""
    name = ""
    for part in scope.split("/"):
        name = part if not name or part.startswith(name + ".") else f"{name}.{part}"
    return name


@dataclass
class Int8Tuning:
    """Fine-tuned weights for the int8 graph and the activation scales they were tuned for."""

    state: dict[str, torch.Tensor]  #: the whole state dict of the network, tuned body included
    activation_params: dict[str, tuple[float, int]]  #: ONNX tensor name -> (scale, zero point)
    info: dict[str, Any] = field(default_factory=dict)  #: steps, rate, losses, seconds


def _quantized_layout(quantized: bytes) -> tuple[list[str], dict[str, tuple[float, int]]]:
    """Module paths of the graph's int8 convolutions, and its activation parameters by tensor name."""
    import onnx

    from ..infer.precision import activation_params

    graph = onnx.load_from_string(quantized).graph
    producers = {out: node for node in graph.node for out in node.output}
    convs = []
    for node in graph.node:
        weight = producers.get(node.input[1]) if node.op_type == "Conv" else None
        if weight is not None and weight.op_type == "DequantizeLinear":
            match = _NODE.match(node.name)
            if match is None:
                raise ValueError(f"cannot map the int8 convolution {node.name!r} to a module")
            convs.append(module_of(match["scope"]))
    return convs, activation_params(quantized)


def _fake_quant_weight(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 rounding of a conv weight (ONNX Runtime's: scale = max|w| / 127)."""
    scale = (weight.detach().abs().amax(dim=(1, 2, 3)) / 127).clamp_min(1e-12)
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -127, 127)


def fake_quantized(net: nn.Module, quantized: bytes) -> tuple[nn.Module, list[str], dict[str, tuple[float, int]]]:
    """A copy of ``net`` that rounds as the int8 graph ``quantized`` does; its int8 convs' module paths;
    the graph's activation parameters.

    Raises ``ValueError`` when an activation of the graph has no module output to round.
    """
    student = copy.deepcopy(net)
    modules = dict(student.named_modules())
    convs, params = _quantized_layout(quantized)
    for name, (scale, zero) in params.items():
        match = _TENSOR.match(name)
        module = modules.get(module_of(match["scope"])) if match else None
        if module is None:
            raise ValueError(f"no module computes the int8 graph's activation {name!r}")
        module.register_forward_hook(
            lambda _m, _i, out, s=scale, z=zero: torch.fake_quantize_per_tensor_affine(out, s, z, 0, 255)
        )
    for name in convs:
        conv = modules[name]
        conv.forward = (  # an instance attribute on the copy: the conv with its weights rounded
            lambda x, c=conv: F.conv2d(x, _fake_quant_weight(c.weight), c.bias, c.stride, c.padding)
        )
    return student, convs, params


def tune_int8(
    net: nn.Module,
    quantized: bytes,
    inputs: list[np.ndarray],
    *,
    steps: int = 600,
    lr: float = 1e-4,
    patch: int = 48,
    batch: int = 16,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
) -> Int8Tuning:
    """Fine-tune the int8 convolutions of ``net`` so its int8 graph ``quantized`` matches its fp32 output.

    ``inputs``: network inputs ``(1, C_in [+ maps], H, W)`` float32 as inference builds them (low-res
    images of the kinds the model serves, normalised, maps appended), at least ``patch`` px; random
    ``patch``-px crops, ``batch`` per step.  Loss: each crop's mean squared difference from the fp32
    output relative to its own current value (the gradient of its log), so clean, high-PSNR crops,
    whose rounding noise costs the most dB, count as much as noisy ones.  Adam, cosine ``lr``.
    """
    teacher = copy.deepcopy(net).eval()
    # the graph is exported from the folded network: the student is that form, so every rounding of the
    # graph (the folded upsampling conv's too) has its module; only convs the network itself has are tuned
    student, convs, params = fake_quantized(fold_upsampling(net), quantized)
    student.train()
    own = {name for name, _ in net.named_modules()}
    for name, p in student.named_parameters():
        module = name.rsplit(".", 1)[0]
        p.requires_grad_(module in convs and module in own and module.startswith(("head.", "body.")))
    trainable = [p for p in student.parameters() if p.requires_grad]
    rng = np.random.default_rng(seed)
    pool = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in inputs]
    optimizer = torch.optim.Adam(trainable, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    start, first, last = time.perf_counter(), None, None
    for step in range(steps):
        crops = []
        for _ in range(batch):
            x = pool[int(rng.integers(len(pool)))]
            y0, x0 = (int(rng.integers(0, x.shape[d] - patch + 1)) for d in (2, 3))
            crops.append(x[:, :, y0 : y0 + patch, x0 : x0 + patch])
        x = torch.cat(crops)
        with torch.no_grad():
            target = teacher(x)
        per_crop = (student(x) - target).pow(2).mean(dim=(1, 2, 3))
        loss = (per_crop / (per_crop.detach() + 1e-12)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        mse = float(per_crop.detach().mean())
        first = mse if first is None else first
        last = mse if last is None else 0.9 * last + 0.1 * mse
        if log is not None and (step % 50 == 0 or step == steps - 1):
            log(f"int8 tuning step {step + 1}/{steps}: mse to fp32 {mse:.3e} ({time.perf_counter() - start:.0f} s)")
    tuned = student.state_dict()
    state = {
        k: (tuned[k] if k.startswith(("head.", "body.")) else v).detach().clone() for k, v in net.state_dict().items()
    }
    info = {"steps": steps, "lr": lr, "patch": patch, "batch": batch, "seed": seed, "inputs": len(pool),
            "first_mse": first, "final_mse_ema": last, "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    return Int8Tuning(state, params, info)


def save_int8_tuning(path: str | Path, tuning: Int8Tuning, model_sha256: str) -> None:
    """Write ``tuning`` as safetensors (atomically), stamped with the SHA-256 of the model file it tunes."""
    from safetensors.torch import save

    from ..nets.model_file import atomic_write_bytes

    metadata = {
        "model_sha256": model_sha256,
        "activation_params": json.dumps(tuning.activation_params, sort_keys=True),
        "info": json.dumps(tuning.info, sort_keys=True),
    }
    tensors = {k: v.contiguous() for k, v in tuning.state.items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))
