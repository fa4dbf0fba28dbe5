"""BioImage Model Zoo (bioimage.io, model spec 0.5) packages of our models: export.

:func:`export_bioimageio` writes one ``.zip`` that bioimage.io consumers (bioimageio.core,
deepImageJ, ilastik, Fiji, careamics, QuPath...) can run without napari-superres:

* weights: ``pytorch_state_dict`` (``weights.pt``, a plain tensor dict, read with
  ``torch.load(weights_only=True)``) with the architecture as a source file
  (``srnet_architecture.py``, a torch-only copy of SRNet:
  :mod:`napari_superres.io.bioimageio_arch`), plus ``torchscript`` and ``onnx``;
* input ``input`` ``(batch, channel, y, x)`` float32 whose Y/X sizes are parameterized
  (``min + n*step``) so consumers can tile, output ``output`` with Y/X sizes declared as
  the input's times ``scale`` (``SizeReference`` with ``scale = 1/scale``) and a halo of
  the network's receptive field, so tiles hand over without seams;
* pre/post-processing matching our intensity normalisation (see :func:`processing_for`);
* test input/output tensors (``.npy``), a cover image (PNG: input | output), the model
  card as documentation, citations of the method and the training data, and in the
  package's ``config.napari_superres`` our own model file name, so
  :func:`napari_superres.io.bioimageio_import.load_bioimageio_model` loads our packages
  back with the exact weights (``model.safetensors`` is attached).

Static validation runs when the description is built (bioimageio.spec); the dynamic
check (:func:`bioimageio.core.test_model`) is optional (``test=True``) because it runs
every weight format on the test tensors and several tile sizes (seconds on a CPU).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.errors import ModelFileError
from .bioimageio_metadata import (
    DATA_SOURCES,
    DEFAULT_AUTHORS,
    DEFAULT_VERSION,
    GIT_REPO,
    METHOD_CITATIONS,
    authors_descr,
    data_sources_in,
    maintainers_descr,
    plain_name,
    pytorch_versions,
    training_data_descr,
)

if TYPE_CHECKING:
    from ..engine.nets.model_file import SRModel

log = logging.getLogger(__name__)

#: Files inside a package (names are stable: the importer looks for them).
ARCH_FILE = "srnet_architecture.py"
ARCH_CALLABLE = "SRNet"
STATE_DICT_FILE = "weights.pt"
TORCHSCRIPT_FILE = "weights_torchscript.pt"
ONNX_FILE = "weights.onnx"
NATIVE_MODEL_FILE = "model.safetensors"
TEST_INPUT_FILE = "test_input.npy"
TEST_OUTPUT_FILE = "test_output.npy"
SAMPLE_INPUT_FILE = "sample_input.tif"
SAMPLE_OUTPUT_FILE = "sample_output.tif"
COVER_FILE = "cover.png"
DOC_FILE = "README.md"
#: Key of our own section in the package's ``config``.
CONFIG_KEY = "napari_superres"
INPUT_ID = "input"
OUTPUT_ID = "output"
#: Weight formats written by default (pytorch_state_dict is always written: it is the source).
WEIGHT_FORMATS = ("pytorch_state_dict", "torchscript", "onnx")
#: Step between the input tile edges a consumer may use (the smallest: :func:`input_min_size`).
INPUT_SIZE_STEP = 8
#: Edge of the default test image (input pixels); small keeps ``test_model`` fast.
TEST_IMAGE_SIZE = 64
#: Reproducibility tolerance declared for every weight format (outputs are float32 in [0, ~1]).
ABSOLUTE_TOLERANCE = 1e-3
RELATIVE_TOLERANCE = 1e-3
#: Percentile normalisation epsilon (bioimage.io's ``scale_range``: ``/(hi - lo + eps)``).
SCALE_RANGE_EPS = 1e-6


class BioimageioExportError(ModelFileError):
    """A model cannot be written as a bioimage.io package; the message says why and what to do."""


def input_min_size(receptive_field: int) -> int:
    """Smallest input tile edge: more than the halo on both sides, rounded up to the size step.

    bioimage.io consumers crop ``halo`` output pixels from both sides of every tile, so a
    tile must be larger than ``2 * receptive_field`` input pixels to keep any output.
    """
    return -(-(2 * int(receptive_field) + 1) // INPUT_SIZE_STEP) * INPUT_SIZE_STEP


# --- compatibility ---------------------------------------------------------------------------


def require_bioimageio() -> None:
    """Raise :class:`BioimageioExportError` naming the extra to install when bioimageio.core is missing."""
    import importlib.util

    if importlib.util.find_spec("bioimageio") is None or importlib.util.find_spec("bioimageio.core") is None:
        raise BioimageioExportError(
            "bioimage.io packages need bioimageio.core: pip install 'napari-deep-superres[bioimageio]'"
        )


# --- pre/post-processing -----------------------------------------------------------------------


def processing_for(normalization: dict[str, Any], dtype: np.dtype, channels: int) -> tuple[list, list, str]:
    """bioimage.io pre- and post-processing equal to our ``normalization`` for inputs of ``dtype``.

    * ``percentile`` (``low``, ``high``): ``scale_range`` over Y, X (and channel: one range
      per image, as our engine) per sample, ``eps`` 1e-6.  Spec 0.5 has no inverse of a
      per-sample percentile map, so the output stays in normalised units (0 = the input's
      low percentile, 1 = its high percentile), as CARE/CSBDeep packages do.
    * ``dtype`` on an integer ``dtype``: a fixed ``scale_linear`` by the dtype's range
      (uint16: ``x / 65535``) and the inverse ``scale_linear`` after the network, so the
      output is in the input's units.
    * ``dtype`` on a float ``dtype``: our engine maps the image's min/max to 0/1, i.e.
      ``scale_range`` with percentiles 0 and 100 (output in normalised units).

    Returns ``(preprocessing, postprocessing, output_unit_note)``.
    """
    from bioimageio.spec.model.v0_5 import (
        AxisId,
        EnsureDtypeDescr,
        EnsureDtypeKwargs,
        ScaleLinearDescr,
        ScaleLinearKwargs,
        ScaleRangeDescr,
        ScaleRangeKwargs,
    )

    axes = [AxisId("channel"), AxisId("y"), AxisId("x")] if channels > 1 else [AxisId("y"), AxisId("x")]
    to_float = EnsureDtypeDescr(kwargs=EnsureDtypeKwargs(dtype="float32"))
    mode = normalization.get("mode", "dtype")
    dtype = np.dtype(dtype)
    if mode == "percentile":
        low, high = float(normalization.get("low", 1.0)), float(normalization.get("high", 99.8))
        pre = [
            to_float,
            ScaleRangeDescr(
                kwargs=ScaleRangeKwargs(axes=axes, min_percentile=low, max_percentile=high, eps=SCALE_RANGE_EPS)
            ),
        ]
        note = (
            f"normalised units: 0 and 1 are the input's {low:g} and {high:g} percentiles "
            "(multiply by (p_high - p_low) and add p_low for the input's units)"
        )
        return pre, [], note
    if mode != "dtype":
        raise BioimageioExportError(f"normalization mode {mode!r} has no bioimage.io equivalent")
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        lo = 0.0 if info.min == 0 else float(info.min)
        span = float(info.max) - lo
        pre = [to_float, ScaleLinearDescr(kwargs=ScaleLinearKwargs(gain=1.0 / span, offset=-lo / span))]
        post = [ScaleLinearDescr(kwargs=ScaleLinearKwargs(gain=span, offset=lo))]
        return pre, post, f"the input's units ({dtype.name} range, values not clipped or rounded)"
    pre = [
        to_float,
        ScaleRangeDescr(
            kwargs=ScaleRangeKwargs(axes=axes, min_percentile=0.0, max_percentile=100.0, eps=SCALE_RANGE_EPS)
        ),
    ]
    return pre, [], "normalised units: 0 and 1 are the input's minimum and maximum"


def apply_processing(image: np.ndarray, normalization: dict[str, Any]) -> tuple[np.ndarray, float, float]:
    """Our side of :func:`processing_for`: ``(normalised float32, lo, hi)`` for a ``(C, H, W)`` image."""
    from ..engine.normalization import intensity_range

    lo, hi = intensity_range(image, normalization)
    mode = normalization.get("mode", "dtype")
    eps = 0.0 if (mode == "dtype" and np.issubdtype(image.dtype, np.integer)) else SCALE_RANGE_EPS
    if mode == "dtype" and not np.issubdtype(image.dtype, np.integer):
        lo, hi = float(np.min(image)), float(np.max(image))  # scale_range 0/100: the image's own range
    x = (image.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo + eps)
    return x.astype(np.float32), lo, hi


# --- the package -------------------------------------------------------------------------------


def _resolve(model: Any) -> SRModel:
    from ..engine.nets.model_file import SRModel
    from ..engine.nets.srnet import SRNet
    from ..engine.registry import default_engine

    resolved = model if isinstance(model, SRModel) else default_engine().get(model)
    if not isinstance(resolved.net, SRNet):
        raise BioimageioExportError(
            f"model {resolved.name!r} is a {type(resolved.net).__name__}, not an SRNet; only trained SRNet "
            "models can be exported (the bicubic baseline has no weights to package)"
        )
    return resolved


def _model_card(model: SRModel) -> str | None:
    """The markdown model card next to the model file (``superres-x2.md``), if any."""
    source = Path(model.source) if model.source and model.source not in ("builtin", "session", "python") else None
    candidates = [source.with_suffix(".md")] if source is not None else []
    from ..engine.registry import BUILTIN_MODEL_DIR

    candidates.append(BUILTIN_MODEL_DIR / f"{model.name}.md")
    for path in candidates:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return None


def _default_test_image(scale: int, channels: int) -> np.ndarray:
    """A deterministic low-res synthetic fluorescence image ``(C, 64, 64)`` uint16."""
    from ..engine.samples import synthetic_pair

    lr, _ = synthetic_pair((TEST_IMAGE_SIZE * scale, TEST_IMAGE_SIZE * scale), scale=scale, seed=7)
    return np.repeat(lr[None], channels, axis=0)


def _import_arch(path: Path) -> Any:
    """Import the packaged architecture file on its own (as a consumer would)."""
    name = f"_napari_superres_bioimageio_arch_{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _cover(lq: np.ndarray, out: np.ndarray, scale: int) -> np.ndarray:
    """``(sH, 2*sW)`` uint8: the input (nearest-enlarged) | the output, on one intensity scale."""
    big = np.repeat(np.repeat(lq, scale, axis=0), scale, axis=1).astype(np.float32)
    both = np.concatenate([big, out.astype(np.float32)], axis=1)
    lo, hi = np.percentile(both, [0.5, 99.8])
    return (np.clip((both - lo) / max(hi - lo, 1e-12), 0, 1) * 255).round().astype(np.uint8)


def export_bioimageio(
    model: Any,
    out: str | os.PathLike,
    *,
    name: str | None = None,
    description: str | None = None,
    authors: Sequence[str] = DEFAULT_AUTHORS,
    maintainers: Sequence[str] = (),
    version: str = DEFAULT_VERSION,
    training_data: str | Mapping[str, Any] | None = None,
    git_repo: str | None = GIT_REPO,
    test_image: np.ndarray | None = None,
    weight_formats: Iterable[str] = WEIGHT_FORMATS,
    overwrite: bool = False,
    test: bool = False,
) -> Path:
    """Write ``model`` as a bioimage.io model package (spec 0.5 ``.zip``) to ``out``; returns the path.

    Parameters
    ----------
    model : registry name (``"superres-x2"``), ``.safetensors`` path, :class:`SRModel` or SRNet.
    out : the ``.zip`` to write (atomically; refused if it exists without ``overwrite``).
    name, description : package metadata (defaults from the model: its name, e.g. ``superres-x2``).
    authors : ``"Name"`` or ``"Name <github_user>"`` strings; default the project's developers.
    maintainers : ``"github_user"`` or ``"Name <github_user>"`` strings; default none (bioimage.io's
        validation then warns: a zoo upload needs a maintainer).
    version : the package's version (SemVer); git_repo : where the model is developed.
    training_data : a bioimage.io dataset id, or a dataset description (mapping); default the
        built-in recipe's sources named in the model card, if any.
    test_image : ``(H, W)`` or ``(C, H, W)`` low-res test input (integer or float); default
        a 64x64 synthetic fluorescence image (uint16).  Its dtype decides the declared
        normalisation for ``{"mode": "dtype"}`` models (see :func:`processing_for`).
    weight_formats : any of ``pytorch_state_dict`` (always written), ``torchscript``, ``onnx``.
    test : run :func:`bioimageio.core.test_model` on the written package and raise
        :class:`BioimageioExportError` with its summary when it fails.
    """
    from .atomic import atomic_path, check_output

    require_bioimageio()
    formats = set(weight_formats) | {"pytorch_state_dict"}
    unknown = formats - set(WEIGHT_FORMATS)
    if unknown:
        raise BioimageioExportError(f"unknown weight formats {sorted(unknown)}; choose from {WEIGHT_FORMATS}")
    resolved = _resolve(model)
    net = resolved.net
    config = net.config
    scale, c_in, _c_out = config.scale, config.in_channels, config.out_channels
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise BioimageioExportError(f"a bioimage.io package is a .zip file; got {out.name!r}")
    protect = [resolved.source] if resolved.source and os.path.exists(resolved.source) else []
    check_output(out, protect, overwrite=overwrite, what="package")

    if test_image is None:
        test_image = _default_test_image(scale, c_in)
    test_image = np.asarray(test_image)
    if test_image.ndim == 2:
        test_image = test_image[None]
    if test_image.ndim != 3 or test_image.shape[0] != c_in:
        raise BioimageioExportError(
            f"test_image must be (H, W) or ({c_in}, H, W) for this {c_in}-channel model, got {test_image.shape}"
        )
    min_size = input_min_size(net.receptive_field())
    if min(test_image.shape[1:]) < min_size or any((s - min_size) % INPUT_SIZE_STEP for s in test_image.shape[1:]):
        raise BioimageioExportError(
            f"test_image Y/X sizes must be {min_size} + n*{INPUT_SIZE_STEP} px for this model, got {test_image.shape[1:]}"
        )
    normalization = dict(resolved.normalization or {"mode": "dtype"})
    card = _model_card(resolved)
    cpu_net = _cpu_copy(net)

    with tempfile.TemporaryDirectory(prefix="napari-superres-bioimageio-") as tmp_name:
        tmp = Path(tmp_name)
        files = _write_package_files(tmp, resolved, cpu_net, test_image, normalization, card, formats)
        descr = _describe(
            resolved, tmp, files, test_image=test_image, normalization=normalization, card=card,
            name=name, description=description,
            people=(authors_descr(authors), maintainers_descr(maintainers)), version=version,
            training_data=training_data_descr(card, training_data), git_repo=git_repo,
        )  # fmt: skip
        from bioimageio.spec import save_bioimageio_package

        with atomic_path(out, protect=protect) as target:
            save_bioimageio_package(descr, output_path=target)
    if test:
        summary = test_bioimageio_package(out)
        if summary.status != "passed":
            raise BioimageioExportError(f"bioimageio.core.test_model failed on {out}:\n{summary.format()}")
    log.info("wrote bioimage.io package %s (%s)", out, ", ".join(sorted(formats)))
    return out


def test_bioimageio_package(path: str | os.PathLike, *, weight_format: str | None = None) -> Any:
    """Run :func:`bioimageio.core.test_model` on a package on the CPU; returns its ``ValidationSummary``."""
    from bioimageio.core import test_model

    return test_model(str(path), weight_format=weight_format, devices=["cpu"])  # type: ignore[arg-type]


test_bioimageio_package.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def _cpu_copy(net: Any) -> Any:
    import copy

    import torch

    module = copy.deepcopy(net).float().cpu().eval()
    return module.to(memory_format=torch.contiguous_format)


def _write_package_files(
    tmp: Path,
    model: SRModel,
    net: Any,
    test_image: np.ndarray,
    normalization: dict[str, Any],
    card: str | None,
    formats: set[str],
) -> dict[str, Path]:
    """Weights, architecture, test tensors, cover and documentation in ``tmp``; returns the paths by role."""
    import torch

    from ..engine.nets.model_file import save_model
    from . import bioimageio_arch

    files: dict[str, Path] = {}
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    torch.save(state, tmp / STATE_DICT_FILE)
    files["pytorch_state_dict"] = tmp / STATE_DICT_FILE
    arch = tmp / ARCH_FILE
    arch.write_text(Path(bioimageio_arch.__file__).read_text(encoding="utf-8"), encoding="utf-8")
    files["architecture"] = arch
    files["native"] = save_model(tmp / NATIVE_MODEL_FILE, net, normalization=normalization, training=model.metadata)

    # test tensors: our normalisation + the engine's network (not the architecture copy)
    x, _lo, _hi = apply_processing(test_image, normalization)
    with torch.inference_mode():
        y = net(torch.from_numpy(x[None])).numpy()
    # the packaged architecture must rebuild the same network from the state dict
    packaged = _import_arch(arch).SRNet(**_arch_kwargs(net))
    packaged.load_state_dict(torch.load(tmp / STATE_DICT_FILE, weights_only=True), strict=True)
    with torch.inference_mode():
        y_packaged = packaged.eval()(torch.from_numpy(x[None])).numpy()
    diff = float(np.abs(y_packaged - y).max())
    if diff > 1e-5:
        raise BioimageioExportError(
            f"the packaged architecture ({ARCH_FILE}) does not reproduce the engine's SRNet (max difference {diff:.3g}); "
            "napari_superres/io/bioimageio_arch.py is out of date with engine/nets/srnet.py"
        )
    y_net = y
    _pre, post, _ = processing_for(normalization, test_image.dtype, test_image.shape[0])
    if post:  # fixed inverse scale_linear
        gain, offset = post[0].kwargs.gain, post[0].kwargs.offset
        y = (y * np.float32(gain) + np.float32(offset)).astype(np.float32)
    # the package's input is float32 (consumers convert); values stay in the test image's units
    np.save(tmp / TEST_INPUT_FILE, test_image[None].astype(np.float32))
    np.save(tmp / TEST_OUTPUT_FILE, y.astype(np.float32))
    files["test_input"], files["test_output"] = tmp / TEST_INPUT_FILE, tmp / TEST_OUTPUT_FILE
    # the same pair as TIFF for people (and imageio): sample_tensor, without the batch axis
    import tifffile

    for role, array, file in (
        ("sample_input", test_image, SAMPLE_INPUT_FILE),
        ("sample_output", y[0], SAMPLE_OUTPUT_FILE),
    ):
        image = array.astype(np.float32)
        tifffile.imwrite(tmp / file, image[0] if image.shape[0] == 1 else image)
        files[role] = tmp / file

    if "torchscript" in formats:
        example = torch.from_numpy(x[None])
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(net, example, check_trace=False)
            other = torch.rand(1, x.shape[0], x.shape[1] + INPUT_SIZE_STEP, x.shape[2])  # another tile size
            if not torch.allclose(traced(other), net(other), atol=1e-5):
                raise BioimageioExportError("TorchScript trace does not generalise to other tile sizes")
        traced.save(str(tmp / TORCHSCRIPT_FILE))
        files["torchscript"] = tmp / TORCHSCRIPT_FILE
    if "onnx" in formats:
        _export_onnx(net, tmp / ONNX_FILE, x.shape[0])
        files["onnx"] = tmp / ONNX_FILE

    from PIL import Image

    Image.fromarray(_cover(x[0], y_net[0, 0], model.scale or 1)).save(tmp / COVER_FILE)  # normalised units
    files["cover"] = tmp / COVER_FILE
    (tmp / DOC_FILE).write_text(_documentation(model, card, normalization, test_image.dtype), encoding="utf-8")
    files["documentation"] = tmp / DOC_FILE
    return files


def _arch_kwargs(net: Any) -> dict[str, Any]:
    """The architecture file's ``SRNet`` keyword arguments: the engine's config as plain JSON values."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in net.config.to_dict().items()}


