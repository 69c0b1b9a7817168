"""Command line: ``confroute demo``, ``confroute evaluate``, ``confroute export`` and ``confroute serve``
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

    demo = sub.add_parser(
        "demo",
        help="route scikit-learn's bundled digits data through a cheap and an expensive model",
        description="Calibrate a cheap model, choose a threshold with a guarantee on held-out data, "
        "route the test split and print accuracy, coverage, throughput and cost. No download.",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the split and models (default 0)")
    demo.add_argument("--target-accuracy", type=float, default=0.97,
                      help="accuracy the cheap model must keep on what it answers (default 0.97)")
    demo.add_argument("--delta", type=float, default=0.1,
                      help="the guarantee holds with probability 1 - delta (default 0.1)")
    demo.add_argument("--plots", metavar="DIR", help="also write PNG figures into DIR (needs matplotlib)")
    demo.set_defaults(func=_demo)

    from .evaluate import add_evaluate_parser

    add_evaluate_parser(sub)

    from .export import add_export_parser

    add_export_parser(sub)

    from .serve import add_serve_parser

    add_serve_parser(sub)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    if not 0 < args.target_accuracy < 1:
        raise SystemExit(f"--target-accuracy must lie in (0, 1), got {args.target_accuracy}")
    if not 0 < args.delta < 1:
        raise SystemExit(f"--delta must lie in (0, 1), got {args.delta}")
    run_demo(seed=args.seed, target_accuracy=args.target_accuracy, delta=args.delta, plot_dir=args.plots)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
