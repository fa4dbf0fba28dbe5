"""What the published distribution holds and needs: LICENSE in the sdist and wheel, and every library the
napari widgets import declared as a core dependency (napari's plugin manager installs no extras)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WIDGETS = ROOT / "src" / "napari_superres" / "_napari"
#: What a napari install already brings: napari itself and one Qt binding of the user's choice.
PROVIDED_BY_NAPARI = {"napari", "PyQt5", "PyQt6", "PySide2", "PySide6"}


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (``"dask[array]>=1"`` -> ``"dask"``)."""
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-").replace(".", "-")


def _imported_modules(folder: Path) -> set[str]:
    """Top-level names of the absolute imports in every module of ``folder``, standard library and ours left out."""
    names: set[str] = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "napari_superres"}


def _distributions_of(modules: set[str]) -> dict[str, str]:
    """Import name -> normalised distribution name (installed packages' own records)."""
    installed = packages_distributions()
    missing = sorted(m for m in modules if m not in installed)
    assert not missing, f"imported by the widgets but not installed here: {missing}"
    return {m: _name(installed[m][0]) for m in modules}


def test_every_library_the_widgets_import_is_a_core_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {_name(r) for r in project["dependencies"]}
    needed = _distributions_of(_imported_modules(WIDGETS) - PROVIDED_BY_NAPARI)
    assert {"magicgui", "superqt", "pyqtgraph", "qtpy"} <= set(needed.values())  # the scan sees the widgets' libraries
    undeclared = {
        module: dist for module, dist in needed.items() if dist not in core and dist not in PROVIDED_BY_NAPARI
    }
    assert not undeclared, f"the widgets import these, which a plain install would lack: {undeclared}"
    # napari's plugin manager reads the manifest through npe2: a core dependency too
    assert "npe2" in core


# --- the built distributions (about 30 s: an isolated build) -------------------------------------------------


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """sdist, then the wheel built from it (as ``python -m build`` does for PyPI), in a temporary folder."""
    out = tmp_path_factory.mktemp("dist")
    src = tmp_path_factory.mktemp("src") / "napari-deep-superres"
    ignore = shutil.ignore_patterns(".venv*", ".git", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache")
    shutil.copytree(ROOT, src, ignore=ignore)  # the checkout stays untouched (no egg-info, no build/)
    uv = Path(sys.executable).with_name("uv")
    command = [str(uv), "build", "--out-dir", str(out), str(src)] if uv.exists() else [
        sys.executable, "-m", "build", "--outdir", str(out), str(src)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.mark.slow
def test_wheel_and_sdist_carry_the_licence_and_the_plain_install_needs(dist):
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("BSD 3-Clause License") and "napari-deep-superres developers" in licence
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as z:
        licences = [n for n in z.namelist() if n.endswith("/LICENSE") and ".dist-info/" in n]
        assert licences, z.namelist()
        assert z.read(licences[0]).decode() == licence
        metadata = Parser().parsestr(
            z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        )
    with tarfile.open(sdist) as t:
        assert any(n.endswith("/LICENSE") for n in t.getnames())
    assert metadata["License-Expression"] == "BSD-3-Clause"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Requires-Python"] == ">=3.11"
    assert any(u.startswith("Source, https://github.com/") for u in metadata.get_all("Project-URL"))
    plain = {_name(r) for r in metadata.get_all("Requires-Dist") if "extra ==" not in r}
    widgets = set(_distributions_of(_imported_modules(WIDGETS) - PROVIDED_BY_NAPARI).values())
    assert widgets <= plain | PROVIDED_BY_NAPARI, widgets - plain
