"""``confroute serve`` config parsing and the ingress's pieces that need no Ray."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from confroute import CallablePredictor, CostModel, ThresholdRouter
from confroute.cli._main import main
from confroute.cli.serve import build_router, check_config, load_config
from confroute.exceptions import CLIError
from confroute.routing.stagewise import route_stagewise


@pytest.fixture()
def models(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] + 0.3 * rng.normal(size=200) > 0).astype(int)
    cheap = LogisticRegression(C=0.01).fit(x[:, :1], y)
    big = LogisticRegression().fit(x[:, :1], y)
    for name, est in (("cheap", cheap), ("big", big)):
        (tmp_path / f"{name}.pkl").write_bytes(pickle.dumps(est))
    return tmp_path, x[:, :1]


YAML = """
name: toy
allow_pickle: true
stages:
  - name: cheap
    model: sklearn:cheap.pkl
    deployment: {num_replicas: 2, max_batch_size: 16}
  - name: big
    model: sklearn:big.pkl
    fallback: {on_error: keep_previous, retries: 1, circuit_breaker: {failure_threshold: 3, reset_after: 5}}
thresholds: [0.8]
cost: {per_sample: [1, 10]}
"""

TOML = """
name = "toy"
allow_pickle = true
thresholds_from = "choice.json"
[[stages]]
name = "cheap"
model = "sklearn:cheap.pkl"
[[stages]]
name = "big"
model = "sklearn:big.pkl"
[stages.fallback]
on_error = "abstain"
"""


def test_yaml_and_toml_configs_build_the_router(models):
    folder, x = models
    pytest.importorskip("yaml")
    (folder / "serve.yaml").write_text(YAML)
    cfg = load_config(folder / "serve.yaml")
    assert cfg["stages"][0]["model"] == f"sklearn:{folder / 'cheap.pkl'}"  # relative to the file
    router = build_router(cfg)
    assert router.names == ("cheap", "big") and router.thresholds == [0.8]
    assert router.stages[1].on_error == "keep_previous" and router.stages[1].retries == 1
    assert router.stages[1].circuit_breaker.failure_threshold == 3
    assert cfg["stages"][0]["deployment"] == {"num_replicas": 2, "max_batch_size": 16}
    result = router.route(x)
    np.testing.assert_allclose(result.cost, np.where(result.reached[1], 11.0, 1.0))


def test_toml_config_with_a_saved_threshold_choice(models):
    folder, x = models
    # A saved threshold choice (ThresholdChoice.to_dict()) supplies the threshold.
    (folder / "choice.json").write_text(json.dumps({"threshold": 0.7, "target": 0.9}))
    (folder / "serve.toml").write_text(TOML)
    router = build_router(load_config(folder / "serve.toml"))
    assert router.thresholds == [0.7] and router.stages[1].on_error == "abstain"
    assert main(["serve", "--check", str(folder / "serve.toml")]) == 0


@pytest.mark.parametrize("cfg, message", [
    ({}, "'stages' must be a non-empty list"),
    ({"stages": [{"model": "onnx:/m"}]}, "needs a name"),
    ({"stages": [{"name": "a", "model": "onnx:/m", "url": "http://x"}]}, "either model"),
    ({"stages": [{"name": "a", "url": "gpu:8080"}]}, "url must start with http"),
    ({"stages": [{"name": "a", "model": "onnx:/m", "replicas": 2}]}, r"unknown keys \['replicas'\]"),
    ({"stages": [{"name": "a", "model": "onnx:/m"}, {"name": "a", "model": "onnx:/n"}], "thresholds": [0.5]},
     "distinct"),
    ({"stages": [{"name": "a", "model": "onnx:/m"}, {"name": "b", "model": "onnx:/n"}], "thresholds": [0.5, 0.6]},
     "need 1 threshold"),
    ({"stages": [{"name": "a", "model": "onnx:/m", "fallback": {"on_eror": "raise"}}]}, "on_eror"),
    ({"stages": [{"name": "a", "model": "nope:/m"}]}, "BACKEND:PATH"),
    ({"stages": [{"name": "a", "model": "onnx:/m"}], "cost": {"per_sample": [1, 2]}}, "one entry per stage"),
    ({"stages": [{"name": "a", "model": "onnx:/m"}], "drift": {"window": 10}}, "reference_scores"),
    ({"stages": [{"name": "a", "model": "onnx:/m"}], "htp": {}}, "unknown keys"),
])
def test_bad_configs_name_the_problem(cfg, message):
    with pytest.raises(CLIError, match=message):
        check_config(cfg)


def test_cli_reports_a_bad_config_in_one_line(tmp_path, capsys):
    (tmp_path / "bad.toml").write_text("stages = 3\n")
    assert main(["serve", str(tmp_path / "bad.toml")]) == 2
    assert "confroute serve: error: config: 'stages' must be a non-empty list" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "missing.yaml")]) == 2


# -- the ingress without Ray ------------------------------------------------------------------------

def _router() -> ThresholdRouter:
    cheap = CallablePredictor(lambda xs: np.array([[1 - x, x] for x in xs]), classes=["neg", "pos"])
    big = CallablePredictor(lambda xs: np.tile([0.1, 0.9], (len(xs), 1)), classes=["neg", "pos"])
    return ThresholdRouter(cheap, big, threshold=0.8, cost_model=CostModel.per_sample([1, 10]))


def test_the_ingress_assembles_the_same_result_as_route():
    # The ingress holds only the router's description (names, classes, cost model), no model.
    from confroute.integrations.ray import describe_router
    from confroute.integrations.serve import Ingress

    router = _router()
    xs = list(np.linspace(0, 1, 23))
    ingress = Ingress(describe_router(router), "toy", [], metrics=False)
    got, want = ingress.result(route_stagewise(router, xs, batch_size=5)), router.route(xs)
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_array_equal(got.stage, want.stage)
    np.testing.assert_array_equal(got.cost, want.cost)
    assert got.classes == want.classes


def test_oip_payloads_and_drift_gauges():
    from confroute import DriftMonitor
    from confroute.integrations.ray import describe_router
    from confroute.integrations.serve import Ingress, _BadRequest, _oip_answer, _oip_inputs

    router = _router()
    assert _oip_inputs({"inputs": [{"name": "t", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}]}) == ["a", "b"]
    rows = _oip_inputs({"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 2], "data": [1, 2, 3, 4]}]})
    assert [r.tolist() for r in rows] == [[1.0, 2.0], [3.0, 4.0]]
    for body, message in [({"inputs": []}, "one input tensor"),
                          ({"inputs": [{"datatype": "BYTES", "shape": [3], "data": ["a"]}]}, "does not match"),
                          ({"inputs": [{"datatype": "FP32", "shape": [3], "data": [1, 2, 3]}]}, r"\[n, d\]")]:
        with pytest.raises(_BadRequest, match=message):
            _oip_inputs(body)
    result = router.route([0.95, 0.5])
    answer = _oip_answer(result, "toy", {"id": "7", "outputs": [{"name": "label"}, {"name": "stage"}]})
    assert answer["id"] == "7" and [o["name"] for o in answer["outputs"]] == ["label", "stage"]
    assert answer["outputs"][0]["data"] == ["pos", "pos"] and answer["outputs"][1]["data"] == [0, 1]
    with pytest.raises(_BadRequest, match="unknown outputs"):
        _oip_answer(result, "toy", {"outputs": [{"name": "probs"}]})

    # The drift monitor is fed the first stage's scores and checked every `drift_every` inputs.
    rng = np.random.default_rng(1)
    calibration = rng.beta(8, 2, 2000)
    monitor = DriftMonitor(threshold=0.8, min_samples=50).fit(np.maximum(calibration, 1 - calibration))
    ingress = Ingress(describe_router(router), "toy", [], drift=monitor, drift_every=100, metrics=False)
    ingress._record(router.route(list(rng.beta(8, 2, 60))))
    assert ingress.last_drift_report is None  # fewer than drift_every inputs so far
    ingress._record(router.route(list(rng.beta(2, 2, 200))))  # harder inputs: drift
    report = ingress.last_drift_report
    assert report.n == 260 and report.psi_flag and report.rate_flag and report.recalibration_due
