"""The installed plugin: a valid npe2 manifest, a light import, and a working command line."""

import subprocess
import sys

import npe2

#: the distribution (PyPI, npe2 plugin) name; the import package stays ``napari_superres``.
#: PyPI's ``napari-superres`` is another project (SRRF/MSSR/SOFI) that also uses ``napari_superres``.
DISTRIBUTION = "napari-deep-superres"


def test_manifest_is_found_from_the_installed_distribution_and_valid():
    manifest = npe2.PluginManifest.from_distribution(DISTRIBUTION)
    assert manifest.name == DISTRIBUTION
    assert all(c.id.startswith(f"{DISTRIBUTION}.") for c in manifest.contributions.commands)
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert widgets == {"Upscale", "Train", "Feature difference"}
    assert [s.key for s in manifest.contributions.sample_data] == ["fluorescence_pair"]


def test_npe2_validate_passes():
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", DISTRIBUTION], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_every_manifest_command_imports():
    manifest = npe2.PluginManifest.from_distribution(DISTRIBUTION)
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


def test_the_distribution_is_installed_under_its_own_name():
    from importlib.metadata import PackageNotFoundError, distribution, packages_distributions

    import napari_superres

    assert distribution(DISTRIBUTION).version
    assert DISTRIBUTION in packages_distributions()["napari_superres"]
    scripts = {ep.name for ep in distribution(DISTRIBUTION).entry_points if ep.group == "console_scripts"}
    assert {"napari-superres", DISTRIBUTION} <= scripts  # the command, and its alias named as the distribution
    try:
        other = distribution("napari-superres")  # the unrelated PyPI project of that name
    except PackageNotFoundError:
        other = None
    assert other is None, "PyPI's napari-superres is installed too: it overwrites napari_superres"
    assert napari_superres.__file__
