"""The Open Inference Protocol's binary tensor data extension (KServe v2 / Triton), both ways.

An HTTP body in this extension is a JSON object (a request or a response) followed by the raw
bytes of some of its tensors. The header ``Inference-Header-Content-Length`` gives the length of
the JSON part in bytes; a tensor sent as bytes carries ``parameters.binary_data_size`` (its byte
count) and no ``data``; the tensors' bytes follow the JSON in the order of the tensors. Numbers
are little-endian, row-major, without padding; ``BOOL`` is one byte per element; each ``BYTES``
element is a 4-byte little-endian unsigned length followed by its bytes. A request asks for
binary outputs with ``parameters.binary_data_output`` (all outputs) or ``binary_data`` on one
requested output (which wins). Specification:
https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md

The service's OIP endpoint (:mod:`confroute.integrations.serve`) and
:class:`~confroute.OIPPredictor` both go through this module. Every malformed body raises
:class:`WireError` with a message that says what is wrong (the service answers HTTP 400 with it).

Examples
--------
>>> body, n = encode({"outputs": [{"name": "t", "datatype": "BYTES", "shape": [2], "data": ["a", "bc"]}]},
...                  "outputs", binary=True)
>>> n, body[n:]
(103, b'\\x01\\x00\\x00\\x00a\\x02\\x00\\x00\\x00bc')
>>> decode(body, n, "outputs")["outputs"][0]["data"].tolist()
[b'a', b'bc']
>>> decode(body, len(body) + 1, "outputs")
Traceback (most recent call last):
...
confroute.core._oip_wire.WireError: Inference-Header-Content-Length is 115, past the end of the 114-byte body
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ._json import json_value

__all__ = ["HEADER", "CONTENT_TYPE", "DTYPES", "WireError", "decode", "encode", "tensor_array",
           "encode_bytes", "decode_bytes", "binary_outputs", "requested"]

#: The header that gives the length of the JSON part of a body in this extension.
HEADER = "Inference-Header-Content-Length"
#: The content type of a body with binary tensors.
CONTENT_TYPE = "application/octet-stream"
#: Fixed-size OIP datatypes and their little-endian numpy dtypes (``BYTES`` is variable-size).
DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
_LENGTH = struct.Struct("<I")


class WireError(ValueError):
    """A body or tensor that does not follow the protocol (the message says how)."""


def _header_length(value: Any, size: int) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise WireError(f"{HEADER} must be an integer, got {value!r}") from None
    if n < 0:
        raise WireError(f"{HEADER} must be >= 0, got {n}")
    if n > size:
        raise WireError(f"{HEADER} is {n}, past the end of the {size}-byte body")
    return n


def _count(shape: Any, where: str) -> int:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise WireError(f"{where}: 'shape' must be a list of integers, got {shape!r}")
    if any(d < 0 for d in shape):
        raise WireError(f"{where}: negative dimension in shape {shape}")
    return int(np.prod(shape, dtype=np.int64))


def decode_bytes(buf: bytes | memoryview, count: int | None = None, where: str = "BYTES tensor") -> np.ndarray:
    """The elements of a serialized ``BYTES`` tensor (an object array of ``bytes``).

    ``count``: the number of elements the shape says; the buffer must hold exactly that many.
    """
    view, pos = memoryview(buf), 0
    out: list[bytes] = []
    while pos < len(view):
        if pos + 4 > len(view):
            raise WireError(f"{where}: {len(view) - pos} trailing byte(s), too short for an element's 4-byte length")
        (n,) = _LENGTH.unpack_from(view, pos)
        pos += 4
        if pos + n > len(view):
            raise WireError(f"{where}: element {len(out)} says {n} bytes but only {len(view) - pos} remain")
        out.append(bytes(view[pos:pos + n]))
        pos += n
    if count is not None and len(out) != count:
        raise WireError(f"{where}: the bytes hold {len(out)} element(s), the shape says {count}")
    arr = np.empty(len(out), dtype=object)
    arr[:] = out
    return arr


def encode_bytes(values: Iterable[Any]) -> bytes:
    """Serialize ``BYTES`` elements (``str`` as UTF-8, ``bytes`` as is, ``None`` as empty)."""
    parts = []
    for v in values:
        b = b"" if v is None else v if isinstance(v, bytes) else str(v).encode("utf-8")
        parts.append(_LENGTH.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def _from_bytes(tensor: dict[str, Any], blob: memoryview, where: str) -> np.ndarray:
    datatype = tensor.get("datatype")
    count = _count(tensor.get("shape"), where)
    if datatype == "BYTES":
        return decode_bytes(blob, count, where)
    dtype = DTYPES.get(str(datatype))
    if dtype is None:
        raise WireError(f"{where}: unknown or unsupported datatype {datatype!r}; use one of "
                        f"{['BYTES', *DTYPES]}")
    if len(blob) != count * dtype.itemsize:
        raise WireError(f"{where}: binary_data_size is {len(blob)} bytes, but shape {tensor['shape']} of "
                        f"{datatype} needs {count * dtype.itemsize}")
    return np.frombuffer(blob, dtype=dtype).copy()


def decode(body: bytes, header_length: Any, key: str) -> dict[str, Any]:
    """The JSON object of a body, with each binary tensor's bytes read into its ``data``.

    Parameters
    ----------
    body : bytes
        The whole HTTP body.
    header_length : int, str or None
        The ``Inference-Header-Content-Length`` header; ``None``: the body is all JSON.
    key : {"inputs", "outputs"}
        Where the tensors are: ``"inputs"`` in a request, ``"outputs"`` in a response.

    Returns
    -------
    dict
        The JSON object; a binary tensor's ``data`` is a flat numpy array (``bytes`` objects for
        ``BYTES``), its ``binary_data_size`` parameter removed. JSON tensors are left as they are.

    Raises
    ------
    WireError
        The JSON part is not a JSON object, the header length is past the end, a size is
        negative or not an integer, the sizes do not add up to the bytes after the JSON, a size
        does not match the shape and datatype, or the datatype is unknown.
    """
    n = len(body) if header_length is None else _header_length(header_length, len(body))
    try:
        obj = json.loads(bytes(body[:n]))
    except RecursionError:
        raise WireError("the body is nested too deeply") from None
    except ValueError as exc:
        if header_length is None:
            raise WireError(f"the body is not JSON ({exc}); a body with binary tensors needs the {HEADER} "
                            "header (the length of its JSON part)") from None
        raise WireError(f"the JSON header (the first {n} bytes) is not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise WireError(f"the body must be a JSON object, got {type(obj).__name__}")
    rest = memoryview(body)[n:]
    pos = 0
    tensors = obj.get(key)
    for i, tensor in enumerate(tensors if isinstance(tensors, list) else []):
        params = tensor.get("parameters") if isinstance(tensor, dict) else None
        if not isinstance(params, dict) or "binary_data_size" not in params:
            continue
        where = f"{key}[{i}] ({tensor.get('name')!r})"
        size = params.pop("binary_data_size")
        if not isinstance(size, int) or isinstance(size, bool):
            raise WireError(f"{where}: binary_data_size must be an integer, got {size!r}")
        if size < 0:
            raise WireError(f"{where}: binary_data_size must be >= 0, got {size}")
        if header_length is None:
            raise WireError(f"{where} has binary_data_size but the request has no {HEADER} header")
        if pos + size > len(rest):
            raise WireError(f"{where}: binary_data_size {size} runs past the end of the body "
                            f"({len(rest) - pos} byte(s) left after the JSON and earlier tensors)")
        tensor["data"] = _from_bytes(tensor, rest[pos:pos + size], where)
        pos += size
    if pos != len(rest):
        raise WireError(f"the body has {len(rest)} byte(s) after the JSON header but the tensors' "
                        f"binary_data_size add up to {pos}")
    return obj


def tensor_array(tensor: dict[str, Any], where: str = "tensor") -> np.ndarray:
    """A tensor's data as a numpy array of its shape (JSON or already-decoded binary data).

    Numeric datatypes give their numpy dtype, ``BYTES`` an object array (of ``str`` from JSON,
    ``bytes`` from binary data).
    """
    datatype, shape, data = tensor.get("datatype"), tensor.get("shape"), tensor.get("data")
    count = _count(shape, where)
    assert isinstance(shape, list)
    if data is None:
        raise WireError(f"{where}: no 'data' and no binary_data_size")
    if datatype == "BYTES":
        flat = np.asarray(data, dtype=object).ravel()
        arr = np.empty(flat.size, dtype=object)
        arr[:] = list(flat)
    else:
        dtype = DTYPES.get(str(datatype))
        if dtype is None:
            raise WireError(f"{where}: unknown or unsupported datatype {datatype!r}; use one of {['BYTES', *DTYPES]}")
        try:
            arr = np.asarray(data, dtype=dtype).ravel()
        except (TypeError, ValueError) as exc:
            raise WireError(f"{where}: data is not {datatype} ({exc})") from None
    if arr.size != count:
        raise WireError(f"{where}: shape {shape} does not match {arr.size} data element(s) (it needs {count})")
    return arr.reshape([int(d) for d in shape])


def _to_bytes(tensor: dict[str, Any], where: str) -> bytes:
    datatype = tensor.get("datatype")
    data = tensor.get("data")
    if datatype == "BYTES":
        return encode_bytes(np.asarray(data, dtype=object).ravel().tolist())
    dtype = DTYPES.get(str(datatype))
    if dtype is None:
        raise WireError(f"{where}: unknown or unsupported datatype {datatype!r}")
    return np.ascontiguousarray(np.asarray(data).ravel(), dtype=dtype).tobytes()


def encode(obj: dict[str, Any], key: str, binary: bool | Callable[[str], bool]) -> tuple[bytes, int | None]:
    """A body for ``obj``: its tensors under ``key`` in binary form where ``binary`` says so.

    Parameters
    ----------
    obj : dict
        A request (tensors under ``"inputs"``) or a response (``"outputs"``); a tensor's ``data``
        may be a list or a numpy array. Left unchanged.
    key : {"inputs", "outputs"}
    binary : bool or callable
        Whether to send every tensor as bytes, or a function of the tensor's name saying it.

    Returns
    -------
    (bytes, int or None)
        The body, and the value of the ``Inference-Header-Content-Length`` header (``None``
        when no tensor is binary: the body is plain JSON, send no header).
    """
    wants = binary if callable(binary) else (lambda name: bool(binary))
    out = dict(obj)
    tensors, blobs = [], []
    for i, tensor in enumerate(obj.get(key) or []):
        t = dict(tensor)
        if wants(str(t.get("name"))):
            blob = _to_bytes(t, f"{key}[{i}] ({t.get('name')!r})")
            t.pop("data", None)
            t["parameters"] = {**(t.get("parameters") or {}), "binary_data_size": len(blob)}
            blobs.append(blob)
        elif isinstance(t.get("data"), np.ndarray):
            flat = t["data"].ravel()
            finite = flat.dtype.kind != "f" or bool(np.isfinite(flat).all())
            t["data"] = flat.tolist() if finite else [json_value(v) for v in flat.tolist()]
        tensors.append(t)
    out[key] = tensors
    head = json.dumps(out, allow_nan=False).encode("utf-8")
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)


def binary_outputs(request: dict[str, Any]) -> Callable[[str], bool]:
    """Which outputs a request wants as bytes: ``binary_data`` on a requested output, else the
    request's ``binary_data_output`` parameter (default: JSON)."""
    params = request.get("parameters")
    default = bool(params.get("binary_data_output", False)) if isinstance(params, dict) else False
    asked: dict[str, bool] = {}
    for o in request.get("outputs") or []:
        p = o.get("parameters") if isinstance(o, dict) else None
        if isinstance(p, dict) and "binary_data" in p:
            asked[str(o.get("name"))] = bool(p["binary_data"])
    return lambda name: asked.get(name, default)


def requested(request: dict[str, Any]) -> Sequence[str] | None:
    """The names of the outputs a request asks for (``None``: all)."""
    wanted = request.get("outputs")
    if not isinstance(wanted, list) or not wanted:
        return None
    return [str(o.get("name")) for o in wanted if isinstance(o, dict)]
