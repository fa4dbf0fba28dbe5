"""BioImage Model Zoo (bioimage.io) packages as napari-superres models: import.

:func:`load_bioimageio_model` reads a spec-0.5 model package (``.zip``, or an unpacked
folder's ``rdf.yaml`` / ``bioimageio.yaml``; spec-0.4 packages are converted):

* **ours** (written by :func:`napari_superres.io.bioimageio.export_bioimageio`, marked in
  ``config.napari_superres``): the attached ``model.safetensors`` is loaded as an
  :class:`~napari_superres.engine.SRModel`, so the weights, normalisation and tiling are
  exactly those of the exported model;
* **any other** image-to-image super-resolution package (one input and one output
  tensor with Y/X axes, output Y/X sizes an integer multiple ``s >= 2`` of the input's,
  weights in ``pytorch_state_dict``, ``torchscript`` or ``onnx``): wrapped as a
  :class:`BioimageioSRModel` that runs each plane through bioimageio.core's prediction
  pipeline with the package's own pre/post-processing and tiling (blocks with the
  declared halo).  Its output values are in the package's output units (float32 by
  default), not cast back to the input's dtype.

Packages that are not upscalers (segmentation, same-size restoration, non-integer
or anisotropic scale, 3D, several inputs) raise :class:`BioimageioImportError` naming why.

**Untrusted packages.**  A package is a file from elsewhere, so loading it

* runs none of its Python code unless asked: the weight formats that run no Python are
  preferred (``onnx``, then ``torchscript``); ``pytorch_state_dict`` weights with an
  architecture source (or custom pre/post-processing code) raise
  :class:`~napari_superres.engine.errors.UntrustedCodeError` naming the file and its
  SHA-256 unless ``trust_code=True`` (``--trust-code`` on the command line, a confirmation
  in napari); with consent the code runs at once (the package is built while loading);
* checks every zip member's uncompressed size (from the zip directory, before anything is
  read: :data:`MAX_MEMBER_BYTES`, :data:`MAX_PACKAGE_BYTES` in all);
* fetches nothing: links (documentation, covers, citations) are metadata.  bioimage.io's
  validation runs with ``perform_io_checks=False`` and ``known_files`` holding the SHA-256
  of every file of the package (so the declared hashes are still compared) and every URL
  it names (so none is requested); packages whose weights or code are remote are refused.

The engine reaches this module only through the loader hook that
``napari_superres/__init__.py`` registers (:mod:`napari_superres.engine.loaders`); the
engine never imports ``napari_superres.io``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..engine.errors import NonFiniteOutputError, UntrustedCodeError
from ..engine.nets.model_file import ModelFileError, SRModel, load_model
from .bioimageio import CONFIG_KEY, require_bioimageio

log = logging.getLogger(__name__)

#: File names of a package description inside a folder.
DESCRIPTION_NAMES = ("rdf.yaml", "bioimageio.yaml")
#: Weight formats the wrapped (foreign) path can run.
RUNNABLE_FORMATS = ("pytorch_state_dict", "torchscript", "onnx")
#: Order in which a foreign package's weight formats are chosen: formats that run no Python first.
PREFERRED_FORMATS = ("onnx", "torchscript", "pytorch_state_dict")
#: Default block-size parameter n (tile = min + n*step) for foreign packages.
DEFAULT_BLOCKSIZE_PARAMETER = 10
#: Largest uncompressed size of one file of a package, and of all its files together (bytes).
#: Real bioimage.io models are well under this; a zip that inflates to more is refused unread.
MAX_MEMBER_BYTES = 2**30
MAX_PACKAGE_BYTES = 2 * 2**30
_URL_PREFIXES = ("http://", "https://")


class BioimageioImportError(ModelFileError):
    """A bioimage.io package that cannot be used as a super-resolution model (message: why)."""


def is_bioimageio_source(path: str | os.PathLike) -> bool:
    """True for a ``.zip`` file or a ``rdf.yaml`` / ``bioimageio.yaml`` (file or folder holding one)."""
    p = Path(path)
    if p.name.lower().endswith(DESCRIPTION_NAMES):
        return True
    if p.suffix.lower() == ".zip":
        return True
    return p.is_dir() and any((p / n).is_file() for n in DESCRIPTION_NAMES)


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _too_large(path: Path, what: str, size: int, limit: int) -> BioimageioImportError:
    return BioimageioImportError(
        f"{path}: {what} take {size / 2**20:,.0f} MB unpacked (limit {limit / 2**20:,.0f} MB); this is not a "
        "plausible bioimage.io model package (a damaged file or a zip bomb), so nothing was extracted or read; "
        "check where the file comes from (a package folder must hold only the package's files)"
    )


def package_files(path: Path) -> tuple[dict[str, str], bytes]:
    """``({file name as the package names it: sha256}, description bytes)`` of a package, sizes checked first.

    ``path``: a ``.zip`` (member sizes from the zip's directory, checked before any member is
    read) or a description file in a folder (the folder's files).  Raises
    :class:`BioimageioImportError` naming ``path`` when a file exceeds :data:`MAX_MEMBER_BYTES`
    or all together :data:`MAX_PACKAGE_BYTES`.
    """
    hashes: dict[str, str] = {}
    if path.is_file() and not path.name.lower().endswith(DESCRIPTION_NAMES):
        try:
            with zipfile.ZipFile(path) as z:
                infos = [i for i in z.infolist() if not i.is_dir()]
                _check_sizes(path, [(i.filename, i.file_size) for i in infos])
                description = next((i for i in infos if i.filename in DESCRIPTION_NAMES), None)
                if description is None:
                    raise BioimageioImportError(
                        f"{path} is a zip file without an rdf.yaml or bioimageio.yaml: not a bioimage.io model package"
                    )
                for info in infos:
                    digest = hashlib.sha256()
                    with z.open(info) as member:
                        for block in iter(lambda member=member: member.read(2**20), b""):
                            digest.update(block)
                    hashes[info.filename] = digest.hexdigest()
                return hashes, z.read(description)
        except zipfile.BadZipFile as e:
            raise BioimageioImportError(f"{path} is not a zip file ({e}); bioimage.io packages are .zip files") from e
    folder = path.parent
    files = [p for p in folder.rglob("*") if p.is_file()]
    _check_sizes(path, [(str(p), p.stat().st_size) for p in files])
    for p in files:
        hashes[p.relative_to(folder).as_posix()] = file_sha256(p)
    return hashes, path.read_bytes()


def _check_sizes(path: Path, sizes: list[tuple[str, int]]) -> None:
    for name, size in sizes:
        if size > MAX_MEMBER_BYTES:
            raise _too_large(path, f"its file {name!r}", size, MAX_MEMBER_BYTES)
    total = sum(size for _, size in sizes)
    if total > MAX_PACKAGE_BYTES:
        raise _too_large(path, f"its {len(sizes)} files", total, MAX_PACKAGE_BYTES)


def _urls(node: Any) -> set[str]:
    """Every http(s) string in a parsed YAML document."""
    if isinstance(node, str):
        return {node.strip()} if node.strip().lower().startswith(_URL_PREFIXES) else set()
    if isinstance(node, dict):
        return set().union(*(_urls(v) for v in node.values()), set())
    if isinstance(node, list):
        return set().union(*(_urls(v) for v in node), set())
    return set()


def _known_files(path: Path) -> dict[str, str | None]:
    """``known_files`` for bioimageio.spec: the package's own files with their SHA-256 (declared
    hashes are compared to these) and every URL the description names (never requested)."""
    import yaml

    hashes, description = package_files(path)
    known: dict[str, str | None] = dict(hashes)
    try:
        document = yaml.safe_load(description)
    except yaml.YAMLError as e:
        raise BioimageioImportError(f"{path}: the package description is not valid YAML ({e})") from e
    for url in _urls(document):
        known[url] = None
        if url.count("/") == 2:  # pydantic writes "https://host" as "https://host/"
            known[url + "/"] = None
    return known


def _load_description(path: Path) -> Any:
    try:
        require_bioimageio()
    except ValueError as e:
        raise BioimageioImportError(str(e)) from None
    from bioimageio.spec import load_model_description

    if path.is_dir():
        path = next(path / n for n in DESCRIPTION_NAMES if (path / n).is_file())
    known = _known_files(path)
    try:
        # no network: io checks off, every file the package holds hashed by us (compared to the
        # declared hashes), every URL marked known; a Path (not a str) is never looked up as a
        # bioimage.io collection id online
        descr = load_model_description(path, format_version="latest", perform_io_checks=False, known_files=known)
    except ValueError as e:  # pydantic ValidationError included
        raise BioimageioImportError(f"{path} is not a valid bioimage.io model package: {e}") from e
    except zipfile.BadZipFile as e:
        raise BioimageioImportError(f"{path} is not a zip file ({e}); bioimage.io packages are .zip files") from e
    return descr


def _config_section(descr: Any) -> dict[str, Any] | None:
    config = descr.config
    extra = getattr(config, "model_extra", None) or {}
    value = extra.get(CONFIG_KEY)
    return dict(value) if isinstance(value, dict) else None


def load_bioimageio_model(
    path: str | os.PathLike, *, name: str | None = None, device: Any = "cpu", trust_code: bool = False
) -> SRModel:
    """Load a bioimage.io package as an :class:`SRModel` (ours: exact; others: wrapped). See the module doc.

    ``trust_code``: allow a foreign package to run its own Python code (a ``pytorch_state_dict``
    architecture file, custom processing) when it has no weights that run without; without it
    such a package raises :class:`~napari_superres.engine.errors.UntrustedCodeError`.
    """
    path = Path(path)
    if not path.exists():
        raise BioimageioImportError(f"bioimage.io package not found: {path}")
    descr = _load_description(path)
    ours = _config_section(descr)
    if ours and ours.get("format") == "napari-superres" and ours.get("model_file"):
        model = _load_ours(path, descr, ours, name=name, device=device)
    else:
        model = BioimageioSRModel.from_description(
            descr, name=name or _default_name(descr, path), source=str(path), trust_code=trust_code
        )
        if model.runs_code:  # consented: build it now, so a broken package fails while loading
            model._pipeline(device)
    model.metadata.setdefault("bioimageio", {"name": descr.name, "source": str(path)})
    return model


def _is_remote(source: Any) -> bool:
    return str(source).lower().startswith(_URL_PREFIXES)


def _code_of(node: Any) -> str:
    """What a node that names Python code would run, e.g. ``'arch.py (sha256 ab12...) : Net'``."""
    if hasattr(node, "import_from"):
        return f"module {node.import_from} (installed), callable {node.callable}"
    sha = getattr(node, "sha256", None)
    return f"{Path(str(node.source)).name} (sha256 {sha or 'not declared'}), callable {node.callable}"


def weights_plan(descr: Any, path: Path) -> tuple[str, tuple[str, ...]]:
    """``(weights format to run, the package's Python code that running it needs)``.

    Formats that run no Python come first (:data:`PREFERRED_FORMATS`; ``onnx`` only when
    onnxruntime is installed).  Remote weights or code are refused (nothing is fetched).
    """
    code = []
    for tensor in [*descr.inputs, *descr.outputs]:
        steps = [*getattr(tensor, "preprocessing", []), *getattr(tensor, "postprocessing", [])]
        code += [_code_of(p) for p in steps if type(p).__name__ == "CustomProcessingDescr"]
    available = [f for f in PREFERRED_FORMATS if getattr(descr.weights, f, None) is not None]
    if "onnx" in available and importlib.util.find_spec("onnxruntime") is None and len(available) > 1:
        available.remove("onnx")
    if not available:
        raise BioimageioImportError(f"{path}: no weights napari-superres can run (needs one of {RUNNABLE_FORMATS})")
    chosen = available[0]
    entry = getattr(descr.weights, chosen)
    architecture = getattr(entry, "architecture", None)
    remote = [str(n.source) for n in (entry, architecture) if n is not None and _is_remote(getattr(n, "source", ""))]
    if remote:
        raise BioimageioImportError(
            f"{path}: its {chosen} weights are not in the package but at {remote[0]}; napari-superres downloads "
            "nothing while loading a model: download the files and use a package that holds them"
        )
    if chosen == "pytorch_state_dict" and architecture is not None:
        code.insert(0, _code_of(architecture))
    return chosen, tuple(code)


def untrusted_code_error(path: Path, descr: Any, weights_format: str, code: tuple[str, ...]) -> UntrustedCodeError:
    """The refusal of a package that would run its own Python ``code``: names the file, its SHA-256 and the fix."""
    target = path if path.is_file() else next((path / n for n in DESCRIPTION_NAMES if (path / n).is_file()), None)
    sha = file_sha256(target) if target is not None else "unknown"
    return UntrustedCodeError(
        f"{path} (sha256 {sha}) is a bioimage.io package ({descr.name!r}) whose {weights_format} weights run "
        f"Python code it brings: {'; '.join(code)}. Such code can do anything your account can, so it is not "
        "run unless you trust where the file comes from: pass trust_code=True (Python), --trust-code (command "
        "line) or confirm in napari; or ask its authors for onnx or torchscript weights, which run no Python.",
        path=str(path),
        sha256=sha,
        code=code,
    )


def _default_name(descr: Any, path: Path) -> str:
    stem = path.parent.name if path.name.lower().endswith(DESCRIPTION_NAMES) else path.stem
    return stem or str(descr.name)


def _load_ours(path: Path, descr: Any, ours: dict[str, Any], *, name: str | None, device: Any) -> SRModel:
    """Our attached ``model.safetensors``, read from the package (no unpickling)."""
    attachment = next(
        (a for a in descr.attachments if Path(str(getattr(a.source, "path", a.source))).name == ours["model_file"]),
        None,
    )
    if attachment is None:
        raise BioimageioImportError(f"{path}: the package names {ours['model_file']!r} but does not attach it")
    data = attachment.get_reader().read()
    with tempfile.TemporaryDirectory(prefix="napari-superres-bioimageio-") as tmp:
        file = Path(tmp) / "model.safetensors"
        file.write_bytes(data)
        model = load_model(file, name=name or ours.get("model_name") or _default_name(descr, path), device=device)
    model.source = str(path)
    return model


# --- foreign packages ---------------------------------------------------------------------------


def _axis_kinds(tensor: Any) -> list[str]:
    return [str(a.type) for a in tensor.axes]


def _space_ids(tensor: Any) -> list[str]:
    return [str(a.id) for a in tensor.axes if str(a.type) == "space"]


def upscaler_scale(descr: Any) -> int:
    """The integer factor of an image-to-image upscaler package; :class:`BioimageioImportError` otherwise."""
    from bioimageio.spec.model.v0_5 import SizeReference

    name = descr.name
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise BioimageioImportError(
            f"{name!r} has {len(descr.inputs)} inputs and {len(descr.outputs)} outputs; an upscaler has one of each"
        )
    (inp,), (out,) = descr.inputs, descr.outputs
    in_space, out_space = _space_ids(inp), _space_ids(out)
    if sorted(in_space) != ["x", "y"] or sorted(out_space) != ["x", "y"]:
        raise BioimageioImportError(
            f"{name!r} is not a 2D image-to-image model (input space axes {in_space}, output {out_space}); "
            "napari-superres runs 2D (Y, X) upscalers"
        )
    if any(k not in ("batch", "channel", "space") for k in _axis_kinds(inp) + _axis_kinds(out)):
        raise BioimageioImportError(f"{name!r} has time or index axes; an upscaler maps (channel, y, x) images")
    in_axes = {str(a.id): a for a in inp.axes}
    factors = []
    for a in out.axes:
        if str(a.type) != "space":
            continue
        if not isinstance(a.size, SizeReference) or str(a.size.tensor_id) != str(inp.id):
            raise BioimageioImportError(
                f"{name!r}: output axis {a.id} is not sized relative to the input (size {a.size!r}); "
                "not an image-to-image model (segmentation to labels/classes, detection...?)"
            )
        ref = in_axes[str(a.size.axis_id)]
        factor = float(ref.scale) / float(a.scale)
        if a.size.offset:
            raise BioimageioImportError(
                f"{name!r}: output axis {a.id} has a size offset {a.size.offset}; not an upscaler"
            )
        factors.append(factor)
    if not factors or any(abs(f - factors[0]) > 1e-6 for f in factors):
        raise BioimageioImportError(f"{name!r} scales Y and X differently ({factors}); only isotropic upscalers")
    factor = factors[0]
    if abs(factor - round(factor)) > 1e-6:
        raise BioimageioImportError(
            f"{name!r} scales by {factor:g}, not an integer; napari-superres needs x2, x3, x4..."
        )
    if round(factor) < 2:
        raise BioimageioImportError(
            f"{name!r} keeps the image size (scale {factor:g}): a same-size model (segmentation, denoising...), "
            "not a super-resolution upscaler"
        )
    formats = [f for f in RUNNABLE_FORMATS if getattr(descr.weights, f, None) is not None]
    if not formats:
        raise BioimageioImportError(
            f"{name!r} has no weights napari-superres can run (needs one of {RUNNABLE_FORMATS})"
        )
    return round(factor)


def _package_net(halo: int) -> Any:
    from torch import nn

    class PackageNet(nn.Module):
        """No parameters: prediction goes through bioimageio.core (see :class:`BioimageioSRModel`)."""

        def __init__(self) -> None:
            super().__init__()
            self.halo = halo

        def receptive_field(self) -> int:
            return self.halo

        def forward(self, x: Any) -> Any:
            # reached only by code paths that run networks tile by tile themselves (the streaming CLI)
            raise BioimageioImportError(
                "this bioimage.io package is not a napari-superres model: it runs through bioimageio.core's "
                "own pipeline, in Python (upscale(image, model='PACKAGE.zip')) and in the napari Upscale "
                "widget, not in the streaming `napari-superres upscale` command (use `bioimageio predict` there)"
            )

    return PackageNet()


def _min_size(size: Any) -> int:
    """Smallest valid edge of an input axis (parameterized: ``min``; fixed: the size)."""
    return int(getattr(size, "min", size if isinstance(size, int) else 1))


def _largest_n(size: Any, edge: int, wanted: int) -> int:
    """Block-size parameter: ``wanted``, lowered until the block fits in ``edge`` pixels."""
    step = getattr(size, "step", None)
    if not step:
        return 0
    return max(0, min(int(wanted), (edge - int(size.min)) // int(step)))


@dataclass
class BioimageioSRModel(SRModel):
    """A foreign bioimage.io upscaler, run plane by plane through bioimageio.core's pipeline.

    A :class:`~napari_superres.engine.infer.predictor.Predictor` with ``own_pipeline``: the engine
    hands :meth:`predict` whole raw planes (the package owns normalisation and tiling).
    ``descr``: the package's ``ModelDescr``.
    """

    own_pipeline: ClassVar[bool] = True

    descr: Any = None
    pipelines: dict[str, Any] = field(default_factory=dict)  # one prediction pipeline per device
    #: the weight format run (see :func:`weights_plan`)
    weights_format: str | None = None
    #: the package's own Python code that runs (consented to), empty for onnx/torchscript
    runs_code: tuple[str, ...] = ()

    @classmethod
    def from_description(cls, descr: Any, *, name: str, source: str, trust_code: bool = False) -> BioimageioSRModel:
        """Wrap a loaded ``ModelDescr``; :class:`UntrustedCodeError` if it needs its own code and
        ``trust_code`` is false (``source``: the user's file, named in that message)."""
        scale = upscaler_scale(descr)
        weights_format, code = weights_plan(descr, Path(source))
        if code and not trust_code:
            raise untrusted_code_error(Path(source), descr, weights_format, code)
        (inp,) = descr.inputs
        channels = next((len(a.channel_names) for a in inp.axes if str(a.type) == "channel"), 1)
        halo = max((int(getattr(a, "halo", 0) or 0) for a in descr.outputs[0].axes), default=0)
        model = cls(
            name=name,
            net=_package_net(math.ceil(halo / scale)),
            scale=scale,
            in_channels=channels,
            normalization={"mode": "bioimageio"},
            metadata={"bioimageio": {"name": descr.name, "source": source}},
            source=source,
        )
        model.descr = descr
        model.weights_format, model.runs_code = weights_format, code
        return model

    def describe(self) -> str:
        return f"{self.name} (x{self.scale}, bioimage.io package {self.descr.name!r})"

    def _pipeline(self, device: Any) -> Any:
        from bioimageio.core import create_prediction_pipeline

        key = str(device)
        if key not in self.pipelines:
            devices = [key] if key.startswith("cuda") else ["cpu"]
            self.pipelines[key] = create_prediction_pipeline(
                self.descr, devices=devices, weights_format=self.weights_format
            )
        return self.pipelines[key]

    def predict_plane(self, plane: np.ndarray, *, device: Any = "cpu", blocksize: int | None = None) -> np.ndarray:
        """``(C, H, W)`` -> ``(C_out, sH, sW)`` float32 through the package's pipeline (with blocking)."""
        from bioimageio.core import Sample, Tensor
        from bioimageio.spec.model.v0_5 import AxisId

        (inp,), (out,) = self.descr.inputs, self.descr.outputs
        ids = ["batch" if str(a.type) == "batch" else str(a.id) for a in inp.axes]
        arr = plane.astype(np.float32, copy=False)
        h, w = arr.shape[1:]
        sizes = {str(a.id): a.size for a in inp.axes if str(a.type) == "space"}
        pad = [max(0, _min_size(sizes[k]) - n) for k, n in (("y", h), ("x", w))]
        if any(pad):  # smaller than the smallest block: mirror-pad, crop the output afterwards
            arr = np.pad(arr, ((0, 0), (0, pad[0]), (0, pad[1])), mode="symmetric")
        if "channel" not in ids:
            if arr.shape[0] != 1:
                raise BioimageioImportError(f"{self.name!r} takes single-channel images, got {arr.shape[0]} channels")
            arr = arr[0]
            shaped = arr.transpose([{"y": 0, "x": 1}[i] for i in ids if i != "batch"])
        else:
            shaped = arr.transpose([{"channel": 0, "y": 1, "x": 2}[i] for i in ids if i != "batch"])
        if "batch" in ids:
            shaped = np.expand_dims(shaped, ids.index("batch"))
        dims = tuple(AxisId(i) for i in ids)
        sample = Sample(members={inp.id: Tensor(np.ascontiguousarray(shaped), dims=dims)}, stat={}, id="plane")
        wanted = blocksize if blocksize is not None else DEFAULT_BLOCKSIZE_PARAMETER
        ns = {
            (inp.id, AxisId(k)): _largest_n(sizes[k], n, wanted) for k, n in (("y", arr.shape[1]), ("x", arr.shape[2]))
        }
        result = self._pipeline(device).predict_sample_with_blocking(sample, ns=ns)
        y = result.members[out.id]
        names = [str(d) for d in y.dims]
        data = np.asarray(y.data)
        if "batch" in names:
            data = data.take(0, axis=names.index("batch"))
            names.remove("batch")
        if "channel" not in names:
            data, names = data[None], ["channel", *names]
        data = np.moveaxis(data, [names.index("channel"), names.index("y"), names.index("x")], [0, 1, 2])
        data = data[:, : h * self.scale, : w * self.scale]
        expected = (plane.shape[1] * self.scale, plane.shape[2] * self.scale)
        if data.shape[1:] != expected:
            raise BioimageioImportError(
                f"{self.name!r} returned {data.shape[1:]} for a {plane.shape[1:]} input (expected {expected})"
            )
        if not np.isfinite(data).all():
            raise NonFiniteOutputError(
                f"{self.name!r} (bioimage.io package) produced NaN or Inf values on this image; nothing was "
                "returned: the package's weights are broken or overflow on this input"
            )
        return data.astype(np.float32, copy=False)

    def predict(self, batch: np.ndarray, device: Any = "cpu", *, tile: int | None = None) -> np.ndarray:
        """Raw ``(N, C, H, W)`` planes -> ``(N, C_out, sH, sW)`` float32 through the package's pipeline
        (:class:`~napari_superres.engine.infer.predictor.Predictor`); ``tile`` (input px) picks the
        bioimage.io block-size parameter."""
        blocksize = self._blocksize(tile)
        return np.stack([self.predict_plane(plane, device=device, blocksize=blocksize) for plane in batch])

    def upscale_image(self, image: Any, *, device: Any = "cpu", progress: Any = None, should_stop: Any = None,
                      **options: Any) -> np.ndarray:  # fmt: skip
        """``napari_superres.upscale(image, self, device=device, **options)`` without an engine: float32 (or
        ``output_dtype``) ``(..., sY, sX, ...)``; ``normalization`` must be unset (the package normalises)."""
        from ..engine.infer.pipeline import run
        from ..engine.infer.planning import plan
        from ..engine.request import UpscaleRequest

        job = plan(image, UpscaleRequest.from_kwargs(device=device, **options), self)
        return run(np.asarray(image), job, progress=progress, should_stop=should_stop)

    def _blocksize(self, tile: int | None) -> int:
        """The block-size parameter ``n`` whose input tile edge is closest to ``tile`` (px)."""
        if not tile:
            return DEFAULT_BLOCKSIZE_PARAMETER
        from bioimageio.spec.model.v0_5 import ParameterizedSize

        sizes = [a.size for a in self.descr.inputs[0].axes if isinstance(getattr(a, "size", None), ParameterizedSize)]
        if not sizes:
            return DEFAULT_BLOCKSIZE_PARAMETER
        size = sizes[0]
        return max(0, round((int(tile) - size.min) / size.step))


__all__ = [
    "MAX_MEMBER_BYTES",
    "MAX_PACKAGE_BYTES",
    "BioimageioImportError",
    "BioimageioSRModel",
    "is_bioimageio_source",
    "load_bioimageio_model",
    "package_files",
    "upscaler_scale",
    "weights_plan",
]
