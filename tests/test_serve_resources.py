"""``confroute serve`` fits the CPUs it is given (issue 25, item 3).

On main, the default stage replica reserved 1 CPU: two stages and the ingress (0.1) needed 2.1
CPUs, so with ``ray: {num_cpus: 2}`` the ingress was never scheduled and the command only printed
Ray warnings. Now a stage replica reserves 0.5 CPU by default, and a config whose deployments do
not fit is refused before Ray starts, with the key to change.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from confroute.cli.serve import check_config, check_cpus
from confroute.exceptions import CLIError
from confroute.integrations.serve import cpu_demand

ROOT = Path(__file__).resolve().parents[1]


def _docs_config() -> str:
    """The YAML example of docs/serving.md's "Config format" section."""
    text = (ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
    section = text.split("## Config format", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def test_cpu_demand_counts_replicas_and_defaults():
    assert cpu_demand(2) == [("stage0", 1, 0.5), ("stage1", 1, 0.5), ("ingress", 1, 0.1)]
    auto = {"autoscaling_config": {"min_replicas": 2, "max_replicas": 8}, "ray_actor_options": {"num_cpus": 0.25}}
    assert cpu_demand(1, [auto], {"num_replicas": 3})[0] == ("stage0", 2, 0.25)
    assert cpu_demand(1, None, {"num_replicas": 3})[1] == ("ingress", 3, 0.1)
    cfg = check_config({"stages": [{"name": "a", "model": "onnx:/m/a"}, {"name": "b", "model": "onnx:/m/b"}],
                        "thresholds": [0.9]})
    assert check_cpus(cfg, 2) == pytest.approx(1.1)  # the defaults fit 2 cores
    with pytest.raises(CLIError, match=r"reserve 1\.1 CPUs .* but ray\.num_cpus is 1: lower "
                                       r"stages\[0\]\.deployment\.ray_actor_options\.num_cpus"):
        check_cpus(cfg, 1)


def _npy_scores() -> bytes:
    """A small .npy file of first-stage scores (what `drift.reference_scores` names)."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.linspace(0.5, 1.0, 200))
    return buf.getvalue()


def test_the_docs_config_on_2_cpus_is_refused_naming_the_key(tmp_path):
    """The documented config (2 MiniLM replicas of 1 CPU, ...) needs 2.35 CPUs: `confroute serve`
    with ``ray: {num_cpus: 2}`` stops at once (no Ray start) and names the key to change."""
    text = _docs_config().replace("ray: {address: auto}", "ray: {num_cpus: 2}")
    assert "ray: {num_cpus: 2}" in text
    (tmp_path / "serve.yaml").write_text(text)
    # The config names a drift reference file next to it; `confroute serve` checks it exists.
    (tmp_path / "calibration_scores.npy").write_bytes(_npy_scores())
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "confroute", "serve", str(tmp_path / "serve.yaml")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 2, done.stderr
    assert ("the deployments reserve 2.35 CPUs at start (stages[0] 'minilm': 2 x 1, stages[1] 'mpnet': 1 x 0.25, "
            "ingress: 1 x 0.1) but ray.num_cpus is 2: lower stages[0].deployment.ray_actor_options.num_cpus or "
            "stages[0].deployment.num_replicas, or raise ray.num_cpus") in done.stderr
    assert "ray" not in done.stdout.lower() and time.monotonic() - t0 < 60  # refused before starting Ray


@pytest.mark.slow
@pytest.mark.shared
def test_confroute_serve_with_default_resources_starts_on_2_cpus_and_answers(tmp_path):
    pytest.importorskip("ray.serve", reason="needs Ray Serve: pip install 'confroute[serve]'")
    import httpx

    sys.path.insert(0, str(ROOT / "tests"))
    from _mlserver import MINILM, SST2_DEV, sst2_dev
    from _serve_proc import confroute_serve

    if not (MINILM.exists() and SST2_DEV.exists()):
        pytest.skip("shared assets not found (set CONFROUTE_SHARED)")
    from confroute.cli.serve import build_router, load_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "serve.yaml").write_text(
        f"name: sst2\nhttp: {{host: 127.0.0.1, port: {port}}}\nray: {{num_cpus: 2}}\n"
        f"stages:\n  - {{name: small, model: 'onnx:{MINILM}', threads: 1}}\n"
        f"  - {{name: again, model: 'onnx:{MINILM}', threads: 1}}\nthresholds: [0.95]\n")
    texts = sst2_dev(40)
    want = build_router(load_config(tmp_path / "serve.yaml")).route(texts)
    with confroute_serve(tmp_path / "serve.yaml", name="sst2"):
        rows = httpx.post(f"http://127.0.0.1:{port}/route", json={"inputs": texts}, timeout=120).json()["results"]
        assert [r["label"] for r in rows] == want.labels.tolist()
        assert [r["stage"] for r in rows] == want.stage.tolist()
