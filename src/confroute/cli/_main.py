"""Command line: ``confroute demo``, ``confroute evaluate``, ``confroute export``, ``confroute serve`` and
``confroute audit``
(also ``python -m confroute ...``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="confroute",
        description="Confidence-based routing of classifier predictions.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"confroute {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    from .demo import add_demo_parser

    add_demo_parser(sub)

    from .evaluate import add_evaluate_parser

    add_evaluate_parser(sub)

    from .export import add_export_parser

    add_export_parser(sub)

    from .serve import add_serve_parser

    add_serve_parser(sub)

    from .audit import add_audit_parser

    add_audit_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``confroute ARGV``; returns the exit status (130, with one line, on Ctrl-C)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        if getattr(args, "traceback", False):
            raise
        print("confroute: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
