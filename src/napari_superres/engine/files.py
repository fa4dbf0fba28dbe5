"""Atomic file writes: temporary names beside the target, and cleanup of a killed run's leftovers.

Standard library only (no torch, no numpy), so every layer can use it.

A file is written under a hidden temporary name in the target's own folder (same file
system, so the final ``os.replace`` is atomic) and renamed over the target only when
complete: the target is either the old complete file or the new complete file, never
a partial one.  Temporary names look like::

    .napari-superres-tmp.<host>.<pid>.<kind><random>.<target name>

``host`` is a short hash of the machine's name and ``pid`` the writing process, so a
later write to the same folder recognises leftovers of a process that no longer runs
(killed with ``kill -9``, power loss) and removes them (:func:`clean_stale_temps`).
Temporaries of other machines (a shared file system) or of live processes are never
touched.  ``kind`` is ``w`` (being written) or ``o`` (an old output moved aside while a
folder output is replaced; restored if its target is missing, else removed).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
from pathlib import Path

log = logging.getLogger(__name__)

#: Prefix of every temporary file or folder this package creates beside a target.
TEMP_PREFIX = ".napari-superres-tmp"
_TEMP_RE = re.compile(r"^\.napari-superres-tmp\.([0-9a-f]{8})\.(\d+)\.([wo])([0-9a-f]{8})\.(.+)$")
WRITING, OLD = "w", "o"


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def temp_path_for(target: str | os.PathLike, kind: str = WRITING) -> Path:
    """A fresh, unique hidden temporary path beside ``target`` (nothing is created)."""
    target = Path(target)
    name = f"{TEMP_PREFIX}.{_host_tag()}.{os.getpid()}.{kind}{secrets.token_hex(4)}.{target.name}"
    return target.with_name(name)


def is_temp_name(name: str) -> bool:
    """Whether ``name`` (a file or folder name) is one of our temporary names."""
    return _TEMP_RE.match(name) is not None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows: os.kill would terminate the process; never clean
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale_temps(folder: str | os.PathLike, *, protect: tuple[str | os.PathLike, ...] = ()) -> list[Path]:
    """Remove (or restore) our temporaries in ``folder`` left by dead processes of this machine.

    An ``o`` (old output moved aside) whose target no longer exists is renamed back to
    its target instead of being removed.  Paths in ``protect`` (e.g. the inputs of the
    running command) are never touched.  Returns the paths removed or restored; errors
    (permissions, races with another cleaner) are logged and skipped.
    """
    folder = Path(folder)
    done: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return done
    host = _host_tag()
    protected = {os.path.abspath(p) for p in protect}
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m is None or m.group(1) != host or _pid_alive(int(m.group(2))):
            continue
        if os.path.abspath(entry) in protected:
            continue
        try:
            target = entry.with_name(m.group(5))
            if m.group(3) == OLD and not os.path.lexists(target):
                os.rename(entry, target)
                log.warning("restored %s from an interrupted replacement", target)
            else:
                _remove(entry)
                log.info("removed %s left by a stopped process", entry)
            done.append(entry)
        except OSError as e:  # pragma: no cover - races, permissions
            log.warning("could not clean up %s: %s", entry, e)
    return done


def _default_file_mode() -> int:
    """``0o666`` less the process umask: the mode ``open(path, "w")`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def replace_path(tmp: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the complete ``tmp`` (file or folder) to ``target``, replacing what is there.

    Files (and a file replacing a file) use one atomic ``os.replace``.  An existing
    folder is first moved aside under an ``o`` temporary name, then ``tmp`` moves in,
    then the old folder is removed; a process killed in between leaves the old folder
    aside, and the next :func:`clean_stale_temps` of that folder puts it back.
    """
    tmp, target = Path(tmp), Path(target)
    if not target.is_dir() or target.is_symlink():
        if tmp.is_dir() and target.exists():  # a folder output replacing a file
            aside = temp_path_for(target, OLD)
            os.replace(target, aside)
            os.replace(tmp, target)
            _remove(aside)
        else:
            os.replace(tmp, target)
        return
    aside = temp_path_for(target, OLD)
    os.replace(target, aside)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(aside, target)  # put the old output back
        raise
    _remove(aside)


def renamed_error(error: OSError, tmp: str | os.PathLike, target: str | os.PathLike) -> OSError:
    """``error`` naming ``target`` where it names the hidden temporary ``tmp`` (or a path inside it),
    so messages speak of the user's output, not of ``.napari-superres-tmp.…``; else ``error`` itself."""
    name = os.fspath(error.filename) if isinstance(error.filename, (str, os.PathLike)) else None
    if name is None or not name.startswith(os.fspath(tmp)) or error.errno is None:
        return error
    renamed = type(error)(error.errno, error.strerror or str(error), os.fspath(target))
    renamed.__cause__ = error
    return renamed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    Missing parent folders are created.  A failure (full disk, Ctrl-C) removes the
    temporary and leaves an existing ``path`` untouched; leftovers of killed writers in
    the folder are cleaned first (:func:`clean_stale_temps`).
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(folder)
    tmp = temp_path_for(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _default_file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):  # (a read-only folder refuses even unlinking nothing)
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise renamed_error(e, tmp, path) from e
        raise


def check_writable_folder(path: str | os.PathLike) -> Path:
    """Raise ``OSError`` (with the folder's name) unless a file can be created beside ``path``.

    Creates and removes one temporary file there: catches read-only mounts and
    permissions that ``os.access`` misreports (e.g. as root on a read-only file system).
    """
    folder = Path(path).parent
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, "output folder does not exist; create it first", str(folder))
    probe = temp_path_for(path)
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise renamed_error(e, probe, path) from e
    os.close(fd)
    probe.unlink(missing_ok=True)
    return folder


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file or folder (symlinks and hard links included)."""
    try:
        if os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def is_within(inner: str | os.PathLike, outer: str | os.PathLike) -> bool:
    """Whether ``inner`` is ``outer`` or lies inside the folder ``outer`` (after resolving links)."""
    inner_r, outer_r = Path(os.path.realpath(inner)), Path(os.path.realpath(outer))
    return inner_r == outer_r or outer_r in inner_r.parents


__all__ = [
    "TEMP_PREFIX",
    "atomic_write_bytes",
    "check_writable_folder",
    "clean_stale_temps",
    "is_temp_name",
    "is_within",
    "replace_path",
    "same_file",
    "temp_path_for",
]
