"""The service's OIP endpoint with the binary tensor data extension, called by the two
third-party clients users have, with their DEFAULT settings (issue 25).

One Ray instance (2 CPUs) serves two applications in turn, each with the stage deployments'
DEFAULT resources (which must fit 2 CPUs: issue 25, item 3):

* the SST-2 router (MiniLM pruned, then MPNet int8 one sentence per call, so that a row's answer
  does not depend on its batch) on BYTES texts: ``tritonclient.http`` (binary inputs and, by
  default, binary outputs) and KServe's ``InferenceRESTClient`` (binary inputs, JSON outputs)
  must give ``router.route``'s answers on 200 SST-2 dev sentences; malformed binary bodies get
  HTTP 400 with a message;
* a numeric router (scikit-learn stage, then a stage that fails on some rows) on FP32 and FP64
  feature rows, through the same two clients.

KServe's client runs in its own venv (``tools/kserve_venv.sh``); without it that part skips.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("httpx", reason="the serving tests need httpx: pip install 'confroute[serve]'")
pytest.importorskip("ray.serve", reason="the serving tests need Ray Serve: pip install 'confroute[serve]'")
pytest.importorskip("tritonclient.http", reason="needs tritonclient[http] (the test extra)")

import _routing_cases  # noqa: E402
import httpx  # noqa: E402
import tritonclient.http as triton  # noqa: E402

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
KSERVE_PY = Path(os.environ.get("CONFROUTE_KSERVE_PYTHON", ROOT / ".cache" / "kserve-venv" / "bin" / "python"))
N = 200
# Default deployment options on purpose: they must fit ray.init(num_cpus=2).
CONFIG = """
name: sst2
stages:
  - {{name: minilm, model: "onnx:{minilm}", threads: 1, batch_size: 32}}
  - {{name: mpnet, model: "onnx:{mpnet}", threads: 1, batch_size: 1}}
