"""A local Ray instance for tests, and a comparison of routed tables."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest

#: Scores may differ in the last bits: a model's floats can depend on which rows share its batch
#: (BLAS kernels; padding to the longest text), and Ray batches rows differently from ``route``.
CLOSE = dict(rtol=1e-12, atol=1e-15)


def local_ray(*modules: ModuleType) -> Iterator[Any]:
    """Start Ray with 2 CPUs (no dashboard, quiet), yield the module, shut it down.

    ``modules`` (test modules defining routers or factories) are pickled by value, since Ray
    workers cannot import test files.
    """
    ray = pytest.importorskip("ray", reason="the Ray tests need Ray Data: pip install 'confroute[ray]'")
    pytest.importorskip("ray.data", reason="the Ray tests need Ray Data: pip install 'confroute[ray]'")
    from ray import cloudpickle

    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             configure_logging=True)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    try:
        yield ray
    finally:
        ray.shutdown()
        for module in modules:
            cloudpickle.unregister_pickle_by_value(module)


def _nullable(values: Any) -> list[Any]:
    import pandas as pd

    # Missing strings come back as None, NaN or pd.NA depending on the pandas string dtype.
    return [None if pd.isna(v) else v for v in list(values)]


def assert_same_routing(got: Any, expected: Any, columns: list[str], close: dict[str, float] = CLOSE) -> None:
    """Row by row, the result columns of two pandas frames in the same row order agree."""
    assert len(got) == len(expected)
    for c in columns:
        a, b = got[c].to_numpy(), expected[c].to_numpy()
        if c.endswith("_score") or c in ("confidence", "cost"):
            np.testing.assert_allclose(floats(got[c]), floats(expected[c]), equal_nan=True, **close, err_msg=c)
        elif c in ("label", "stage_name", "error") or c.endswith("_label"):
            assert _nullable(a) == _nullable(b), c
        else:
            np.testing.assert_array_equal(a, b, err_msg=c)


def floats(column: Any) -> np.ndarray:
    """A float column as numpy, missing values (NaN, null, pd.NA) as NaN."""
    return column.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
