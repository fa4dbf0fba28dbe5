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


class VGGWeightsUnavailable(RuntimeError):
    """The pretrained VGG-16 weights are not in the torch hub cache and cannot be downloaded."""


__all__ = ["Cancelled", "ModelFileError", "VGGWeightsUnavailable"]
