"""``confroute audit``: read a :class:`~confroute.monitoring.CertificateMonitor`'s ledger.

* ``confroute audit status LEDGER``: the latest certificate and its evidence, in words;
* ``confroute audit labels LEDGER FILE``: import a labels file (JSONL or CSV), all or nothing;
* ``confroute audit replay LEDGER``: recompute every stored certificate from the raw records;
  exit status 1 when one differs from what was stored.

``LEDGER`` is a SQLite file or a ``postgresql://`` URL.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ..exceptions import CLIError

__all__ = ["add_audit_parser", "run_audit"]


def add_audit_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``audit`` on the top-level subparsers."""
    p = sub.add_parser(
        "audit",
        help="a certificate monitor's ledger: status, label import, replay",
        description="Read the ledger of a CertificateMonitor (a SQLite file or a postgresql:// URL).",
    )
    actions = p.add_subparsers(dest="audit_command", metavar="ACTION")
    actions.required = True
    status = actions.add_parser("status", help="the certificate and the evidence, in words")
    status.add_argument("ledger", metavar="LEDGER")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    labels = actions.add_parser("labels", help="import a labels file (JSONL {id, label} lines, or CSV id,label)")
    labels.add_argument("ledger", metavar="LEDGER")
    labels.add_argument("file", metavar="FILE", type=Path)
    replay = actions.add_parser("replay", help="recompute every stored certificate; exit 1 if one differs")
    replay.add_argument("ledger", metavar="LEDGER")
    p.set_defaults(func=run_audit)
    return p


def run_audit(args: argparse.Namespace) -> int:
    """Entry point of ``confroute audit``; returns the exit status."""
    from ..monitoring.ledger import LabelError

    try:
        ledger = _open(args.ledger)
    except CLIError as exc:
        print(f"confroute audit: error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.audit_command == "status":
            return _status(ledger, args.json)
        if args.audit_command == "labels":
            return _labels(ledger, args.file)
        return _replay(ledger)
    except (CLIError, LabelError, ValueError, OSError) as exc:
        print(f"confroute audit {args.audit_command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        ledger.close()


def _open(location: str) -> Any:
    from ..monitoring.ledger import open_ledger

    if not location.startswith(("postgresql://", "postgres://")) and not Path(location).is_file():
        raise CLIError(f"no such ledger file: {location}")
    return open_ledger(location)


def _status(ledger: Any, as_json: bool) -> int:
    from ..monitoring.replay import certify_ledger, config_of

    config = config_of(ledger)
    counts = ledger.counts()
    stored = ledger.certificates()
    if stored:
        body, watermark, source = stored[-1]["body"], stored[-1]["watermark"], "stored"
    else:
        cert, watermark = certify_ledger(ledger)
        body, source = cert.to_dict(), "computed now (none stored yet)"
    eprocess = ledger.get_meta("eprocess") or {}
    changes = ledger.changes()
    streams = ledger.streams()
    if as_json:
        print(json.dumps({"config": config, "evidence": counts, "certificate": body, "watermark": watermark,
                          "eprocess": eprocess, "changes": changes, "streams": streams}, default=str,
                         sort_keys=True))
        return 0
    for line in status_lines(config, counts, body, source, eprocess, changes, streams):
        print(line)
    return 0


def status_lines(config: dict[str, Any], counts: dict[str, int], cert: dict[str, Any], source: str,
                 eprocess: dict[str, Any], changes: list[dict[str, Any]],
                 streams: dict[str, int] | None = None) -> list[str]:
    """The status in words."""
    objective = config["objective"].replace("_", " ")
    lines = [f"objective: {objective} {config['target']:g} at delta {config['delta']:g} "
             f"(audit rate {config['audit_rate']:g})"]
    threshold = cert.get("threshold")
    if cert.get("feasible"):
        lines.append(
            f"certificate ({source}): threshold {threshold:.4f} is certified; coverage {cert.get('coverage', math.nan):.1%}, "
            f"lower confidence bound {cert.get('guaranteed', math.nan):.4f} (estimate {cert.get('estimate', math.nan):.4f})"
        )
    else:
        lines.append(f"certificate ({source}): no candidate threshold is certified yet: every input should go "
                     "to the fallback for the guarantee to hold")
    lines.append(
        f"evidence: {counts['seen']} inputs seen, {counts['sampled']} sampled for a shadow call, "
        f"{counts['audited']} audited, {counts['shadow_failures']} failed shadow calls, "
        f"{counts['disagreements']} disagreements; labels asked {counts['labels_requested']}, "
        f"received {counts['labels_received']}, pending {counts['labels_pending']}"
    )
    if streams and len(streams) > 1:
        lines.append(f"streams (replicas): {len(streams)}: "
                     + ", ".join(f"{name}: {n} inputs" for name, n in streams.items())
                     + "; the deployed threshold and the alarm below are shared by all"
                     + (f" (state version {eprocess['version']})" if "version" in eprocess else ""))
    process = eprocess.get("process") or {}
    if process:
        alarm = process.get("alarm_at")
        state = f"ALARM since input {alarm}" if alarm is not None else "no alarm"
        lines.append(f"alarm: {state} (e-value {process.get('e_value', math.nan):.3g} against the deployed "
                     f"threshold {eprocess.get('threshold')}, alarm at {1 / config['delta']:g})")
    for c in changes:
        lines.append(f"threshold change #{c['ev']}: {c['old']:g} -> {c['new']:g} ({c['reason']}"
                     + (f", reverts #{c['reverts']}" if c["reverts"] is not None else "") + ")")
    return lines


def _labels(ledger: Any, path: Path) -> int:
    from ..monitoring.replay import import_labels

    if not path.is_file():
        raise CLIError(f"no such labels file: {path}")
    n = import_labels(ledger, path)
    counts = ledger.counts()
    print(f"imported {n} labels from {path}; {counts['labels_received']} received, "
          f"{counts['labels_pending']} pending")
    return 0


def _replay(ledger: Any) -> int:
    from ..monitoring.replay import replay_ledger

    results = replay_ledger(ledger)
    bad = [r for r in results if not r["equal"]]
    for r in results:
        mark = "equal" if r["equal"] else "DIFFERS"
        thr = r["recomputed"].get("threshold")
        print(f"certificate #{r['ev']} (records up to event {r['watermark']}): {mark}; threshold {thr}")
        if not r["equal"]:
            print(f"  stored:     {json.dumps(r['stored'], sort_keys=True, default=str)}")
            print(f"  recomputed: {json.dumps(r['recomputed'], sort_keys=True, default=str)}")
    print(f"{len(results)} certificate(s) replayed, {len(bad)} differ")
    return 1 if bad else 0
