"""``confroute evaluate``, part 1: the command's arguments and its small spec languages.

Backends (``BACKEND:PATH``), thresholds, prices, the calibration mode and the label map are parsed
here, and the objective flags (``--target-accuracy`` ...) come from one table,
:data:`OBJECTIVE_FLAGS`, which names the keyword of :func:`confroute.choose_thresholds` each
flag stands for: a flag means exactly the guarantee of that keyword.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

from ...core._params import DELTA, Interval
from ...exceptions import CLIError
from ...selection.objectives import OBJECTIVES, Objective

__all__ = [
    "BACKENDS",
    "PICKLED",
    "OUTPUT_FILES",
    "DEFAULT_THRESHOLDS",
    "DEFAULT_CALIBRATION",
    "EPILOG",
    "OBJECTIVE_FLAGS",
    "ObjectiveFlag",
    "BackendSpec",
    "CostSpec",
    "CalibrationSpec",
    "parse_backend",
    "parse_number",
    "parse_thresholds",
    "parse_cost",
    "parse_calibration",
    "parse_label_map",
    "add_arguments",
    "check_args",
    "requested_objectives",
]


#: Backend names accepted before the colon of ``BACKEND:PATH``, and what they mean.
BACKENDS = {
    "deepsparse": "ONNX model directory (model.onnx + tokenizer + config.json) or zoo: stub, run by DeepSparse",
    "onnx": "ONNX model directory (or .onnx file), run by ONNX Runtime",
    "hf": "Hugging Face model directory (or hub:ORG/NAME for the Hub), run through a transformers pipeline",
    "sklearn": "pickled scikit-learn estimator or pipeline with predict_proba (.pkl; needs --allow-pickle)",
    "joblib": "scikit-learn estimator saved with joblib.dump (.joblib; needs --allow-pickle)",
}
PICKLED = ("sklearn", "joblib")
#: Every file ``--out`` may receive (checked before anything is computed).
OUTPUT_FILES = ("table.csv", "sweep.csv", "results.json", "predictions.npz", "summary.png",
                "accuracy_coverage.png", "reliability.png", "accuracy_vs_threshold.png")
_ALIASES = {"onnxruntime": "onnx", "ort": "onnx", "transformers": "hf", "pickle": "sklearn", "pkl": "sklearn"}

DEFAULT_THRESHOLDS = "0.5:0.95:0.05,0.97,0.99"

EPILOG = """\
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
  (measured: one untimed warm-up pass per backend, then --repeats timed passes, default 3;
   the median is the cost; a spread over 1.25x (slowest/fastest pass) gives no cost verdict)

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


def parse_number(text: str, what: str) -> float:
    """``text`` as a finite float, or a :class:`CLIError` naming ``what``."""
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
            start, stop, step = (parse_number(p, f"--thresholds grid {item!r}") for p in parts)
            if step <= 0 or stop < start:
                raise CLIError(f"--thresholds: grid {item!r} needs step > 0 and stop >= start")
            count = math.floor((stop - start) / step + 1e-9) + 1
            if count > 100_000:
                raise CLIError(f"--thresholds: grid {item!r} has {count} points; use 'all' instead")
            values.extend(round(start + i * step, 10) for i in range(count))
        else:
            values.append(parse_number(item, "--thresholds"))
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
        prices = tuple(parse_number(p, "--cost per-sample") for p in items)
        if len(prices) != 2:
            raise CLIError(f"--cost per-sample needs two prices (primary,fallback), got {spec!r}")
        if min(prices) < 0:
            raise CLIError("--cost: prices must be >= 0")
        return CostSpec("per-sample", prices)
    if kind == "hourly":
        if len(items) != 2 or any("@" not in p for p in items):
            raise CLIError(f"--cost hourly needs PRICE@THROUGHPUT for both stages, e.g. hourly:0.50@100,1.50@10; got {spec!r}")
        pairs = [p.split("@", 1) for p in items]
        prices = tuple(parse_number(a, "--cost hourly price") for a, _ in pairs)
        tps = tuple(parse_number(b, "--cost hourly throughput") for _, b in pairs)
        if min(prices) < 0 or min(tps) <= 0:
            raise CLIError("--cost hourly: prices must be >= 0 and throughputs > 0")
        return CostSpec("hourly", prices, tps)
    if kind == "measured":
        prices = tuple(parse_number(p, "--cost measured price") for p in items)
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


# --------------------------------------------------------------------------- objectives
@dataclass(frozen=True)
class ObjectiveFlag:
    """One objective flag of ``confroute evaluate``: the objective of
    :func:`confroute.choose_thresholds` it stands for (a row of the one table,
    :data:`confroute.selection.objectives.OBJECTIVES`), plus what only the command has: its
    metavar and help. Keyword, wording, what it needs and its valid range come from the table."""

    objective: Objective
    metavar: str
    help: str

    @property
    def keyword(self) -> str:
        return self.objective.keyword

    @property
    def valid(self) -> Interval:
        return self.objective.target_range

    @property
    def needs_fallback(self) -> bool:
        return self.objective.needs_fallback

    @property
    def needs_prices(self) -> bool:
        return self.objective.needs_prices

    def wording(self, target: float) -> str:
        """The flag's target in words (the table's wording)."""
        return self.objective.statement(target)


