"""A misbehaving HTTP server on loopback, for the fault tests of remote stages.

It speaks enough of the Open Inference Protocol (REST) for :class:`~confroute.OIPPredictor`
(``GET /v2/health/ready``, ``GET /v2/models/{m}`` and ``/ready``, ``POST /v2/models/{m}/infer``)
and answers any other ``POST`` (an OpenAI ``/v1/chat/completions``, say) with what its
``completion`` callable returns for the request's JSON (default: a chat completion with top
logprobs for the tokens ``A`` and ``B``). Each request follows a *mode*:

``"ok"``        answer at once;
``"slow"``      sleep ``delay`` seconds, then answer;
``"trickle"``   send the headers, then the body one byte every ``trickle_interval`` seconds;
``"hang"``      read the request and never answer (until the server closes);
``"reset"``     read the request and reset the connection (RST, no answer);
``"500"``       HTTP 500 with ``{"error": "boom"}``;
``"500-list"``  HTTP 500 whose body is a JSON list (``["boom"]``);
``"429"`` / ``"503"``  that status with ``Retry-After: retry_after`` and ``{"error": ...}``;
``"3cols"``     a 200 answer with 3 probability columns (OIP only).

``server.mode`` sets the mode of every request; ``server.plan = f`` (``f(i, path) -> mode``,
``i`` the request's number from 0) picks one per request (deterministic chaos). Only requests
to the infer path (or any POST) follow the mode; metadata and health requests always answer.

The default OIP answer: a numeric row ``[x, ...]`` gets probabilities ``[0.1, 0.9]`` when
``(int(x) // 3) % 2`` is 1, else ``[0.9, 0.1]`` (a known function of the input, so a misplaced
row is detected); a text gets ``[0.5, 0.5]``; set ``server.answer = f(rows) -> list of rows``.

Counters (under ``server.lock``): ``requests``, ``in_flight``, ``peak_in_flight`` (POSTs being
handled), ``connections``, ``peak_connections`` (sockets open at once), ``modes`` (a Counter).

    with FaultyServer(mode="slow", delay=2.0) as srv:
        p = OIPPredictor(srv.url, "m")
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = ["FaultyServer", "client_sockets", "mixed_plan"]


def _label(x: float) -> int:
    return (int(x) // 3) % 2


def default_answer(rows: list[Any]) -> list[list[float]]:
    out = []
    for r in rows:
        if isinstance(r, str):
            out.append([0.5, 0.5])
        else:
            out.append([0.1, 0.9] if _label(r[0]) else [0.9, 0.1])
    return out


def default_completion(request: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completion whose first token's top logprobs favour ``A`` over ``B``."""
    top = [{"token": "A", "logprob": -0.1}, {"token": "B", "logprob": -2.4}]
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "A"},
                         "logprobs": {"content": [{"token": "A", "logprob": -0.1, "top_logprobs": top}]}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1}}


