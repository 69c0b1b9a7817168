"""The embedded demo: routing on scikit-learn's bundled digits data (no download).

A cheap model (logistic regression on 4x4 pooled pixels) answers what it is sure of; an expensive
one (a 300-tree random forest on all 64 pixels) answers the rest. The demo calibrates the cheap
model, chooses a threshold on held-out calibration data with a statistical guarantee, routes the
test split, and prints accuracy, coverage, measured throughput and cost. Every number it prints
is computed when it runs.

Run it with ``confroute demo`` or ``python -m confroute demo`` (or ``bash tools/run.sh demo`` from a
fresh clone). It lived at ``confroute.demo`` before 0.3 (now a warned alias of this module).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..core._params import DELTA, PROPORTION
from ..core.cost import CostModel
from ..predictors.sklearn import SklearnPredictor
from ..routing.cascade import ThresholdRouter

__all__ = ["run_demo"]


def _pool(X: np.ndarray) -> np.ndarray:
    """8x8 digit images to 4x4 by averaging 2x2 blocks: a deliberately weaker, cheaper view."""
    return X.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)


def _throughput(predict: Callable[[Any], Any], X: np.ndarray, repeats: int = 5) -> float:
    """Inputs per second, best of ``repeats`` (the least disturbed run on a shared machine)."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(X)
        best = min(best, time.perf_counter() - t0)
    return len(X) / best


def _models(seed: int, say: Callable[[str], None]) -> tuple[Any, ...]:
    """The digits split and the two fitted models."""
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    X, y = load_digits(return_X_y=True)
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.5, random_state=seed, stratify=y)
    X_cal, X_test, y_cal, y_test = train_test_split(
        X_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest
    )
    cheap = make_pipeline(
        FunctionTransformer(_pool), StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)
    ).fit(X_train, y_train)
    expensive = RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=1).fit(X_train, y_train)
    say("confroute demo: scikit-learn digits (10 classes, bundled with scikit-learn; no download)")
    say(f"  split: {len(X_train)} train / {len(X_cal)} calibration / {len(X_test)} test")
    say("  cheap:     logistic regression on 4x4 pooled pixels")
    say("  expensive: random forest, 300 trees, all 64 pixels")
    return cheap, expensive, X_cal, y_cal, X_test, y_test


