"""The installed plugin: a valid npe2 manifest, a light import, and a working command line."""

import subprocess
import sys

import npe2


def test_manifest_is_found_from_the_installed_distribution_and_valid():
    manifest = npe2.PluginManifest.from_distribution("napari-superres")
    assert manifest.name == "napari-superres"
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert widgets == {"Upscale", "Train", "Feature difference"}
    assert [s.key for s in manifest.contributions.sample_data] == ["fluorescence_pair"]


def test_npe2_validate_passes():
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-superres"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_every_manifest_command_imports():
    manifest = npe2.PluginManifest.from_distribution("napari-superres")
    manifest.validate_imports()  # raises when a python_name does not resolve


def test_importing_the_package_does_not_import_torch():
    code = "import sys, napari_superres; assert 'torch' not in sys.modules, 'torch imported at start-up'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_sample_data_generator_does_not_import_torch():
    code = "import sys, napari_superres.engine.samples; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_engine_exports_resolve():
    import napari_superres.engine as engine

    for name in engine.__all__:
        assert getattr(engine, name) is not None


def test_cli_help_lists_the_subcommands():
    result = subprocess.run(
        [sys.executable, "-m", "napari_superres.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    for command in ("upscale", "train", "models"):
        assert command in result.stdout
