"""The ingress's request checks and error answers, without Ray (issue 24)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from confroute.exceptions import PredictionError
from confroute.integrations.ray import RouterInfo
from confroute.integrations.serve_checks import BadRequest, short_error, stage_failed, validate_inputs
from confroute.routing.stage_loop import RowState


def _state() -> RowState:
    """Two rows that stage 0 answered (labels 1 and 0) and deferred to stage 1."""
    st = RowState.initial(2, 2)
    st.stage_label_index[0], st.stage_scores[0], st.reached_stage[:] = [1, 0], [0.6, 0.7], 0
    st.n_classes[:] = 2
    return st


@pytest.mark.parametrize("on_error, stage, label, defer", [
    ("keep_previous", [0, 0], [1, 0], [False, False]),
    ("abstain", [-1, -1], [-1, -1], [False, False]),
])
def test_a_dead_replica_is_a_stage_failure_under_on_error(on_error, stage, label, defer):
    info = RouterInfo(("small", "big"), None, ("neg", "pos"), "max_prob", False, ("raise", on_error))
    new, d = stage_failed(_state(), 1, "ActorDiedError: gone", info)
    assert new.stage.tolist() == stage and new.label_index.tolist() == label and d.tolist() == defer
    assert new.degraded.all() and new.errors.tolist() == ["ActorDiedError: gone"] * 2
    assert new.failed_stage.tolist() == [1, 1]


def test_a_dead_replica_under_raise_is_an_error_of_one_line():
    info = RouterInfo(("small", "big"), None, ("neg", "pos"), "max_prob", False, ("raise", "raise"))
    with pytest.raises(PredictionError) as err:
        stage_failed(_state(), 1, "ActorDiedError: gone", info)
    assert short_error(err.value) == "PredictionError: ActorDiedError: gone"


def test_short_error_drops_rays_traceback():
    pytest.importorskip("ray", reason="Ray's own error types: pip install 'confroute[serve]'")
    from ray.exceptions import RayTaskError

    cause = RuntimeError("model crashed\nsecond line")
    wrapped = RayTaskError("ServeReplica.handle_request", 'Traceback (most recent call last):\n  File "/x.py"',
                           cause)
    assert short_error(wrapped) == "RuntimeError: model crashed"
    assert len(short_error(ValueError("x" * 5000))) == 300


@pytest.mark.parametrize("inputs, kind, message", [
    ([float("inf")], None, "input 0 is inf"),
    ([[1.0, float("nan")]], None, "element 1 is nan"),
    ([True], None, "input 0 is a boolean"),
    ([[1, [2]]], None, "element 1 is a list"),
    ([[1, 2], [3]], None, "input 1 has 1 feature"),
    (["a", 1], None, "inputs mix texts and numbers"),
    ([1, 2], "text", "this model takes texts"),
    ("ab", None, 'send a JSON object {"inputs": [...]}'),
])
def test_validate_inputs_refuses(inputs, kind, message):
    with pytest.raises(BadRequest, match=re.escape(message)):
        validate_inputs(inputs, kind)


def test_validate_inputs_takes_texts_numbers_and_rows():
    assert validate_inputs([], "text") == []
    assert validate_inputs(["a", "b"], "text") == ["a", "b"]
    assert validate_inputs([0.5, 2]) == [0.5, 2]
    rows = [np.array([1.0, 2.0]), np.array([3.0, 4.0])]
    assert validate_inputs(rows) is rows
