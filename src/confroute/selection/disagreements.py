"""Labels on disagreements only: which inputs need a label for a paired certificate, and the
certificate from those labels.

The difference ``P(G) - P(L)`` between the routed system and the reference depends on labels only
where the early stage and the reference disagree, so with plenty of unlabelled traffic only the
disagreements need a label (and for a ratio target, a lower bound on the reference's accuracy
from elsewhere). Labels can be requested in candidate order (strict to loose), and requesting can
stop at the first candidate that fails.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import decision
from .certificate import Certificate
from .relative import certify_relative_accuracy

__all__ = ["needs_label", "certify_from_disagreements"]


def needs_label(predictions: Any, *, scores: Any = None, threshold: float = -np.inf,
                answered_by: Any = None) -> np.ndarray:
    """Which inputs need a label for a paired relative certificate: the disagreements.

    Parameters
    ----------
    predictions : array, shape (S, n)
        Every stage's predicted class for every (unlabelled) input; the last row is the
        reference.
    scores : array, shape (n,), optional
        The cheap stage's scores (two stages): only inputs it would accept at ``threshold``
        (default: any) can matter.
    threshold : float
        The loosest threshold you will consider.
    answered_by : array of int, shape (H, n), optional
        For a cascade: inputs that some candidate answers early with a stage that disagrees
        with the reference.

    Returns
    -------
    numpy.ndarray of bool, shape (n,)

    Examples
    --------
    >>> preds = np.array([["a", "b", "a", "b"], ["a", "a", "a", "b"]])
    >>> needs_label(preds).tolist()
    [False, True, False, False]
    """
    p = np.asarray(predictions)
    if p.ndim != 2 or p.shape[0] < 2:
        raise ValueError(f"predictions must have shape (stages >= 2, n), got {p.shape}")
    ref = p[-1]
    if answered_by is not None:
        a = np.asarray(answered_by)
        if a.ndim == 1:
            a = a[None, :]
        ans = p[a, np.arange(p.shape[1])]
        return ((a != p.shape[0] - 1) & (ans != ref)).any(axis=0)
    if p.shape[0] != 2:
        raise ValueError("more than two stages: give answered_by= to say which stage answers")
    keep = np.ones(p.shape[1], bool) if scores is None else decision.accepts(scores, None, threshold)
    return keep & (p[0] != ref)


def certify_from_disagreements(
    predictions: Any, labels: Any, *, scores: Any = None, answered_by: Any = None, candidates: Any = None,
    epsilon: float, kind: str = "difference", delta: float = 0.05, bound: str = "cp_losses",
    reference_lower: float | None = None, random_state: int | None = 0,
) -> Certificate:
    """Certify a paired target from unlabelled inputs plus labels on the disagreements only.

    Parameters
    ----------
    predictions : array, shape (S, n)
        Every stage's predicted class for every input (the last row is the reference).
    labels : array, shape (n,)
        True classes where known; any value (e.g. ``None`` in an object array, or -1) elsewhere,
        as given by ``labelled``: the inputs :func:`needs_label` selects must all be labelled.
        Give a masked array (``numpy.ma``) to mark unknown labels.
    scores, answered_by, candidates, epsilon, kind, delta, bound
        As in :func:`certify_relative_accuracy`.
    reference_lower : float, optional
        Required for ``kind="ratio"``: a lower bound on the reference's accuracy established on
        other (labelled) data; agreements carry no information about it.
    random_state : int or None, default 0
        ``bound="betting"``: the seed of the random order the rows are read in (see
        :func:`~confroute.selection.relative.certify_relative_accuracy`).

    Returns
    -------
    Certificate
        ``labels_used`` counts the labels the certificate depends on: the disagreements answered
        early up to the first candidate that failed. Labelling in candidate order (strict to
        loose) and stopping there gives the same certificate as labelling every disagreement.

    Examples
    --------
    >>> preds = np.array([[0, 1, 1, 0] * 500, [0, 1, 0, 0] * 500])   # disagree on 1 input in 4
    >>> y = np.ma.masked_all(2000, dtype=int)
    >>> ask = needs_label(preds, scores=np.tile([0.9, 0.8, 0.3, 0.7], 500))
    >>> y[ask] = 0                                   # the reference is right on all of them
    >>> c = certify_from_disagreements(preds, y, scores=np.tile([0.9, 0.8, 0.3, 0.7], 500),
    ...                                epsilon=0.01, kind="difference")
    >>> c.certified, c.coverage, c.labels_used
    (True, 0.75, 500)
    """
    p = np.asarray(predictions)
    if kind == "ratio" and reference_lower is None:
        raise ValueError("kind='ratio' from disagreement labels needs reference_lower= (a lower bound on the "
                         "reference's accuracy from labelled data); or certify kind='difference'")
    ask = needs_label(p, answered_by=answered_by)
    y = labels
    known = ~np.ma.getmaskarray(y) if isinstance(y, np.ma.MaskedArray) else np.ones(p.shape[1], bool)
    missing = ask & ~known
    if missing.any():
        raise ValueError(f"{int(missing.sum())} disagreement(s) have no label (first at index "
                         f"{int(np.flatnonzero(missing)[0])}); label every input needs_label() selects")
    yv = np.ma.getdata(y) if isinstance(y, np.ma.MaskedArray) else np.asarray(y)
    # Agreements: the value of correctness does not matter (equal for both), use "both right".
    correct = np.where(ask[None, :], p == yv[None, :], True)
    cert = certify_relative_accuracy(scores, correct, answered_by=answered_by, candidates=candidates,
                                     epsilon=epsilon, kind=kind, delta=delta, bound=bound,
                                     reference_lower=reference_lower, random_state=random_state)
    # Labels a labeller walking the candidates in order needs: the disagreements answered early
    # up to the first candidate that fails (the test never looks past it).
    if scores is not None:
        t, _, _ = decision.threshold_path(scores)
        nxt = t[min(cert.index + 1, t.size - 1)]
        used = int((ask & decision.accepts(scores, None, nxt)).sum())
    else:
        a = np.asarray(answered_by)
        a = a[None, :] if a.ndim == 1 else a
        rows = a[: min(cert.index + 1, a.shape[0])]
        used = int((ask & ((rows != p.shape[0] - 1) & (p[rows, np.arange(p.shape[1])] != p[-1])).any(axis=0)).sum())
    return Certificate(**{**cert.__dict__, "labels_used": used,
                          "empirical": cert.empirical if kind == "difference" else float("nan"),
                          "bound": cert.bound if kind == "difference" else None})
