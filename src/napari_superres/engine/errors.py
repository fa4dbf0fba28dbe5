"""The package's exception family, importable without torch.

Every exception napari-superres defines derives from :class:`SuperresError`, so a front
end catches the family with one clause (the command line prints the message as one line,
the widgets show it as a napari notification); every message names the problem and the
fix.  The subclasses say what kind of failure it was::

    SuperresError
    ├── InvalidRequestError (ValueError)     an argument or combination of arguments is wrong
    │   └── DeviceError (RuntimeError)       a device that is not a device name...
    │       └── DeviceUnavailableError       ...or not available on this machine
    ├── ModelFileError (ValueError)          a model file cannot be read (or written) as asked
    ├── ImageFileError (ValueError)          an image file or folder cannot be read or written
    ├── MissingResourceError (RuntimeError)  something needed is not installed or cached
    │   └── VGGWeightsUnavailable
    └── Cancelled (RuntimeError)             the caller asked a long computation to stop

The builtin bases keep older ``except ValueError`` / ``except RuntimeError`` clauses
working.  The modules that raise these re-export them where they used to live
(``engine.infer.tiling.Cancelled``, ``engine.nets.model_file.ModelFileError``,
``engine.nets.vgg.VGGWeightsUnavailable``, ``engine.device.DeviceError``,
``io.ImageFileError``).
"""

from __future__ import annotations


class SuperresError(Exception):
    """Base of every exception napari-superres raises on purpose (``napari_superres.SuperresError``)."""


class InvalidRequestError(SuperresError, ValueError):
    """An argument, or a combination of arguments, that cannot be done; the message names the fix."""


class DeviceError(InvalidRequestError, RuntimeError):
    """A device that is not a device name, or not available on this machine.

    Both a ``ValueError`` (bad argument) and a ``RuntimeError`` (what earlier versions raised).
    """


class DeviceUnavailableError(DeviceError):
    """A valid device name whose device this machine does not have (no CUDA GPU, no Apple MPS)."""


class ModelFileError(SuperresError, ValueError):
    """A model file could not be read or does not describe a valid network (or cannot be written as asked)."""


class ImageFileError(SuperresError, ValueError):
    """An image file or folder cannot be read or written as asked; the message names the file."""


class MissingResourceError(SuperresError, RuntimeError):
    """Something a computation needs is not installed or cached (optional package, downloaded weights)."""


class VGGWeightsUnavailable(MissingResourceError):
    """The pretrained VGG-16 weights are not in the torch hub cache and cannot be downloaded."""


class Cancelled(SuperresError, RuntimeError):
    """Raised inside a long computation (tiled inference, feature maps, training) when the
    caller's ``should_stop()`` returns True; nothing partial is returned."""


__all__ = [
    "Cancelled",
    "DeviceError",
    "DeviceUnavailableError",
    "ImageFileError",
    "InvalidRequestError",
    "MissingResourceError",
    "ModelFileError",
    "SuperresError",
    "VGGWeightsUnavailable",
]
