"""Where label requests go: a callable, a JSONL file, or an HTTP endpoint.

A label request is a dict ``{"id", "input", "predictions": {"primary", "fallback"}, "reason"}``
(``reason``: ``"disagreement"`` or ``"agreement_sample"``). A sink takes a list of them; when it
raises, the requests stay marked unsent in the ledger and
:meth:`CertificateMonitor.resend_requests <confroute.monitoring.CertificateMonitor.resend_requests>`
sends them again.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["LabelSink", "JSONLSink", "HTTPSink", "as_label_sink"]

LabelSink = Callable[[list[dict[str, Any]]], Any]


class JSONLSink:
    """Append each request as one JSON line to ``path`` (flushed and fsynced per batch).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "requests.jsonl")
    >>> JSONLSink(path)([{"id": "s:1", "input": "great film", "predictions": {}, "reason": "disagreement"}])
    >>> open(path).read().strip()
    '{"id": "s:1", "input": "great film", "predictions": {}, "reason": "disagreement"}'
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def __call__(self, requests: list[dict[str, Any]]) -> None:
        import os

        text = "".join(json.dumps(r) + "\n" for r in requests)
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    def __repr__(self) -> str:
        return f"JSONLSink({str(self.path)!r})"


class HTTPSink:
    """POST each batch of requests as a JSON list to ``url``; a non-2xx answer raises."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = float(timeout)

    def __call__(self, requests: list[dict[str, Any]]) -> None:
        body = json.dumps(requests).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310 - the user's URL
            if not 200 <= answer.status < 300:
                raise ConnectionError(f"label sink {self.url} answered HTTP {answer.status}")

    def __repr__(self) -> str:
        return f"HTTPSink({self.url!r})"


def as_label_sink(sink: Any) -> LabelSink | None:
    """A sink from a callable, an ``http(s)://`` URL or a file path (JSONL); None stays None."""
    if sink is None or callable(sink):
        return sink
    if isinstance(sink, (str, Path)):
        text = str(sink)
        if text.startswith(("http://", "https://")):
            return HTTPSink(text)
        return JSONLSink(text)
    raise TypeError(f"label_sink must be a callable, a JSONL path or an http(s) URL, got {type(sink).__name__}")
