"""Writing outputs so that they are complete or absent, and never over an input.

Temporaries live beside the target under a hidden, unique name
(:func:`~napari_superres.engine.files.temp_path_for`: ``.napari-superres-tmp.<host>.<pid>.…``)
and are renamed over the target when complete; leftovers of killed runs are removed on
the next write to the same folder (:func:`~napari_superres.engine.files.clean_stale_temps`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..engine.files import (
    TEMP_PREFIX,
    atomic_write_bytes,
    check_writable_folder,
    clean_stale_temps,
    is_temp_name,
    is_within,
    renamed_error,
    replace_path,
    same_file,
    temp_path_for,
)
from . import ImageFileError

#: numpy's message for a short write ("N requested and M written"), e.g. on a full disk
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def check_output(
    out: str | os.PathLike,
    inputs: Iterable[str | os.PathLike] = (),
    *,
    overwrite: bool = False,
    what: str = "output",
) -> Path:
    """Refuse an output that would destroy an input or that cannot be written; returns ``out`` as a Path.

    Raises :class:`~napari_superres.io.ImageFileError` when ``out`` is an input (same
    file, symlink or hard link), lies inside an input folder, or is a folder holding an
    input; when it exists without ``overwrite``; or when its name is one of our temporary
    names.  Raises ``OSError`` (naming the folder) when the folder is missing or not writable.
    """
    out = Path(out)
    for raw in inputs:
        src = Path(raw)
        if same_file(out, src):
            raise ImageFileError(
                f"{what} {out} is the input {src}; choose another {what} name (inputs are never overwritten)"
            )
        if is_within(out, src):
            raise ImageFileError(f"{what} {out} lies inside the input {src}; choose a path outside it")
        if is_within(src, out):
            raise ImageFileError(f"{what} {out} contains the input {src}; replacing it would delete the input")
    if is_temp_name(out.name):
        raise ImageFileError(
            f"{what} name {out.name} is reserved for temporary files ({TEMP_PREFIX}.*); choose another"
        )
    if os.path.lexists(out) and not overwrite:
        raise ImageFileError(f"{what} {out} exists; pass --overwrite to replace it")
    if overwrite and out.is_dir() and not out.is_symlink() and not is_zarr_store(out):
        inside = sorted(p.name for p in out.iterdir())
        shown = ", ".join(inside[:3]) + (", ..." if len(inside) > 3 else "")
        raise ImageFileError(
            f"{what} {out} is a folder that is not a zarr store ({len(inside)} entries{': ' + shown if inside else ''}); "
            "--overwrite replaces zarr outputs only, never other folders: choose another name, or move the folder "
            "away yourself"
        )
    check_writable_folder(out)
    return out


#: Files at the top of a zarr store (v2: .zgroup/.zarray/.zattrs; v3: zarr.json).
ZARR_MARKERS = (".zgroup", ".zarray", ".zattrs", "zarr.json")


def is_zarr_store(folder: Path) -> bool:
    """Whether ``folder`` is a zarr store (an output that ``--overwrite`` may replace)."""
    return any((folder / name).is_file() for name in ZARR_MARKERS)


@contextlib.contextmanager
def atomic_path(out: str | os.PathLike, *, protect: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Yield a temporary path beside ``out`` to write a file or folder to; moved to ``out`` on success.

    On any exception (including Ctrl-C) the temporary is removed and ``out`` is left as it
    was.  Stale temporaries of dead processes in the folder are cleaned first (never the
    paths in ``protect``).
    """
    out = Path(out)
    clean_stale_temps(out.parent, protect=tuple(protect))
    tmp = temp_path_for(out)
    try:
        yield tmp
        replace_path(tmp, out)
    except BaseException as e:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is None and _SHORT_WRITE.search(str(e)):
            # numpy's tofile (used by tifffile) reports a full disk as a short write without errno
            raise OSError(errno.ENOSPC, f"No space left on device ({e})", str(out)) from e
        if isinstance(e, OSError) and renamed_error(e, tmp, out) is not e:
            raise renamed_error(e, tmp, out) from e  # name OUT, not the hidden temporary
        raise


__all__ = [
    "TEMP_PREFIX",
    "atomic_path",
    "atomic_write_bytes",
    "check_output",
    "check_writable_folder",
    "clean_stale_temps",
    "is_temp_name",
    "is_within",
    "replace_path",
    "same_file",
    "temp_path_for",
]
