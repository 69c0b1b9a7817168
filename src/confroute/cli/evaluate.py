"""``confroute evaluate``: measure a primary/fallback pair on a labelled file, every threshold at once.

Each model runs once on the evaluation data (and once on the optional calibration split); the
sweep over thresholds then works on arrays (see :mod:`confroute.evaluation.evaluate`). This module holds
the command's parser, its small spec languages (backends, thresholds, prices) and the run; the
top-level parser in :mod:`confroute.cli` only registers it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import pickle
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.classes import align, class_labels
from ..core.types import Predictions
from ..exceptions import ClassMismatchError, CLIError

__all__ = [
    "BackendSpec",
    "CLIError",
    "add_evaluate_parser",
    "parse_backend",
    "parse_calibration",
    "parse_cost",
    "parse_thresholds",
    "run_evaluate",
]

#: Backend names accepted before the colon of ``BACKEND:PATH``, and what they mean.
BACKENDS = {
    "deepsparse": "ONNX model directory (model.onnx + tokenizer + config.json) or zoo: stub, run by DeepSparse",
    "onnx": "ONNX model directory (or .onnx file), run by ONNX Runtime",
    "hf": "Hugging Face model directory (or hub:ORG/NAME for the Hub), run through a transformers pipeline",
    "sklearn": "pickled scikit-learn estimator or pipeline with predict_proba (.pkl; needs --allow-pickle)",
    "joblib": "scikit-learn estimator saved with joblib.dump (.joblib; needs --allow-pickle)",
}
_PICKLED = ("sklearn", "joblib")
#: Every file ``--out`` may receive (checked before anything is computed).
OUTPUT_FILES = ("table.csv", "sweep.csv", "results.json", "predictions.npz", "summary.png",
                "accuracy_coverage.png", "reliability.png", "accuracy_vs_threshold.png")
_ALIASES = {"onnxruntime": "onnx", "ort": "onnx", "transformers": "hf", "pickle": "sklearn", "pkl": "sklearn"}

DEFAULT_THRESHOLDS = "0.5:0.95:0.05,0.97,0.99"

_EPILOG = """\
backends (BACKEND:PATH):
  deepsparse:DIR     sparse ONNX model on DeepSparse (static shapes: --batch-size x --max-length)
  onnx:DIR           ONNX model on ONNX Runtime
  hf:DIR             transformers text-classification pipeline (a local directory, loaded offline)
  hf:hub:ORG/NAME    the same, downloaded from the Hugging Face Hub (needs internet)
  sklearn:FILE.pkl   pickled scikit-learn model with predict_proba; needs --allow-pickle, because
                     loading a pickle runs any code inside it: only load files you trust
  joblib:FILE        the same, saved with joblib (also a pickle: needs --allow-pickle)

thresholds (--thresholds):
  0.8,0.9,0.95       a list;   0.5:0.99:0.01   a grid start:stop:step (stop included);
  all                every distinct score (the full sweep);  items can be mixed: 0.5:0.9:0.1,0.95

cost (--cost):
  per-sample:0.001,0.005     price per input of primary, fallback
  hourly:0.50@100,1.50@10    price per hour @ inputs per second, per stage
  measured                   time both backends on the data; cost = compute seconds
  measured:0.50,1.50         hourly prices with the measured throughputs

calibration (--calibration):
  FILE               a held-out labelled split the models were not trained on
  cross-fit:K        K folds of DATA itself: each fold's temperature and threshold are fitted on
                     the other folds (the default, K = 5, when no FILE is given)
  none               no calibration; thresholds chosen on DATA itself (optimistic)

examples:
  confroute evaluate deepsparse:models/sparse hf:models/dense data/dev.tsv \\
      --cost measured --target-relative-accuracy 0.97 --threads 1 --max-length 64 --out eval/
  confroute evaluate sklearn:cheap.pkl sklearn:big.pkl test.jsonl --text-column review \\
      --label-column stars --thresholds 0.5:0.99:0.01 --cost per-sample:0.001,0.005 --allow-pickle
