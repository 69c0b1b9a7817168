"""``confroute evaluate``, part 3: the run.

Check every option and load the data before any model runs; run both models once on DATA;
calibrate PRIMARY (on a held-out file, cross-fitted on DATA, or not at all); evaluate every
threshold at once; choose thresholds for the objective flags through the one selection path,
:func:`confroute.choose_thresholds` (or its cross-fit); then report (:mod:`._report`).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.classes import class_labels
from ...exceptions import CLIError, ThresholdWarning
from ._inputs import (
    Measured,
    align_classes,
    check_out,
    check_pickle_opt_in,
    load_data,
    load_predictor,
    match_labels,
    progress_enabled,
    SPREAD_LIMIT,
    spread_of,
    timed_predict,
)
from ._parse import (
    OBJECTIVE_FLAGS,
    CalibrationSpec,
    CostSpec,
    check_args,
    parse_backend,
    parse_calibration,
    parse_label_map,
    requested_objectives,
)
from ._report import (
    UNRELIABLE,
    Chosen,
    cost_verdict,
    crossfit_answer,
    format_header,
    format_table,
    plots,
    pooled_point,
    table_rows,
    write_outputs,
)

__all__ = ["run_evaluate", "run", "Setup", "cost_model_of"]

Say = Callable[[str], None]


def run_evaluate(args: argparse.Namespace) -> int:
    """Entry point of ``confroute evaluate``; returns the exit status."""
    try:
        return run(args, print)
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


@dataclass
class Setup:
    """Everything checked and loaded before a model runs."""

    out: Path
    thresholds: list[float] | None
    cost_spec: CostSpec | None
    delta: float | None
    cal_spec: CalibrationSpec
    label_map: dict[str, str] | None
    progress: bool
    data: tuple[list[str], np.ndarray]
    cal: tuple[list[str], np.ndarray] | None
    primary: Any
    fallback: Any
    calibration_doc: dict[str, Any] = field(default_factory=dict)


def prepare(args: argparse.Namespace) -> Setup:
    """Check the options, the paths and the data first: a typo should not wait for a model to compile."""
    thresholds, cost_spec, delta = check_args(args)
    primary_spec, fallback_spec = parse_backend(args.primary), parse_backend(args.fallback)
    check_pickle_opt_in([(primary_spec, "primary"), (fallback_spec, "fallback")], args.allow_pickle)
    out = Path(args.out).expanduser()
    check_out(out, args.overwrite)
    label_map = parse_label_map(args.label_map)
    progress = progress_enabled(args.progress)
    data = load_data(args.data, args, "DATA")
    cal_spec = parse_calibration(args.calibration)
    cal = load_data(cal_spec.path, args, "--calibration", args.calibration_limit) if cal_spec.path else None
    if cal_spec.path is not None and \
            Path(cal_spec.path).expanduser().resolve() == Path(args.data).expanduser().resolve():
        raise CLIError("--calibration is DATA itself: give a held-out split, or cross-fit:K to calibrate and "
                       "choose thresholds on folds of DATA")
    opts = {"threads": args.threads, "batch_size": args.batch_size, "max_length": args.max_length}
    primary = load_predictor(primary_spec, "primary", **opts)
    fallback = load_predictor(fallback_spec, "fallback", **opts)
    return Setup(out, thresholds, cost_spec, delta, cal_spec, label_map, progress, data, cal, primary, fallback,
                 {"mode": cal_spec.kind})


#: Timed passes per model with ``--cost measured`` when ``--repeats`` is not given.
DEFAULT_REPEATS = 3


def measure(args: argparse.Namespace, s: Setup, say: Say) -> Measured:
    """Run both models on DATA and match the labels. With ``--cost measured``, that first pass is
    an untimed warm-up (it compiles DeepSparse's length buckets; its predictions are the ones
    evaluated, so it costs no extra pass), then each model is timed ``--repeats`` times (default 3),
    interleaved, and its cost is the median."""
    texts, raw_labels = s.data
    n = len(texts)
    say(f"confroute evaluate: {n} inputs from {args.data}")
    pp, p_first = timed_predict(s.primary, texts, "primary", s.progress)
    fp, f_first = timed_predict(s.fallback, texts, "fallback", s.progress)
    p_times, f_times = [p_first], [f_first]
    warm: tuple[float | None, float | None] = (None, None)
    settling: tuple[list[float], list[float]] = ([], [])
    if s.cost_spec is not None and s.cost_spec.kind == "measured":
        warm = (p_first, f_first)
        p_times, f_times, settling = timed_passes(s, texts, args.repeats or DEFAULT_REPEATS)
    classes = pp.classes
    fp = align_classes(fp, classes, pp.n_classes)
    y_index, label_note = match_labels(raw_labels, classes, pp.n_classes, s.label_map, "DATA", "the primary")
    m = Measured(texts, pp, fp, y_index, class_labels(y_index, classes), label_note, p_times, f_times, *warm,
                 *settling)
    say(f"  classes {list(classes or range(pp.n_classes))}; {label_note}")
    if m.p_warmup is not None:
        say(f"  timing: one untimed warm-up pass per model over all of DATA (its predictions are the ones "
            f"evaluated; it compiles DeepSparse's length buckets), then {len(p_times)} timed "
            f"pass{'es' if len(p_times) > 1 else ''} each; cost from the median")
        if m.p_settling:
            say(f"  timing: {len(m.p_settling)} earlier timed pass{'es' if len(m.p_settling) > 1 else ''} per model "
                f"set aside while the timing settled (their seconds are in results.json: settling_seconds)")
    runs = (("primary ", args.primary, p_times, pp), ("fallback", args.fallback, f_times, fp))
    for role, spec, times, preds in runs:
        say(f"  {role} {spec}: {timing_line(times, n)}, accuracy {np.mean(preds.label_index == y_index):.4f}")
    return m


#: Extra rounds of timed passes run when the last ``--repeats`` passes of a model still spread wider
#: than SPREAD_LIMIT (a pass that still holds warm-up, a burst of other work on the machine).
MAX_SETTLING = 3


def timed_passes(s: Setup, texts: list[str], repeats: int) -> tuple[list[float], list[float],
                                                                    tuple[list[float], list[float]]]:
    """``repeats`` timed passes of each model, interleaved; while the last ``repeats`` of either
    model spread wider than :data:`SPREAD_LIMIT`, up to :data:`MAX_SETTLING` more rounds. Returns
    the last ``repeats`` seconds of each model and the earlier ones (set aside, reported)."""
    p_all: list[float] = []
    f_all: list[float] = []
    for round_ in range(repeats + MAX_SETTLING):
        if round_ >= repeats and not any(spread_of(t[-repeats:]) > SPREAD_LIMIT for t in (p_all, f_all)):
            break
        p_all.append(timed_predict(s.primary, texts, "primary (timing)", s.progress)[1])
        f_all.append(timed_predict(s.fallback, texts, "fallback (timing)", s.progress)[1])
    return p_all[-repeats:], f_all[-repeats:], (p_all[:-repeats], f_all[:-repeats])


def timing_line(times: list[float], n: int) -> str:
    """Throughput from the median pass, and the spread of the passes.

    >>> timing_line([2.0, 2.2, 2.1], 100)
    '47.6 inputs/s (median of 3 timed passes: 2.10 s; range 2.00-2.20 s, spread 1.10x)'
    >>> timing_line([2.0], 100)
    '50.0 inputs/s (one pass)'
    """
    med = float(np.median(times))
    if len(times) < 2:
        return f"{n / med:,.1f} inputs/s (one pass)"
    return (f"{n / med:,.1f} inputs/s (median of {len(times)} timed passes: {med:.2f} s; "
            f"range {min(times):.2f}-{max(times):.2f} s, spread {spread_of(times):.2f}x)")


def cost_model_of(spec: CostSpec | None, seconds_per_sample: tuple[float, float] | None) -> Any:
    """The :class:`~confroute.CostModel` a ``--cost`` spec describes (``None`` without one)."""
    from ...core.cost import CostModel, StageCost

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


def calibrate_on_file(args: argparse.Namespace, s: Setup, m: Measured, cost_model: Any, say: Say) -> tuple[Any, Any]:
    """Temperature scaling on ``--calibration FILE``, and the evaluation thresholds are chosen on."""
    from ...calibration.calibrators import TemperatureScaler
    from ...evaluation.evaluate import evaluate

    assert s.cal is not None
    cal_texts, cal_raw = s.cal
    classes = m.pp.classes
    cpp, _ = timed_predict(s.primary, cal_texts, "primary (calibration)", s.progress)
    y_cal_index, _ = match_labels(cal_raw, classes, cpp.n_classes, s.label_map, "--calibration", "the primary")
    y_cal = class_labels(y_cal_index, classes)
    cal_acc = float(np.mean(cpp.label_index == y_cal_index))
    data_acc = float(np.mean(m.pp.label_index == m.y_index))
    if cal_acc > data_acc + 0.03:
        say(f"  note: PRIMARY is right on {cal_acc:.1%} of --calibration but on {data_acc:.1%} of DATA. If "
            "--calibration is (like) the models' training data, its confidence there is optimistic: the "
            "temperature barely moves and thresholds chosen there are too loose (docs/calibration.md). "
            "Use a held-out split, or --calibration cross-fit:5.")
    scaler = None
    if args.calibrate == "temperature":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scaler = TemperatureScaler().fit(cpp, y_cal)
        say(f"  temperature scaling on {len(cal_texts)} calibration inputs: T = {scaler.temperature_:.3f}")
        s.calibration_doc["temperature"] = float(scaler.temperature_)
    objectives = [OBJECTIVE_FLAGS[d] for d in OBJECTIVE_FLAGS if getattr(args, d) is not None]
    if not objectives:
        return scaler, None
    cfp = None
    if any(o.needs_fallback for o in objectives):
        cfp, _ = timed_predict(s.fallback, cal_texts, "fallback (calibration)", s.progress)
        cfp = align_classes(cfp, classes, cpp.n_classes)
    cal_result = evaluate(labels=y_cal, primary=cpp, fallback=cfp, calibrator=scaler,
                          score=args.score, cost_model=cost_model, stage_names=("primary", "fallback"))
    return scaler, cal_result


def cross_fit_temperature(args: argparse.Namespace, s: Setup, m: Measured, say: Say) -> Any:
    """With ``--calibration cross-fit:K``: each input's temperature fitted on the other folds."""
    from ...calibration.calibrators import TemperatureScaler
    from ...selection.crossfit import cross_fit_calibration

    k = s.cal_spec.folds
    factory = TemperatureScaler if args.calibrate == "temperature" else None
    why = "no --calibration given, so " if args.calibration is None else ""
    what = "temperature scaling and thresholds are" if factory is not None else "thresholds are"
    say(f"  calibration: {why}{what} cross-fitted on DATA itself: {k} stratified folds (--seed {args.seed}), "
        f"each fitted on the other {k - 1} and applied to it, so no input is scored with its own label")
    s.calibration_doc.update(folds=k, seed=args.seed)
    if factory is None:
        return None
    scaler = cross_fit_calibration(m.y, m.pp, calibrator=factory, n_folds=k, random_state=args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_all = TemperatureScaler().fit(m.pp, m.y).temperature_
    temps = [float(t) for t in scaler.temperatures if t is not None]
    say(f"  temperature per fold {' '.join(f'{t:.3f}' for t in temps)}; refitted on all of DATA T = {t_all:.3f}"
        " (the table and ECE below use each input's out-of-fold temperature)")
    s.calibration_doc.update(temperatures=temps, temperature=float(t_all))
    return scaler


def choose(args: argparse.Namespace, s: Setup, m: Measured, result: Any, cal_result: Any, cost_model: Any) -> list[Chosen]:
    """Thresholds for every objective flag, through :func:`confroute.choose_thresholds` (or its
    cross-fit): a flag means the guarantee of the keyword it names in ``OBJECTIVE_FLAGS``."""
    from ...calibration.calibrators import TemperatureScaler
    from ...selection.choose import choose_thresholds
    from ...selection.crossfit import cross_fit_thresholds

    if cal_result is not None:
        where, on = "the calibration split", "calibration data"
    elif s.cal_spec.kind == "cross-fit":
        where, on = f"DATA by cross-fitting ({s.cal_spec.folds} folds), then refitted on all of DATA", "all of DATA"
    else:
        where, on = "DATA itself (optimistic: --calibration none)", "DATA"
    source = cal_result if cal_result is not None else result
    chosen = []
    for wording, objective in requested_objectives(args):
        if s.cal_spec.kind == "cross-fit":
            # The cross-fit of the one selection path (each fold chooses as choose_thresholds does).
            factory = TemperatureScaler if args.calibrate == "temperature" else None
            cf = cross_fit_thresholds(m.y, m.pp, m.fp, delta=s.delta, n_folds=s.cal_spec.folds, calibrator=factory,
                           score=args.score, cost_model=cost_model, random_state=args.seed, **objective)
            chosen.append(Chosen(wording, where, on, cf.final, pooled_point(cf, cost_model), cf))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ThresholdWarning)
            choice = choose_thresholds(source, delta=s.delta, **objective)
        chosen.append(Chosen(wording, where, on, choice, result.at(choice), None))  # the one unwrap
    return chosen


