"""From the ledger to the statistics and back (replay): the stream's records as
:class:`~confroute.monitoring.sequential.StreamRecords`, certificates computed from the ledger
(and recomputed by ``confroute audit replay``), and label import.

Everything here reads the monitor's configuration from the ledger itself (``meta`` key
``"config"``), so the command line needs nothing but the ledger.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.classes import label_indices
from .sequential import certify_stream, StreamCertificate, StreamRecords
from .ledger import Ledger, LabelError

__all__ = [
    "OBJECTIVES",
    "stream_records",
    "certify_ledger",
    "replay_ledger",
    "add_labels",
    "import_labels",
    "read_labels_file",
]

#: Monitor parameter -> objective name of :mod:`~confroute.monitoring.sequential`.
OBJECTIVES = {
    "target_relative_accuracy": "relative_accuracy",
    "max_accuracy_drop": "accuracy_drop",
    "target_accuracy": "accuracy",
    "target_agreement": "agreement",
}


def stream_records(rows: dict[str, np.ndarray]) -> StreamRecords:
    """:class:`StreamRecords` from :meth:`Ledger.stream_rows <confroute.monitoring.ledger.Ledger.stream_rows>`."""
    return StreamRecords(
        score=rows["score"], primary=rows["primary"], fallback=rows["fallback"], audited=rows["audited"],
        p_fallback=rows["p_fallback"], label=rows["label"], label_requested=rows["label_requested"],
        p_label=rows["p_label"],
    )


def config_of(ledger: Ledger) -> dict[str, Any]:
    config = ledger.get_meta("config")
    if config is None:
        raise ValueError(f"{ledger.location!r} holds no monitor configuration: is it a monitor's ledger?")
    return dict(config)


def certify_rows(rows: dict[str, np.ndarray], config: dict[str, Any]) -> StreamCertificate:
    """The certificate of the monitor configured by ``config`` on ``rows``."""
    ladder = config.get("ladder")
    return certify_stream(
        stream_records(rows),
        **{config["objective"]: config["target"]},
        delta=config["delta"],
        ladder=None if ladder is None else np.asarray(ladder, dtype=float),
        reference=config.get("reference"),
        min_probability=config.get("min_probability"),
    )


def certify_ledger(ledger: Ledger, upto: int | None = None) -> tuple[StreamCertificate, int]:
    """The certificate from the ledger's records up to event ``upto`` (default: every committed
    one) and the event it was computed up to (its watermark)."""
    config = config_of(ledger)
    watermark = ledger.watermark() if upto is None else int(upto)
    return certify_rows(ledger.stream_rows(upto=watermark), config), watermark


def replay_ledger(ledger: Ledger) -> list[dict[str, Any]]:
    """Recompute every stored certificate from the raw records it was computed from.

    Returns one dict per stored certificate: ``ev``, ``watermark``, ``stored``, ``recomputed``
    (both as dicts) and ``equal`` (their canonical JSON texts are equal)."""
    config = config_of(ledger)
    out = []
    for stored in ledger.certificates():
        again = certify_rows(ledger.stream_rows(upto=stored["watermark"]), config).to_dict()
        equal = _canonical(again) == _canonical(stored["body"])
        out.append({"ev": stored["ev"], "watermark": stored["watermark"], "stored": stored["body"],
                    "recomputed": again, "equal": equal})
    return out


def _canonical(d: dict[str, Any]) -> str:
    return json.dumps(json.loads(json.dumps(d, default=str)), sort_keys=True)


def add_labels(ledger: Ledger, ids: Sequence[Any], labels: Sequence[Any], source: str = "add_labels") -> int:
    """Store labels (class values, matched to the monitor's classes) for requested ids.

    All or nothing: raises :class:`~confroute.monitoring.ledger.LabelError` for unknown ids, ids
    never sent for labelling, duplicates and labels outside the classes. Returns the count."""
    config = config_of(ledger)
    ids = [str(i) for i in ids]
    labels = list(labels)
    if len(ids) != len(labels):
        raise LabelError(f"got {len(ids)} ids but {len(labels)} labels")
    if not ids:
        return 0
    classes = None if config.get("classes") is None else tuple(config["classes"])
    k = config.get("n_classes")
    if k is None:
        raise LabelError("the monitor has not seen an answer yet, so it does not know the classes")
    try:
        index = label_indices(np.array(labels, dtype=object), classes, int(k), what="labels", owner="the router")
    except ValueError as exc:
        raise LabelError(f"{exc}; nothing stored") from exc
    ledger.add_labels(ids, index.tolist(), int(k), source)
    return len(ids)


def read_labels_file(path: str | Path) -> tuple[list[str], list[Any]]:
    """``(ids, labels)`` from a JSONL file (``{"id": ..., "label": ...}`` per line) or a CSV file
    with an ``id`` and a ``label`` column (labels stay strings in a CSV; the monitor matches
    them to string classes, or to integer classes when every one reads as an integer)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    ids: list[str] = []
    labels: list[Any] = []
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if rows and not {"id", "label"} <= set(rows[0]):
            raise LabelError(f"{path}: a labels CSV needs the columns id and label, got {sorted(rows[0])}")
        for r in rows:
            ids.append(r["id"])
            labels.append(r["label"])
        return ids, labels
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            ids.append(str(item["id"]))
            labels.append(item["label"])
        except (ValueError, KeyError, TypeError) as exc:
            raise LabelError(f"{path}:{lineno}: expected a JSON object with id and label ({exc}); nothing stored") from exc
    return ids, labels


def import_labels(ledger: Ledger, path: str | Path, source: str | None = None) -> int:
    """Import a labels file (see :func:`read_labels_file`) in one call; all or nothing."""
    ids, labels = read_labels_file(path)
    config = config_of(ledger)
    classes = config.get("classes")
    if Path(path).suffix.lower() == ".csv" and classes and all(isinstance(c, int) for c in classes):
        try:
            labels = [int(v) for v in labels]
        except ValueError as exc:
            raise LabelError(f"{path}: labels must be integers for classes {classes} ({exc}); nothing stored") from exc
    return add_labels(ledger, ids, labels, source or f"file:{Path(path).name}")
