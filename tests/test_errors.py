"""One error family: every exception the package defines derives from ``napari_superres.SuperresError``."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil

import pytest

import napari_superres
from napari_superres import SuperresError


def _package_modules() -> tuple[list[str], list[str]]:
    """Names of the package's modules, and of those skipped (the napari glue without Qt)."""
    gui = importlib.util.find_spec("qtpy") is not None and importlib.util.find_spec("napari") is not None
    names, skipped = [], []
    for info in pkgutil.walk_packages(napari_superres.__path__, prefix="napari_superres."):
        if info.name.startswith("napari_superres._napari") and not gui:
            skipped.append(info.name)
        elif info.name.endswith("__main__"):
            continue  # running it is the command line itself
        else:
            names.append(info.name)
    return names, skipped


def _exception_classes(module_names: list[str]) -> list[type[BaseException]]:
    found = []
    for name in module_names:
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            defined_here = obj.__module__ == module.__name__
            if defined_here and issubclass(obj, BaseException) and not issubclass(obj, Warning):
                found.append(obj)
    return found


def test_every_exception_class_of_the_package_is_a_superres_error():
    names, _ = _package_modules()
    classes = _exception_classes(names)
    # the walk reaches the engine, io and the command line (not an empty pass)
    where = {cls.__module__.split(".")[1] for cls in classes}
    assert {"engine", "io", "cli"} <= where, where
    outside = [f"{cls.__module__}.{cls.__qualname__}" for cls in classes if not issubclass(cls, SuperresError)]
    assert outside == [], f"derive these from napari_superres.SuperresError (engine/errors.py): {outside}"


def test_the_family_is_exported_at_the_top_level_and_keeps_builtin_bases():
    from napari_superres import Cancelled, DeviceUnavailableError, ImageFileError, InvalidRequestError, ModelFileError
    from napari_superres.cli import CLIError
    from napari_superres.engine.device import DeviceError
    from napari_superres.io import ImageFileError as io_image_file_error

    assert io_image_file_error is ImageFileError
    assert issubclass(DeviceUnavailableError, DeviceError)
    # existing `except ValueError` / `except RuntimeError` clauses keep catching what they caught
    for cls in (InvalidRequestError, DeviceError, ModelFileError, ImageFileError, CLIError):
        assert issubclass(cls, ValueError), cls
    assert issubclass(DeviceError, RuntimeError) and issubclass(Cancelled, RuntimeError)


def test_an_unavailable_device_is_a_device_unavailable_error():
    torch = pytest.importorskip("torch")
    from napari_superres.engine.device import resolve_device

    with pytest.raises(napari_superres.InvalidRequestError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(napari_superres.DeviceUnavailableError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_the_command_line_maps_the_family_by_class():
    from napari_superres.cli.errors import CLIError, describe_failure
    from napari_superres.engine.errors import Cancelled, VGGWeightsUnavailable

    assert describe_failure(CLIError("--tile must be >= 0, got -1"), "upscale") == ("--tile must be >= 0, got -1", 2)
    assert describe_failure(Cancelled("stopped"), "upscale") == ("cancelled", 130)

    class Stopped(Cancelled):  # a subclass is recognised by class, not by name
        pass

    assert describe_failure(Stopped(), "train")[1] == 130
    message, status = describe_failure(VGGWeightsUnavailable("download the weights once: ..."), "train")
    assert (message, status) == ("download the weights once: ...", 1)
