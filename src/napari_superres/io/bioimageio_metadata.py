"""What a bioimage.io package says about its model besides tensors and weights: people, provenance, data.

The BioImage Model Zoo asks every model for authors and maintainers (GitHub users), the
Git repository, a version, the training data and citations; this module turns our
defaults and the caller's choices into spec-0.5 objects (:mod:`bioimageio.spec` is imported
inside the functions, so importing this module needs nothing beyond the standard library).

* people: ``"Name"`` or ``"Name <github_user>"`` strings (authors), ``"github_user"`` or
  ``"Name <github_user>"`` (maintainers); by default the authors are
  :data:`DEFAULT_AUTHORS` and there is no maintainer: a zoo upload needs one
  (``napari-superres export --maintainer GITHUB_USER``).
* training data: the built-in recipe's folders named in a model card
  (:data:`DATA_SOURCES`, with their licences: they are not the package's BSD-3-Clause),
  described inline as one dataset; or a zoo dataset id.
* ``pytorch_version``: the lowest torch the weights are known to load in, not the exporter's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: The project's Git repository (``git_repo`` of every package; pyproject.toml's ``[project.urls] Source``).
GIT_REPO = "https://github.com/napari-deep-superres/napari-deep-superres"
#: Authors of a package when the caller names none.
DEFAULT_AUTHORS: tuple[str, ...] = ("napari-deep-superres developers",)
#: Version of a package when the caller gives none (SemVer).
DEFAULT_VERSION = "0.1.0"
#: Lowest torch the state dict and its architecture file are checked with (pyproject.toml's bound,
#: tested by .ci/lowest.sh): ``pytorch_version`` of the ``pytorch_state_dict`` weights.
MIN_TORCH_VERSION = "2.6"
#: Characters bioimage.io allows in a name (letters, digits, ``_+- ()``).
_NAME_BAD_CHARS = re.compile(r"[^A-Za-z0-9_+\- ()]+")
_PERSON = re.compile(r"^\s*(?P<name>[^<>]*?)\s*(?:<\s*@?(?P<user>[A-Za-z0-9-]+)\s*>)?\s*$")


@dataclass(frozen=True)
class DataSource:
    """A training-data folder of the built-in recipe: what to cite and its licence note."""

    folder: str
    title: str
    licence: str
    citations: tuple[tuple[str, str | None, str | None], ...]  # (text, doi, url)


#: Keyed by the folder names the model cards (scripts/train_builtin.py) list under "Sources and licences".
DATA_SOURCES: tuple[DataSource, ...] = (
    DataSource(
        "natural/T91",
        "T91 (Yang et al. 2010) natural images",
        "no data licence stated (distributed with MIT-licensed code, jiny2001/dcscn-super-resolution)",
        (
            (
                (
                    "Yang J, Wright J, Huang TS, Ma Y. Image super-resolution via sparse representation. "
                    "IEEE Trans Image Process 19(11), 2010."
                ),
                "10.1109/TIP.2010.2050625",
                None,
            ),
        ),
    ),
    DataSource(
        "natural/BSD200",
        "BSD200 (Berkeley Segmentation Dataset) natural images",
        "Berkeley Segmentation Dataset: research use",
        (
            (
                (
                    "Martin D, Fowlkes C, Tal D, Malik J. A database of human segmented natural images and its "
                    "application to evaluating segmentation algorithms and measuring ecological statistics. ICCV 2001."
                ),
                "10.1109/ICCV.2001.937655",
                None,
            ),
        ),
    ),
    DataSource(
        "microscopy/em_isbi2012_train",
        "ISBI 2012 EM segmentation challenge (ssTEM, Drosophila VNC)",
        "no data licence stated; cite the challenge and Cardona et al. 2010",
        (
            (
                (
                    "Cardona A et al. An integrated micro- and macroarchitectural analysis of the Drosophila brain by "
                    "computer-assisted serial section electron microscopy. PLoS Biol 8(10), 2010."
                ),
                "10.1371/journal.pbio.1000502",
                None,
            ),
            (
                (
                    "Arganda-Carreras I et al. Crowdsourcing the creation of image segmentation algorithms for "
                    "connectomics. Front Neuroanat 9:142, 2015."
                ),
                "10.3389/fnana.2015.00142",
                None,
            ),
        ),
    ),
    DataSource(
        "microscopy/fluorescence",
        "fluorescence images of the BioImageAnalysisNotebooks data folder",
        "CC BY 4.0 (repository content licence); per file: BBBC022 CC0, zenodo 5206107 CC BY 4.0, others as "
        "stated in the model card",
        (
            (
                "Haase R et al. BioImageAnalysisNotebooks (data folder).",
                None,
                "https://github.com/haesleinhuepf/BioImageAnalysisNotebooks",
            ),
            (
                (
                    "Gustafsdottir SM et al. Multiplex cytological profiling assay to measure diverse cellular states. "
                    "PLoS One 8(12), 2013 (BBBC022)."
                ),
                "10.1371/journal.pone.0080999",
                None,
            ),
            ("Tinevez JY, Jacquemet G. Cancer cell migration (zenodo 5206107).", "10.5281/zenodo.5206107", None),
        ),
    ),
)
#: The method: residual CNN with a global (bicubic) skip, as VDSR/EDSR.
METHOD_CITATIONS: tuple[tuple[str, str | None, str | None], ...] = (
    (
        (
            "Kim J, Lee JK, Lee KM. Accurate image super-resolution using very deep convolutional networks "
            "(VDSR). CVPR 2016."
        ),
        "10.1109/CVPR.2016.182",
        None,
    ),
    (
        (
            "Lim B, Son S, Kim H, Nah S, Lee KM. Enhanced deep residual networks for single image "
            "super-resolution (EDSR). CVPRW 2017."
        ),
        "10.1109/CVPRW.2017.151",
        None,
    ),
)


def data_sources_in(card: str) -> list[DataSource]:
    """The :data:`DATA_SOURCES` a model card names (``**natural/T91**`` ...)."""
    return [s for s in DATA_SOURCES if s.folder in card]


def parse_person(text: str) -> tuple[str | None, str | None]:
    """``"Ada Lovelace <ada>"`` -> ``("Ada Lovelace", "ada")``; ``"ada"`` -> ``("ada", None)``; ValueError otherwise."""
    match = _PERSON.match(text)
    if match is None or not (match["name"] or match["user"]):
        raise ValueError(f"{text!r} is not 'Name' or 'Name <github_user>'")
    return match["name"] or None, match["user"]


def authors_descr(authors: Iterable[str] | None) -> list[Any]:
    """bioimage.io ``Author`` objects for ``"Name"`` / ``"Name <github_user>"`` strings (default :data:`DEFAULT_AUTHORS`)."""
    from bioimageio.spec.model.v0_5 import Author

    people = [parse_person(a) for a in (authors or DEFAULT_AUTHORS)]
    if not people:
        raise ValueError("a bioimage.io package needs at least one author")
    return [Author(name=name or user, github_user=user) for name, user in people]


def maintainers_descr(maintainers: Iterable[str] | None) -> list[Any]:
    """bioimage.io ``Maintainer`` objects for ``"github_user"`` / ``"Name <github_user>"`` strings (default: none)."""
    import httpx  # bioimageio.spec's HTTP client
    from bioimageio.spec.model.v0_5 import Maintainer

    result = []
    for text in maintainers or ():
        name, user = parse_person(text)
        if user is None:  # a bare word is the GitHub user
            name, user = None, name
        if user is None or not re.fullmatch(r"[A-Za-z0-9-]+", user):
            raise ValueError(f"maintainer {text!r}: give a GitHub user name, e.g. 'Ada Lovelace <ada>' or 'ada'")
        try:
            result.append(Maintainer(name=name, github_user=user))
        except httpx.HTTPError as e:  # bioimageio.spec looks users it does not know up on GitHub
            raise ValueError(f"maintainer {user!r}: bioimageio.spec could not check this GitHub user ({e})") from e
    return result


def plain_name(model_name: str, scale: int) -> str:
    """A zoo-valid resource name from the model's own: ``"superres-x2"`` stays; ``"my.model"`` -> ``"my-model x2"``."""
    name = _NAME_BAD_CHARS.sub("-", model_name).strip(" -") or "super-resolution"
    if f"x{scale}" not in name.lower():
        name = f"{name} x{scale}"
    if len(name) < 5:
        name = f"{name} super-resolution"
    return name[:128]


