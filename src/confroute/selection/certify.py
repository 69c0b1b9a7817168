"""Certificates for routing thresholds: an overview, and the names of every procedure in one place.

The procedures live in one module per idea: :mod:`.accepted` (accuracy on accepted inputs),
:mod:`.paired` (paired bounds), :mod:`.relative` (the paired certificate), :mod:`.planner` (label
budgets), :mod:`.disagreements` (labels on disagreements only) and :mod:`.certificate` (the
result type). This module re-exports them.

Every certificate here is a statement about the population the calibration inputs were drawn
from (i.i.d.), holding with probability at least ``1 - delta`` over that draw. Candidate
thresholds are walked from the strictest (the fallback answers everything) to the loosest, and the
loosest candidate the procedure certifies is returned, with the reason when none is.

Accepted accuracy (:func:`certify_accepted_accuracy`)
    "Accuracy of the cheap stage on the inputs it accepts >= target". One Clopper–Pearson test per
    candidate (Geifman & El-Yaniv 2017), combined across candidates by one of:

    ``"fallback"`` (default)
        The fallback procedure (Wiens 2003) over the candidates, strict to loose: an early chain
        from the top at ``0.4 delta``, a main start at ``n / 10`` accepted inputs that adds
        ``0.5 delta``, and restarts at doubling counts after it sharing ``0.1 delta``
        (:func:`fallback_weights`). A chain keeps its level while unbroken, so where it matters
        it is tested at the full ``delta``; one unlucky error among the few most confident
        inputs only costs the early chain's share.
    ``"single"``
        One fixed-sequence chain at ``delta`` from the first candidate that can pass.
    ``"multistart"``
        ``J`` chains from doubling start points, each at ``delta / J`` (the rule of
        the old default of ``choose_threshold``).
    ``"split"``
        Learn-then-Test (Angelopoulos et al. 2021): the order of the candidates is learned on a
        random part of the data (by its p-values) and fixed-sequence is run on the rest.
    ``"betting"``
        Fixed-sequence over a quantile grid of thresholds with a test-by-betting per candidate
        (Waudby-Smith & Ramdas 2024) instead of Clopper–Pearson; it reads the rows in a seeded
        random order (:func:`~confroute.selection.bounds.betting_order`), never in the order given.

    ``benchmarks/bench_certify.py`` compares them (docs/evaluation.md, "Certificates"): the
    fallback procedure has the highest mean coverage at n = 2,000 and never falls far behind the
    single chain where the single chain is best.

Paired relative accuracy (:func:`certify_relative_accuracy`)
    "System accuracy >= fallback accuracy - epsilon" (``kind="difference"``) or ">= (1 - epsilon)
    x fallback accuracy" (``kind="ratio"``), for two stages or any cascade. The routed system and
    the reference (the last stage) differ only on inputs some earlier stage answers *and* on which
    the two disagree, so per input the difference is ``G_i - L_i`` with ``L_i`` = "answered early,
    the early stage wrong, the reference right" (a loss) and ``G_i`` the other way round (a gain).
    Agreements carry no information and need no label. Bounds (``bound=``):

    ``"cp_losses"`` (default)
        Clopper–Pearson upper bound on the losses, ignoring gains (``P(L) - P(G) <= P(L)``).
        Difference: ``L`` out of ``n`` against ``epsilon``. Ratio: ``L`` out of the ``F`` inputs
        the reference gets right, against ``epsilon`` -- exact given which inputs those are, since
        ``P(L | reference right) <= epsilon`` implies the ratio target; no split of ``delta``.
        With labels on disagreements only, ``F`` is unknown and ``epsilon`` is multiplied by a
        lower bound on the reference's accuracy that you supply.
    ``"conditional"``
        Uses gains too: the discordance rate ``pi = P(L) + P(G)`` gets a Clopper–Pearson upper
        bound at ``delta / 2`` and, given the ``D`` discordant inputs, the share of losses among
        them ``q`` another one at ``delta / 2``; the drop ``pi (2 q - 1)`` is bounded by
        ``pi_U (2 q_U - 1)^+`` (union bound; the conditional bound is exact given ``D``). For a
        ratio, ``epsilon`` is multiplied by a Clopper–Pearson lower bound on the reference's
        accuracy at ``delta / 10`` and the rest of ``delta`` goes to the drop.
    ``"betting"``
        A test-by-betting on ``L_i - G_i - epsilon`` (``- epsilon * F_i`` for the ratio, with
        ``F_i`` = reference right; no split of ``delta``), over a quantile grid of candidates,
        reading the rows in a seeded random order (never in the order given).

    Candidates are combined by fixed-sequence testing from strict to loose at the full level.

Label budgets (:func:`needs_label`, :func:`certify_from_disagreements`, :func:`plan_labels`)
    The difference ``P(G) - P(L)`` depends on labels only where the early stage and the reference
    disagree, so with plenty of unlabelled traffic only the disagreements need a label (and for a
    ratio target, a lower bound on the reference's accuracy from elsewhere). Labels can be
    requested in candidate order (strict to loose) and requesting can stop at the first candidate
    that fails. :func:`plan_labels` estimates how many inputs (and labels) certify a target at a
    given coverage, from the disagreement and loss rates.

Candidate order must not depend on labels. Distinct calibration scores (two stages) or any path
of threshold tuples fixed from unlabelled data or from other data (cascades) qualify.

References
----------
Clopper & Pearson (1934). Biometrika 26(4).
Geifman & El-Yaniv (2017). Selective classification for deep neural networks. NeurIPS.
Wiens (2003). A fixed sequence Bonferroni procedure for testing multiple endpoints. Pharmaceutical
Statistics 2(3).
Angelopoulos, Bates, Candès, Jordan & Lei (2021). Learn then test. arXiv:2110.01052.
Waudby-Smith & Ramdas (2024). Estimating means of bounded random variables by betting. JRSS-B 86(1).
McNemar (1947). Note on the sampling error of the difference between correlated proportions or
percentages. Psychometrika 12(2) (only discordant pairs carry the paired difference).
"""

from __future__ import annotations

from ..core.decision import threshold_path  # moved to core.decision; still importable from here
from .accepted import (
    betting_min_count,
    certify_accepted_accuracy,
    fallback_weights,
    select_accepted,
    select_accepted_split,
)
from .certificate import ACCEPTED_METHODS, PAIRED_BOUNDS, Certificate
from .disagreements import certify_from_disagreements, needs_label
from .paired import paired_counts, paired_drop_upper, select_paired
from .planner import LabelPlan, plan_labels
from .relative import certify_relative_accuracy

__all__ = [
    "Certificate",
    "LabelPlan",
    "ACCEPTED_METHODS",
    "PAIRED_BOUNDS",
    "certify_accepted_accuracy",
    "certify_relative_accuracy",
    "certify_from_disagreements",
    "needs_label",
    "plan_labels",
    "select_accepted",
    "select_accepted_split",
    "select_paired",
    "paired_drop_upper",
    "fallback_weights",
    "betting_min_count",
    "paired_counts",
    "threshold_path",
]
