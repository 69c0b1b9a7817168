"""The monitor's ledger: every record, audit, label request, label, certificate and threshold
change, kept so that nothing committed is lost and every certificate can be recomputed.

Two back ends behind one interface, :class:`Ledger`:

* :class:`SQLiteLedger` (the default): one file, stdlib :mod:`sqlite3`, WAL journal, one
  transaction per batch. A process killed mid-stream (SIGKILL) keeps every committed batch and
  none twice: each input has a unique id and position (primary keys), so a restarted stream
  resumes after the last committed position.
* :class:`PostgresLedger`: the same tables in PostgreSQL (``pip install confroute[postgres]``,
  psycopg 3), for several serving replicas sharing one ledger. Each replica has its own
  ``stream`` name (the ids are ``"<stream>:<position>"``, unique across replicas), claimed by one
  live monitor at a time (:meth:`Ledger.claim_stream`: an advisory lock that dies with the
  replica's connection). The deployed threshold and the alarm's e-process are one shared state,
  changed only by a compare-and-set on its version (:meth:`Ledger.update_deployment`, see
  :mod:`confroute.monitoring.deploy`).

Every write transaction first takes a new *event number* (``ev``) from the ``batches`` table and
stamps its rows with it; writers are serialised (SQLite by design, PostgreSQL by a table lock), so
event numbers follow commit order. A certificate stores the last event it saw (its
*watermark*): :meth:`Ledger.stream_rows` with ``upto=watermark`` gives back exactly the rows it
was computed from, which is how ``confroute audit replay`` recomputes it.

Labels are stored as column indices (``label_index``) of the router's classes; the monitor maps
the user's labels with :func:`confroute.core.classes.label_indices`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..exceptions import LabelError

__all__ = ["Ledger", "SQLiteLedger", "PostgresLedger", "LabelError", "open_ledger", "RECORD_FIELDS", "DEPLOYMENT_KEY",
           "deployment_version"]

#: Columns of a record (one routed input), in order, as :meth:`Ledger.add_records` takes them.
RECORD_FIELDS = (
    "id", "stream", "pos", "score", "primary_idx", "fallback_idx", "stage", "p_fallback", "sampled",
    "p_label", "cost", "threshold", "input", "ts",
)

_TABLES = """
CREATE TABLE IF NOT EXISTS batches (ev {serial} PRIMARY KEY, kind TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY, stream TEXT NOT NULL, pos BIGINT NOT NULL, ev BIGINT NOT NULL,
    score DOUBLE PRECISION, primary_idx INTEGER NOT NULL, fallback_idx INTEGER NOT NULL, stage INTEGER NOT NULL,
    p_fallback DOUBLE PRECISION NOT NULL, sampled INTEGER NOT NULL, p_label DOUBLE PRECISION, cost DOUBLE PRECISION,
    threshold DOUBLE PRECISION, input TEXT, ts DOUBLE PRECISION NOT NULL, UNIQUE (stream, pos));
CREATE TABLE IF NOT EXISTS audits (
    id TEXT PRIMARY KEY REFERENCES records(id), ev BIGINT NOT NULL, fallback_idx INTEGER NOT NULL,
    ok INTEGER NOT NULL, error TEXT, shadow_cost DOUBLE PRECISION, p_label DOUBLE PRECISION);
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY REFERENCES records(id), ev BIGINT NOT NULL, p_label DOUBLE PRECISION NOT NULL,
    reason TEXT NOT NULL, payload TEXT, sent INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS labels (
    id TEXT PRIMARY KEY REFERENCES records(id), ev BIGINT NOT NULL, label_idx INTEGER NOT NULL, source TEXT);
