"""``napari-superres`` command line: one subcommand per module (``upscale``, ``train``, ...).

Each subcommand module defines ``add_parser(subparsers) -> argparse.ArgumentParser`` and
``run(args) -> int``.  Heavy imports (torch) happen inside ``run`` so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommand name -> module (relative to this package)
SUBCOMMANDS = {
    "upscale": ".upscale_cmd",
    "train": ".train_cmd",
    "models": ".models_cmd",
}


class CLIError(Exception):
    """A user error: printed as one line (no traceback) with exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="napari-superres",
        description=(
            "Deep-learning super-resolution for microscopy and natural images "
            "(distribution napari-deep-superres; Python package napari_superres)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        try:
            mod = importlib.import_module(module, __name__)
        except ModuleNotFoundError as e:  # a subcommand not built yet
            if e.name and e.name.startswith(__name__):
                continue
            raise
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CLIError as e:
        print(f"napari-superres {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, KeyError) as e:
        # engine errors carry the fix in their message
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"napari-superres {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