class FaultyServer:
    def __init__(
        self,
        mode: str = "ok",
        *,
        delay: float = 1.0,
        trickle_interval: float = 0.05,
        retry_after: float = 0.0,
        classes: list[str] | None = None,
        model: str = "m",
    ) -> None:
        self.mode = mode
        self.plan: Callable[[int, str], str] | None = None
        self.delay = delay
        self.trickle_interval = trickle_interval
        self.retry_after = retry_after
        self.classes = classes
        self.model = model
        self.answer: Callable[[list[Any]], Any] = default_answer
        self.completion: Callable[[dict[str, Any]], Any] = default_completion
        self.lock = threading.Lock()
        self.requests = self.in_flight = self.peak_in_flight = 0
        self.connections = self.peak_connections = 0
        self.modes: Counter[str] = Counter()
        self._stop = threading.Event()
        self._socks: set[socket.socket] = set()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, daemon=True, name="faulty-accept")
        self._thread.start()

    # -- lifetime ------------------------------------------------------------------------------------

    def __enter__(self) -> FaultyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            with self.lock:
                self._socks.add(conn)
                self.connections += 1
                self.peak_connections = max(self.peak_connections, self.connections)
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="faulty-conn").start()

    # -- one connection ------------------------------------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while not self._stop.is_set():
                request = self._read(reader)
                if request is None:
                    return
                if not self._handle(conn, *request):
                    return
        except OSError:
            return
        finally:
            with self.lock:
                self._socks.discard(conn)
                self.connections -= 1
            try:
                reader.close()
                conn.close()
            except OSError:
                pass

    @staticmethod
    def _read(reader: Any) -> tuple[str, str, bytes] | None:
        line = reader.readline()
        if not line:
            return None
        method, path, _ = line.decode("latin-1").split(" ", 2)
        length = 0
        while True:
            header = reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            key, _, value = header.decode("latin-1").partition(":")
            if key.strip().lower() == "content-length":
                length = int(value.strip())
        body = reader.read(length) if length else b""
        return method, path, body

    def _send(self, conn: socket.socket, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
                  503: "Service Unavailable"}.get(status, "X")
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        conn.sendall(head.encode() + b"\r\n" + data)

    def _handle(self, conn: socket.socket, method: str, path: str, body: bytes) -> bool:
        """Answer one request; False to drop the connection."""
        base = f"/v2/models/{self.model}"
        if method == "GET":
            if path in ("/v2/health/ready", base + "/ready"):
                self._send(conn, 200, {"ready": True})
            elif path == base:
                meta: dict[str, Any] = {"name": self.model, "inputs": [{"name": "x"}], "outputs": [{"name": "probs"}]}
                if self.classes:
                    meta["outputs"][0]["parameters"] = {"classes": self.classes}
                self._send(conn, 200, meta)
            else:
                self._send(conn, 404, {"error": f"no {path}"})
            return True
        with self.lock:
            i = self.requests
            self.requests += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            mode = self.plan(i, path) if self.plan is not None else self.mode
            with self.lock:
                self.modes[mode] += 1
            return self._misbehave(conn, mode, path, body)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _answer(self, path: str, body: bytes, mode: str) -> Any:
        request = json.loads(body or b"{}")
        if not path.endswith("/infer"):
            return self.completion(request)
        tensor = request["inputs"][0]
        data, shape = tensor["data"], tensor["shape"]
        rows = data if len(shape) == 1 else [data[i * shape[1]:(i + 1) * shape[1]] for i in range(shape[0])]
        probs = [[1 / 3] * 3 for _ in rows] if mode == "3cols" else self.answer(rows)
        flat = [v for row in probs for v in row]
        return {"model_name": self.model, "outputs": [{"name": "probs", "shape": [len(rows), len(probs[0])],
                                                       "datatype": "FP64", "data": flat}]}

    def _misbehave(self, conn: socket.socket, mode: str, path: str, body: bytes) -> bool:
        if mode == "hang":  # until the client goes away (or the server closes)
            while not self._stop.is_set():
                readable, _, _ = select.select([conn], [], [], 0.5)
                if readable and not conn.recv(1, socket.MSG_PEEK):
                    return False  # the client closed the connection
                if readable:
                    time.sleep(0.05)  # a pipelined request: keep hanging
            return False
        if mode == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if mode == "500":
            self._send(conn, 500, {"error": "boom"})
            return True
        if mode == "500-list":
            self._send(conn, 500, ["boom"])
            return True
        if mode in ("429", "503"):
            self._send(conn, int(mode), {"error": "busy"}, {"Retry-After": f"{self.retry_after:g}"})
            return True
        if mode == "slow" and self._stop.wait(self.delay):
            return False
        try:
            answer = self._answer(path, body, mode)
        except (ValueError, KeyError, IndexError, TypeError):  # a request cut short by its client
            return False
        if mode == "trickle":
            data = json.dumps(answer).encode()
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                         .encode())
            for k in range(len(data)):
                if self._stop.wait(self.trickle_interval):
                    return False
                conn.sendall(data[k:k + 1])
            return True
        self._send(conn, 200, answer)
        return True


def client_sockets(port: int, pid: int | str = "self") -> int:
    """How many of this process's (or process ``pid``'s) open sockets are TCP connections *to*
    ``port`` on loopback (the client side; an in-process server's own ends and asyncio's socket
    pairs not counted). 0 for a process that is gone."""
    import os

    inodes = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table.replace("self", str(pid))) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if int(parts[2].rsplit(":", 1)[1], 16) == port and parts[3] != "0A":  # not a listener
                inodes.add(parts[9])
    n = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        n += link.startswith("socket:[") and link[8:-1] in inodes
    return n


def mixed_plan(mix: dict[str, float], seed: int = 0) -> Callable[[int, str], str]:
    """A deterministic per-request plan: request ``i`` gets a mode drawn from ``mix`` (shares)
    with a generator seeded by ``(seed, i)``, so a rerun sees the same chaos."""
    import random

    modes = list(mix)
    total = sum(mix.values())
    cumulative = [sum(mix[m] for m in modes[: k + 1]) / total for k in range(len(modes))]

    def plan(i: int, path: str) -> str:
        u = random.Random(seed * 1_000_003 + i).random()
        return next(m for m, c in zip(modes, cumulative) if u < c) if u < 1 else modes[-1]

    return plan


def main(argv: list[str] | None = None) -> None:
    """Run a server in its own process until stdin closes; prints its URL on the first line.

    ``python tests/_faulty_server.py --mix ok=0.6,slow=0.1,trickle=0.1,500=0.1,reset=0.05,hang=0.05``
    """
    import argparse
    import sys

    ap = argparse.ArgumentParser()
    ap.add_argument("--mix", default="ok=1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--delay", type=float, default=1.0)
    ap.add_argument("--trickle-interval", type=float, default=0.05)
    ap.add_argument("--classes", default="neg,pos")
    args = ap.parse_args(argv)
    mix = {k: float(v) for k, v in (part.split("=") for part in args.mix.split(","))}
    srv = FaultyServer(delay=args.delay, trickle_interval=args.trickle_interval,
                       classes=args.classes.split(",") if args.classes else None)
    srv.plan = mixed_plan(mix, args.seed)
    print(srv.url, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    with srv.lock:
        print(json.dumps({"requests": srv.requests, "peak_in_flight": srv.peak_in_flight,
                          "peak_connections": srv.peak_connections, "modes": dict(srv.modes)}), flush=True)
    srv.close()


if __name__ == "__main__":
    main()
