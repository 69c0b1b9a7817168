"""A process that streams inputs through a CertificateMonitor (the crash test's victim).

    python monitor_child.py LEDGER N_BATCHES BATCH

Resumes after the ledger's last committed input; after each batch it waits for the batch's
records, shadow calls and label requests to be committed, answers the label requests from the
ground truth, stores a certificate every 4 batches, and prints ``committed <inputs>``. At the
end it prints ``done`` and the final certificate as JSON.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _monitor import make_data, make_router  # noqa: E402

from confroute.monitoring import CertificateMonitor  # noqa: E402
from confroute.monitoring.records import stream_ladder  # noqa: E402


def main(ledger: str, n_batches: int, batch: int) -> None:
    X, y = make_data()
    router = make_router()
    ladder = stream_ladder(router.route(X[:1000]).stage_scores[0])  # fixed from calibration data
    X, y = X[1000:], y[1000:]
    monitor = CertificateMonitor(router, target_relative_accuracy=0.9, audit_rate=0.25, ledger=ledger,
                                 random_state=7, agreement_rate=0.05, ladder=ladder, auto_check=False)
    start = monitor.position
    assert start % batch == 0, start
    for b in range(start // batch, n_batches):
        monitor.route(X[b * batch:(b + 1) * batch])
        monitor.flush()
        pending = monitor.label_requests()
        if pending:
            ids = [r["id"] for r in pending]
            monitor.add_labels(ids, [int(y[int(i.rsplit(":", 1)[1])]) for i in ids])
        if b % 4 == 3:
            monitor.certificate()
        print(f"committed {(b + 1) * batch}", flush=True)
    monitor.flush()
    pending = monitor.label_requests()  # requests from shadow calls resumed at start
    if pending:
        ids = [r["id"] for r in pending]
        monitor.add_labels(ids, [int(y[int(i.rsplit(":", 1)[1])]) for i in ids])
    final = monitor.certificate()
    print("done", flush=True)
    print(json.dumps(final.to_dict(), sort_keys=True), flush=True)
    monitor.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
