"""The README's first example, runnable: two tiny scikit-learn models on the bundled digits data.

The code between the two ``# --- README`` lines is README.md's first snippet, word for word
(tests/test_install.py checks it); the lines above it only make ``cheap_model``, ``big_model``,
``inputs``, ``cal_inputs`` and ``cal_labels``. ``result.to_pandas()`` needs the pandas extra::

    pip install "confroute[pandas]"      # or, from a clone: pip install ".[pandas]"
    python examples/quickstart.py

tools/check_wheel.sh runs this file against the built wheel on Python 3.10-3.13.
"""

from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer


def pool(X):
    """8x8 digit images to 4x4 by averaging 2x2 blocks: the cheap model sees less."""
    return X.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)


X, y = load_digits(return_X_y=True)
X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
cal_inputs, inputs, cal_labels, labels = train_test_split(X_rest, y_rest, test_size=0.4, random_state=0,
                                                          stratify=y_rest)
cheap_model = make_pipeline(FunctionTransformer(pool), LogisticRegression(max_iter=2000)).fit(X_train, y_train)
big_model = RandomForestClassifier(n_estimators=100, random_state=0).fit(X_train, y_train)

# --- README snippet begins
from confroute import ThresholdRouter, SklearnPredictor, Fallback, CostModel, evaluate, choose_thresholds

router = ThresholdRouter(
    primary=SklearnPredictor(cheap_model),                  # sees every input once
    fallback=Fallback(SklearnPredictor(big_model),          # sees only the deferred inputs
                      on_error="keep_previous", retries=2, timeout=5.0),
    threshold=0.8,                                          # accept when max prob >= 0.8
    cost_model=CostModel.per_sample([0.001, 0.005]),
)
result = router.route(inputs)          # one row per input, in input order
result.labels, result.stage, result.total_cost, result.to_pandas()   # labels: your own class values

# Let labelled held-out data choose the threshold, with a finite-sample guarantee:
evaluation = evaluate(router, cal_inputs, cal_labels)   # every threshold at once, each model run once
choice = choose_thresholds(evaluation, target_system_accuracy=0.9, delta=0.05)
router.thresholds = choice             # or ThresholdRouter(primary, fallback, choice)
# --- README snippet ends

routed = router.route(inputs)
answered = (routed.stage == 0).mean()
print(result.to_pandas().head(3))
print(f"chosen threshold {choice.thresholds[0]:.3f}: the cheap model answers {answered:.0%} of {len(labels)} "
      f"test inputs, system accuracy {(routed.labels == labels).mean():.3f}, total cost {routed.total_cost:.3f}")
assert choice.feasible, choice
print("quickstart OK")
