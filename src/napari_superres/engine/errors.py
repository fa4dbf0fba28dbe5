"""Exception types of the engine, importable without torch.

Front ends catch these by type (the command line prints their message as one line,
the widgets show it as a napari notification); every message names the problem and
the fix.  The modules that raise them re-export them where they used to live
(``engine.infer.tiling.Cancelled``, ``engine.nets.model_file.ModelFileError``,
``engine.nets.vgg.VGGWeightsUnavailable``).
"""

from __future__ import annotations


class Cancelled(RuntimeError):
    """Raised inside a long computation (tiled inference, feature maps) when the caller's
    ``should_stop()`` returns True; nothing partial is returned."""


class ModelFileError(ValueError):
    """A model file could not be read or does not describe a valid network."""


class UntrustedCodeError(ModelFileError):
    """A model package would run Python code of its own (a bioimage.io ``pytorch_state_dict``
    architecture file, custom processing) and the caller did not consent.

    ``path``: the user's file; ``sha256``: its SHA-256 (hex), so a front end can ask
    "run the code of FILE (sha256 ...)?" and load again with consent (``trust_code=True``).
    ``code``: what would run (file names inside the package, with their declared hashes).
    """

    def __init__(self, message: str, *, path: str, sha256: str, code: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.path = path
        self.sha256 = sha256
        self.code = code


class CheckpointError(ModelFileError):
    """A training checkpoint is unreadable, of another format, or fails its checksum (damaged)."""


class NonFiniteOutputError(ModelFileError):
    """A network produced NaN or Inf values: its weights are broken; nothing was written."""


class VGGWeightsUnavailable(RuntimeError):
    """The pretrained VGG-16 weights are not in the torch hub cache and cannot be downloaded."""


__all__ = [
    "Cancelled",
    "CheckpointError",
    "ModelFileError",
    "NonFiniteOutputError",
    "UntrustedCodeError",
    "VGGWeightsUnavailable",
]
