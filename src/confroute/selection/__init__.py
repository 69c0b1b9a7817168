"""Choosing thresholds, with or without a finite-sample guarantee.

One entry point, :func:`confroute.choose_thresholds` (:mod:`.choose`), reads the objective table
(:mod:`.objectives`) and returns one of the choices of :mod:`.choices`. The procedures:
:mod:`.two_stage`, :mod:`.per_class`, :mod:`.cascade`; cross-fitting on the evaluation data:
:mod:`.crossfit`; certificates: :mod:`.accepted`, :mod:`.paired`, :mod:`.relative`,
:mod:`.planner`, :mod:`.disagreements` (overview in :mod:`.certify`); bounds: :mod:`.bounds`;
populations with exact truth: :mod:`.simulate`.
"""
