"""Checkpoint files: a torch payload of tensors and primitives behind a SHA-256 header.

Layout: the line ``napari-superres-checkpoint sha256:<64 hex>\\n`` followed by the bytes of
``torch.save(state)``.  Reading checks the digest before anything is unpacked, so a
bit-flipped or truncated checkpoint is refused with its name (torch's zip reader checks no
CRCs and would resume from damaged tensors silently); the payload is then read with
``torch.load(weights_only=True)``: no code is unpickled.  Files written before the header
existed (a bare ``torch.save`` zip) are still read, with a warning that they cannot be verified.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

#: ``state["format"]`` and the newest ``state["version"]`` of a training checkpoint's state dict.
CHECKPOINT_FORMAT = "napari-superres-checkpoint"
CHECKPOINT_VERSION = 1
#: First bytes of a checksummed checkpoint; the hex digest and a newline follow.
HEADER_PREFIX = b"napari-superres-checkpoint sha256:"
_HEADER = re.compile(rb"napari-superres-checkpoint sha256:([0-9a-f]{64})\n")
_HEADER_BYTES = len(HEADER_PREFIX) + 64 + 1


def checkpoint_bytes(state: dict[str, Any]) -> bytes:
    """The file content of ``state``: header with the payload's SHA-256, then the payload."""
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    return HEADER_PREFIX + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def load_checkpoint_file(path: str | Path) -> Any:
    """The object stored in a checkpoint file, its checksum verified first.

    Raises :class:`~napari_superres.engine.errors.CheckpointError` naming ``path`` when the
    digest does not match (damaged file) or the payload cannot be read.
    """
    path = Path(path)
    data = path.read_bytes()
    if data.startswith(HEADER_PREFIX):
        match = _HEADER.match(data[:_HEADER_BYTES])
        payload = data[_HEADER_BYTES:]
        if match is None or hashlib.sha256(payload).hexdigest() != match.group(1).decode():
            raise CheckpointError(
                f"{path} is damaged: its content does not match the checksum written with it (a changed, "
                "truncated or bit-flipped file); resume from another checkpoint or start the run again"
            )
    else:
        payload = data
        warnings.warn(
            f"{path} has no checksum (written by an older napari-superres): it cannot be verified",
            stacklevel=3,
        )
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable napari-superres checkpoint ({e})") from e


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint's state dict, checksum, format and version checked.

    ``FileNotFoundError`` for a missing file; :class:`~napari_superres.engine.errors.CheckpointError`
    (a ``ValueError``) names a damaged file, another format or a newer version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = load_checkpoint_file(path)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a napari-superres training checkpoint")
    if int(state.get("version", 0)) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} was written by a newer napari-superres (checkpoint version {state['version']})")
    return state


__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "HEADER_PREFIX", "checkpoint_bytes", "load_checkpoint_file",
           "read_checkpoint"]  # fmt: skip
