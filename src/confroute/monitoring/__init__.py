"""Monitoring a deployed router: anytime-valid certificates from production traffic, alarms.

:mod:`.sequential` holds the statistics (stream certificates, the label-free agreement
certificate, the sequential alarm and what each policy does about it); :mod:`.records` the
records and the labelling design; :mod:`.simulate` the simulated streams of the validity suite.
"""

from .records import LADDER_WARMUP, StreamRecords, label_probability, stream_ladder
from .sequential import (
    POLICIES,
    PolicyAction,
    StreamCertificate,
    ThresholdEProcess,
    certify_stream,
    policy_action,
)

__all__ = [
    "StreamRecords",
    "StreamCertificate",
    "ThresholdEProcess",
    "PolicyAction",
    "certify_stream",
    "label_probability",
    "policy_action",
    "stream_ladder",
    "LADDER_WARMUP",
    "POLICIES",
]

from .deploy import Deployment
from .ledger import Ledger, LabelError, PostgresLedger, SQLiteLedger, open_ledger
from .monitor import CertificateMonitor, MonitoredResult
from .replay import certify_ledger, import_labels, replay_ledger
from .sinks import HTTPSink, JSONLSink

__all__ += [
    "CertificateMonitor",
    "MonitoredResult",
    "Deployment",
    "Ledger",
    "SQLiteLedger",
    "PostgresLedger",
    "LabelError",
    "open_ledger",
    "certify_ledger",
    "replay_ledger",
    "import_labels",
    "JSONLSink",
    "HTTPSink",
]
