"""The bucket model of benchmarks/bench_deepsparse_lengths.py, against a brute-force count."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_deepsparse_lengths import BATCH, STATIC, modelled_seconds  # noqa: E402


def test_modelled_seconds_matches_a_brute_force_count():
    rng = np.random.default_rng(0)
    seconds = {8: 0.04, 12: 0.07, 16: 0.22, 32: 0.34, 40: 0.21, 48: 0.24, STATIC: 0.31}
    for _ in range(50):
        lengths = rng.integers(3, STATIC + 1, size=int(rng.integers(1, 5 * BATCH)))
        n_batches = -(-len(lengths) // BATCH)
        assert modelled_seconds(lengths, seconds, None) == n_batches * seconds[STATIC]
        ordered = np.sort(lengths)
        batches = [int(ordered[i : i + BATCH].max()) for i in range(0, len(lengths), BATCH)]
        buckets = (12, 40, STATIC)
        expected = sum(seconds[min(b for b in buckets if b >= need)] for need in batches)
        assert np.isclose(modelled_seconds(lengths, seconds, buckets), expected)
        best = sum(min(t for n, t in seconds.items() if n >= need) for need in batches)
        ceiling = modelled_seconds(lengths, seconds, ())
        assert np.isclose(ceiling, best)
        # No bucket set beats the ceiling.
        for subset in ((STATIC,), (16, 32, STATIC), (8, 12, 40, 48, STATIC)):
            assert modelled_seconds(lengths, seconds, subset) >= ceiling - 1e-12