thresholds: [0.9]
cost: {{per_sample: [1.0, 10.0]}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_serve():
    import ray
    from ray import serve

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield {"serve": serve, "port": port}
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()


@pytest.fixture(scope="module")
def sst2(ray_serve, tmp_path_factory):
    from _mlserver import MINILM, MPNET, SST2_DEV, sst2_dev

    for path in (MINILM, MPNET, SST2_DEV):
        if not path.exists():
            pytest.skip(f"shared assets not found: {path} (set CONFROUTE_SHARED to their folder)")
    from confroute.cli.serve import app_from_config, build_router, load_config

    folder = tmp_path_factory.mktemp("binary")
    (folder / "serve.yaml").write_text(CONFIG.format(minilm=MINILM, mpnet=MPNET))
    cfg = load_config(folder / "serve.yaml")
    ray_serve["serve"].run(app_from_config(cfg), name="sst2", route_prefix="/")
    texts = sst2_dev(N)
    yield {"url": f"127.0.0.1:{ray_serve['port']}", "texts": texts, "want": build_router(cfg).route(texts)}


@pytest.fixture(scope="module")
def numeric(ray_serve):  # one application on the route prefix "/" at a time: keep these tests last
    from ray import cloudpickle

    from confroute.integrations.serve import build_app

    serve = ray_serve["serve"]
    if "sst2" in serve.status().applications:
        serve.delete("sst2")
    cloudpickle.register_pickle_by_value(_routing_cases)  # the replicas cannot import test files
    try:
        serve.run(build_app(_routing_cases.two_stage, name="toy", metrics=False),
                               name="toy", route_prefix="/")
        X, _ = _routing_cases.features(120, seed=5)
        yield {"url": f"127.0.0.1:{ray_serve['port']}", "X": X, "router": _routing_cases.two_stage()}
    finally:
        cloudpickle.unregister_pickle_by_value(_routing_cases)


def _check_same(out: dict, want, names=("minilm", "mpnet")) -> None:
    """An OIP answer (output name -> values) equals a RoutingResult (binary: no nulls)."""
    abstained = want.stage < 0
    labels = ["" if a else str(v) for v, a in zip(want.labels.tolist(), abstained)]
    assert [v.decode() if isinstance(v, bytes) else v for v in out["label"]] == labels
    assert list(out["stage"]) == want.stage.tolist()
    assert [v.decode() if isinstance(v, bytes) else v for v in out["stage_name"]] == [
        "" if s < 0 else names[s] for s in want.stage]
    assert list(out["label_index"]) == want.label_index.tolist()
    np.testing.assert_allclose(np.asarray(out["confidence"], dtype=float), want.confidence, rtol=1e-6)
    assert list(out["degraded"]) == want.degraded.tolist()
    np.testing.assert_allclose(np.asarray(out["cost"], dtype=float), want.cost, rtol=1e-9)


def _triton(url: str, model: str, array: np.ndarray, datatype: str, outputs=None) -> tuple[dict, dict]:
    client = triton.InferenceServerClient(url=url, network_timeout=300.0, connection_timeout=60.0)
    try:
        tensor = triton.InferInput("input", list(array.shape), datatype)
        tensor.set_data_from_numpy(array)  # default: binary_data=True
        result = client.infer(model, [tensor], outputs=outputs)
        response = result.get_response()
        return {o["name"]: result.as_numpy(o["name"]).tolist() for o in response["outputs"]}, response
    finally:
        client.close()


def _kserve(url: str, model: str, data: list, datatype: str) -> dict:
    if not KSERVE_PY.exists():
        pytest.skip(f"KServe client venv not built: bash tools/kserve_venv.sh (looked for {KSERVE_PY})")
    done = subprocess.run([str(KSERVE_PY), str(ROOT / "tools" / "kserve" / "client.py")], capture_output=True,
                          text=True, timeout=300, input=json.dumps({"url": f"http://{url}", "model": model,
                                                                    "name": "input", "datatype": datatype,
                                                                    "data": data}))
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["binary_request"]  # the client really sent binary tensor data
    return answer["outputs"]


@pytest.mark.shared
def test_tritonclient_defaults_bytes_equal_router_route(sst2):
    want = sst2["want"]
    assert 0.03 < want.routed_fraction < 0.5  # both stages answer something
    out, response = _triton(sst2["url"], "sst2", np.array(sst2["texts"], dtype=object), "BYTES")
    # No outputs named: tritonclient asks for every output as binary (binary_data_output).
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    _check_same(out, want)
    # Named outputs (InferRequestedOutput's default binary_data=True) and the server metadata.
    out, response = _triton(sst2["url"], "sst2", np.array(sst2["texts"][:50], dtype=object), "BYTES",
                            outputs=[triton.InferRequestedOutput("label"), triton.InferRequestedOutput("stage")])
    assert [o["name"] for o in response["outputs"]] == ["label", "stage"]
    assert out["stage"] == want.stage[:50].tolist()
    client = triton.InferenceServerClient(url=sst2["url"])
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    client.close()


@pytest.mark.shared
def test_tritonclient_json_mode_still_works(sst2):
    client = triton.InferenceServerClient(url=sst2["url"], network_timeout=300.0)
    tensor = triton.InferInput("input", [20], "BYTES")
    tensor.set_data_from_numpy(np.array(sst2["texts"][:20], dtype=object), binary_data=False)
    result = client.infer("sst2", [tensor], outputs=[triton.InferRequestedOutput("label", binary_data=False)])
    assert result.get_output("label")["data"] == sst2["want"].labels[:20].tolist()
    for algorithm in ("gzip", "deflate"):  # tritonclient's request compression (not its default)
        tensor.set_data_from_numpy(np.array(sst2["texts"][:20], dtype=object))
        result = client.infer("sst2", [tensor], request_compression_algorithm=algorithm)
        assert result.as_numpy("stage").tolist() == sst2["want"].stage[:20].tolist()
    client.close()


@pytest.mark.shared
def test_kserve_client_defaults_bytes_equal_router_route(sst2):
    out = _kserve(sst2["url"], "sst2", sst2["texts"], "BYTES")
    want = sst2["want"]
    # KServe's client asks for JSON outputs by default: nulls where no stage answered.
    out["label"] = ["" if v is None else v for v in out["label"]]
    out["stage_name"] = ["" if v is None else v for v in out["stage_name"]]
    _check_same(out, want)


@pytest.mark.shared
@pytest.mark.parametrize("header, body, message", [
    ("1000", b'{"inputs": []}', "past the end"),
    ("14", b'{"inputs": []}\0\0\0', "add up to 0"),
    (None, b'{"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 4}}]}'
     b"\x02\0\0\0", "needs the Inference-Header-Content-Length header"),
    ("SIZE", b'{"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": -4}}]}'
     b"\x00\0\0\0", "binary_data_size must be >= 0"),
    ("SIZE", b'{"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}]}'
     b"\x05\0\0\0ab", "says 5 bytes but only 2 remain"),
    ("SIZE", b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 2], "parameters": {"binary_data_size": 12}}]}'
     + b"\0" * 12, "needs 16"),
    ("SIZE", b'{"inputs": [{"name": "input", "datatype": "COMPLEX", "shape": [1], "parameters": {"binary_data_size": 4}}]}'
     + b"\0" * 4, "unknown or unsupported datatype 'COMPLEX'"),
    ("SIZE", b'{"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}]}'
     b"\x02\0\0\0\xff\xfe", "not UTF-8 text"),
])
def test_bad_binary_bodies_get_400_with_a_message(sst2, header, body, message):
    if header == "SIZE":
        header = str(body.index(b"}]}") + 3)
    headers = {"Content-Type": "application/octet-stream"}
    if header is not None:
        headers["Inference-Header-Content-Length"] = header
    r = httpx.post(f"http://{sst2['url']}/v2/models/sst2/infer", content=body, headers=headers, timeout=60)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]


@pytest.mark.shared
def test_a_body_that_is_not_what_its_content_encoding_says_gets_400(sst2):
    url = f"http://{sst2['url']}/v2/models/sst2/infer"
    r = httpx.post(url, content=b'{"inputs": []}', headers={"Content-Encoding": "gzip"}, timeout=60)
    assert r.status_code == 400 and "not valid gzip" in r.json()["error"]
    r = httpx.post(url, content=b'{"inputs": []}', headers={"Content-Encoding": "br"}, timeout=60)
    assert r.status_code == 400 and "'br' is not supported" in r.json()["error"]


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_numeric_tensors_through_both_clients(numeric, datatype):
    dtype = {"FP32": np.float32, "FP64": np.float64}[datatype]
    X = numeric["X"].astype(dtype)
    want = numeric["router"].route(X.astype(np.float64))
    assert want.degraded.any() and (want.stage == 1).any()  # a failing stage and a routed row: nulls on the wire
    out, _ = _triton(numeric["url"], "toy", X, datatype)
    _check_same(out, want, names=tuple(numeric["router"].names))
    out = _kserve(numeric["url"], "toy", X.tolist(), datatype)
    out["label"] = ["" if v is None else v for v in out["label"]]
    out["stage_name"] = ["" if v is None else v for v in out["stage_name"]]
    _check_same(out, want, names=tuple(numeric["router"].names))

