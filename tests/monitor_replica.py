"""One serving replica of the multi-replica test: streams its own inputs through a
CertificateMonitor on a SHARED ledger (PostgreSQL), under its own stream name.

    python monitor_replica.py LEDGER STREAM N_BATCHES BATCH

Like ``monitor_child.py`` (the crash test's victim): resumes after its stream's last committed
input; after each batch waits for the batch's records, shadow calls and label requests to be
committed, answers its own label requests from the ground truth and runs ``check()`` (the alarm
with the ``tighten`` policy; ``loosen``), printing ``committed <inputs>``. Replicas run at the same
time, so their checks race on the shared deployed threshold. At the end it waits for the file
named by the environment variable ``REPLICA_BARRIER`` (the test creates it once every replica is
done streaming), syncs, and prints ``done``, ``{"threshold": ..., "version": ...}`` as JSON, and
``retries <n>``: how many of its checks lost a compare-and-set to the other replica and recomputed.
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _monitor import make_data, make_router  # noqa: E402

from confroute.monitoring import CertificateMonitor  # noqa: E402
from confroute.monitoring.records import stream_ladder  # noqa: E402

OFFSET = {"replica-a": 1000, "replica-b": 3000}  # each replica gets its own inputs
SEED = {"replica-a": 11, "replica-b": 12}  # and its own sampling draws


def answer(monitor, y, offset):
    own = [r["id"] for r in monitor.label_requests() if r["id"].startswith(monitor.stream + ":")]
    if own:
        monitor.add_labels(own, [int(y[offset + int(i.rsplit(":", 1)[1])]) for i in own])


def main(ledger: str, stream: str, n_batches: int, batch: int) -> None:
    X, y = make_data()
    router = make_router(threshold=0.99)  # a cautious start: both replicas' labels soon certify looser ones
    ladder = stream_ladder(router.route(X[:1000]).stage_scores[0])
    offset = OFFSET[stream]
    monitor = CertificateMonitor(router, target_relative_accuracy=0.9, audit_rate=0.5, ledger=ledger, stream=stream,
                                 random_state=SEED[stream], agreement_rate=0.05, ladder=ladder, policy="tighten",
                                 looser="loosen", auto_check=False)
    start = monitor.position
    assert start % batch == 0, start
    retries = 0
    for b in range(start // batch, n_batches):
        monitor.route(X[offset + b * batch:offset + (b + 1) * batch])
        monitor.flush()
        answer(monitor, y, offset)
        retries += monitor.check()["attempts"] - 1  # compare-and-set conflicts with the other replica
        print(f"committed {(b + 1) * batch}", flush=True)
    monitor.flush()
    answer(monitor, y, offset)  # requests of shadow calls resumed at start
    barrier = os.environ.get("REPLICA_BARRIER")
    while barrier and not os.path.exists(barrier):
        time.sleep(0.05)
    state = monitor.sync()
    print("done", flush=True)
    print(json.dumps({"threshold": router.threshold, "version": state["version"]}), flush=True)
    print(f"retries {retries}", flush=True)  # this run's compare-and-set conflicts with the other replica
    monitor.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