CREATE TABLE IF NOT EXISTS certificates (ev BIGINT PRIMARY KEY, watermark BIGINT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    ev BIGINT PRIMARY KEY, old_threshold DOUBLE PRECISION, new_threshold DOUBLE PRECISION,
    reason TEXT NOT NULL, evidence TEXT, reverts BIGINT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS records_ev ON records(ev);
"""


#: PostgreSQL advisory lock (two-key form) held while a ledger creates its tables.
_SCHEMA_LOCK = 0x636F6E66  # "conf"


class Ledger:
    """The storage interface of :class:`~confroute.monitoring.CertificateMonitor` (abstract: use
    :class:`SQLiteLedger`, :class:`PostgresLedger` or :func:`open_ledger`).

    Subclasses provide a DB-API connection (:meth:`_connect`), the placeholder style and the
    type of the event column; every statement is shared.
    """

    placeholder = "?"
    serial = "INTEGER"
    location = ""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._conn = self._connect()
        with self._transaction() as cur:
            self._lock_schema(cur)
            for statement in _TABLES.format(serial=self.serial).split(";"):
                if statement.strip():
                    cur.execute(statement)

    # -- back-end hooks --------------------------------------------------------------------------

    def _connect(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _lock_writers(self, cur: Any) -> None:
        """Serialise writers so that event numbers follow commit order (SQLite already does)."""

    def _lock_schema(self, cur: Any) -> None:
        """Serialise the schema's creation between processes (SQLite's BEGIN IMMEDIATE does)."""

    def _begin(self, cur: Any) -> None:
        cur.execute("BEGIN IMMEDIATE")

    def _commit(self, cur: Any) -> None:
        cur.execute("COMMIT")

    def _rollback(self, cur: Any) -> None:
        if self._conn.in_transaction:
            cur.execute("ROLLBACK")

    # -- plumbing ----------------------------------------------------------------------------------

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self.placeholder)

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._lock:
            cur = self._conn.cursor()
            try:
                self._begin(cur)
                yield cur
                self._commit(cur)
            except BaseException:
                self._rollback(cur)
                raise
            finally:
                cur.close()

    def _new_event(self, cur: Any, kind: str) -> int:
        self._lock_writers(cur)
        cur.execute(self._sql("INSERT INTO batches (kind, ts) VALUES (?, ?) RETURNING ev"), (kind, time.time()))
        return int(cur.fetchone()[0])

    def _read(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._transaction() as cur:
            cur.execute(self._sql(statement), tuple(params))
            return list(cur.fetchall())

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- meta ----------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any:
        """A JSON value stored under ``key`` (None when absent)."""
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction() as cur:
            cur.execute(self._sql("DELETE FROM meta WHERE key = ?"), (key,))
            cur.execute(self._sql("INSERT INTO meta (key, value) VALUES (?, ?)"), (key, json.dumps(value)))

    # -- writes (one transaction each) ---------------------------------------------------------------

    def add_records(self, rows: Sequence[tuple[Any, ...]], requests: Sequence[tuple[Any, ...]] = ()) -> int:
        """Store a batch of records (tuples in :data:`RECORD_FIELDS` order) and the label
        requests known at routing time (``(id, p_label, reason, payload)``), in one transaction.
        Returns the batch's event number."""
        with self._transaction() as cur:
            ev = self._new_event(cur, "records")
            cur.executemany(
                self._sql(
                    "INSERT INTO records (id, stream, pos, score, primary_idx, fallback_idx, stage, p_fallback, "
                    "sampled, p_label, cost, threshold, input, ts, ev) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                [tuple(r) + (ev,) for r in rows],
            )
            self._insert_requests(cur, ev, requests)
            return ev

    def add_audits(self, rows: Sequence[tuple[Any, ...]], requests: Sequence[tuple[Any, ...]] = ()) -> int:
        """Store shadow-call outcomes ``(id, fallback_idx, ok, error, shadow_cost, p_label)`` and the label
        requests they lead to, in one transaction."""
        with self._transaction() as cur:
            ev = self._new_event(cur, "audits")
            cur.executemany(
                self._sql("INSERT INTO audits (id, fallback_idx, ok, error, shadow_cost, p_label, ev) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)"),
                [tuple(r) + (ev,) for r in rows],
            )
            self._insert_requests(cur, ev, requests)
            return ev

    def _insert_requests(self, cur: Any, ev: int, requests: Sequence[tuple[Any, ...]]) -> None:
        if requests:
            cur.executemany(
                self._sql("INSERT INTO requests (id, p_label, reason, payload, ev) VALUES (?, ?, ?, ?, ?)"),
                [tuple(r) + (ev,) for r in requests],
            )

    def mark_sent(self, ids: Sequence[str]) -> None:
        """Record that these label requests reached the label sink."""
        with self._transaction() as cur:
            cur.executemany(self._sql("UPDATE requests SET sent = 1 WHERE id = ?"), [(i,) for i in ids])

    def add_labels(self, ids: Sequence[str], label_index: Sequence[int], n_classes: int, source: str = "") -> int:
        """Store labels (column indices) for requested ids, all or none.

        Raises
        ------
        LabelError
            An id the ledger does not know, an id never sent for labelling, an id given twice or
            already labelled, or an index outside ``0 .. n_classes - 1``.
        """
        ids = [str(i) for i in ids]
        index = [int(v) for v in label_index]
        if len(ids) != len(index):
            raise LabelError(f"got {len(ids)} ids but {len(index)} labels")
        seen: set[str] = set()
        twice = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
        if twice:
            raise LabelError(f"{len(twice)} id(s) given more than once in one call: {twice[:5]}; nothing stored")
        bad = [(i, v) for i, v in zip(ids, index) if not 0 <= v < n_classes]
        if bad:
            raise LabelError(f"labels outside the {n_classes} classes for {bad[:5]}; nothing stored")
        with self._transaction() as cur:
            known, requested, labelled = self._label_status(cur, ids)
            unknown = [i for i in ids if i not in known]
            if unknown:
                raise LabelError(f"{len(unknown)} unknown id(s) (no such record): {unknown[:5]}; nothing stored")
            unasked = [i for i in ids if i not in requested]
            if unasked:
                raise LabelError(
                    f"{len(unasked)} id(s) were never sent for labelling: {unasked[:5]}; their labels would "
                    "bias the certificate (only requested labels are counted); nothing stored"
                )
            dup = [i for i in ids if i in labelled]
            if dup:
                raise LabelError(f"{len(dup)} id(s) already have a label: {dup[:5]}; nothing stored")
            ev = self._new_event(cur, "labels")
            cur.executemany(
                self._sql("INSERT INTO labels (id, label_idx, source, ev) VALUES (?, ?, ?, ?)"),
                [(i, v, source, ev) for i, v in zip(ids, index)],
            )
            return ev

    def _label_status(self, cur: Any, ids: list[str]) -> tuple[set[str], set[str], set[str]]:
        known: set[str] = set()
        requested: set[str] = set()
        labelled: set[str] = set()
        for lo in range(0, len(ids), 500):
            chunk = ids[lo : lo + 500]
            marks = ", ".join([self.placeholder] * len(chunk))
            for table, out in (("records", known), ("requests", requested), ("labels", labelled)):
                cur.execute(f"SELECT id FROM {table} WHERE id IN ({marks})", tuple(chunk))
                out.update(r[0] for r in cur.fetchall())
        return known, requested, labelled

    def add_certificate(self, body: dict[str, Any], watermark: int) -> int:
        """Store a certificate computed from the rows up to event ``watermark``."""
        with self._transaction() as cur:
            ev = self._new_event(cur, "certificate")
            cur.execute(
                self._sql("INSERT INTO certificates (ev, watermark, body) VALUES (?, ?, ?)"),
                (ev, int(watermark), json.dumps(body, sort_keys=True)),
            )
            return ev

    def add_change(
        self, old: float, new: float, reason: str, evidence: dict[str, Any], reverts: int | None = None
    ) -> int:
        """Log a threshold change with its evidence; ``reverts``: the change it undoes."""
        with self._transaction() as cur:
            ev = self._new_event(cur, "change")
            cur.execute(
                self._sql(
                    "INSERT INTO changes (ev, old_threshold, new_threshold, reason, evidence, reverts) "
                    "VALUES (?, ?, ?, ?, ?, ?)"
                ),
                (ev, _num(old), _num(new), reason, json.dumps(evidence, sort_keys=True, default=str), reverts),
            )
            return ev

    def update_deployment(
        self, expected_version: int, state: dict[str, Any], certificate: tuple[dict[str, Any], int] | None = None,
        change: tuple[float, float, str, dict[str, Any], int | None] | None = None,
    ) -> dict[str, Any] | None:
        """Compare-and-set of the shared deployment state (meta key :data:`DEPLOYMENT_KEY`: the
        deployed threshold and the alarm's e-process), in ONE transaction with the certificate
        ``(body, watermark)`` and the threshold change ``(old, new, reason, evidence, reverts)``
        it comes with. Writers are serialised (the event lock), so of two replicas that read the
        same version, the first commits and the second gets None and nothing is stored: it reads
        the new state and starts again. A ``state`` whose ``start_ev`` is None starts its
        e-process at the change's event. Returns the stored state (``version`` one higher)."""
        with self._transaction() as cur:
            self._lock_writers(cur)
            cur.execute(self._sql("SELECT value FROM meta WHERE key = ?"), (DEPLOYMENT_KEY,))
            row = cur.fetchone()
            current = json.loads(row[0]) if row else None
            if deployment_version(current) != int(expected_version):
                return None
            state = dict(state, version=int(expected_version) + 1)
            if certificate is not None:
                ev = self._new_event(cur, "certificate")
                cur.execute(self._sql("INSERT INTO certificates (ev, watermark, body) VALUES (?, ?, ?)"),
                            (ev, int(certificate[1]), json.dumps(certificate[0], sort_keys=True)))
                state["certificate_ev"] = ev
            if change is not None:
                old, new, reason, evidence, reverts = change
                ev = self._new_event(cur, "change")
                cur.execute(
                    self._sql("INSERT INTO changes (ev, old_threshold, new_threshold, reason, evidence, reverts) "
                              "VALUES (?, ?, ?, ?, ?, ?)"),
                    (ev, _num(old), _num(new), reason, json.dumps(evidence, sort_keys=True, default=str), reverts))
                state["change_ev"] = ev
                if state.get("start_ev") is None:
                    state["start_ev"] = ev
            if state.get("start_ev") is None:
                state["start_ev"] = self._new_event(cur, "deployment")
            cur.execute(self._sql("DELETE FROM meta WHERE key = ?"), (DEPLOYMENT_KEY,))
            cur.execute(self._sql("INSERT INTO meta (key, value) VALUES (?, ?)"),
                        (DEPLOYMENT_KEY, json.dumps(state, sort_keys=True)))
            return state

    def claim_stream(self, stream: str, timeout: float = 5.0) -> bool:
        """Claim ``stream`` for this connection's monitor until :meth:`close` (a replica dies:
        its claim goes with it), waiting up to ``timeout`` seconds for another holder to go.
        Returns False when another live monitor still serves it. Default: always True (a
        back end without a cross-process claim)."""
        return True

    # -- reads ----------------------------------------------------------------------------------------

    def watermark(self) -> int:
        """The last committed event number (0 when empty)."""
        return int(self._read("SELECT COALESCE(MAX(ev), 0) FROM batches")[0][0])

    def n_records(self, stream: str | None = None) -> int:
        if stream is None:
            return int(self._read("SELECT COUNT(*) FROM records")[0][0])
        return int(self._read("SELECT COUNT(*) FROM records WHERE stream = ?", (stream,))[0][0])

    def streams(self) -> dict[str, int]:
        """Inputs recorded per stream (one stream per serving replica)."""
        return {str(r[0]): int(r[1]) for r in self._read(
            "SELECT stream, COUNT(*) FROM records GROUP BY stream ORDER BY stream")}

    def next_pos(self, stream: str) -> int:
        """The position after the last committed record of ``stream``."""
        return int(self._read("SELECT COALESCE(MAX(pos) + 1, 0) FROM records WHERE stream = ?", (stream,))[0][0])

    def stream_rows(self, upto: int | None = None) -> dict[str, np.ndarray]:
        """Every record with what was known of it at event ``upto`` (default: now), ordered by
        (event, stream, position): arrays ``id``, ``score``, ``primary``, ``fallback`` (-1 where
        unknown), ``audited`` (the fallback was called: deferred, or sampled for a shadow call;
        a shadow call without a stored outcome counts as called and failed), ``p_fallback``,
        ``sampled``, ``audit_failed``, ``label`` (-1 where unknown), ``label_requested``,
        ``p_label`` (0 where the fallback's answer is unknown), ``cost``, ``shadow_cost``,
        ``stage``, ``ev`` (the event that stored the record)."""
        limit = 2**62 if upto is None else int(upto)
        rows = self._read(
            "SELECT r.id, r.score, r.primary_idx, r.fallback_idx, r.p_fallback, r.sampled, r.cost, r.stage, "
            "a.fallback_idx, a.ok, a.shadow_cost, COALESCE(r.p_label, a.p_label), l.label_idx, q.id, r.ev "
            "FROM records r "
            "LEFT JOIN audits a ON a.id = r.id AND a.ev <= ? "
            "LEFT JOIN requests q ON q.id = r.id AND q.ev <= ? "
            "LEFT JOIN labels l ON l.id = r.id AND l.ev <= ? "
            "WHERE r.ev <= ? ORDER BY r.ev, r.stream, r.pos",
            (limit, limit, limit, limit),
        )
        return _rows_to_arrays(rows)

    def pending_audits(self, stream: str | None = None) -> list[tuple[str, str | None]]:
        """``(id, input JSON)`` of sampled records whose shadow call has no stored outcome (of one
        ``stream`` only, when given: a replica resumes its own)."""
        where, params = ("", ()) if stream is None else (" AND r.stream = ?", (stream,))
        rows = self._read(
            "SELECT r.id, r.input FROM records r LEFT JOIN audits a ON a.id = r.id "
            f"WHERE r.sampled = 1 AND a.id IS NULL{where} ORDER BY r.ev, r.stream, r.pos", params
        )
        return [(r[0], r[1]) for r in rows]

    def requests(self, pending_only: bool = False, unsent_only: bool = False) -> list[dict[str, Any]]:
        """Label requests (with their payloads), oldest first."""
        where = []
        if pending_only:
            where.append("l.id IS NULL")
        if unsent_only:
            where.append("q.sent = 0")
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        rows = self._read(
            "SELECT q.id, q.p_label, q.reason, q.payload, q.sent, l.label_idx FROM requests q "
            f"LEFT JOIN labels l ON l.id = q.id{clause} ORDER BY q.ev, q.id"
        )
        return [
            {"id": r[0], "p_label": r[1], "reason": r[2], "payload": None if r[3] is None else json.loads(r[3]),
             "sent": bool(r[4]), "label_index": r[5]}
            for r in rows
        ]

    def certificates(self) -> list[dict[str, Any]]:
        """Stored certificates, oldest first: ``{"ev", "watermark", "body"}``."""
        rows = self._read("SELECT ev, watermark, body FROM certificates ORDER BY ev")
        return [{"ev": int(r[0]), "watermark": int(r[1]), "body": json.loads(r[2])} for r in rows]

    def changes(self) -> list[dict[str, Any]]:
        """Logged threshold changes, oldest first."""
        rows = self._read(
            "SELECT ev, old_threshold, new_threshold, reason, evidence, reverts FROM changes ORDER BY ev"
        )
        return [
            {"ev": int(r[0]), "old": _float(r[1]), "new": _float(r[2]), "reason": r[3],
             "evidence": json.loads(r[4]) if r[4] else {}, "reverts": r[5]}
            for r in rows
        ]

    def counts(self) -> dict[str, int]:
        """Evidence counts: inputs seen, sampled for audit, audited, failed shadow calls,
        disagreements known, labels requested, received and pending."""
        one = lambda q: int(self._read(q)[0][0])  # noqa: E731
        requested = one("SELECT COUNT(*) FROM requests")
        received = one("SELECT COUNT(*) FROM labels")
        return {
            "seen": one("SELECT COUNT(*) FROM records"),
            "sampled": one("SELECT COUNT(*) FROM records WHERE sampled = 1"),
            "audited": one("SELECT COUNT(*) FROM audits WHERE ok = 1"),
            "shadow_failures": one("SELECT COUNT(*) FROM audits WHERE ok = 0"),
            "disagreements": one(
                "SELECT COUNT(*) FROM records r LEFT JOIN audits a ON a.id = r.id WHERE "
                "(r.fallback_idx >= 0 AND r.fallback_idx <> r.primary_idx) OR "
                "(a.ok = 1 AND a.fallback_idx <> r.primary_idx)"
            ),
            "labels_requested": requested,
            "labels_received": received,
            "labels_pending": requested - received,
        }


#: The meta key of the shared deployment state (kept under its first name: ledgers written
#: before replicas shared it read the same).
DEPLOYMENT_KEY = "eprocess"


def deployment_version(state: dict[str, Any] | None) -> int:
    """The version of a stored deployment state: 0 when there is none (or an older ledger's
    state without a version)."""
    return 0 if not state else int(state.get("version", 0))


def _claim_key(stream: str) -> int:
    """A signed 64-bit advisory-lock key for a stream name."""
    digest = hashlib.blake2b(f"confroute-stream:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _wait_for(attempt: Any, timeout: float) -> bool:
    deadline = time.monotonic() + max(0.0, float(timeout))
    while True:
        if attempt():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


class SQLiteLedger(Ledger):
    """The default ledger: one SQLite file (WAL journal, ``synchronous=FULL``: a committed batch
    survives a crash of the process and of the machine).

    Parameters
    ----------
    path : str or path-like
        The database file (created when missing); ``":memory:"`` for a throw-away ledger.

    Examples
    --------
    >>> ledger = SQLiteLedger(":memory:")
    >>> ledger.add_records([("s:0", "s", 0, 0.9, 1, -1, 0, 0.1, 0, None, None, 0.8, None, 0.0)])
    1
    >>> ledger.counts()["seen"], ledger.next_pos("s")
    (1, 1)
    """

    def __init__(self, path: Any) -> None:
        self.path = str(path)
        self.location = self.path
        self._claims: list[Any] = []
        super().__init__()

    def _connect(self) -> Any:
        import sqlite3

        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=60)
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def claim_stream(self, stream: str, timeout: float = 5.0) -> bool:
        """An exclusive ``flock`` on ``<path>.stream-<hash>.lock`` (no claim for ``:memory:``, nor
        where ``fcntl`` is missing: Windows)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return True
        if self.path == ":memory:":
            return True

        handle = open(f"{self.path}.stream-{_claim_key(stream) & 0xFFFFFFFF:08x}.lock", "a")  # noqa: SIM115

        def attempt() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError:
                return False

        if not _wait_for(attempt, timeout):
            handle.close()
            return False
        self._claims.append(handle)
        return True

    def close(self) -> None:
        super().close()
        for handle in self._claims:
            handle.close()  # releases the flock
        self._claims.clear()

    def __repr__(self) -> str:
        return f"SQLiteLedger({self.path!r})"


class PostgresLedger(Ledger):
    """The same ledger in PostgreSQL (psycopg 3; ``pip install confroute[postgres]``).

    Parameters
    ----------
    dsn : str
        A libpq connection string or URL, e.g. ``"postgresql://user@host:5432/db"``.
    """

    placeholder = "%s"
    serial = "BIGSERIAL"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.location = dsn
        super().__init__()

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ImportError("PostgresLedger needs psycopg 3: pip install 'confroute[postgres]'") from exc
        return psycopg.connect(self.dsn, autocommit=False)

    def _begin(self, cur: Any) -> None:
        pass  # psycopg opens a transaction on the first statement

    def _commit(self, cur: Any) -> None:
        self._conn.commit()

    def _rollback(self, cur: Any) -> None:
        self._conn.rollback()

    def _lock_writers(self, cur: Any) -> None:
        cur.execute("LOCK TABLE batches IN EXCLUSIVE MODE")

    def _lock_schema(self, cur: Any) -> None:
        # Concurrent CREATE TABLE IF NOT EXISTS can fail in PostgreSQL's catalog (UniqueViolation
        # on pg_type) when several replicas open a new ledger at once: one at a time, per database.
        # (The two-key form: its key space does not overlap the stream claims' one-key locks.)
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_SCHEMA_LOCK, 0))

    def claim_stream(self, stream: str, timeout: float = 5.0) -> bool:
        """A session-level advisory lock keyed by the stream name: released when the ledger is
        closed or the replica's connection dies (a SIGKILLed replica's claim goes with it)."""
        key = _claim_key(stream)

        def attempt() -> bool:
            return bool(self._read("SELECT pg_try_advisory_lock(?)", (key,))[0][0])

        return _wait_for(attempt, timeout)

    def __repr__(self) -> str:
        return f"PostgresLedger({self.dsn!r})"


def open_ledger(ledger: Ledger | str | Any) -> Ledger:
    """A ledger from a :class:`Ledger`, a ``postgresql://`` URL or a SQLite file path.

    Examples
    --------
    >>> open_ledger(":memory:")
    SQLiteLedger(':memory:')
    """
    if isinstance(ledger, Ledger):
        return ledger
    text = str(ledger)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresLedger(text)
    return SQLiteLedger(text)


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if np.isnan(x) else (1e308 if x == np.inf else x)


def _float(x: Any) -> float:
    if x is None:
        return float("nan")
    return float("inf") if float(x) >= 1e308 else float(x)


def _rows_to_arrays(rows: list[tuple[Any, ...]]) -> dict[str, np.ndarray]:
    n = len(rows)
    col = list(zip(*rows)) if rows else [()] * 15

    def f(i: int) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in col[i]], dtype=float).reshape(n)

    def k(i: int, missing: int = -1) -> np.ndarray:
        return np.array([missing if v is None else v for v in col[i]], dtype=np.int64).reshape(n)

    route_fallback, audit_fallback, audit_ok = k(3), k(8), k(9, 0)
    fallback = np.where(route_fallback >= 0, route_fallback, np.where(audit_ok == 1, audit_fallback, -1))
    p_label = f(11)
    sampled = k(5).astype(bool)
    return {
        "id": np.array(col[0], dtype=object).reshape(n),
        "score": f(1),
        "primary": k(2),
        "fallback": fallback,
        "p_fallback": f(4),
        "sampled": sampled,
        "audited": sampled | (route_fallback >= 0),
        "audit_failed": (k(9, 1) == 0),
        "cost": f(6),
        "stage": k(7),
        "shadow_cost": f(10),
        "label_requested": np.array([v is not None for v in col[13]], dtype=bool).reshape(n),
        "p_label": np.where(np.isnan(p_label), 0.0, p_label),
        "label": k(12),
        "ev": k(14),
    }
