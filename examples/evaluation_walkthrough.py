"""Walk-through behind docs/evaluation.md: calibrate, evaluate, choose a threshold, plot.

Data: scikit-learn's bundled digits (1,797 8x8 images, 10 classes; no download). The cheap
primary is a small neural network that only sees a 4x4 down-sampled image (over-confident, as
neural networks tend to be); the expensive fallback is a logistic regression on all 64 pixels.
Prices are illustrative: 1 unit per input for the primary, 10 for the fallback.

Run from the repository root::

    python examples/evaluation_walkthrough.py            # prints the figures quoted in the docs
    python examples/evaluation_walkthrough.py --figures  # also rewrites docs/img/*.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from confroute import CostModel, SklearnPredictor, ThresholdRouter, choose_thresholds, evaluate
from confroute.calibration.calibrators import IsotonicCalibrator, TemperatureScaler

IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def downsample(images: np.ndarray) -> np.ndarray:
    """8x8 -> 4x4 by keeping every other pixel: a deliberately weak, cheap input."""
    return images.reshape(-1, 8, 8)[:, ::2, ::2].reshape(len(images), -1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--figures", action="store_true", help="write docs/img/*.png")
    args = ap.parse_args()

    # -- data: train / calibration / test ------------------------------------------------------
    X, y = load_digits(return_X_y=True)
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, train_size=0.4, random_state=0, stratify=y)
    X_cal, X_test, y_cal, y_test = train_test_split(X_rest, y_rest, train_size=0.5, random_state=0,
                                                    stratify=y_rest)
    print(f"train {len(y_train)}, calibration {len(y_cal)}, test {len(y_test)}")

    cheap = make_pipeline(
        FunctionTransformer(downsample), StandardScaler(),
        MLPClassifier((32,), alpha=1e-5, max_iter=2000, random_state=0),
    ).fit(X_train, y_train)
    big = make_pipeline(StandardScaler(), LogisticRegression(C=100, max_iter=5000)).fit(X_train, y_train)

    # SklearnPredictor returns probabilities only: calibrators then work on log-probabilities.
    primary = SklearnPredictor(cheap, name="small_mlp")
    fallback = SklearnPredictor(big, name="logreg")

    # -- calibrate the primary on the calibration split ----------------------------------------
    cal_preds = primary.predict(X_cal)
    ts = TemperatureScaler().fit(cal_preds, y_cal)
    iso = IsotonicCalibrator().fit(cal_preds, y_cal)
    print(f"fitted temperature: {ts.temperature_:.2f}")

    # -- evaluate the router on the test split, every threshold at once (one Evaluation) -------
    cost = CostModel.per_sample([1.0, 10.0])
    router = ThresholdRouter(primary, fallback, threshold=0.9, calibrator=ts, cost_model=cost)
    result = evaluate(router, X_test, y_test, progress=False)
    print(result)

    # Same from precomputed arrays, comparing calibrators (raw, temperature, isotonic).
    test_primary = primary.predict(X_test)
    test_fallback = fallback.predict(X_test)
    by_cal = {}
    for name, cal in [("raw", None), ("temperature", ts), ("isotonic", iso)]:
        by_cal[name] = evaluate(labels=y_test, primary=test_primary, fallback=test_fallback,
                                calibrator=cal, cost_model=cost)
        r = by_cal[name]
        print(f"{name:>12}: ECE {r.ece:.3f}  AURC {r.aurc:.4f}  E-AURC {r.eaurc:.4f}  "
              f"distinct thresholds {r.n_thresholds - 1}")
    assert np.allclose(result.table["system_accuracy"], by_cal["temperature"].table["system_accuracy"])

    # -- choose a threshold on the calibration split, check it on the test split ---------------
    cal_result = evaluate(labels=y_cal, primary=cal_preds, fallback=fallback.predict(X_cal),
                          calibrator=ts, cost_model=cost)
    default = choose_thresholds(cal_result, target_accuracy=0.95, delta=0.1)  # the fallback procedure
    print(default)
    choice = choose_thresholds(cal_result, target_accuracy=0.95, delta=0.1, method="multistart")
    print(choice)
    test_point = result.at(choice)
    print(f"on test: accepted accuracy {test_point.accepted_accuracy:.4f}, coverage "
          f"{test_point.coverage:.1%}, system accuracy {test_point.system_accuracy:.4f}, "
          f"savings {test_point.savings:.1%}")
    system = choose_thresholds(cal_result, target_system_accuracy=0.92, delta=0.1)
    print(system)
    budget = choose_thresholds(cal_result, max_cost_per_input=6.0, delta=0.1)
    print(budget)

    # -- a choice goes to the router as it is; routing then matches the evaluation -------------
    router.thresholds = choice
    routed = router.route(X_test)
    assert np.isclose(routed.coverage, test_point.coverage)
    print(f"routed at the chosen threshold: {routed.coverage:.1%} answered by {routed.stage_names[0]}, "
          f"accuracy {np.mean(routed.labels == y_test):.4f} (labels are the digits themselves)")

    if args.figures:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from confroute.evaluation.plotting import (
            AccuracyThresholdDisplay,
            CostAccuracyDisplay,
            CostThresholdDisplay,
            ReliabilityDisplay,
            RiskCoverageDisplay,
        )

        IMG.mkdir(parents=True, exist_ok=True)
        ReliabilityDisplay.from_evaluation(by_cal["temperature"]).save(IMG / "reliability.png", dpi=90)  # raw and calibrated
        plt.close("all")

        ax = None
        for name, r in by_cal.items():
            display = RiskCoverageDisplay.from_evaluation(r, ax=ax, kind="accuracy", label=name)
            ax = display.ax_
        display.save(IMG / "accuracy_coverage.png", dpi=90)
        plt.close("all")

        fig, axes = plt.subplots(1, 3, figsize=(15.0, 3.8), layout="constrained")
        AccuracyThresholdDisplay.from_evaluation(result, ax=axes[0], choice=choice)
        CostThresholdDisplay.from_evaluation(result, ax=axes[1], choice=choice)
        CostAccuracyDisplay.from_evaluation(result, ax=axes[2], choice=choice).save(IMG / "summary.png", dpi=80)
        plt.close("all")
        for p in sorted(IMG.glob("*.png")):
            print(f"wrote {p.relative_to(IMG.parents[1])} ({p.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
