"""Shared pieces of the monitor tests: a real two-stage router of scikit-learn models, and a
real PostgreSQL server started from Debian's binaries (postgres refuses to run as root, so it
runs as the ``postgres`` system user)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def make_data(n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    X, y = make_classification(n, 20, n_informative=8, flip_y=0.02, random_state=seed)
    return X, y


def make_router(threshold: float = 0.8, seed: int = 0, fallback=None):
    """A logistic regression in front of a random forest, trained on the first 1000 rows."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from confroute import CostModel, ThresholdRouter
    from confroute.predictors.sklearn import SklearnPredictor

    X, y = make_data(seed=seed)
    small = LogisticRegression(max_iter=500).fit(X[:1000], y[:1000])
    big = RandomForestClassifier(40, random_state=seed).fit(X[:1000], y[:1000])
    return ThresholdRouter(SklearnPredictor(small), fallback if fallback is not None else SklearnPredictor(big),
                           threshold=threshold, cost_model=CostModel.per_sample([1.0, 10.0]))


def postgres_skip_reason() -> str | None:
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL binaries not found in {PG_BIN} (apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg 3 is not installed (pip install 'confroute[postgres]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """initdb + pg_ctl start in a temporary directory; unix socket only; stopped by :meth:`stop`."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="confroute-pg-"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = "postgres"
        self._as_user = ["runuser", "-u", self.user, "--"] if os.geteuid() == 0 else []
        if self._as_user:
            shutil.chown(self.root, self.user)
        subprocess.run(self._as_user + [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                                        "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
        subprocess.run(self._as_user + [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                                        str(self.root / "log"), "-o",
                                        f"-p {self.port} -k {self.root} -c listen_addresses=''", "start"],
                       check=True, capture_output=True)

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@/{db}?host={self.root}&port={self.port}"

    def create_db(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        subprocess.run(self._as_user + [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                                        "stop"], capture_output=True)
        for _ in range(50):
            if not (self.data / "postmaster.pid").exists():
                break
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)


def running_postgres():
    """A PostgresServer for a fixture's lifetime (a generator: ``yield from running_postgres()``);
    skips with the reason when PostgreSQL or psycopg is missing."""
    import pytest

    reason = postgres_skip_reason()
    if reason:
        pytest.skip(reason)
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()
