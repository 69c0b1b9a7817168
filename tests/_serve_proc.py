"""``confroute serve`` as a user runs it: a subprocess that the serving tests start and stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def confroute_serve(config: Path, *args: str, name: str, timeout_s: float = 400) -> Iterator[str]:
    """Run ``python -m confroute serve [args] CONFIG`` and yield the line it prints once it serves
    (``serving 'NAME' at ...``); fail with its last output if it exits or does not get there in
    ``timeout_s``. Stops it with SIGINT, as Ctrl-C would (SIGKILL after 60 s)."""
    proc = subprocess.Popen([sys.executable, "-m", "confroute", "serve", *args, str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, start_new_session=True)
    try:
        deadline, lines = time.monotonic() + timeout_s, []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(lines[-40:])
            lines.append(line)
            if line.startswith(f"serving {name!r}"):
                break
        else:
            pytest.fail(f"confroute serve did not start within {timeout_s:g} s:\n" + "".join(lines[-40:]))
        yield line
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
