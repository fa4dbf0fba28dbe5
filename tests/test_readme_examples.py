"""The README's Python examples run as written.

Every ```python block of README.md is one test case, run as its own script (a fresh
namespace) in a temporary folder, so a user can paste any block on its own.  Blocks that
open a napari viewer need the GUI stack and run under the virtual display (marked
``gui``); the viewer they open is closed afterwards.  Blocks that compute VGG-16 feature
maps get a stand-in weights file (randomly initialised, in a temporary torch hub cache:
the ``fake_vgg_cache`` fixture), as tests never download.  Blocks that train or compute
feature maps are marked ``slow``.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
#: Calls that take more than a few seconds: training (even with the README's few steps), and
#: feature maps (the stand-in VGG-16 weights file is 530 MB).
_SLOW_CALLS = ("Trainer(", "adapt(", "upscale_z(", "feature_difference(")


def _examples() -> list:
    text = README.read_text(encoding="utf-8")
    params = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 2  # the block's first code line
        code = match.group(1)
        marks = []
        if "napari.Viewer(" in code:
            marks.append(pytest.mark.gui)
        if any(call in code for call in _SLOW_CALLS):
            marks.append(pytest.mark.slow)
        params.append(pytest.param(code, line, id=f"README.md:{line}", marks=marks))
    return params


def test_the_readme_shows_python_examples():
    assert len(_examples()) >= 5


@pytest.mark.parametrize(("code", "line"), _examples())
def test_readme_example_runs(code, line, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)  # examples that save a file write it here
    if "feature_difference(" in code:
        request.getfixturevalue("fake_vgg_cache")
    if "napari.Viewer(" in code:
        pytest.importorskip("napari")
        request.getfixturevalue("qapp")  # the QApplication napari's viewer lives in (pytest-qt)
    script = tmp_path / f"readme_line_{line}.py"
    script.write_text(code, encoding="utf-8")
    namespace: dict = {}
    try:
        namespace = runpy.run_path(str(script), run_name="__main__")
    finally:
        viewer = namespace.get("viewer")
        if viewer is not None:
            viewer.close()


def _command_lines() -> list[str]:
    text = README.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for line in block.splitlines():
            if line.startswith("napari-superres "):
                lines.append(re.sub(r"\[[^\]]*\]", "", line.split("  #")[0]).strip())
    return lines


def test_the_readme_command_lines_parse():
    """Every ``napari-superres ...`` line of the README is accepted by the parser as written (optional ``[...]`` left out)."""
    import shlex

    from napari_superres.cli import build_parser

    lines = _command_lines()
    assert len(lines) >= 5
    parser = build_parser()
    for line in lines:
        args = parser.parse_args(shlex.split(line)[1:])  # argparse exits (a test failure) on an unknown option
        assert args.command, line
