"""BioImage Model Zoo (bioimage.io spec 0.5) packages: export, bioimageio.core's own test, import back."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_superres.engine import Engine, SRNet
from napari_superres.engine.samples import synthetic_pair
from napari_superres.io import bioimageio_arch
from napari_superres.io.bioimageio import (
    ABSOLUTE_TOLERANCE,
    BioimageioExportError,
    export_bioimageio,
    processing_for,
    test_bioimageio_package,
)
from napari_superres.io.bioimageio_import import (
    BioimageioImportError,
    BioimageioSRModel,
    load_bioimageio_model,
)

ARCH_CONFIGS = [
    {},
    dict(scale=4, channels=8, blocks=1),
    dict(scale=3, upsampling="pixelshuffle", channels=8, blocks=1, activation="prelu"),
    dict(scale=2, upsampling="transposed", channels=8, blocks=2, norm="batch", activation="leaky_relu"),
    dict(
        scale=2,
        channels=8,
        blocks=1,
        upsample_blocks=1,
        block_post_activation=True,
        final_activation=True,
        global_skip=False,
        activation="gelu",
    ),
    dict(scale=2, in_channels=3, out_channels=3, channels=8, blocks=1, activation="silu"),
    dict(scale=4, channels=8, blocks=1, upsample_channels=(12, 6)),
]


@pytest.mark.parametrize("config", ARCH_CONFIGS)
def test_packaged_architecture_file_builds_the_engines_srnet(config):
    torch.manual_seed(0)
    engine_net = SRNet(**config).eval()
    kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in engine_net.config.to_dict().items()}
    packaged = bioimageio_arch.SRNet(**kwargs).eval()
    theirs, ours = packaged.state_dict(), engine_net.state_dict()
    assert {k: tuple(v.shape) for k, v in theirs.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    packaged.load_state_dict(ours, strict=True)
    x = torch.rand(2, engine_net.config.in_channels, 13, 11)
    with torch.no_grad():
        torch.testing.assert_close(packaged(x), engine_net(x), rtol=0, atol=1e-6)


def test_architecture_file_imports_nothing_but_torch():
    source = Path(bioimageio_arch.__file__).read_text()
    imports = [line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert {m.split(".")[0] for m in imports} <= {"__future__", "math", "collections", "torch"}


def test_normalization_maps_to_bioimageio_processing():
    pre, post, _ = processing_for({"mode": "percentile", "low": 1.0, "high": 99.8}, np.dtype(np.uint16), 1)
    assert [p.id for p in pre] == ["ensure_dtype", "scale_range"] and post == []
    assert (pre[1].kwargs.min_percentile, pre[1].kwargs.max_percentile) == (1.0, 99.8)
    assert [str(a) for a in pre[1].kwargs.axes] == ["y", "x"]  # per sample (no batch), per image

    pre, post, _ = processing_for({"mode": "dtype"}, np.dtype(np.uint16), 1)
    assert pre[1].id == "scale_linear" and pre[1].kwargs.gain == pytest.approx(1 / 65535)
    assert post[0].id == "scale_linear" and post[0].kwargs.gain == 65535  # back to the input's units

    pre, post, _ = processing_for({"mode": "dtype"}, np.dtype(np.float32), 3)
    assert pre[1].id == "scale_range" and (pre[1].kwargs.min_percentile, pre[1].kwargs.max_percentile) == (0, 100)
    assert [str(a) for a in pre[1].kwargs.axes] == ["channel", "y", "x"]


def test_the_bicubic_baseline_is_not_exportable(tmp_path):
    with pytest.raises(BioimageioExportError, match="not an SRNet"):
        export_bioimageio("bicubic", tmp_path / "b.zip")


def test_a_package_is_a_zip(tmp_path):
    with pytest.raises(BioimageioExportError, match=r"\.zip"):
        export_bioimageio("superres-x2", tmp_path / "model.onnx")


# --- the round trip on a built-in model (exports once: about 20 s on 2 loaded cores) ------------------


@pytest.fixture(scope="module")
def x2_package(tmp_path_factory):
    from napari_superres.cli import main

    out = tmp_path_factory.mktemp("bioimageio") / "superres-x2.zip"
    assert main(["export", "superres-x2", "--bioimageio", str(out)]) == 0
    return out


@pytest.mark.slow
def test_exported_builtin_model_passes_bioimageio_core_test_model(x2_package):
    summary = test_bioimageio_package(x2_package)
    assert summary.status == "passed", summary.format()
    tested = {d.name for d in summary.details}
    for weights in ("pytorch_state_dict", "torchscript", "onnx"):
        assert f"Reproduce test outputs from test inputs ({weights})" in tested


@pytest.mark.slow
def test_package_holds_documentation_cover_test_tensors_and_citations(x2_package):
    import yaml

    with zipfile.ZipFile(x2_package) as z:
        names = set(z.namelist())
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        readme = z.read("README.md").decode()
        test_in = np.load(z.open("test_input.npy"))
        test_out = np.load(z.open("test_output.npy"))
    assert {
        "weights.pt",
        "weights_torchscript.pt",
        "weights.onnx",
        "srnet_architecture.py",
        "cover.png",
        "model.safetensors",
    } <= names
    assert rdf["format_version"].startswith("0.5") and rdf["license"] == "BSD-3-Clause"
    x, y = rdf["inputs"][0]["axes"][2], rdf["outputs"][0]["axes"][2]
    assert x["size"]["step"] > 0 and y["size"] == {"tensor_id": "input", "axis_id": "y"} and y["scale"] == 0.5
    assert y["halo"] >= 2
    assert test_out.shape[-2:] == tuple(2 * s for s in test_in.shape[-2:])
    dois = {c.get("doi") for c in rdf["cite"]}
    assert "10.1371/journal.pbio.1000502" in dois  # ISBI 2012 EM data (Cardona et al.), from the model card
    assert "Training data licences" in readme and "superres-x2" in readme


@pytest.mark.slow
def test_our_package_loads_back_with_the_exact_weights(x2_package):
    engine = Engine(device="cpu")
    lq, _ = synthetic_pair((96, 80), scale=2, seed=5)
    name = engine.load(x2_package)
    assert not isinstance(engine.get(name), BioimageioSRModel)  # ours: an SRNet, not a wrapped package
    np.testing.assert_array_equal(engine.upscale(lq, name), engine.upscale(lq, "superres-x2"))
    from napari_superres import upscale

    np.testing.assert_array_equal(upscale(lq, model=str(x2_package)), engine.upscale(lq, "superres-x2"))


@pytest.mark.slow
def test_a_package_through_bioimageio_cores_pipeline_matches_our_engine(x2_package):
    """The same package run as a foreign one: its own pre/post-processing and blocked tiling.

    bioimage.io pads the image edges (symmetric) by the halo where our engine lets the
    network's zero padding act, so the halo-wide border differs; inside it the outputs agree
    to the package's declared tolerance (absolute, in the output's units). The built-in model
    normalises by percentiles, which the package declares as ``scale_range`` preprocessing; the
    spec has no inverse for it, so the package's output stays in normalised units (as CARE
    packages do) and ours is compared after the same normalisation.  The field is dense: in a sparse one our
    engine reads the high percentile over the content (``normalization.content_share``), which ``scale_range``
    cannot say, so there a package normalises as CSBDeep does.
    """
    from bioimageio.spec import load_model_description

    from napari_superres.engine.normalization import intensity_range

    descr = load_model_description(str(x2_package))
    package = BioimageioSRModel.from_description(descr, name="x2 via bioimageio.core", source=str(x2_package))
    assert package.scale == 2
    engine = Engine(device="cpu")
    lq, _ = synthetic_pair((160, 144), scale=2, seed=6)
    yy, xx = np.mgrid[0 : lq.shape[0], 0 : lq.shape[1]]
    lq = (lq + 0.5 * np.ptp(lq) * (1 + np.sin(yy / 3.0) * np.cos(xx / 4.0))).astype(np.uint16)  # a dense field
    theirs = engine.upscale(lq, package, tile=40)
    # the built-in is conditioned on the image's degradation; a package has one input and tells it "clean and sharp"
    ours = engine.upscale(lq, "superres-x2", output_dtype=np.float32, degradation="clean")
    assert theirs.shape == ours.shape == (160, 144) and theirs.dtype == np.float32
    halo = descr.outputs[0].axes[2].halo
    inner = (slice(halo, -halo), slice(halo, -halo))
    lo, hi = intensity_range(lq, engine.get("superres-x2").normalization)
    ours_normalised = (ours - lo) / (hi - lo)
    np.testing.assert_allclose(theirs[inner], ours_normalised[inner], rtol=0, atol=ABSOLUTE_TOLERANCE)


def _edited_package(package: Path, folder: Path, edit) -> Path:
    """Unpack ``package``, apply ``edit(rdf)``, drop our config marker; returns the rdf.yaml path."""
    import yaml

    with zipfile.ZipFile(package) as z:
        z.extractall(folder)
    rdf_path = folder / "rdf.yaml"
    rdf = yaml.safe_load(rdf_path.read_text())
    rdf["config"].pop("napari_superres", None)
    edit(rdf)
    rdf_path.write_text(yaml.safe_dump(rdf))
    return rdf_path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scale", "message"),
    [(1.0, "keeps the image size"), (0.4, "not an integer")],
)
def test_packages_that_are_not_upscalers_are_refused_with_the_reason(x2_package, tmp_path, scale, message):
    def set_output_scale(rdf):
        for axis in rdf["outputs"][0]["axes"][2:]:
            axis["scale"] = scale
            axis.pop("halo", None)
        test_in = np.load(tmp_path / rdf["inputs"][0]["test_tensor"]["source"])
        size = tuple(int(n / scale) for n in test_in.shape[2:])  # what the edited output axes declare
        np.save(tmp_path / "test_output.npy", np.random.default_rng(0).random((1, 1, *size), np.float32))
        rdf["outputs"][0]["test_tensor"].pop("sha256")

    rdf = _edited_package(x2_package, tmp_path, set_output_scale)
    with pytest.raises(BioimageioImportError, match=message):
        load_bioimageio_model(rdf)


def test_a_file_that_is_no_package_is_refused(tmp_path):
    bad = tmp_path / "model.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BioimageioImportError):
        load_bioimageio_model(bad)


@pytest.mark.slow
def test_percentile_normalised_model_exports_and_passes_test_model(tmp_path):
    torch.manual_seed(1)
    engine = Engine(device="cpu", builtins=False)
    name = engine.register(
        SRNet(scale=2, channels=8, blocks=1), "tiny", normalization={"mode": "percentile", "low": 1.0, "high": 99.8}
    )
    out = export_bioimageio(engine.get(name), tmp_path / "tiny.zip", weight_formats=["pytorch_state_dict"])
    summary = test_bioimageio_package(out)
    assert summary.status == "passed", summary.format()
    back = load_bioimageio_model(out)
    assert back.normalization == {"mode": "percentile", "low": 1.0, "high": 99.8}


def test_the_engine_finds_the_bioimageio_loader_through_its_hook(tmp_path):
    from napari_superres.engine.loaders import find_model_loader, model_file_suffixes

    assert find_model_loader(tmp_path / "pkg.zip") is load_bioimageio_model
    assert find_model_loader(tmp_path / "model" / "rdf.yaml") is load_bioimageio_model
    (tmp_path / "photos.zip").write_bytes(b"")
    assert find_model_loader(tmp_path) is None  # a folder holding some .zip is not a package
    (tmp_path / "rdf.yaml").write_text("")
    assert find_model_loader(tmp_path) is load_bioimageio_model
    assert find_model_loader(tmp_path / "x.tif") is None
    assert model_file_suffixes()[0] == ".safetensors" and ".zip" in model_file_suffixes()
