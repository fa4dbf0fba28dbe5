"""Consent before a model package runs Python code it brings: a Yes/No question naming the file.

The engine and io refuse such packages with
:class:`~napari_superres.engine.errors.UntrustedCodeError` (file name and SHA-256); here
that refusal becomes the question, and a "Yes" loads the file again with ``trust_code=True``.
"""

from __future__ import annotations

import os
from typing import Any

from ..engine.errors import UntrustedCodeError


def ask_to_run_code(error: UntrustedCodeError, parent: Any = None) -> bool:
    """Ask (modal, "No" by default) whether the package of ``error`` may run its code."""
    from qtpy.QtWidgets import QMessageBox

    text = (
        f"The model package\n{error.path}\nsha256 {error.sha256}\n\nwould run Python code it brings:\n"
        + "\n".join(error.code)
        + "\n\nSuch code can do anything your account can do. Run it only if you trust where the file "
        "comes from. Run it?"
    )
    buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
    answer = QMessageBox.question(
        parent, "Run code from a model package?", text, buttons, QMessageBox.StandardButton.No
    )
    return answer == QMessageBox.StandardButton.Yes


def load_with_consent(engine: Any, path: str | os.PathLike, parent: Any = None) -> str | None:
    """``engine.load(path)``; a package that would run its own code is loaded only after a "Yes"
    (``None`` when declined).  Other errors propagate."""
    try:
        return engine.load(path)
    except UntrustedCodeError as error:
        if not ask_to_run_code(error, parent):
            return None
        return engine.load(path, trust_code=True)


__all__ = ["ask_to_run_code", "load_with_consent"]
