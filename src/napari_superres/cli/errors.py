"""One line for every foreseeable failure of a command: what went wrong and what to do.

:func:`describe_failure` maps an exception to ``(message, exit status)``; the command
line prints the message as one line on stderr (``--debug`` prints the traceback too).
Exit status: 2 bad input (our checks: :class:`CLIError`, the package's
:class:`~napari_superres.SuperresError` family, ``ValueError``), 1 the environment failed
(files, disk, memory, missing downloads), 130 interrupted (Ctrl-C) or cancelled.
"""

from __future__ import annotations

import errno

from ..engine.errors import Cancelled, InvalidRequestError, MissingResourceError, SuperresError


class CLIError(InvalidRequestError):
    """A wrong command line (argument, path, combination): printed as one line (no traceback), exit status 2."""


#: What to reduce when memory runs out, per subcommand.
MEMORY_ADVICE = {
    "upscale": "use a smaller --tile, --batch-size or --chunk-size (or --device cpu)",
    "train": "use a smaller --batch-size or --patch-size, or fewer --channels/--blocks (or --device cpu)",
}
_OSERROR_ADVICE = {
    errno.ENOSPC: "no space left on the device; free some space or write to another folder",
    errno.EDQUOT: "disk quota exceeded; free some space or write to another folder",
    errno.EROFS: "the file system is read-only; write to another folder",
    errno.EACCES: "permission denied; write to a folder you own or change its permissions",
    errno.EPERM: "operation not permitted; write to a folder you own or change its permissions",
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "it is a folder, a file was expected",
    errno.ENOTDIR: "a path component is not a folder",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) or use fewer --workers",
}


def is_out_of_memory(exc: BaseException) -> bool:
    """``MemoryError``, torch's ``OutOfMemoryError`` or an allocator ``RuntimeError``."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def describe_failure(exc: BaseException, command: str | None) -> tuple[str, int]:
    """``(one-line message, exit status)`` for an exception escaping subcommand ``command``."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C); nothing partial was written", 130
    if isinstance(exc, Cancelled):
        return "cancelled", 130
    if isinstance(exc, MissingResourceError):  # e.g. weights that must be downloaded once
        return one_line(exc), 1
    if isinstance(exc, SuperresError):  # CLIError, bad requests, unreadable model or image files
        return one_line(exc), 2
    if is_out_of_memory(exc):
        detail = one_line(exc) or "out of memory"
        advice = MEMORY_ADVICE.get(command or "", "use smaller inputs")
        if detail.lower().startswith("out of memory") and "--" in detail:
            return detail, 1  # already says what to reduce
        return f"out of memory ({detail}); {advice}", 1
    if isinstance(exc, OSError):
        advice = _OSERROR_ADVICE.get(exc.errno or -1)
        where = exc.filename or ""
        if exc.filename2:
            where = f"{where} -> {exc.filename2}"
        reason = one_line(exc.strerror or exc)
        text = f"{where}: {reason}" if where else reason
        if advice and advice.split(";")[0] not in reason.lower():
            text = f"{text} ({advice})"
        return text, 1
    if isinstance(exc, KeyError):  # the engine's "no model named ..." carries its fix
        return one_line(exc.args[0] if exc.args else exc), 2
    if isinstance(exc, ValueError):  # the engine's and io's checks: the message names the fix
        return one_line(exc), 2
    return (
        f"unexpected {type(exc).__name__}: {one_line(exc)} (run with --debug for the traceback and please report it)",
        1,
    )


__all__ = ["MEMORY_ADVICE", "CLIError", "describe_failure", "is_out_of_memory", "one_line"]
