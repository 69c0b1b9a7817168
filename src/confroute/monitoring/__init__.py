"""Monitoring a deployed router: anytime-valid certificates from production traffic, alarms.

:mod:`.sequential` holds the statistics (stream certificates, the label-free agreement
certificate, the sequential alarm and what each policy does about it).
"""

from .sequential import (
    PolicyAction,
    StreamCertificate,
    StreamRecords,
    ThresholdEProcess,
    certify_stream,
    label_probability,
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
]

from .ledger import Ledger, LabelError, PostgresLedger, SQLiteLedger, open_ledger
from .monitor import CertificateMonitor, MonitoredResult
from .replay import certify_ledger, import_labels, replay_ledger
from .sinks import HTTPSink, JSONLSink

__all__ += [
    "CertificateMonitor",
    "MonitoredResult",
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