#: ONNX opset written (the TorchScript-based exporter's default in our engine).
ONNX_OPSET = 17


def _export_onnx(net: Any, path: Path, in_channels: int) -> None:
    """ONNX with dynamic batch/height/width: the engine's exporter when present, else torch.onnx directly."""
    try:
        from ..engine.infer.onnx_backend import export_onnx
    except ImportError:  # pragma: no cover - engine without the ONNX backend
        export_onnx = None
    if export_onnx is not None:
        export_onnx(net, path, in_channels=in_channels, opset=ONNX_OPSET)
        return
    import io
    import warnings

    import torch

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():  # pragma: no cover
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (torch.rand(1, in_channels, 64, 64),), buffer, opset_version=ONNX_OPSET, dynamo=False,
            input_names=[INPUT_ID], output_names=[OUTPUT_ID],
            dynamic_axes={INPUT_ID: {0: "batch", 2: "height", 3: "width"}, OUTPUT_ID: {0: "batch", 2: "h", 3: "w"}},
        )  # fmt: skip
    path.write_bytes(buffer.getvalue())


def _documentation(model: SRModel, card: str | None, normalization: dict[str, Any], dtype: np.dtype) -> str:
    """The package's README: how to use it, then the model card (or a generated summary)."""
    _, _, unit_note = processing_for(normalization, dtype, 1)
    scale = model.scale
    head = (
        f"# {model.name}: x{scale} super-resolution (napari-superres SRNet)\n\n"
        f"Input: one low-resolution image `(batch, channel, y, x)`; output: the same field of view with "
        f"{scale}x more pixels along Y and X (pixel size divided by {scale}). Output values: {unit_note}.\n\n"
        "Normalisation (`inputs[0].preprocessing`) is what the model was trained with "
        f"(`{normalization}`). Tiles of `min + 8n` px (see `inputs[0].axes`) work; consumers crop the declared output halo so tiles join without seams.\n\n"
        "In napari: `pip install napari-deep-superres`, then *Plugins > Super-resolution > Upscale*, "
        '*Load model file...* and pick this .zip (or `upscale(image, model="this.zip")` in Python).\n\n'
    )
    head += (
        "## Validation\n\n"
        "The test tensors are reproduced by every weight format (`bioimageio.core.test_model`, tolerance in "
        "`config.bioimageio.reproducibility_tolerance`). Image quality against bicubic and Lanczos on held-out "
        "images, where measured, is in the model card below (*Benchmark*).\n\n"
    )
    sources = data_sources_in(card or "")
    licences = "".join(f"- **{s.folder}** ({s.title}): {s.licence}\n" for s in sources)
    if licences:
        head += (
            "## Training data licences\n\nThe package licence (BSD-3-Clause) is this project's; the training "
            "data keep their owners' terms:\n\n" + licences + "\n"
        )
    body = card if card else _generated_card(model)
    body = re.sub(r"^# ", "## ", body, flags=re.MULTILINE)  # one title per document
    return head + body


