"""An on-disk response cache for paid model calls (SQLite).

A key is a hash of everything that decides the answer: the endpoint, the model, the prompt and
the request parameters. Only successful answers are stored (an error is never cached), so a
rerun pays only for what failed before. SQLite in WAL mode with a busy timeout lets several
processes (Ray workers, parallel evaluations) share one file; each process and thread opens its
own connection.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

__all__ = ["ResponseCache", "cache_key", "default_cache_path"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"


def default_cache_path() -> Path:
    """``$CONFROUTE_CACHE_DIR/responses.sqlite`` (default ``~/.cache/confroute``)."""
    root = os.environ.get("CONFROUTE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "confroute")
    return Path(root) / "responses.sqlite"


def cache_key(**parts: Any) -> str:
    """A stable hash of the request parts (JSON with sorted keys).

    Examples
    --------
    >>> cache_key(model="m", prompt="p") == cache_key(prompt="p", model="m")
    True
    """
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """Answers of earlier calls, on disk, shared between processes.

    Parameters
    ----------
    path : str or Path, optional
        The SQLite file (created with its folder). Default :func:`default_cache_path`.
    enabled : bool, default True
        ``False`` turns the cache off: every lookup misses and nothing is stored.
    timeout : float, default 30.0
        Seconds a writer waits for another process's lock (SQLite's busy timeout).

    Attributes
    ----------
    hits, misses : int
        Lookups of this object that found / did not find an answer.

    Examples
    --------
    >>> import tempfile, os
    >>> c = ResponseCache(os.path.join(tempfile.mkdtemp(), "r.sqlite"))
    >>> c.get("k") is None, c.put("k", {"a": 1}), c.get("k"), (c.hits, c.misses)
    (True, None, {'a': 1}, (1, 1))
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, enabled: bool = True, timeout: float = 30.0) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.enabled = bool(enabled)
        self.timeout = float(timeout)
        self.hits = 0
        self.misses = 0
        self._local = threading.local()
        self._count_lock = threading.Lock()
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(_SCHEMA)
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def get(self, key: str) -> Any | None:
        """The stored answer for ``key``, or None (counted as a hit or a miss)."""
        if not self.enabled:
            self._count(hit=False)
            return None
        row = self._connection().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        self._count(hit=row is not None)
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        """Store a successful answer (JSON-serialisable); a no-op when the cache is off."""
        if not self.enabled:
            return None
        import time

        blob = json.dumps(value, separators=(",", ":"))
        self._connection().execute(
            "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)", (key, blob, time.time())
        )
        return None

    def _count(self, hit: bool) -> None:
        with self._count_lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    def __len__(self) -> int:
        if not self.enabled:
            return 0
        return int(self._connection().execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def clear(self) -> None:
        """Delete every stored answer and reset the counters."""
        if self.enabled:
            self._connection().execute("DELETE FROM responses")
        self.hits = self.misses = 0

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "size": len(self)}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_local=None, _count_lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r}, enabled={self.enabled}, hits={self.hits}, misses={self.misses})"
