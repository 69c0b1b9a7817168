"""Post-hoc calibration of a stage's confidence: temperature, vector scaling, isotonic, binning.

Every calibrator follows the protocol the router uses::

    calibrator.fit(log_scores, labels)       # returns self
    calibrator.transform(log_scores) -> probs

where ``log_scores`` is ``predictions.log_scores()``: the **logits** when the backend exposes
them, otherwise the **log-probabilities** ``log(probs)``. You may also pass a
:class:`~confroute.Predictions` directly, and its ``log_scores()`` are used.

Logits versus probabilities
---------------------------
Log-probabilities equal the logits minus a per-row constant (the log of the softmax
denominator). Softmax ignores per-row constants, so :class:`TemperatureScaler` gives *exactly the
same* result on either: fitting on ``log(probs)`` is correct when a backend (DeepSparse, most HTTP
APIs) only returns probabilities. :class:`VectorScaler` multiplies each class column by its own
weight, which does not cancel that constant: fitted on log-probabilities it is a different (still
valid) model than fitted on logits, so fit and apply it on the same kind of input.
:class:`IsotonicCalibrator` and :class:`HistogramBinning` work on the probabilities
``softmax(log_scores)``, which are the same either way.

Probabilities are never silently treated as logits: an input that looks like a probability
matrix (values in [0, 1], rows summing to one) raises a warning, because temperature-scaling
probabilities as if they were logits is a silent, badly wrong calibration. Pass ``np.log(probs)``
or the :class:`~confroute.Predictions` object instead.

References
----------
Guo, Pleiss, Sun & Weinberger (2017). On calibration of modern neural networks. ICML
(temperature and vector scaling).
Zadrozny & Elkan (2001, 2002). Obtaining calibrated probability estimates from decision trees and
naive Bayesian classifiers; Transforming classifier scores into accurate multiclass probability
estimates. ICML / KDD (histogram binning, isotonic regression, one-vs-rest).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import log_softmax, logsumexp

from sklearn.base import BaseEstimator

from ..core.classes import label_indices
from ..core.estimators import check_is_fitted
from ..core.types import Predictions, softmax
from ..exceptions import CalibrationWarning, ClassMismatchError

__all__ = [
    "TemperatureScaler",
    "VectorScaler",
    "IsotonicCalibrator",
    "HistogramBinning",
    "CalibrationWarning",
]



def _as_log_scores(x: Any, where: str) -> np.ndarray:
    if isinstance(x, Predictions):
        return x.log_scores()
    z = np.asarray(x, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"{where}: log_scores must have shape (n_inputs, n_classes >= 2), got {z.shape}")
    if not np.isfinite(z).all():
        row = int(np.flatnonzero(~np.isfinite(z).all(axis=1))[0])
        raise ValueError(f"{where}: log_scores are not finite in row {row} ({z[row].tolist()})")
    if z.shape[0] and z.min() >= 0.0 and z.max() <= 1.0 and np.allclose(z.sum(axis=1), 1.0, atol=1e-3):
        warnings.warn(
            f"{where}: the input looks like probabilities (values in [0, 1], rows sum to 1), but "
            "calibrators take logits or log-probabilities; pass np.log(probs) or the Predictions "
            "object (its log_scores() does this)",
            CalibrationWarning,
            stacklevel=3,
        )
    return z


class _Calibrator(BaseEstimator):
    """Shared plumbing: input checks, ``fit_transform``, the fitted-state check.

    ``fit`` takes a :class:`~confroute.Predictions` (labels are then matched to its classes by
    value: class names or the model's own label values) or a logit matrix (labels are then
    column indices ``0 .. k-1``).
    """

    n_classes_: int

    def _fit_inputs(self, log_scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
        name = type(self).__name__
        z = _as_log_scores(log_scores, f"{name}.fit")
        if z.shape[0] == 0:
            raise ValueError(f"{name}.fit: need at least one input")
        classes = log_scores.classes if isinstance(log_scores, Predictions) else None
        y = np.asarray(labels)
        if y.shape != (z.shape[0],):
            raise ValueError(f"{name}.fit: labels must have shape ({z.shape[0]},), got {y.shape}")
        if classes is None and y.dtype.kind in "USO":
            raise ClassMismatchError(
                f"{name}.fit: the labels are class names but a bare logit matrix has no class names; "
                "pass the Predictions object (with classes) instead of its logits, or give column indices"
            )
        return z, label_indices(y, classes, z.shape[1], owner=f"{name}.fit's predictions")

    def _transform_input(self, log_scores: Any) -> np.ndarray:
        name = type(self).__name__
        check_is_fitted(self, "n_classes_")
        z = _as_log_scores(log_scores, f"{name}.transform")
        if z.shape[1] != self.n_classes_:
            raise ValueError(
                f"{name}.transform: fitted on {self.n_classes_} classes, got {z.shape[1]} columns"
            )
        return z

    def fit(self, log_scores: Any, labels: Any) -> _Calibrator:  # pragma: no cover - abstract
        raise NotImplementedError

    def transform(self, log_scores: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit_transform(self, log_scores: Any, labels: Any) -> np.ndarray:
        """``fit(log_scores, labels).transform(log_scores)``."""
        return self.fit(log_scores, labels).transform(log_scores)

    def calibrate(self, predictions: Predictions) -> Predictions:
        """A new :class:`~confroute.Predictions` with calibrated probabilities (same classes).

        Its ``logits`` are ``None``: the raw logits no longer match the calibrated probabilities.
        """
        return Predictions(self.transform(predictions), None, predictions.classes)


class TemperatureScaler(_Calibrator):
    """Temperature scaling: ``probs = softmax(log_scores / T)`` with one fitted ``T > 0``.

    ``T`` minimises the negative log-likelihood on held-out data (Guo et al. 2017). The search
    runs over ``log T`` with a bounded Brent method (:func:`scipy.optimize.minimize_scalar`); the
    NLL is convex in ``1/T``, so it has a single minimum and the 1-D search finds it reliably,
    with no step size to tune. ``T > 1`` softens over-confident models; ``T < 1`` sharpens.
    Temperature scaling never changes the arg-max label, only the confidence.

    Works identically on logits and log-probabilities (see the module notes).

    Parameters
    ----------
    bounds : (float, float), default (0.01, 100.0)
        Search range for ``T``. A fit that ends on a bound warns (:class:`CalibrationWarning`).
    xatol : float, default 1e-6
        Tolerance on ``log T``.

    Attributes
    ----------
    temperature_ : float
    n_classes_ : int
    nll_before_, nll_after_ : float
        Mean NLL on the fitting data at ``T = 1`` and at the fitted ``T``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(size=(2000, 3)) * 3
    >>> labels = np.array([rng.choice(3, p=p) for p in softmax(logits / 2.0)])
    >>> ts = TemperatureScaler().fit(logits, labels)
    >>> round(ts.temperature_, 1)
    2.0
    >>> ts.transform(logits).shape
    (2000, 3)
    """

    def __init__(self, bounds: tuple[float, float] = (0.01, 100.0), xatol: float = 1e-6) -> None:
        self.bounds = bounds
        self.xatol = xatol

    def fit(self, log_scores: Any, labels: Any) -> TemperatureScaler:
        """Fit ``T`` on held-out logits (or log-probabilities) and true class indices."""
        z, y = self._fit_inputs(log_scores, labels)
        lo, hi = (float(b) for b in self.bounds)
        if not 0 < lo < hi:
            raise ValueError(f"bounds must satisfy 0 < low < high, got {self.bounds}")
        rows = np.arange(z.shape[0])
        # Shift each row so its max is 0: softmax-invariant and keeps exp() in range.
        z = z - z.max(axis=1, keepdims=True)
        true = z[rows, y]

        def nll(log_t: float) -> float:
            inv_t = np.exp(-log_t)
            return float(np.mean(logsumexp(z * inv_t, axis=1) - true * inv_t))

        res = minimize_scalar(
            nll, bounds=(np.log(lo), np.log(hi)), method="bounded", options={"xatol": self.xatol}
        )
        log_t, best = float(res.x), float(res.fun)
        # The NLL can be flat (underflowing to 0 on separable data) or still falling at a bound:
        # then the bound itself is as good as the interior point Brent stopped at.
        at_edge = False
        for edge in (np.log(lo), np.log(hi)):
            value = nll(edge)
            if value <= best + 1e-12 * max(1.0, abs(best)) or abs(log_t - edge) < 1e-3:
                log_t, best, at_edge = float(edge), min(best, value), True
                break
        if at_edge:
            warnings.warn(
                f"TemperatureScaler: the fitted temperature {np.exp(log_t):.4g} is at the edge of "
                f"the search range {self.bounds}; the data may be separable or the inputs may not "
                "be logits",
                CalibrationWarning,
                stacklevel=2,
            )
        self.temperature_ = float(np.exp(log_t))
        self.n_classes_ = int(z.shape[1])
        self.nll_before_ = nll(0.0)
        self.nll_after_ = best
        return self

    def transform(self, log_scores: Any) -> np.ndarray:
        """Calibrated probabilities ``softmax(log_scores / temperature_)``."""
        z = self._transform_input(log_scores)
        return softmax(z / self.temperature_)

    def __repr__(self) -> str:
        fitted = f", temperature_={self.temperature_:.4g}" if hasattr(self, "temperature_") else ""
        return f"TemperatureScaler(bounds={self.bounds}{fitted})"


class VectorScaler(_Calibrator):
    """Vector scaling: ``probs = softmax(w * log_scores + b)`` with one weight and bias per class.

    A generalisation of temperature scaling (Guo et al. 2017) fitted by L-BFGS on the NLL with an
    analytic gradient, starting from ``w = 1, b = 0``. It has ``2k`` parameters, so it needs more
    held-out data than :class:`TemperatureScaler`, and unlike it can change the arg-max label.
    A small L2 penalty ``l2 * (|w - 1|^2 + |b|^2)`` keeps it stable on little data.

    Parameters
    ----------
    l2 : float, default 1e-4
        Strength of the penalty pulling the parameters towards the identity map.
    max_iter : int, default 500

    Attributes
    ----------
    weights_, bias_ : ndarray of shape (k,)
    n_classes_ : int

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> logits = rng.normal(size=(3000, 3)) * 3
    >>> labels = np.array([rng.choice(3, p=p) for p in softmax(logits / 2.0)])
    >>> vs = VectorScaler().fit(logits, labels)
    >>> bool(np.allclose(vs.weights_, 0.5, atol=0.1))
    True
    """

    def __init__(self, l2: float = 1e-4, max_iter: int = 500) -> None:
        self.l2 = l2
        self.max_iter = max_iter

    def fit(self, log_scores: Any, labels: Any) -> VectorScaler:
        """Fit per-class weights and biases on held-out log-scores and class indices."""
        z, y = self._fit_inputs(log_scores, labels)
        n, k = z.shape
        z = z - z.max(axis=1, keepdims=True)
        onehot = np.zeros_like(z)
        onehot[np.arange(n), y] = 1.0

        def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[:k], theta[k:]
            a = z * w + b
            logp = log_softmax(a, axis=1)
            loss = -np.sum(logp * onehot) / n + self.l2 * (np.sum((w - 1) ** 2) + np.sum(b**2))
            resid = (np.exp(logp) - onehot) / n
            gw = np.sum(resid * z, axis=0) + 2 * self.l2 * (w - 1)
            gb = np.sum(resid, axis=0) + 2 * self.l2 * b
            return float(loss), np.concatenate([gw, gb])

        theta0 = np.concatenate([np.ones(k), np.zeros(k)])
        res = minimize(loss_grad, theta0, jac=True, method="L-BFGS-B",
                       options={"maxiter": self.max_iter})
        if not res.success:
            warnings.warn(f"VectorScaler: L-BFGS did not converge ({res.message})",
                          CalibrationWarning, stacklevel=2)
        self.weights_ = res.x[:k].copy()
        self.bias_ = res.x[k:].copy()
        self.n_classes_ = k
        return self

    def transform(self, log_scores: Any) -> np.ndarray:
        """Calibrated probabilities ``softmax(weights_ * log_scores + bias_)``."""
        z = self._transform_input(log_scores)
        z = z - z.max(axis=1, keepdims=True)
        return softmax(z * self.weights_ + self.bias_)

    def __repr__(self) -> str:
        return f"VectorScaler(l2={self.l2})"


class _OneVsRest(_Calibrator):
    """Calibrate each class column of ``softmax(log_scores)`` on its own, then renormalise rows.

    A row whose calibrated values are all zero (every class mapped to 0) keeps its uncalibrated
    probabilities, so ``transform`` always returns rows that sum to one.
    """

    def fit(self, log_scores: Any, labels: Any) -> _OneVsRest:
        z, y = self._fit_inputs(log_scores, labels)
        p = softmax(z)
        self.n_classes_ = int(p.shape[1])
        self._maps = [self._fit_column(p[:, c], (y == c).astype(np.float64)) for c in range(p.shape[1])]
        return self

    def transform(self, log_scores: Any) -> np.ndarray:
        p = softmax(self._transform_input(log_scores))
        q = np.column_stack([self._apply_column(m, p[:, c]) for c, m in enumerate(self._maps)])
        q = np.clip(q, 0.0, None)
        sums = q.sum(axis=1, keepdims=True)
        ok = sums[:, 0] > 0
        out = p.copy()
        out[ok] = q[ok] / sums[ok]
        return out

    def _fit_column(self, p: np.ndarray, target: np.ndarray) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _apply_column(self, fitted: Any, p: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class IsotonicCalibrator(_OneVsRest):
    """One-vs-rest isotonic regression on each class probability, rows renormalised.

    For each class ``c`` a non-decreasing map of ``p_c`` onto ``[0, 1]`` is fitted to the 0/1
    target ``y == c`` (Zadrozny & Elkan 2002, with scikit-learn's ``IsotonicRegression``); the
    calibrated columns are renormalised to sum to one. More flexible than temperature scaling
    (any monotone distortion) but needs more data, can change the arg-max label, and maps
    ranges of inputs to the same value: many tied confidences mean fewer distinct thresholds
    to route on.

    Attributes
    ----------
    n_classes_ : int
    regressors_ : list of sklearn.isotonic.IsotonicRegression

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> logits = rng.normal(size=(2000, 2)) * 4
    >>> labels = np.array([rng.choice(2, p=p) for p in softmax(logits / 3.0)])
    >>> iso = IsotonicCalibrator().fit(logits, labels)
    >>> probs = iso.transform(logits)
    >>> bool(np.allclose(probs.sum(axis=1), 1.0))
    True
    """

    def _fit_column(self, p: np.ndarray, target: np.ndarray) -> Any:
        from sklearn.isotonic import IsotonicRegression

        return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, target)

    def _apply_column(self, fitted: Any, p: np.ndarray) -> np.ndarray:
        return np.asarray(fitted.predict(p), dtype=np.float64)

    @property
    def regressors_(self) -> list[Any]:
        if not hasattr(self, "_maps"):
            raise AttributeError("IsotonicCalibrator is not fitted yet")
        return list(self._maps)

    def __repr__(self) -> str:
        return "IsotonicCalibrator()"


class HistogramBinning(_OneVsRest):
    """One-vs-rest histogram binning: each class probability is replaced by its bin's frequency.

    Per class, the probabilities are cut into ``n_bins`` equal-mass bins on the fitting data and
    each bin maps to the share of its inputs whose true class is that class (Zadrozny & Elkan
    2001); rows are renormalised. ``prior`` pseudo-counts shrink sparse bins towards the class
    frequency. The simplest non-parametric calibrator: a baseline to compare others against.

    Parameters
    ----------
    n_bins : int, default 15
    prior : float, default 1.0
        Pseudo-count of the class base rate added to each bin.

    Attributes
    ----------
    n_classes_ : int
    bin_edges_ : list of ndarray
        Inner bin edges per class.
    bin_values_ : list of ndarray
        Calibrated probability per bin, per class.

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> logits = rng.normal(size=(3000, 2)) * 4
    >>> labels = np.array([rng.choice(2, p=p) for p in softmax(logits / 3.0)])
    >>> hb = HistogramBinning(n_bins=10).fit(logits, labels)
    >>> len(hb.bin_values_[0])
    10
    """

    def __init__(self, n_bins: int = 15, prior: float = 1.0) -> None:
        self.n_bins = n_bins
        self.prior = prior

    def _fit_column(self, p: np.ndarray, target: np.ndarray) -> Any:
        if not isinstance(self.n_bins, (int, np.integer)) or self.n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {self.n_bins!r}")
        inner = np.unique(np.quantile(p, np.linspace(0, 1, self.n_bins + 1)[1:-1]))
        idx = np.searchsorted(inner, p, side="left")
        nb = inner.size + 1
        count = np.bincount(idx, minlength=nb)
        pos = np.bincount(idx, weights=target, minlength=nb)
        base = float(target.mean())
        values = (pos + self.prior * base) / (count + self.prior) if self.prior > 0 else np.where(
            count > 0, pos / np.maximum(count, 1), base
        )
        return inner, values

    def _apply_column(self, fitted: Any, p: np.ndarray) -> np.ndarray:
        inner, values = fitted
        return values[np.searchsorted(inner, p, side="left")]

    @property
    def bin_edges_(self) -> list[np.ndarray]:
        return [m[0] for m in self._maps]

    @property
    def bin_values_(self) -> list[np.ndarray]:
        return [m[1] for m in self._maps]

    def __repr__(self) -> str:
        return f"HistogramBinning(n_bins={self.n_bins}, prior={self.prior})"