def _generated_card(model: SRModel) -> str:
    import json

    training = {k: v for k, v in (model.metadata or {}).items() if k != "data"}
    return "## Training\n\n```json\n" + json.dumps(training, indent=1, default=str)[:20000] + "\n```\n"


def _weights_descr(net: Any, files: dict[str, Path]) -> Any:
    """The package's ``WeightsDescr``: the state dict with its architecture file, and TorchScript/ONNX children."""
    import torch
    from bioimageio.spec.model.v0_5 import (
        ArchitectureFromFileDescr,
        Identifier,
        OnnxWeightsDescr,
        PytorchStateDictWeightsDescr,
        TorchscriptWeightsDescr,
        Version,
        WeightsDescr,
    )

    state_dict_torch, torchscript_torch = (Version(v) for v in pytorch_versions(torch.__version__))
    weights: dict[str, Any] = {
        "pytorch_state_dict": PytorchStateDictWeightsDescr(
            source=files["pytorch_state_dict"],
            architecture=ArchitectureFromFileDescr(
                source=files["architecture"], callable=Identifier(ARCH_CALLABLE), kwargs=_arch_kwargs(net)
            ),
            pytorch_version=state_dict_torch,
        )
    }
    if "torchscript" in files:
        weights["torchscript"] = TorchscriptWeightsDescr(
            source=files["torchscript"], pytorch_version=torchscript_torch, parent="pytorch_state_dict"
        )
    if "onnx" in files:
        weights["onnx"] = OnnxWeightsDescr(source=files["onnx"], opset_version=ONNX_OPSET, parent="pytorch_state_dict")

    return WeightsDescr(**weights)