"""



# --------------------------------------------------------------------------- spec parsing
@dataclass(frozen=True)
class BackendSpec:
    """A parsed ``BACKEND:PATH``."""

    backend: str
    path: str


def parse_backend(spec: str) -> BackendSpec:
    """Split ``BACKEND:PATH`` and check the backend name (the path may itself contain colons).

    Examples
    --------
    >>> parse_backend("deepsparse:zoo:nlp/sentiment_analysis/x")
    BackendSpec(backend='deepsparse', path='zoo:nlp/sentiment_analysis/x')
    >>> parse_backend("onnxruntime:models/m").backend
    'onnx'
    """
    name, sep, path = spec.partition(":")
    key = _ALIASES.get(name.lower(), name.lower())
    if not sep or key not in BACKENDS or not path:
        raise CLIError(
            f"model {spec!r}: give it as BACKEND:PATH with BACKEND one of {sorted(BACKENDS)} "
            "(e.g. deepsparse:models/sparse, hf:models/dense, sklearn:model.pkl)"
        )
    return BackendSpec(key, path)


def _float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CLIError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise CLIError(f"{what}: {text!r} is not a finite number")
    return value


def parse_thresholds(spec: str) -> list[float] | None:
    """Thresholds from ``"all"`` (``None``: every distinct score), a list, grids, or a mix.

    Examples
    --------
    >>> parse_thresholds("0.5:0.7:0.1,0.95")
    [0.5, 0.6, 0.7, 0.95]
    >>> parse_thresholds("all") is None
    True
    """
    spec = spec.strip()
    if spec.lower() == "all":
        return None
    values: list[float] = []
    for item in filter(None, (p.strip() for p in spec.split(","))):
        if ":" in item:
            parts = item.split(":")
            if len(parts) != 3:
                raise CLIError(f"--thresholds: grid {item!r} must be start:stop:step")
            start, stop, step = (_float(p, f"--thresholds grid {item!r}") for p in parts)
            if step <= 0 or stop < start:
                raise CLIError(f"--thresholds: grid {item!r} needs step > 0 and stop >= start")
            count = math.floor((stop - start) / step + 1e-9) + 1
            if count > 100_000:
                raise CLIError(f"--thresholds: grid {item!r} has {count} points; use 'all' instead")
            values.extend(round(start + i * step, 10) for i in range(count))
        else:
            values.append(_float(item, "--thresholds"))
    if not values:
        raise CLIError("--thresholds: give at least one threshold, a grid start:stop:step, or 'all'")
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        raise CLIError(f"--thresholds: confidence thresholds lie in [0, 1], got {bad[:5]}")
    return sorted(set(values))


@dataclass(frozen=True)
class CostSpec:
    """A parsed ``--cost``: ``kind`` is per-sample, hourly or measured."""

    kind: str
    prices: tuple[float, ...] = ()
    throughputs: tuple[float, ...] = ()


def parse_cost(spec: str | None) -> CostSpec | None:
    """Parse ``--cost`` (see the command's help for the forms).

    Examples
    --------
    >>> parse_cost("hourly:0.50@100,1.50@10")
    CostSpec(kind='hourly', prices=(0.5, 1.5), throughputs=(100.0, 10.0))
    >>> parse_cost("measured")
    CostSpec(kind='measured', prices=(), throughputs=())
    """
    if spec is None or spec.strip().lower() in ("", "none"):
        return None
    kind, _, rest = spec.strip().partition(":")
    kind = kind.lower().replace("_", "-")
    items = [p.strip() for p in rest.split(",") if p.strip()]
    if kind == "per-sample":
        prices = tuple(_float(p, "--cost per-sample") for p in items)
        if len(prices) != 2:
            raise CLIError(f"--cost per-sample needs two prices (primary,fallback), got {spec!r}")
        if min(prices) < 0:
            raise CLIError("--cost: prices must be >= 0")
        return CostSpec("per-sample", prices)
    if kind == "hourly":
        if len(items) != 2 or any("@" not in p for p in items):
            raise CLIError(f"--cost hourly needs PRICE@THROUGHPUT for both stages, e.g. hourly:0.50@100,1.50@10; got {spec!r}")
        pairs = [p.split("@", 1) for p in items]
        prices = tuple(_float(a, "--cost hourly price") for a, _ in pairs)
        tps = tuple(_float(b, "--cost hourly throughput") for _, b in pairs)
        if min(prices) < 0 or min(tps) <= 0:
            raise CLIError("--cost hourly: prices must be >= 0 and throughputs > 0")
        return CostSpec("hourly", prices, tps)
    if kind == "measured":
        prices = tuple(_float(p, "--cost measured price") for p in items)
        if len(prices) not in (0, 2) or (prices and min(prices) < 0):
            raise CLIError(f"--cost measured takes no prices or two hourly prices (measured:0.50,1.50), got {spec!r}")
        return CostSpec("measured", prices)
    raise CLIError(f"--cost {spec!r}: use per-sample:P1,P2, hourly:P1@T1,P2@T2, measured or measured:P1,P2")


@dataclass(frozen=True)
class CalibrationSpec:
    """A parsed ``--calibration``: ``kind`` is file, cross-fit or none."""

    kind: str
    path: str | None = None
    folds: int = 0


#: What ``--calibration`` means when it is not given.
DEFAULT_CALIBRATION = "cross-fit:5"


def parse_calibration(spec: str | None) -> CalibrationSpec:
    """Parse ``--calibration``: a file, ``cross-fit[:K]`` or ``none`` (default: cross-fit:5).

    Examples
    --------
    >>> parse_calibration(None)
    CalibrationSpec(kind='cross-fit', path=None, folds=5)
    >>> parse_calibration("cross-fit:10").folds
    10
    >>> parse_calibration("data/held_out.tsv")
    CalibrationSpec(kind='file', path='data/held_out.tsv', folds=0)
    """
    text = (DEFAULT_CALIBRATION if spec is None else spec).strip()
    head, _, rest = text.partition(":")
    if head.lower().replace("_", "-") in ("cross-fit", "crossfit"):
        if not rest:
            return CalibrationSpec("cross-fit", folds=5)
        if not rest.strip().isdigit() or int(rest) < 2:
            raise CLIError(f"--calibration {text!r}: give cross-fit:K with K >= 2 folds (e.g. cross-fit:5)")
        return CalibrationSpec("cross-fit", folds=int(rest))
    if text.lower() == "none":
        return CalibrationSpec("none")
    if not text:
        raise CLIError("--calibration: give a file, cross-fit:K or none")
    return CalibrationSpec("file", path=text)


def parse_label_map(spec: str | None) -> dict[str, str] | None:
    """``"0=NEGATIVE,1=POSITIVE"`` -> ``{"0": "NEGATIVE", "1": "POSITIVE"}``."""
    if not spec:
        return None
    out = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise CLIError(f"--label-map: {item!r} is not FILE_LABEL=CLASS")
        out[key.strip()] = value.strip()
    return out


# --------------------------------------------------------------------------- parser
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
            "answers it. Writes the table (CSV, JSON) and plots (PNG) into --out."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("primary", metavar="PRIMARY", help="cheap model as BACKEND:PATH (see below)")
    p.add_argument("fallback", metavar="FALLBACK", help="expensive model as BACKEND:PATH")
    p.add_argument("data", metavar="DATA", help="labelled evaluation data: .tsv, .csv or .jsonl with a header")

    g = p.add_argument_group("data")
    g.add_argument("--text-column", action="append", metavar="COL",
                   help="text column (repeat to join several); default: the first of text, sentence, "
                   "content, review, question, document")
    g.add_argument("--label-column", default="label", metavar="COL", help="label column (default: label)")
    g.add_argument("--format", choices=["tsv", "csv", "jsonl"], help="override the format guessed from the extension")
    g.add_argument("--limit", type=int, metavar="N", help="use only the first N rows of DATA (and of --calibration)")
    g.add_argument("--label-map", metavar="MAP",
                   help="map file labels to model classes, e.g. 0=NEGATIVE,1=POSITIVE (default: integer "
                   "labels are class indices unless the classes are themselves integers)")

    g = p.add_argument_group("calibration and threshold choice")
    g.add_argument("--calibration", metavar="FILE|cross-fit:K|none",
                   help="where temperature scaling of PRIMARY is fitted and --target-* thresholds are chosen: "
                   "a held-out labelled split (same columns; must not overlap DATA nor be the models' "
                   "training data), cross-fit:K (K folds of DATA, each fitted on the others), or none "
                   f"(default: {DEFAULT_CALIBRATION})")
    g.add_argument("--seed", type=int, default=0, metavar="N",
                   help="fold assignment for cross-fit (default 0)")
    g.add_argument("--calibration-limit", type=int, metavar="N",
                   help="use only the first N rows of --calibration (default: --limit, else all)")
    g.add_argument("--calibrate", choices=["temperature", "none"], default="temperature",
                   help="calibration of PRIMARY, on --calibration FILE or cross-fitted (default: temperature)")
    g.add_argument("--target-accuracy", type=float, metavar="A",
                   help="choose the loosest threshold whose accuracy on accepted inputs is >= A")
    g.add_argument("--target-system-accuracy", type=float, metavar="A",
                   help="choose the loosest threshold whose system accuracy is >= A")
    g.add_argument("--target-relative-accuracy", type=float, metavar="R",
                   help="choose the loosest threshold whose system accuracy is >= R x FALLBACK's own accuracy "
                   "(e.g. 0.995)")
    g.add_argument("--delta", default="0.05", metavar="D",
                   help="targets hold with probability 1 - D (Clopper-Pearson, fixed-sequence testing); "
                   "'none' for a purely empirical choice (default: 0.05)")

    g = p.add_argument_group("sweep and cost")
    g.add_argument("--thresholds", default=DEFAULT_THRESHOLDS, metavar="SPEC",
                   help=f"thresholds for the printed table and table.csv (default: {DEFAULT_THRESHOLDS})")
    g.add_argument("--score", choices=["max_prob", "margin", "neg_entropy"], default="max_prob",
                   help="confidence score of PRIMARY (default: max_prob)")
    g.add_argument("--cost", metavar="SPEC", help="stage prices (see below); default: no cost columns")
    g.add_argument("--repeats", type=int, default=1, metavar="N",
                   help="with --cost measured, time each backend N times on DATA and use the median (default 1)")

    g = p.add_argument_group("backends")
    g.add_argument("--threads", type=int, metavar="N",
                   help="threads (cores for DeepSparse) per backend; default: the backend's own default")
    g.add_argument("--batch-size", type=int, default=32, metavar="N", help="inputs per model call (default 32)")
    g.add_argument("--max-length", type=int, metavar="N",
                   help="truncate texts to N tokens; DeepSparse pads every input to N (default 128 there, "
                   "the model's limit elsewhere)")
    g.add_argument("--allow-pickle", action="store_true",
                   help="allow sklearn:/joblib: models: they are pickles, and loading a pickle runs any code "
                   "inside it, so only pass files you made or trust")

    g = p.add_argument_group("output")
    g.add_argument("--out", default="confroute-evaluate", metavar="DIR",
                   help="folder for table.csv, sweep.csv, results.json and PNG plots (default: ./confroute-evaluate)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace results already in --out (default: refuse); symlinks are never written through")
    g.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    g.add_argument("--save-predictions", action="store_true",
                   help="also write predictions.npz (probabilities and logits of both models)")
    g.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bars (need tqdm; auto: when tqdm is installed and stderr is a terminal)")
    g.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    p.set_defaults(func=run_evaluate)
    return p


# --------------------------------------------------------------------------- models and data
def _check_path(spec: BackendSpec, role: str) -> None:
    if spec.path.startswith("zoo:") and spec.backend == "deepsparse":
        return
    if spec.backend == "hf" and spec.path.startswith("hub:"):
        return  # an explicit Hub id: transformers downloads it (needs internet)
    path = Path(spec.path).expanduser()
    if path.exists():
        return
    hint = f" (for a model on the Hugging Face Hub, write hf:hub:{spec.path})" if spec.backend == "hf" else ""
    raise CLIError(f"{role} model: no such file or directory: {path}{hint}")


def _check_pickle_opt_in(specs: Sequence[tuple[BackendSpec, str]], allowed: bool) -> None:
    for spec, role in specs:
        if spec.backend in _PICKLED and not allowed:
            raise CLIError(
                f"{role} model {spec.backend}:{spec.path} is a pickle, and loading a pickle runs any code "
                "inside it; pass --allow-pickle if you made this file or trust where it came from"
            )


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, to write where results would be lost or land elsewhere."""
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is not a directory")
    links = [n for n in OUTPUT_FILES if (out / n).is_symlink()]
    if links:
        raise CLIError(
            f"--out {out}: {', '.join(links)} {'is a symlink' if len(links) == 1 else 'are symlinks'}; "
            "confroute never writes through a symlink (it could overwrite a file elsewhere): remove it"
        )
    present = [n for n in OUTPUT_FILES if (out / n).exists()]
    if present and not overwrite:
        raise CLIError(
            f"--out {out} already holds results ({', '.join(present)}); pass --overwrite to replace "
            "them, or choose another --out"
        )


def load_predictor(spec: BackendSpec, role: str, *, threads: int | None, batch_size: int,
                   max_length: int | None) -> Any:
    """Build the predictor a ``BACKEND:PATH`` names."""
    _check_path(spec, role)
    name = role
    if spec.backend == "deepsparse":
        from ..predictors.deepsparse import DeepSparsePredictor

        return DeepSparsePredictor(spec.path, batch_size=batch_size, num_cores=threads,
                                   sequence_length=max_length or 128, name=name)
    if spec.backend == "onnx":
        from ..predictors.onnxruntime import ONNXRuntimePredictor

        return ONNXRuntimePredictor(spec.path, batch_size=batch_size, num_threads=threads,
                                    max_length=max_length, name=name)
    if spec.backend == "hf":
        from ..predictors.huggingface import HFPipelinePredictor

        return HFPipelinePredictor(spec.path, batch_size=batch_size, num_threads=threads,
                                   max_length=max_length, name=name)
    from ..predictors.sklearn import SklearnPredictor

    path = Path(spec.path).expanduser()
    if path.is_dir():
        raise CLIError(f"{role} model: {path} is a directory; sklearn:/joblib: need the saved model file")
    if spec.backend == "joblib":
        try:
            import joblib
        except ImportError:  # pragma: no cover - joblib ships with scikit-learn
            raise CLIError("joblib: models need joblib (installed with scikit-learn)") from None
        est = joblib.load(path)
    else:
        with open(path, "rb") as fh:
            try:
                est = pickle.load(fh)
            except (pickle.UnpicklingError, EOFError) as exc:
                raise CLIError(f"{role} model: {path} is not a pickle ({exc}); saved with joblib? use joblib:{path}") from None
    if not hasattr(est, "predict_proba"):
        raise CLIError(f"{role} model: {path} holds a {type(est).__name__}, which has no predict_proba")
    return SklearnPredictor(est, batch_size=batch_size * 32, name=name)


def _load_data(path: str, args: argparse.Namespace, what: str, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    from ..integrations.io import load_texts

    text_column = args.text_column[0] if args.text_column and len(args.text_column) == 1 else args.text_column
    p = Path(path).expanduser()
    if not p.exists():
        raise CLIError(f"{what}: no such file: {p}")
    try:
        texts, labels = load_texts(p, text_column=text_column, label_column=args.label_column,
                                   format=args.format, limit=limit if limit is not None else args.limit)
    except KeyError as exc:
        raise CLIError(f"{what}: {exc.args[0]} (see --text-column / --label-column)") from None
    except (ValueError, IsADirectoryError) as exc:
        raise CLIError(f"{what}: {exc}") from None
    if not texts:
        raise CLIError(f"{what}: {p} has no rows")
    assert labels is not None
    return texts, labels


def match_labels(labels: np.ndarray, classes: tuple[Any, ...] | None, n_classes: int,
                 label_map: dict[str, str] | None, where: str, model: str) -> tuple[np.ndarray, str]:
    """Class index of every label, and a note on how labels were matched to classes.

    String labels (and integer labels when the model's classes are integers too) match class
    names; other integer labels are class indices. A label that matches nothing is an error
    that names the labels and the classes.
    """
    names = tuple(str(c) for c in (classes or range(n_classes)))
    raw = [str(v) for v in labels.tolist()]
    if label_map is not None:
        raw = [label_map.get(v, v) for v in raw]
        by = "name (via --label-map)"
    elif labels.dtype.kind in "iu" and not all(c.lstrip("-").isdigit() for c in names):
        ints = labels.astype(np.int64)
        bad = sorted({int(v) for v in ints.tolist() if not 0 <= v < n_classes})
        if bad:
            raise CLIError(
                f"{where}: labels {bad[:10]} do not match {model}'s classes {list(names)}: integer labels "
                f"are read as class indices 0..{n_classes - 1}; map them with --label-map "
                f"(e.g. {','.join(f'{i}={c}' for i, c in enumerate(names))})"
            )
        note = ", ".join(f"{i}={c}" for i, c in enumerate(names))
        return ints, f"integer labels read as class indices ({note})"
    else:
        by = "name"
    lookup = {c: i for i, c in enumerate(names)}
    unknown = sorted({v for v in raw if v not in lookup})
    if unknown:
        raise CLIError(
            f"{where}: labels {unknown[:10]} do not match {model}'s classes {list(names)}"
            + ("" if label_map else "; map them with --label-map FILE_LABEL=CLASS,...")
        )
    return np.array([lookup[v] for v in raw], dtype=np.int64), f"labels matched to classes by {by}"


def align_classes(fallback: Predictions, classes: tuple[Any, ...] | None, n_classes: int) -> Predictions:
    """The fallback's columns in the primary's class order (by name); mismatched classes are an error."""
    try:
        return align(fallback, classes, n_classes, "fallback")[0]
    except ClassMismatchError as exc:
        raise CLIError(str(exc)) from None


def _progress_enabled(choice: str) -> bool:
    if choice == "off":
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        if choice == "on":
            raise CLIError("--progress on needs tqdm: pip install 'confroute[progress]'") from None
        return False
    return choice == "on" or sys.stderr.isatty()


def timed_predict(predictor: Any, texts: Sequence[str], desc: str, progress: bool) -> tuple[Predictions, float]:
    """Predict in chunks (for the progress bar); the seconds spent inside the model calls."""
    n = len(texts)
    step = max(int(predictor.batch_size or 256), 1) * 4
    starts = range(0, n, step)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=desc, unit="text", leave=False)
    parts, seconds = [], 0.0
    for i in starts:
        chunk = texts[i : i + step]
        t0 = time.perf_counter()
        parts.append(predictor.predict(chunk))
        seconds += time.perf_counter() - t0
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return Predictions.concat(parts), seconds


# --------------------------------------------------------------------------- the run
def run_evaluate(args: argparse.Namespace) -> int:
    """Entry point of ``confroute evaluate``; returns the exit status."""
    try:
        return _run(args, print)
    except CLIError as exc:
        if getattr(args, "traceback", False):
            raise
        print(f"confroute evaluate: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ImportError, OSError, ValueError) as exc:
        if getattr(args, "traceback", False):
            raise
        print(f"confroute evaluate: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _check_args(args: argparse.Namespace) -> tuple[list[float] | None, CostSpec | None, float | None]:
    thresholds = parse_thresholds(args.thresholds)
    cost = parse_cost(args.cost)
    delta_text = str(args.delta).strip().lower()
    delta = None if delta_text == "none" else _float(delta_text, "--delta")
    if delta is not None and not 0 < delta < 1:
        raise CLIError(f"--delta must lie in (0, 1) or be 'none', got {args.delta}")
    for flag in ("target_accuracy", "target_system_accuracy"):
        v = getattr(args, flag)
        if v is not None and not 0 < v < 1:
            raise CLIError(f"--{flag.replace('_', '-')} must lie in (0, 1), got {v}")
    rel = args.target_relative_accuracy
    if rel is not None and not 0 < rel <= 1:
        raise CLIError(f"--target-relative-accuracy must lie in (0, 1], got {rel}")
    for flag in ("batch_size", "repeats"):
        if getattr(args, flag) < 1:
            raise CLIError(f"--{flag.replace('_', '-')} must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise CLIError("--threads must be >= 1")
    if args.max_length is not None and args.max_length < 2:
        raise CLIError("--max-length must be >= 2")
    for flag in ("limit", "calibration_limit"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise CLIError(f"--{flag.replace('_', '-')} must be >= 1")
    return thresholds, cost, delta


def _cost_model(spec: CostSpec | None, seconds_per_sample: tuple[float, float] | None) -> Any:
    from ..core.cost import CostModel, StageCost

    if spec is None:
        return None
    names = ["primary", "fallback"]
    if spec.kind == "per-sample":
        return CostModel.per_sample(list(spec.prices), names=names)
    if spec.kind == "hourly":
        return CostModel.hourly(list(zip(spec.prices, spec.throughputs)), names=names)
    assert seconds_per_sample is not None
    if spec.prices:
        return CostModel.hourly([(p, 1.0 / s) for p, s in zip(spec.prices, seconds_per_sample)], names=names)
    # No prices: the cost of an input is the compute seconds it takes, so savings are time saved.
    return CostModel([StageCost(s, s, n) for s, n in zip(seconds_per_sample, names)])


def _run(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    thresholds, cost_spec, delta = _check_args(args)
    primary_spec, fallback_spec = parse_backend(args.primary), parse_backend(args.fallback)
    _check_pickle_opt_in([(primary_spec, "primary"), (fallback_spec, "fallback")], args.allow_pickle)
    out = Path(args.out).expanduser()
    _check_out(out, args.overwrite)
    label_map = parse_label_map(args.label_map)
    progress = _progress_enabled(args.progress)
    # Load data first: a typo in a path or a column should not wait for a model to compile.
    texts, raw_labels = _load_data(args.data, args, "DATA")
    cal_spec = parse_calibration(args.calibration)
    cal = _load_data(cal_spec.path, args, "--calibration", args.calibration_limit) if cal_spec.path else None
    same = cal_spec.path is not None and Path(cal_spec.path).expanduser().resolve() == Path(args.data).expanduser().resolve()
    if same:
        raise CLIError("--calibration is DATA itself: give a held-out split, or cross-fit:K to calibrate and "
                       "choose thresholds on folds of DATA")
    opts = {"threads": args.threads, "batch_size": args.batch_size, "max_length": args.max_length}
    primary = load_predictor(primary_spec, "primary", **opts)
    fallback = load_predictor(fallback_spec, "fallback", **opts)

    from ..calibration.calibrators import TemperatureScaler
    from ..evaluation.evaluate import evaluate
    from ..selection.crossfit import cross_fit_calibration, cross_fit_threshold
    from ..selection.thresholds import ThresholdWarning, choose_threshold

    n = len(texts)
    say(f"confroute evaluate: {n} inputs from {args.data}")
    p_times, f_times = [], []
    pp, secs = timed_predict(primary, texts, "primary", progress)
    p_times.append(secs)
    fp, secs = timed_predict(fallback, texts, "fallback", progress)
    f_times.append(secs)
    repeats = args.repeats if cost_spec is not None and cost_spec.kind == "measured" else 1
    for _ in range(repeats - 1):
        p_times.append(timed_predict(primary, texts, "primary (timing)", progress)[1])
        f_times.append(timed_predict(fallback, texts, "fallback (timing)", progress)[1])
    classes = pp.classes
    fp = align_classes(fp, classes, pp.n_classes)
    y_index, label_note = match_labels(raw_labels, classes, pp.n_classes, label_map, "DATA", "the primary")
    y = class_labels(y_index, classes)  # the labels in the models' own label space
    sec_pp = (float(np.median(p_times)) / n, float(np.median(f_times)) / n)
    say(f"  classes {list(classes or range(pp.n_classes))}; {label_note}")
    say(f"  primary  {args.primary}: {1 / sec_pp[0]:,.1f} inputs/s, accuracy {np.mean(pp.label_index == y_index):.4f}")
    say(f"  fallback {args.fallback}: {1 / sec_pp[1]:,.1f} inputs/s, accuracy {np.mean(fp.label_index == y_index):.4f}")
    cost_model = _cost_model(cost_spec, sec_pp)

    scaler: Any = None
    cal_result = None
    wants_target = any(v is not None for v in (args.target_accuracy, args.target_system_accuracy,
                                                args.target_relative_accuracy))
    calibration_doc: dict[str, Any] = {"mode": cal_spec.kind}
    if cal is not None:
        cal_texts, cal_raw = cal
        cpp, _ = timed_predict(primary, cal_texts, "primary (calibration)", progress)
        y_cal_index, _ = match_labels(cal_raw, classes, cpp.n_classes, label_map, "--calibration", "the primary")
        y_cal = class_labels(y_cal_index, classes)
        cal_acc = float(np.mean(cpp.label_index == y_cal_index))
        data_acc = float(np.mean(pp.label_index == y_index))
        if cal_acc > data_acc + 0.03:
            say(f"  note: PRIMARY is right on {cal_acc:.1%} of --calibration but on {data_acc:.1%} of DATA. If "
                "--calibration is (like) the models' training data, its confidence there is optimistic: the "
                "temperature barely moves and thresholds chosen there are too loose (docs/calibration.md). "
                "Use a held-out split, or --calibration cross-fit:5.")
        if args.calibrate == "temperature":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scaler = TemperatureScaler().fit(cpp, y_cal)
            say(f"  temperature scaling on {len(cal_texts)} calibration inputs: T = {scaler.temperature_:.3f}")
            calibration_doc["temperature"] = float(scaler.temperature_)
        if wants_target:
            cfp = None
            if args.target_system_accuracy is not None or args.target_relative_accuracy is not None:
                cfp, _ = timed_predict(fallback, cal_texts, "fallback (calibration)", progress)
                cfp = align_classes(cfp, classes, cpp.n_classes)
            cal_result = evaluate(labels=y_cal, primary=cpp, fallback=cfp, calibrator=scaler,
                                  score=args.score, cost_model=cost_model, stage_names=("primary", "fallback"))
    factory = TemperatureScaler if args.calibrate == "temperature" else None
    if cal_spec.kind == "cross-fit":
        k = cal_spec.folds
        why = "no --calibration given, so " if args.calibration is None else ""
        what = "temperature scaling and thresholds are" if factory is not None else "thresholds are"
        say(f"  calibration: {why}{what} cross-fitted on DATA itself: {k} stratified folds (--seed {args.seed}), "
            f"each fitted on the other {k - 1} and applied to it, so no input is scored with its own label")
        calibration_doc.update(folds=k, seed=args.seed)
        if factory is not None:
            scaler = cross_fit_calibration(y, pp, calibrator=factory, n_folds=k, random_state=args.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_all = TemperatureScaler().fit(pp, y).temperature_
            temps = [float(t) for t in scaler.temperatures if t is not None]
            say(f"  temperature per fold {' '.join(f'{t:.3f}' for t in temps)}; refitted on all of DATA T = {t_all:.3f}"
                " (the table and ECE below use each input's out-of-fold temperature)")
            calibration_doc.update(temperatures=temps, temperature=float(t_all))

    result = evaluate(labels=y, primary=pp, fallback=fp, calibrator=scaler, score=args.score,
                      cost_model=cost_model, stage_names=("primary", "fallback"))

    choices: list[tuple[str, str, Any, Any, Any]] = []
    if wants_target:
        source = cal_result if cal_result is not None else result
        if cal_result is not None:
            where, on = "the calibration split", "calibration data"
        elif cal_spec.kind == "cross-fit":
            where, on = f"DATA by cross-fitting ({cal_spec.folds} folds), then refitted on all of DATA", "all of DATA"
        else:
            where, on = "DATA itself (optimistic: --calibration none)", "DATA"
        targets: list[tuple[str, dict[str, Any]]] = []
        if args.target_accuracy is not None:
            targets.append((f"accuracy on accepted >= {args.target_accuracy:g}",
                            {"target_accuracy": args.target_accuracy}))
        if args.target_system_accuracy is not None:
            targets.append((f"system accuracy >= {args.target_system_accuracy:g}",
                            {"target_system_accuracy": args.target_system_accuracy}))
        if args.target_relative_accuracy is not None:
            if cal_spec.kind == "cross-fit":
                targets.append((f"system accuracy >= {args.target_relative_accuracy:g} x fallback",
                                {"target_relative_accuracy": args.target_relative_accuracy}))
            else:
                ref = source.stage_accuracy["fallback"]
                goal = min(args.target_relative_accuracy * ref, 1 - 1e-9)
                targets.append((f"system accuracy >= {args.target_relative_accuracy:g} x fallback ({goal:.4f})",
                                {"target_system_accuracy": goal}))
        for label, kw in targets:
            if cal_spec.kind == "cross-fit":
                cf = cross_fit_threshold(y, pp, fp, delta=delta, n_folds=cal_spec.folds, calibrator=factory,
                                         score=args.score, cost_model=cost_model, random_state=args.seed, **kw)
                choices.append((label, where, cf.final, _pooled_point(cf), cf))
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ThresholdWarning)
                choice = choose_threshold(source, delta=delta, **kw)
            point = result.at(choice.threshold) if np.isfinite(choice.threshold) else result.at(math.inf)
            choices.append((label, where, choice, point, None))

    rows = _table_rows(result, thresholds)
    say("")
    say(_format_header(result))
    say(_format_table(rows, result))
    if result.has_cost:
        # Routing against each model alone, on one accuracy-vs-cost front (each at its own price).
        say("\n" + result.compare_to_alternatives(cost_unit="cost per input").summary)
    for label, where, choice, point, cf in choices:
        say(f"\nthreshold for {label}, chosen on {where}:")
        say(f"  {str(choice).replace('on calibration data', f'on {on}')}")
        if cf is not None:
            say("\n".join("  " + line for line in repr(cf).splitlines()[1:]))
            say(_crossfit_answer(cf))
            continue
        extra = "" if point.system_accuracy is None else f", system accuracy {point.system_accuracy:.4f}"
        cost = "" if point.savings is None else f", savings {point.savings:.1%}"
        say(f"  on DATA: coverage {point.coverage:.1%}, accuracy on accepted {point.accepted_accuracy:.4f}{extra}{cost}")

    _check_out(out, args.overwrite)  # again: the models took a while, the folder may have changed
    out.mkdir(parents=True, exist_ok=True)  # only now: a failed run leaves no empty folder behind
    files = _write_outputs(out, args, result, rows, choices, cost_model, sec_pp, p_times, f_times, scaler,
                           label_note, pp, fp, y_index, calibration_doc)
    say(f"\nwrote {', '.join(sorted(f.name for f in files))} to {out}/")
    return 0


def _pooled_point(cf: Any) -> Any:
    """The pooled held-out figures of a cross-fit as an operating point (for results.json)."""
    from ..evaluation.evaluate import OperatingPoint

    m = int(cf.accept.sum())
    return OperatingPoint(
        thresholds=(float(cf.final.threshold),), answered=(m, cf.n - m), n=cf.n, coverage=cf.coverage,
        shares=(cf.coverage, 1 - cf.coverage), accepted_accuracy=cf.accepted_accuracy,
        system_accuracy=cf.system_accuracy, cost=None if cf.cost_per_input is None else cf.cost_per_input * cf.n,
        cost_per_input=cf.cost_per_input, savings=cf.savings,
    )


def _crossfit_answer(cf: Any) -> str:
    """The usable answer of a cross-fit, or what would be needed for one."""
    if not cf.usable:
        return f"  no usable threshold: {cf.advice}"
    t = "" if cf.final_temperature is None else f" (T = {cf.final_temperature:.3f})"
    lines = [(f"  answer: route at threshold {cf.final.threshold:.4g} on PRIMARY's calibrated confidence{t}, "
              "both refitted on all of DATA.")]
    held = f"  on the held-out folds PRIMARY answers {cf.coverage:.1%} of inputs"
    if cf.system_accuracy is not None and cf.fallback_accuracy:
        held += (f", system accuracy {cf.system_accuracy:.4f} = {cf.system_accuracy / cf.fallback_accuracy:.2%} "
                 f"of FALLBACK's {cf.fallback_accuracy:.4f}")
    else:
        held += f", accuracy on accepted {cf.accepted_accuracy:.4f}"
    if cf.savings is not None:
        held += f", savings {cf.savings:.1%}"
    lines.append(held + f"; target met on held-out folds ({cf.folds_met} of {len(cf.folds)} folds on their own).")
    return "\n".join(lines)


def _table_rows(result: Any, thresholds: list[float] | None) -> list[dict[str, Any]]:
    if thresholds is None:
        return [dict(zip(result.table, values)) for values in zip(*result.table.values())]
    return [result.at(t).to_dict() | {"threshold": t} for t in thresholds]


def _fmt(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        width = spec.lstrip("<>^").split(".")[0]
        return "-".rjust(int(width) if width.isdigit() else 1)
    return format(v, spec)


def _format_header(result: Any) -> str:
    s = result.summary()
    acc = "   ".join(f"{k} alone {v:.4f}" for k, v in s["stage_accuracy"].items())
    line = f"{acc}   AURC {result.aurc:.4f}"
    if result.ece is not None:
        line += f"   ECE {result.ece:.4f}"
        if result.ece_before_calibration is not None:
            line += f" (before calibration {result.ece_before_calibration:.4f})"
    return line


def _format_table(rows: list[dict[str, Any]], result: Any) -> str:
    head = f"{'threshold':>9} {'accepted':>8} {'coverage':>8} {'acc(accepted)':>13} {'system acc':>10}"
    if result.has_cost:
        head += f" {'cost/input':>11} {'savings':>8}"
    lines = [head]
    for r in rows:
        thr = r["threshold"]
        line = (f"{_fmt(thr, '>9.4g') if thr is not None and math.isfinite(thr) else '      inf'} "
                f"{int(r['n_accepted']):>8} {_fmt(float(r['coverage']), '>8.1%')} "
                f"{_fmt(_f(r['accepted_accuracy']), '>13.4f')} {_fmt(_f(r['system_accuracy']), '>10.4f')}")
        if result.has_cost:
            line += f" {_fmt(_f(r['cost']) / result.n if _f(r['cost']) is not None else None, '>11.4g')}" \
                    f" {_fmt(_f(r['savings']), '>8.1%')}"
        lines.append(line)
    return "\n".join(lines)


def _f(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


_CSV_COLUMNS = ("threshold", "n_accepted", "coverage", "routed_fraction", "accepted_accuracy",
                "system_accuracy", "cost", "savings")


def _write_csv(path: Path, rows: list[dict[str, Any]], n: int) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*_CSV_COLUMNS, "cost_per_input"])
        for r in rows:
            vals: list[Any] = [_f(r[c]) if c != "n_accepted" else int(r[c]) for c in _CSV_COLUMNS]
            if r["threshold"] is not None and math.isinf(float(r["threshold"])):
                vals[0] = "inf"  # accept nothing; pandas and float() read "inf" back as infinity
            cost = _f(r["cost"])
            w.writerow(["" if v is None else v for v in vals] + ["" if cost is None else cost / n])


def _write_outputs(out: Path, args: argparse.Namespace, result: Any, rows: list[dict[str, Any]],
                   choices: list[Any], cost_model: Any, sec_pp: tuple[float, float], p_times: list[float],
                   f_times: list[float], scaler: Any, label_note: str, pp: Predictions, fp: Predictions,
                   y: np.ndarray, calibration_doc: dict[str, Any] | None = None) -> list[Path]:
    files = [out / "table.csv", out / "sweep.csv", out / "results.json"]
    _write_csv(files[0], rows, result.n)
    full = [dict(zip(result.table, values)) for values in zip(*result.table.values())]
    _write_csv(files[1], full, result.n)
    doc = {
        "command": "confroute evaluate",
        "primary": args.primary,
        "fallback": args.fallback,
        "data": str(args.data),
        "calibration": args.calibration,
        "labels": label_note,
        "summary": result.summary(),
        "temperature": (calibration_doc or {}).get("temperature"),
        "calibration_mode": calibration_doc,
        "timing": {
            "seconds_primary": p_times,
            "seconds_fallback": f_times,
            "inputs_per_second": [1.0 / sec_pp[0], 1.0 / sec_pp[1]],
            "note": "seconds inside the model calls on DATA (tokenisation included); median over --repeats",
        },
        "cost_model": None if cost_model is None else {"spec": args.cost, **cost_model.to_dict()},
        "table": [{c: (_f(r[c]) if c != "n_accepted" else int(r[c])) for c in _CSV_COLUMNS} for r in rows],
        "choices": [
            {"target": label, "chosen_on": where, **choice.to_dict(), "on_data": point.to_dict(),
             **({} if cf is None else {"cross_fit": cf.to_dict()})}
            for label, where, choice, point, cf in choices
        ],
    }
    files[2].write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if args.save_predictions:
        path = out / "predictions.npz"
        np.savez_compressed(
            path, labels=y, primary_probs=pp.probs, fallback_probs=fp.probs,
            primary_logits=pp.logits if pp.logits is not None else np.empty(0),
            fallback_logits=fp.logits if fp.logits is not None else np.empty(0),
            primary_scores=result.scores,
        )
        files.append(path)
    if not args.no_plots:
        files.extend(_plots(out, result, choices[0][2] if choices else None))
    return files


def _plots(out: Path, result: Any, choice: Any) -> list[Path]:
    try:
        import matplotlib
    except ImportError:
        warnings.warn("matplotlib is not installed: no plots (pip install 'confroute[plot]')", stacklevel=2)
        return []
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")  # files only; never open a window from a command line run
    import matplotlib.pyplot as plt

    written = []
    kinds = ["summary", "accuracy_coverage", "reliability"] if result.has_cost else ["accuracy_coverage", "reliability"]
    if not result.has_cost:
        kinds.insert(0, "accuracy_vs_threshold")
    for kind in kinds:
        path = out / f"{kind}.png"
        kwargs = {"choice": choice} if kind in ("summary", "accuracy_vs_threshold") else {}
        obj = result.plot(kind, path=path, **kwargs)
        plt.close(obj if hasattr(obj, "savefig") else obj.get_figure())
        written.append(path)
    return written
