"""OIPPredictor's binary mode (the KServe v2 binary tensor data extension), against real servers.

* a KServe model server (``kserve.ModelServer`` 0.21.0, its own venv: ``tools/kserve_venv.sh``;
  the model is ``tools/kserve/probs_server.py``), which speaks the extension: ``binary=True``
  gives the same probabilities as JSON, for FP64/FP32 rows and BYTES texts, sync and async;
* MLServer 1.7, which does not: ``binary="auto"`` (the default) finds no ``binary_tensor_data``
  in its ``GET /v2`` extensions and speaks JSON (bit-identical to in-process); ``binary=True``
  fails with a RemoteStageError that carries MLServer's own answer.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("httpx", reason="OIPPredictor needs httpx: pip install 'confroute[serve]'")

import httpx  # noqa: E402

from confroute import OIPPredictor  # noqa: E402
from confroute.exceptions import RemoteStageError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KSERVE_PY = Path(os.environ.get("CONFROUTE_KSERVE_PYTHON", ROOT / ".cache" / "kserve-venv" / "bin" / "python"))
TENSORS = dict(classes=["neg", "pos"], output="probs", input_name="input", output_name="probs")


@pytest.fixture(scope="module")
def kserve_url():
    if not KSERVE_PY.exists():
        pytest.skip(f"KServe venv not built: bash tools/kserve_venv.sh (looked for {KSERVE_PY})")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(KSERVE_PY), str(ROOT / "tools" / "kserve" / "probs_server.py"),
                             "--http_port", str(port), "--dim", "8"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/v2/models/probs/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "the KServe model server exited"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.slow
def test_binary_equals_json_against_kserve(kserve_url):
    from _mlserver import SST2_DEV, sst2_dev

    X = np.random.default_rng(3).normal(size=(300, 8))
    texts = sst2_dev(100) if SST2_DEV.exists() else [f"text number {i}" for i in range(100)]
    as_json = OIPPredictor(kserve_url, "probs", binary=False, batch_size=64, **TENSORS)
    as_bytes = OIPPredictor(kserve_url, "probs", binary=True, batch_size=64, **TENSORS)
    body, headers = as_bytes._payload(["a"])  # the request really is binary
    assert headers["Inference-Header-Content-Length"] == str(body.index(b"\x01\x00\x00\x00a"))
    for data in (X, X.astype(np.float32), texts):
        np.testing.assert_array_equal(as_bytes.predict(data).probs, as_json.predict(data).probs)
    fp32 = OIPPredictor(kserve_url, "probs", binary=True, datatype="FP32", **TENSORS)
    np.testing.assert_allclose(fp32.predict(X).probs, as_json.predict(X).probs, rtol=1e-5)

    async def run() -> np.ndarray:
        out = await as_bytes.apredict(X)
        await as_bytes.aclose()
        return out.probs

    np.testing.assert_array_equal(asyncio.run(run()), as_json.predict(X).probs)
    # KServe's server does not list binary_tensor_data among its extensions: "auto" speaks JSON.
    assert OIPPredictor(kserve_url, "probs", **TENSORS)._use_binary() is False


@pytest.fixture(scope="module")
def mlserver():
    from _mlserver import MINILM, start

    srv = start({"minilm": MINILM}, num_threads=1, batch_size=32)
    yield srv
    srv.close()


@pytest.mark.shared
@pytest.mark.slow
def test_auto_speaks_json_to_mlserver_and_binary_fails_clearly(mlserver):
    from _mlserver import MINILM, sst2_dev

    from confroute import ONNXRuntimePredictor

    texts = sst2_dev(64)
    want = ONNXRuntimePredictor(MINILM, num_threads=1, batch_size=32).predict(texts)
    auto = OIPPredictor(mlserver.url, "minilm", batch_size=32)
    assert auto.binary == "auto" and auto._use_binary() is False
    np.testing.assert_array_equal(auto.predict(texts).logits, want.logits)
    forced = OIPPredictor(mlserver.url, "minilm", batch_size=32, binary=True)
    with pytest.raises(RemoteStageError, match="HTTP 4") as info:
        forced.predict(texts[:4])
    assert info.value.status is not None and 400 <= info.value.status < 500
