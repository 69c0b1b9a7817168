"""``confroute evaluate``: measure a primary/fallback pair on a labelled file, every threshold at once.

Each model runs once on the evaluation data (and once on the optional calibration split); the
sweep over thresholds then works on arrays (see :func:`confroute.evaluate`), and thresholds for
the objective flags are chosen through the one selection path, :func:`confroute.choose_thresholds`.
The command is three rooms: :mod:`._parse` (arguments and spec languages, with the one table of
objective flags), :mod:`._inputs` and :mod:`._run` (models, data and the run), and
:mod:`._report` (printed table, CSV, JSON, plots). The top-level parser in :mod:`confroute.cli`
only registers it.
"""

from __future__ import annotations

import argparse
from typing import Any

from ...exceptions import CLIError
from ._inputs import align_classes, load_predictor, match_labels, timed_predict
from ._parse import (
    BACKENDS,
    DEFAULT_CALIBRATION,
    DEFAULT_THRESHOLDS,
    EPILOG,
    OBJECTIVE_FLAGS,
    OUTPUT_FILES,
    PICKLED,
    BackendSpec,
    CalibrationSpec,
    CostSpec,
    ObjectiveFlag,
    add_arguments,
    parse_backend,
    parse_calibration,
    parse_cost,
    parse_label_map,
    parse_thresholds,
)
from ._run import run, run_evaluate

__all__ = [
    "BACKENDS",
    "DEFAULT_CALIBRATION",
    "DEFAULT_THRESHOLDS",
    "OBJECTIVE_FLAGS",
    "OUTPUT_FILES",
    "PICKLED",
    "BackendSpec",
    "CLIError",
    "CalibrationSpec",
    "CostSpec",
    "ObjectiveFlag",
    "add_evaluate_parser",
    "align_classes",
    "load_predictor",
    "match_labels",
    "parse_backend",
    "parse_calibration",
    "parse_cost",
    "parse_label_map",
    "parse_thresholds",
    "run",
    "run_evaluate",
    "timed_predict",
]


def add_evaluate_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``evaluate`` on the top-level subparsers."""
    p = sub.add_parser(
        "evaluate",
        help="measure a cheap model + fallback on labelled data at every threshold",
        description=(
            "Run PRIMARY (the cheap model) and FALLBACK once on every input of DATA, optionally "
            "calibrate PRIMARY's confidence on a held-out split, then report coverage, accuracy "
            "on the accepted inputs, system accuracy, cost and savings at each threshold. An "
            "input is accepted by PRIMARY when its confidence >= threshold, else FALLBACK "
            "answers it. Thresholds for --target-* are chosen with confroute.choose_thresholds "
            "(the same keyword, the same guarantee). Writes the table (CSV, JSON) and plots (PNG) into --out."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run_evaluate)
    return p
