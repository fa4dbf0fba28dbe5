"""bioimage.io packages as the BioImage Model Zoo and bioimage.io's own tools see them: metadata, `bioimageio test`."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("bioimageio.core")

from napari_superres.io.bioimageio_metadata import (  # noqa: E402
    DEFAULT_AUTHORS,
    GIT_REPO,
    MIN_TORCH_VERSION,
    maintainers_descr,
    parse_person,
    plain_name,
    pytorch_versions,
)

ROOT = Path(__file__).resolve().parents[1]
#: A GitHub user bioimageio.spec knows offline (its KNOWN_GITHUB_USERS), so validation needs no network.
MAINTAINER = "bioimageiobot"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_people_are_name_and_optional_github_user():
    assert parse_person("Ada Lovelace <ada>") == ("Ada Lovelace", "ada")
    assert parse_person("Ada Lovelace") == ("Ada Lovelace", None)
    assert parse_person("<@ada>") == (None, "ada")
    with pytest.raises(ValueError, match="Name <github_user>"):
        parse_person("")
    (bot,) = maintainers_descr([MAINTAINER])
    assert bot.github_user == MAINTAINER and bot.name is None
    with pytest.raises(ValueError, match="GitHub user"):
        maintainers_descr(["Ada Lovelace"])  # a name with a space is no GitHub user


def test_package_names_are_plain_and_zoo_valid():
    assert plain_name("superres-x2", 2) == "superres-x2"  # no tool prefix, no repeated scale
    assert plain_name("my.model", 4) == "my-model x4"
    assert re.fullmatch(r"[A-Za-z0-9_+\- ()]{5,128}", plain_name("a/b", 3))


def test_metadata_defaults_match_the_distribution():
    project = _pyproject()["project"]
    assert project["urls"]["Source"] == GIT_REPO
    assert DEFAULT_AUTHORS == tuple(a["name"] for a in project["authors"])
    torch_bound = next(d for d in project["dependencies"] if d.startswith("torch>="))
    assert re.match(r"torch>=([\d.]+)", torch_bound)[1] == MIN_TORCH_VERSION
    # the state dict: the lowest supported torch; TorchScript: the exporter's release, not its patch/build
    assert pytorch_versions("2.15.0+cu130") == (MIN_TORCH_VERSION, "2.15")


def test_no_code_in_src_patches_other_packages_at_run_time():
    """No ``exec``/``compile`` of source text and no assignment to a function's ``__code__`` anywhere in src/."""
    for path in (ROOT / "src").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("exec", "eval", "compile"), f"{path}:{node.lineno}"
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                assert node.attr != "__code__", f"{path}:{node.lineno}"


# --- one exported package (about 20 s on 2 loaded cores) -----------------------------------------------------


@pytest.fixture(scope="module")
def zoo_package(tmp_path_factory):
    from napari_superres.cli import main

    out = tmp_path_factory.mktemp("zoo") / "superres-x2.zip"
    args = ["export", "superres-x2", "--bioimageio", str(out), "--author", "Ada Lovelace",
            "--maintainer", MAINTAINER, "--package-version", "1.2.0"]  # fmt: skip
    assert main(args) == 0
    return out


@pytest.mark.slow
def test_exported_metadata_is_what_the_zoo_asks_for(zoo_package):
    import imageio.v3 as iio
    import yaml

    with zipfile.ZipFile(zoo_package) as z:
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        samples = {n: iio.imread(z.read(n), extension=".tif") for n in ("sample_input.tif", "sample_output.tif")}
    assert rdf["name"] == "superres-x2"
    assert [(a["name"], a.get("github_user")) for a in rdf["authors"]] == [("Ada Lovelace", None)]
    assert [m["github_user"] for m in rdf["maintainers"]] == [MAINTAINER]
    assert rdf["git_repo"] == GIT_REPO and rdf["version"] == "1.2.0"
    training = rdf["training_data"]
    assert "BSD200" in training["description"] and any(c.get("doi") for c in training["cite"])
    assert rdf["inputs"][0]["sample_tensor"]["source"] == "sample_input.tif"
    assert samples["sample_output.tif"].shape == tuple(2 * s for s in samples["sample_input.tif"].shape)
    versions = {w: d.get("pytorch_version") for w, d in rdf["weights"].items()}
    assert str(versions["pytorch_state_dict"]) == MIN_TORCH_VERSION


@pytest.mark.slow
def test_bioimageio_test_command_passes_on_the_exported_package(zoo_package):
    """bioimage.io's own command line, in a fresh process: format validation and every weight format."""
    command = Path(sys.executable).with_name("bioimageio")
    assert command.exists(), f"bioimageio.core installs the `bioimageio` command next to {sys.executable}"
    done = subprocess.run(
        [str(command), "test", str(zoo_package), "--summary", str(zoo_package.with_suffix(".json"))],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    import json

    summary = json.loads(zoo_package.with_suffix(".json").read_text())
    assert summary["status"] == "passed"
    reproduced = {d["name"] for d in summary["details"] if d["status"] == "passed"}
    for weights in ("pytorch_state_dict", "torchscript", "onnx"):
        assert f"Reproduce test outputs from test inputs ({weights})" in reproduced