def _tensor_descrs(net: Any, files: dict[str, Path], pre: Any, post: Any, unit_note: str) -> tuple[list, list]:
    """Spec-0.5 ``(inputs, outputs)`` of ``net``: ``(batch, channel, y, x)`` float32, input sizes in steps of
    :data:`INPUT_SIZE_STEP`, output ``scale`` x the input with the receptive field as halo; ``pre`` / ``post``."""
    from bioimageio.spec.model.v0_5 import (
        AxisId,
        BatchAxis,
        ChannelAxis,
        FileDescr,
        Identifier,
        InputTensorDescr,
        IntervalOrRatioDataDescr,
        OutputTensorDescr,
        ParameterizedSize,
        SizeReference,
        SpaceInputAxis,
        SpaceOutputAxisWithHalo,
        TensorId,
    )

    scale, c_in, c_out = net.config.scale, net.config.in_channels, net.config.out_channels
    halo = int(net.receptive_field()) * scale  # in output pixels

    def channel_names(n: int) -> list[Identifier]:
        return [Identifier("intensity")] if n == 1 else [Identifier(c) for c in ("red", "green", "blue")[:n]]

    size = ParameterizedSize(min=input_min_size(net.receptive_field()), step=INPUT_SIZE_STEP)
    inputs = [InputTensorDescr(
        id=TensorId(INPUT_ID),
        description="low-resolution image",
        axes=[
            BatchAxis(),
            ChannelAxis(channel_names=channel_names(c_in)),
            SpaceInputAxis(id=AxisId("y"), size=size, scale=1.0),
            SpaceInputAxis(id=AxisId("x"), size=size, scale=1.0),
        ],
        test_tensor=FileDescr(source=files["test_input"]),
        sample_tensor=FileDescr(source=files["sample_input"]),
        data=IntervalOrRatioDataDescr(type="float32"),
        preprocessing=pre,
    )]  # fmt: skip
    outputs = [OutputTensorDescr(
        id=TensorId(OUTPUT_ID),
        description=f"x{scale} image ({unit_note})"[:128],
        axes=[
            BatchAxis(),
            ChannelAxis(channel_names=channel_names(c_out)),
            SpaceOutputAxisWithHalo(
                id=AxisId("y"), size=SizeReference(tensor_id=TensorId(INPUT_ID), axis_id=AxisId("y")),
                scale=1.0 / scale, halo=halo,
            ),
            SpaceOutputAxisWithHalo(
                id=AxisId("x"), size=SizeReference(tensor_id=TensorId(INPUT_ID), axis_id=AxisId("x")),
                scale=1.0 / scale, halo=halo,
            ),
        ],
        test_tensor=FileDescr(source=files["test_output"]),
        sample_tensor=FileDescr(source=files["sample_output"]),
        data=IntervalOrRatioDataDescr(type="float32"),
        postprocessing=post,
    )]  # fmt: skip
    return inputs, outputs


