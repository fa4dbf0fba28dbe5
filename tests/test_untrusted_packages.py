"""Foreign bioimage.io packages: no code of theirs runs unasked, nothing is fetched, no zip bomb is inflated.

The crafted package is a tiny exported SRNet whose architecture file also writes a marker
file when it is imported (its sha256 updated, our own config section removed, so it loads
as a foreign package); it must never run without consent, through any entry point.
"""

from __future__ import annotations

import hashlib
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bioimageio.core")

from napari_superres.engine.errors import UntrustedCodeError  # noqa: E402
from napari_superres.io import bioimageio_import  # noqa: E402
from napari_superres.io.bioimageio_import import BioimageioImportError, load_bioimageio_model  # noqa: E402

ARCH = "srnet_architecture.py"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A tiny x2 SRNet exported with pytorch_state_dict and onnx weights (about 10 s)."""
    import torch

    from napari_superres.engine import Engine, SRNet
    from napari_superres.io.bioimageio import export_bioimageio

    torch.manual_seed(0)
    engine = Engine(device="cpu", builtins=False)
    name = engine.register(SRNet(scale=2, channels=4, blocks=1), "tiny")
    out = tmp_path_factory.mktemp("export") / "tiny.zip"
    return export_bioimageio(engine.get(name), out, weight_formats=["pytorch_state_dict", "onnx"])


def craft(exported: Path, out: Path, marker: Path, *, onnx: bool = False, edit=None) -> Path:
    """A foreign package from ``exported`` whose architecture file writes ``marker`` on import."""
    import yaml

    with zipfile.ZipFile(exported) as z:
        files = {n: z.read(n) for n in z.namelist()}
    rdf = yaml.safe_load(files.pop("rdf.yaml"))
    rdf["config"].pop("napari_superres")
    rdf.pop("attachments", None)
    files.pop("model.safetensors")
    files[ARCH] += f"\nfrom pathlib import Path as _P\n_P({str(marker)!r}).write_text('ran')\n".encode()
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    arch["sha256"] = hashlib.sha256(files[ARCH]).hexdigest()
    if not onnx:
        rdf["weights"].pop("onnx")
        files.pop("weights.onnx")
    if edit is not None:
        edit(rdf)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("rdf.yaml", yaml.safe_dump(rdf))
        for name, data in files.items():
            z.writestr(name, data)
    return out


@pytest.fixture
def crafted(exported, tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "marker.txt"
    return craft(exported, tmp_path / "crafted.zip", marker), marker


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access while loading: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_the_crafted_package_is_refused_by_every_python_entry_point(crafted, no_network):
    from napari_superres import upscale
    from napari_superres.engine import Engine

    package, marker = crafted
    sha = hashlib.sha256(package.read_bytes()).hexdigest()
    image = np.zeros((24, 24), np.float32)
    with pytest.raises(UntrustedCodeError, match="trust_code=True") as info:
        upscale(image, model=str(package))
    assert info.value.path == str(package) and info.value.sha256 == sha
    assert sha in str(info.value) and ARCH in str(info.value)
    with pytest.raises(UntrustedCodeError):
        Engine(device="cpu", builtins=False).load(package)
    with pytest.raises(UntrustedCodeError):
        load_bioimageio_model(package)
    assert not marker.exists()


def test_the_crafted_package_is_refused_by_the_command_line(crafted, tmp_path, capsys):
    import tifffile

    from napari_superres.cli import main

    package, marker = crafted
    tifffile.imwrite(tmp_path / "in.tif", np.zeros((24, 24), np.uint16))
    status = main(["upscale", str(tmp_path / "in.tif"), str(tmp_path / "out.tif"), "--model", str(package), "-q"])
    assert status == 2
    err = capsys.readouterr().err
    assert "--trust-code" in err and str(package) in err
    assert not marker.exists() and not (tmp_path / "out.tif").exists()


def test_with_consent_the_package_runs(crafted, no_network):
    from napari_superres import upscale

    package, marker = crafted
    out = upscale(np.random.default_rng(0).random((24, 24), np.float32), model=str(package), trust_code=True)
    assert marker.read_text() == "ran"
    assert out.shape == (48, 48) and np.isfinite(out).all()


def test_the_command_line_runs_it_with_trust_code(crafted, tmp_path):
    import tifffile

    from napari_superres.cli import main

    package, marker = crafted
    tifffile.imwrite(tmp_path / "in.tif", np.zeros((24, 24), np.uint16))
    main(["upscale", str(tmp_path / "in.tif"), str(tmp_path / "out.zarr"), "--model", str(package), "-q",
          "--trust-code"])  # fmt: skip
    assert marker.read_text() == "ran"  # (the streaming command then says to use Python or napari)


def test_onnx_weights_are_preferred_and_run_no_python(exported, tmp_path, no_network):
    from napari_superres import upscale

    marker = tmp_path / "marker.txt"
    package = craft(exported, tmp_path / "with_onnx.zip", marker, onnx=True)
    model = load_bioimageio_model(package)
    assert model.weights_format == "onnx" and model.runs_code == ()
    out = upscale(np.random.default_rng(0).random((24, 24), np.float32), model=str(package))
    assert out.shape == (48, 48)
    assert not marker.exists()


def test_links_are_never_fetched(exported, tmp_path, no_network):
    """Documentation, cover and citation URLs are metadata; a remote-documentation package loads offline."""

    def remote_links(rdf):
        rdf["documentation"] = {"source": "https://example.org/never/fetched/README.md"}
        rdf["git_repo"] = "https://github.com/nobody/nothing"
        rdf["cite"][0]["url"] = "https://doi.example.invalid/x"

    package = craft(exported, tmp_path / "links.zip", tmp_path / "marker.txt", onnx=True, edit=remote_links)
    assert load_bioimageio_model(package).scale == 2


def test_remote_weights_are_refused_not_downloaded(exported, tmp_path, no_network):
    def remote_weights(rdf):
        rdf["weights"]["onnx"]["source"] = "https://example.org/weights.onnx"
        rdf["weights"]["onnx"].pop("sha256", None)

    package = craft(exported, tmp_path / "remote.zip", tmp_path / "marker.txt", onnx=True, edit=remote_weights)
    with pytest.raises(BioimageioImportError, match="downloads nothing"):
        load_bioimageio_model(package)


def test_a_tampered_file_still_fails_bioimageio_hash_check(exported, tmp_path):
    marker = tmp_path / "marker.txt"
    package = craft(exported, tmp_path / "ok.zip", marker, onnx=True)
    with zipfile.ZipFile(package) as z:
        files = {n: z.read(n) for n in z.namelist()}
    files["weights.onnx"] = files["weights.onnx"][:-8] + b"\0" * 8
    with zipfile.ZipFile(tmp_path / "tampered.zip", "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    with pytest.raises(BioimageioImportError, match="sha256|SHA-256|hash"):
        load_bioimageio_model(tmp_path / "tampered.zip")


def test_zip_members_are_size_checked_before_extraction(tmp_path, monkeypatch):
    monkeypatch.setattr(bioimageio_import, "MAX_MEMBER_BYTES", 2**20)
    monkeypatch.setattr(bioimageio_import, "MAX_PACKAGE_BYTES", 3 * 2**20)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("rdf.yaml", "type: model\n")
        z.writestr("weights.pt", b"\0" * (2 * 2**20))  # 2 MB of zeros: a few kB compressed
    assert bomb.stat().st_size < 20_000
    with pytest.raises(BioimageioImportError, match=r"bomb.zip.*weights.pt.*2 MB unpacked"):
        load_bioimageio_model(bomb)
    spread = tmp_path / "spread.zip"
    with zipfile.ZipFile(spread, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("rdf.yaml", "type: model\n")
        for k in range(4):
            z.writestr(f"part{k}.bin", b"\0" * (2**20 - 10))
    with pytest.raises(BioimageioImportError, match="spread.zip: its 5 files"):
        load_bioimageio_model(spread)


def test_the_napari_reader_asks_first_and_loads_only_on_yes(crafted, monkeypatch, make_napari_viewer_proxy):
    from napari_superres._napari import consent
    from napari_superres._napari.engine_access import get_engine
    from napari_superres._napari.model_reader import get_model_reader

    package, marker = crafted
    viewer = make_napari_viewer_proxy()
    asked = []

    def answer(value):
        def ask(error, parent=None):
            asked.append((error.path, error.sha256))
            return value

        return ask

    reader = get_model_reader(str(package))
    assert reader is not None
    monkeypatch.setattr(consent, "ask_to_run_code", answer(False))
    reader(str(package))
    assert asked == [(str(package), hashlib.sha256(package.read_bytes()).hexdigest())]
    assert not marker.exists()
    assert not any("crafted" in n for n in get_engine(viewer).names())

    monkeypatch.setattr(consent, "ask_to_run_code", answer(True))
    reader(str(package))
    assert marker.read_text() == "ran"
    assert any("crafted" in n for n in get_engine(viewer).names())


def test_the_upscale_widgets_load_button_asks_first(crafted, monkeypatch, make_napari_viewer_proxy, qtbot):
    from napari_superres._napari import consent
    from napari_superres._napari import upscale_widget as upscale_widget_module

    package, marker = crafted
    viewer = make_napari_viewer_proxy()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-deep-superres", "Upscale")
    qtbot.waitUntil(lambda: widget.engine is not None, timeout=60_000)
    warnings = []
    monkeypatch.setattr(upscale_widget_module, "show_warning", lambda msg: warnings.append(str(msg)))
    monkeypatch.setattr(consent, "ask_to_run_code", lambda error, parent=None: False)
    assert widget.load_model_file(package) is None
    assert not marker.exists() and "not loaded" in warnings[-1]
    monkeypatch.setattr(consent, "ask_to_run_code", lambda error, parent=None: True)
    name = widget.load_model_file(package)
    assert name is not None and widget.model_combo.value == name and marker.read_text() == "ran"
