"""napari conventions: Layers ▸ Filter menu, a model-file reader, plugin settings, layer axis labels and units."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import npe2
import numpy as np
import pytest

from napari_superres._napari.model_reader import NO_LAYERS, get_model_reader, is_model_file, register_model_file
from napari_superres._napari.plugin_settings import PLUGIN_NAME, PluginDefaults, plugin_defaults
from napari_superres.engine.registry import BUILTIN_MODEL_DIR

ROOT = Path(__file__).resolve().parents[1]
BUILTIN_X2 = BUILTIN_MODEL_DIR / "superres-x2.safetensors"


@pytest.fixture(scope="module")
def manifest():
    return npe2.PluginManifest.from_distribution(PLUGIN_NAME)


def test_upscale_is_in_the_layers_filter_menu(manifest):
    items = manifest.contributions.menus["napari/layers/filter"]  # NAP-6 menu id (napari MenuId.LAYERS_FILTER)
    assert [i.command for i in items] == [f"{PLUGIN_NAME}.upscale_widget"]


def test_model_files_and_bioimageio_zips_have_a_reader(manifest):
    (reader,) = manifest.contributions.readers
    assert reader.command == f"{PLUGIN_NAME}.get_model_reader"
    assert set(reader.filename_patterns) == {"*.safetensors", "*.zip"}


def test_settings_are_declared_as_configurations(manifest):
    section = manifest.contributions.configurations["defaults"]
    assert set(section.properties) == {"device", "model", "tile"}
    assert section.properties["device"].default == "auto"


def test_settings_fall_back_to_defaults_when_napari_has_none(monkeypatch):
    import napari.settings

    def broken(*args, **kwargs):
        raise KeyError("no settings for this plugin")

    monkeypatch.setattr(napari.settings, "get_plugin_settings", broken)
    assert plugin_defaults() == PluginDefaults()


def test_settings_are_read_from_napari(monkeypatch):
    from types import SimpleNamespace

    import napari.settings

    fake = SimpleNamespace(defaults=SimpleNamespace(device="cpu", model="superres-x4", tile=256))
    monkeypatch.setattr(napari.settings, "get_plugin_settings", lambda name: fake if name == PLUGIN_NAME else None)
    assert plugin_defaults() == PluginDefaults(device="cpu", model="superres-x4", tile=256)


def test_reader_takes_model_files_only(tmp_path):
    other = tmp_path / "weights.safetensors"
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(3, np.float32)}, str(other))  # a safetensors file that is not a model
    plain_zip = tmp_path / "photos.zip"
    import zipfile

    with zipfile.ZipFile(plain_zip, "w") as z:
        z.writestr("a.txt", "not a model")
    assert is_model_file(BUILTIN_X2)
    assert get_model_reader(str(BUILTIN_X2)) is register_model_file
    assert get_model_reader(str(other)) is None and get_model_reader(str(plain_zip)) is None
    assert get_model_reader([str(BUILTIN_X2)]) is None  # one file at a time


def test_reading_a_model_file_registers_it_and_adds_no_layer(tmp_path, monkeypatch):
    import napari

    from napari_superres.engine import Engine
    from napari_superres.engine.registry import default_engine

    copy = tmp_path / "my-x2.safetensors"
    copy.write_bytes(BUILTIN_X2.read_bytes())
    monkeypatch.setattr(napari, "current_viewer", lambda: None)  # no viewer: the process-wide engine
    assert register_model_file(str(copy)) == NO_LAYERS
    engine: Engine = default_engine()
    assert "my-x2" in engine.names()
    engine.remove("my-x2")


def test_output_layers_keep_axis_labels_and_units():
    from napari.layers import Image

    from napari_superres._napari.layers import output_layer_kwargs

    source = Image(np.zeros((3, 8, 8), np.uint16), scale=(2.0, 0.5, 0.5), axis_labels=("z", "y", "x"),
                   units=("µm", "µm", "µm"))  # fmt: skip
    kwargs = output_layer_kwargs(source, 2, "superres-x2")
    out = Image(np.zeros((3, 16, 16), np.uint16), **kwargs)
    assert tuple(out.axis_labels) == ("z", "y", "x")
    assert [str(u) for u in out.units] == [str(u) for u in source.units]
    assert tuple(out.scale) == (2.0, 0.25, 0.25)


def test_no_qt_binding_in_the_core_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower() for req in project["dependencies"]}
    assert not names & {"pyqt5", "pyqt6", "pyside2", "pyside6", "napari"}  # a binding is the user's choice
    assert "napari[all]" in project["optional-dependencies"]["all"]  # as the napari plugin template


@pytest.mark.gui
def test_layers_filter_menu_opens_the_upscale_widget(make_napari_viewer):
    from napari._app_model import get_app_model

    make_napari_viewer()
    app = get_app_model()
    items = [i for i in app.menus.get_menu("napari/layers/filter") if hasattr(i, "command")]
    titles = [i.command.title for i in items]
    assert any("Upscale" in t for t in titles), titles


@pytest.mark.gui
def test_dropping_a_model_file_on_napari_registers_it_in_the_viewers_engine(make_napari_viewer, tmp_path):
    from napari_superres import get_engine

    viewer = make_napari_viewer()
    copy = tmp_path / "dropped-x2.safetensors"
    copy.write_bytes(BUILTIN_X2.read_bytes())
    layers = viewer.open(str(copy), plugin=PLUGIN_NAME)
    assert layers == [] and len(viewer.layers) == 0
    assert "dropped-x2" in get_engine(viewer).names()