_FLAG_TEXT = {
    "target_accuracy": ("A", "choose the loosest threshold whose accuracy on accepted inputs is >= A"),
    "target_system_accuracy": ("A", "choose the loosest threshold whose system accuracy is >= A"),
    "target_relative_accuracy": (
        "R", "choose the loosest threshold whose system accuracy is >= R x FALLBACK's own accuracy (e.g. 0.995); "
        "certified with a paired bound on the inputs where the two models disagree"),
    "max_accuracy_drop": (
        "E", "choose the loosest threshold whose system accuracy is >= FALLBACK's own accuracy - E (e.g. 0.01); "
        "certified with a paired bound on the inputs where the two models disagree"),
    "target_coverage": ("C", "choose the strictest threshold at which PRIMARY answers at least a share C of inputs"),
    "max_cost_per_input": ("B", "choose the strictest threshold whose mean cost per input is <= B (needs --cost)"),
    "min_savings": ("S", "choose the strictest threshold that saves at least a share S of FALLBACK's cost "
                    "(needs --cost)"),
}

#: ``args`` attribute of each objective flag (the keyword of ``choose_thresholds``) -> its flag;
#: one flag per row of the table (a new objective needs its metavar and help above).
#: The objectives themselves (keyword, wording, needs, range) are the rows of the one table,
#: :data:`confroute.selection.objectives.OBJECTIVES`, in its order.
OBJECTIVE_FLAGS: dict[str, ObjectiveFlag] = {
    keyword: ObjectiveFlag(objective, *_FLAG_TEXT[keyword]) for keyword, objective in OBJECTIVES.items()
}


def requested_objectives(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """``(wording, {keyword: target})`` for every objective flag given, in the table's order."""
    out = []
    for dest, objective in OBJECTIVE_FLAGS.items():
        target = getattr(args, dest, None)
        if target is not None:
            out.append((objective.wording(float(target)), {objective.keyword: float(target)}))
    return out


# --------------------------------------------------------------------------- parser
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``confroute evaluate``."""
    p.add_argument("primary", metavar="PRIMARY", help="cheap model as BACKEND:PATH (see below)")
    p.add_argument("fallback", metavar="FALLBACK", help="expensive model as BACKEND:PATH")
    p.add_argument("data", metavar="DATA", help="labelled evaluation data: .tsv, .csv or .jsonl with a header")
    _data_arguments(p)
    _calibration_arguments(p)
    _sweep_arguments(p)
    _backend_arguments(p)
    _output_arguments(p)


def _data_arguments(p: argparse.ArgumentParser) -> None:
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


def _calibration_arguments(p: argparse.ArgumentParser) -> None:
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
    for dest, objective in OBJECTIVE_FLAGS.items():
        g.add_argument("--" + dest.replace("_", "-"), dest=dest, type=float, metavar=objective.metavar,
                       help=f"{objective.help} (the guarantee of {objective.keyword} in confroute.choose_thresholds)")
    g.add_argument("--delta", default="0.05", metavar="D",
                   help="targets hold with probability 1 - D (the certificate of confroute.choose_thresholds); "
                   "'none' for a purely empirical choice (default: 0.05)")


def _sweep_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sweep and cost")
    g.add_argument("--thresholds", default=DEFAULT_THRESHOLDS, metavar="SPEC",
                   help=f"thresholds for the printed table and table.csv (default: {DEFAULT_THRESHOLDS})")
    g.add_argument("--score", choices=["max_prob", "margin", "neg_entropy"], default="max_prob",
                   help="confidence score of PRIMARY (default: max_prob)")
    g.add_argument("--cost", metavar="SPEC", help="stage prices (see below); default: no cost columns")
    g.add_argument("--repeats", type=int, metavar="N",
                   help="with --cost measured, time each backend N times on DATA, after one untimed warm-up "
                   "pass, and use the median; while the last N spread (slowest/fastest pass) over 1.25x, "
                   "up to 3 more rounds are timed; still over it, no cost verdict is given (default 3)")


def _backend_arguments(p: argparse.ArgumentParser) -> None:
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


def _output_arguments(p: argparse.ArgumentParser) -> None:
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


def check_args(args: argparse.Namespace) -> tuple[list[float] | None, CostSpec | None, float | None]:
    """The parsed thresholds, cost and delta; every bad option is a :class:`CLIError` naming the flag."""
    thresholds = parse_thresholds(args.thresholds)
    cost = parse_cost(args.cost)
    delta_text = str(args.delta).strip().lower()
    delta = None if delta_text == "none" else parse_number(delta_text, "--delta")
    try:
        DELTA.check(delta, "--delta")
    except ValueError:
        raise CLIError(f"--delta must lie in (0, 1) or be 'none', got {args.delta}") from None
    for dest, objective in OBJECTIVE_FLAGS.items():
        value = getattr(args, dest)
        if value is not None:
            flag = "--" + dest.replace("_", "-")
            try:
                objective.valid.check(value, flag)
            except ValueError as exc:
                raise CLIError(str(exc)) from None
            if objective.needs_prices and cost is None:
                raise CLIError(f"{flag} needs stage prices: give --cost (e.g. per-sample:0.001,0.005 or measured)")
    for flag in ("batch_size", "repeats"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise CLIError(f"--{flag.replace('_', '-')} must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise CLIError("--threads must be >= 1")
    if args.max_length is not None and args.max_length < 2:
        raise CLIError("--max-length must be >= 2")
    for flag in ("limit", "calibration_limit"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise CLIError(f"--{flag.replace('_', '-')} must be >= 1")
    return thresholds, cost, delta
