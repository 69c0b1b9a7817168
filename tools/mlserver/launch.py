"""Start a real MLServer process serving confroute text models, for tests and benchmarks.

MLServer's dependencies clash with the pinned DeepSparse environment (protobuf < 7, fastapi <
0.116), so it runs from the numpy-2 test venv, ``.venv-quantize``, built by ``tools/mlserver_venv.sh``
or ``tools/run.sh test`` (``$CONFROUTE_MLSERVER`` overrides the ``mlserver`` executable).

    server = MLServerProcess({"minilm": "/path/to/minilm-sst2-pruned80"}, num_threads=1)
    server.start()          # free loopback ports; waits for /v2/health/ready and every model
    server.url              # http://127.0.0.1:PORT
    server.stop(); server.start()   # the same ports again (kill and restart a fallback)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def mlserver_executable() -> Path | None:
    """The ``mlserver`` command of the numpy-2 test venv, or None when it has not been built."""
    env = os.environ.get("CONFROUTE_MLSERVER")
    path = Path(env) if env else ROOT / ".venv-quantize" / "bin" / "mlserver"
    return path if path.exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MLServerProcess:
    """One ``mlserver start`` process serving ``models`` (name -> model directory).

    Parameters
    ----------
    models : dict
        OIP model name -> directory holding ``model.onnx``, tokenizer and ``config.json``.
    num_threads : int, default 1
        ONNX Runtime intra-op threads per model.
    batch_size : int, default 32
    startup_timeout : float, default 120
    """

    def __init__(self, models: dict[str, str | Path], *, num_threads: int = 1, batch_size: int = 32,
                 startup_timeout: float = 120.0) -> None:
        exe = mlserver_executable()
        if exe is None:
            raise FileNotFoundError("MLServer venv not built: run `bash tools/mlserver_venv.sh`")
        self.exe = exe
        self.models = {k: Path(v) for k, v in models.items()}
        self.startup_timeout = startup_timeout
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="confroute-mlserver-"))
        self.log_path = self.folder / "mlserver.log"
        self.proc: subprocess.Popen[bytes] | None = None
        (self.folder / "settings.json").write_text(json.dumps({
            "debug": False, "host": "127.0.0.1", "http_port": self.http_port, "grpc_port": self.grpc_port,
            "metrics_port": self.metrics_port, "parallel_workers": 0, "load_models_at_startup": True,
        }))
        for name, path in self.models.items():
            d = self.folder / name
            d.mkdir()
            (d / "model-settings.json").write_text(json.dumps({
                "name": name,
                "implementation": "confroute_runtime.ConfrouteTextRuntime",
                "parameters": {"uri": str(path), "extra": {"num_threads": num_threads, "batch_size": batch_size}},
            }))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except OSError:
            return 0

    def start(self) -> MLServerProcess:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT / "src")]),
                   OMP_NUM_THREADS="1", NM_DISABLE_ANALYTICS="1")
        env.pop("VIRTUAL_ENV", None)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(self.exe), "start", str(self.folder)], cwd=self.folder, env=env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlserver exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._get("/v2/health/ready") == 200 and all(
                self._get(f"/v2/models/{m}/ready") == 200 for m in self.models
            ):
                return self
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"mlserver not ready after {self.startup_timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """Kill the server (SIGKILL to its process group: a crash, not a graceful shutdown)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)
        self.proc = None
        # Wait until the port is free again, so that a restart can bind it.
        deadline = time.monotonic() + timeout
        while self._get("/v2/health/live") != 0 and time.monotonic() < deadline:
            time.sleep(0.1)

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> MLServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