def report(args: argparse.Namespace, s: Setup, m: Measured, result: Any, chosen: list[Chosen],
           cost_model: Any, say: Say) -> None:
    """Print the table and the choices, then write the files into ``--out``."""
    rows = table_rows(result, s.thresholds)
    say("")
    say(format_header(result))
    say(format_table(rows, result))
    measured = s.cost_spec is not None and s.cost_spec.kind == "measured"
    reliable = not measured or m.timing_reliable
    if result.has_cost:
        # Routing against each model alone, on one accuracy-vs-cost front (each at its own price),
        # unless the measured timing spread too wide to give a verdict.
        say("\n" + cost_verdict(result, m, measured))
    for c in chosen:
        say(f"\nthreshold for {c.wording}, chosen on {c.where}:")
        say(f"  {str(c.choice).replace('on calibration data', f'on {c.on}')}")
        if c.cross_fit is not None:
            say("\n".join("  " + line for line in repr(c.cross_fit).splitlines()[1:]))
            say(crossfit_answer(c.cross_fit, reliable))
            continue
        point = c.point
        extra = "" if point.system_accuracy is None else f", system accuracy {point.system_accuracy:.4f}"
        cost = "" if point.savings is None else f", savings {point.savings:.1%}"
        cost = cost if reliable or not cost else f", {UNRELIABLE}"
        say(f"  on DATA: coverage {point.coverage:.1%}, accuracy on accepted {point.accepted_accuracy:.4f}{extra}{cost}")
    check_out(s.out, args.overwrite)  # again: the models took a while, the folder may have changed
    s.out.mkdir(parents=True, exist_ok=True)  # only now: a failed run leaves no empty folder behind
    files = write_outputs(s.out, args, result, rows, chosen, cost_model, m, s.calibration_doc, measured)
    if not args.no_plots:
        files.extend(plots(s.out, result, chosen[0].choice if chosen else None))
    say(f"\nwrote {', '.join(sorted(f.name for f in files))} to {s.out}/")


def run(args: argparse.Namespace, say: Say) -> int:
    """``confroute evaluate`` with parsed ``args``, printing through ``say``; returns the exit status."""
    from ...evaluation.evaluate import evaluate

    s = prepare(args)
    m = measure(args, s, say)
    cost_model = cost_model_of(s.cost_spec, m.seconds_per_input)
    scaler, cal_result = None, None
    if s.cal is not None:
        scaler, cal_result = calibrate_on_file(args, s, m, cost_model, say)
    if s.cal_spec.kind == "cross-fit":
        scaler = cross_fit_temperature(args, s, m, say)
    result = evaluate(labels=m.y, primary=m.pp, fallback=m.fp, calibrator=scaler, score=args.score,
                      cost_model=cost_model, stage_names=("primary", "fallback"))
    chosen = choose(args, s, m, result, cal_result, cost_model)
    report(args, s, m, result, chosen, cost_model, say)
    return 0
