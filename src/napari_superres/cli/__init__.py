"""``napari-superres`` command line: one subcommand per module (``upscale``, ``train``, ...).

Each subcommand module defines ``add_parser(subparsers) -> argparse.ArgumentParser`` and
``run(args) -> int``.  Heavy imports (torch) happen inside ``run`` so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .errors import CLIError  # noqa: F401 - the subcommands raise `from . import CLIError`

#: subcommand name -> module (relative to this package)
SUBCOMMANDS = {
    "upscale": ".upscale_cmd",
    "train": ".train_cmd",
    "models": ".models_cmd",
    "export": ".export_cmd",
    "upscale-z": ".upscalez_cmd",
}


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
    for module in SUBCOMMANDS.values():
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
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:cut]  # accepted anywhere before "--", also after the subcommand
    argv = [a for i, a in enumerate(argv) if not (a == "--debug" and i < cut)]
    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="on errors, print the Python traceback too")
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every failure becomes one line (see cli.errors)
        from .errors import describe_failure

        message, status = describe_failure(e, args.command)
        if debug:
            import traceback

            traceback.print_exc()
        print(f"napari-superres {args.command}: error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