def run_demo(
    seed: int = 0,
    target_accuracy: float = 0.97,
    delta: float = 0.1,
    plot_dir: str | Path | None = None,
    print_fn: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo and return its figures (the printed numbers) as a dict.

    Parameters
    ----------
    seed : int
        Seed of the data split and of the models.
    target_accuracy : float
        Accuracy the cheap model must keep on the inputs it answers.
    delta : float
        The guarantee holds with probability ``1 - delta`` over the calibration sample.
    plot_dir : path, optional
        Also write PNG figures there (needs matplotlib).
    print_fn : callable
        Where the report goes.
    """
    from ..calibration.calibrators import TemperatureScaler
    from ..evaluation.evaluate import evaluate
    from ..selection.choose import choose_thresholds

    PROPORTION.check(target_accuracy, "target_accuracy")
    DELTA.check(delta, "delta")
    say = print_fn
    cheap, expensive, X_cal, y_cal, X_test, y_test = _models(seed, say)
    primary = SklearnPredictor(cheap, name="cheap")
    fallback = SklearnPredictor(expensive, name="expensive")

    # Measured throughput (single thread) prices the stages for the "measured" cost model.
    tp_cheap = _throughput(cheap.predict_proba, X_test)
    tp_exp = _throughput(expensive.predict_proba, X_test)
    say(f"  measured throughput (1 thread): cheap {tp_cheap:,.0f}/s, expensive {tp_exp:,.0f}/s "
        f"({tp_exp and tp_cheap / tp_exp:.0f}x)")

    # 1. Calibrate the cheap model on the calibration split (its log-probabilities: sklearn has
    #    no logits for a pipeline, and log-probs differ from logits by a per-row constant).
    #    Labels are the digits themselves, as the estimators know them.
    cal_preds = primary.predict(X_cal)
    scaler = TemperatureScaler().fit(cal_preds, y_cal)
    say(f"\n1. temperature scaling on the calibration split: T = {scaler.temperature_:.3f}")

    # 2. Choose the threshold on the calibration split, with the guarantee.
    study_prices = CostModel.per_sample([0.001, 0.005], names=["cheap", "expensive"])
    cal_eval = evaluate(
        labels=y_cal, primary=cal_preds, fallback=fallback.predict(X_cal),
        calibrator=scaler, cost_model=study_prices, stage_names=("cheap", "expensive"),
    )
    choice = choose_thresholds(cal_eval, target_accuracy=target_accuracy, delta=delta)
    say(f"2. threshold for >= {target_accuracy:.0%} accuracy on accepted inputs "
        f"(probability {1 - delta:.0%}), chosen on the calibration split:")
    say(f"   {choice}")

    # 3. Evaluate every threshold on the test split: each model runs once.
    router = ThresholdRouter(
        primary, fallback, threshold=choice, calibrator=scaler, cost_model=study_prices,
        names=("cheap", "expensive"),
    )
    test_eval = evaluate(router, X_test, y_test, progress=False)
    say("\n3. every threshold on the test split (each model run once):")
    say("\n".join("   " + line for line in repr(test_eval).splitlines()))
    figures = _route(router, X_test, y_test, test_eval, study_prices, (tp_cheap, tp_exp), target_accuracy, say)
    if plot_dir is not None:
        out = Path(plot_dir)
        out.mkdir(parents=True, exist_ok=True)
        test_eval.plot("summary", path=out / "demo_summary.png")
        test_eval.plot("reliability", path=out / "demo_reliability.png")
        say(f"\nplots written to {out}/")
    return {"temperature": float(scaler.temperature_), "choice": choice.to_dict(), **figures}


def _route(router: Any, X_test: np.ndarray, y_test: np.ndarray, test_eval: Any, study_prices: CostModel,
           throughputs: tuple[float, float], target_accuracy: float, say: Callable[[str], None]) -> dict[str, Any]:
    """4. Route the test split for real, and report accuracy and savings."""
    tp_cheap, tp_exp = throughputs
    result = router.route(X_test)
    correct = result.labels == y_test  # labels in the user's label space, as sklearn's predict
    acc_exp = test_eval.stage_accuracy["expensive"]
    say(f"\n4. routed the test split at threshold {router.threshold:.4g}:")
    say("\n".join("   " + line for line in repr(result).splitlines()))
    accepted = result.stage == 0
    say(f"   accuracy on the {accepted.sum()} inputs the cheap model kept: {correct[accepted].mean():.2%} "
        f"(target {target_accuracy:.0%})")
    say(f"   system accuracy {correct.mean():.2%} vs expensive alone {acc_exp:.2%} "
        f"({correct.mean() / acc_exp:.1%} of it); cheap alone {test_eval.stage_accuracy['cheap']:.2%}")

    saved_study = study_prices.savings(result)
    measured = CostModel.hourly([(1.0, tp_cheap), (1.0, tp_exp)], names=["cheap", "expensive"])
    saved_measured = measured.savings(result)
    say(f"   study prices ($0.001 / $0.005 per input): {saved_study}")
    say(f"   measured compute time: {measured.time(result) * 1e3:.1f} ms routed vs "
        f"{len(result) / tp_exp * 1e3:.1f} ms expensive-only ({saved_measured.fraction:.1%} saved)")
    return {
        "threshold": float(router.thresholds[0]),
        "coverage": result.coverage,
        "accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else float("nan"),
        "system_accuracy": float(correct.mean()),
        "expensive_accuracy": acc_exp,
        "cheap_accuracy": test_eval.stage_accuracy["cheap"],
        "savings_study_prices": saved_study.fraction,
        "savings_measured": saved_measured.fraction,
    }


def add_demo_parser(sub: Any) -> Any:
    """Register ``demo`` on the top-level subparsers."""
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
    demo.set_defaults(func=run_demo_command)
    return demo


def run_demo_command(args: Any) -> int:
    """Entry point of ``confroute demo``."""
    try:
        PROPORTION.check(args.target_accuracy, "--target-accuracy")
        DELTA.check(args.delta, "--delta")
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    run_demo(seed=args.seed, target_accuracy=args.target_accuracy, delta=args.delta, plot_dir=args.plots)
    return 0