def training_data_descr(card: str | None, training_data: str | Mapping[str, Any] | None) -> Any:
    """``training_data`` of a package: a zoo dataset id (``str``), a dataset description (mapping), or,
    by default, the built-in recipe's sources named in the model ``card`` described inline (``None`` if none)."""
    from bioimageio.spec.dataset.v0_3 import DatasetDescr
    from bioimageio.spec.generic.v0_3 import CiteEntry
    from bioimageio.spec.model.v0_5 import DatasetId, LinkedDataset

    if isinstance(training_data, str):
        return LinkedDataset(id=DatasetId(training_data))
    if training_data is not None:
        return DatasetDescr(**{"type": "dataset", "format_version": "0.3.0", **dict(training_data)})
    sources = data_sources_in(card or "")
    if not sources:
        return None
    lines = "; ".join(f"{s.folder}: {s.title} ({s.licence})" for s in sources)
    return DatasetDescr(
        type="dataset",
        format_version="0.3.0",
        name="napari-superres built-in training images",
        description=("Training pairs made from these folders (licence of each in brackets; the model's "
                     f"BSD-3-Clause does not cover them): {lines}")[:1024],
        cite=[CiteEntry(text=t, doi=d, url=u) for s in sources for t, d, u in s.citations],
    )  # fmt: skip


def pytorch_versions(exporter_torch: str) -> tuple[str, str]:
    """``(state dict, torchscript)`` ``pytorch_version``: :data:`MIN_TORCH_VERSION`, and the exporter's
    ``major.minor`` (a TorchScript file loads in the torch that wrote it and later ones)."""
    major_minor = ".".join(exporter_torch.split("+")[0].split(".")[:2])
    return MIN_TORCH_VERSION, major_minor


__all__ = [
    "DATA_SOURCES",
    "DEFAULT_AUTHORS",
    "DEFAULT_VERSION",
    "GIT_REPO",
    "METHOD_CITATIONS",
    "MIN_TORCH_VERSION",
    "DataSource",
    "authors_descr",
    "data_sources_in",
    "maintainers_descr",
    "parse_person",
    "plain_name",
    "pytorch_versions",
    "training_data_descr",
]