def _describe(
    model: SRModel,
    tmp: Path,
    files: dict[str, Path],
    *,
    test_image: np.ndarray,
    normalization: dict[str, Any],
    card: str | None,
    name: str | None,
    description: str | None,
    people: tuple[list[Any], list[Any]],
    version: str,
    training_data: Any,
    git_repo: str | None,
) -> Any:
    """The spec-0.5 :class:`ModelDescr` (validated on construction) for the files in ``tmp``."""
    from bioimageio.spec.model.v0_5 import (
        BioimageioConfig,
        CiteEntry,
        Config,
        FileDescr,
        HttpUrl,
        LicenseId,
        ModelDescr,
        ReproducibilityTolerance,
        TensorId,
        Version,
    )

    net = model.net
    scale, c_in = net.config.scale, net.config.in_channels
    pre, post, unit_note = processing_for(normalization, test_image.dtype, c_in)

    inputs, outputs = _tensor_descrs(net, files, pre, post, unit_note)
    weights = _weights_descr(net, files)
    cites = [CiteEntry(text=t, doi=d, url=u) for t, d, u in METHOD_CITATIONS]
    for source in data_sources_in(card or ""):
        cites += [CiteEntry(text=t, doi=d, url=u) for t, d, u in source.citations]
    n_params = sum(p.numel() for p in net.parameters())
    summary = description or (
        f"x{scale} single-image super-resolution of {'grayscale' if c_in == 1 else 'RGB'} microscopy and natural "
        f"images: a residual CNN ({n_params:,} parameters) trained with napari-superres."
    )
    ours = {
        "format": "napari-superres",
        "model_file": NATIVE_MODEL_FILE,
        "model_name": model.name,
        "normalization": normalization,
        "scale": scale,
        "output_units": unit_note,
    }
    tolerance = ReproducibilityTolerance(
        absolute_tolerance=ABSOLUTE_TOLERANCE, relative_tolerance=RELATIVE_TOLERANCE,
        mismatched_elements_per_million=100, output_ids=[TensorId(OUTPUT_ID)],
    )  # fmt: skip
    return ModelDescr(
        name=name or plain_name(model.name, scale),
        description=summary,
        authors=people[0],
        maintainers=people[1],
        version=Version(version),
        git_repo=None if git_repo is None else HttpUrl(git_repo),
        training_data=training_data,
        cite=cites,
        license=LicenseId("BSD-3-Clause"),
        documentation=FileDescr(source=files["documentation"]),
        covers=[FileDescr(source=files["cover"])],
        attachments=[FileDescr(source=files["native"])],
        tags=["super-resolution", "image-restoration", "pytorch", "napari", f"x{scale}", "2d", "fluorescence"],
        inputs=inputs,
        outputs=outputs,
        weights=weights,
        config=Config(
            bioimageio=BioimageioConfig(
                reproducibility_tolerance=[tolerance],
                architecture_type="residual CNN",
                task="super-resolution",
                model_parameter_count=n_params,
            ),
            **{CONFIG_KEY: ours},
        ),
    )


__all__ = [
    "DATA_SOURCES",
    "BioimageioExportError",
    "export_bioimageio",
    "processing_for",
    "test_bioimageio_package",
]
