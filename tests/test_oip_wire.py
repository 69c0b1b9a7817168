"""The binary tensor data extension's codec (confroute.core._oip_wire), without a server.

Bodies built the way Triton's client builds them (its own byte serializer, ``tritonclient.utils``)
decode to the same tensors; answers we encode read back through ``tritonclient``'s own
``InferResult``; malformed bodies raise WireError with a message that says what is wrong.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from confroute.core import _oip_wire as wire


def _body(head: dict, *blobs: bytes) -> tuple[bytes, int]:
    text = json.dumps(head).encode()
    return text + b"".join(blobs), len(text)


def test_every_datatype_round_trips():
    rng = np.random.default_rng(0)
    tensors = [{"name": dt, "datatype": dt, "shape": [2, 3],
                "data": (rng.normal(size=6) * 50).astype(dtype) if dt != "BOOL" else rng.integers(0, 2, 6).astype(bool)}
               for dt, dtype in wire.DTYPES.items()]
    tensors.append({"name": "b", "datatype": "BYTES", "shape": [3], "data": ["é", "", "a b"]})
    body, n = wire.encode({"outputs": tensors}, "outputs", binary=True)
    got = wire.decode(body, n, "outputs")["outputs"]
    for t, g in zip(tensors, got):
        assert "binary_data_size" not in g.get("parameters", {})
        arr = wire.tensor_array(g)
        assert arr.shape == tuple(t["shape"])
        if t["datatype"] == "BYTES":
            assert arr.tolist() == [s.encode() for s in t["data"]]
        else:
            assert arr.dtype == wire.DTYPES[t["datatype"]]
            np.testing.assert_array_equal(arr.ravel(), np.asarray(t["data"]))


def test_json_and_binary_tensors_mix_in_order():
    head = {"inputs": [{"name": "a", "datatype": "INT32", "shape": [2], "parameters": {"binary_data_size": 8}},
                       {"name": "j", "datatype": "FP64", "shape": [1], "data": [1.5]},
                       {"name": "c", "datatype": "BOOL", "shape": [3], "parameters": {"binary_data_size": 3}}]}
    body, n = _body(head, np.array([7, -1], "<i4").tobytes(), b"\x01\x00\x01")
    got = wire.decode(body, str(n), "inputs")["inputs"]
    assert got[0]["data"].tolist() == [7, -1] and got[1]["data"] == [1.5] and got[2]["data"].tolist() == [True, False, True]


def test_a_body_built_with_tritonclients_serializer_decodes():
    from tritonclient.utils import serialize_byte_tensor

    texts = np.array(["a fine film", "naïve", ""], dtype=object)
    raw = serialize_byte_tensor(texts).item()  # as InferInput.set_data_from_numpy does
    head = {"inputs": [{"name": "input", "shape": [3], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}],
            "parameters": {"binary_data_output": True}}
    body, n = _body(head, raw)
    got = wire.decode(body, n, "inputs")
    assert [b.decode() for b in got["inputs"][0]["data"]] == texts.tolist()
    assert wire.binary_outputs(got)("anything") is True


def test_an_answer_reads_back_through_tritonclients_infer_result():
    from tritonclient.http import InferResult

    answer = {"model_name": "m", "outputs": [
        {"name": "label", "datatype": "BYTES", "shape": [2], "data": np.array(["pos", None], dtype=object)},
        {"name": "confidence", "datatype": "FP64", "shape": [2], "data": np.array([0.9, np.nan])},
        {"name": "stage", "datatype": "INT64", "shape": [2], "data": np.array([0, -1])},
        {"name": "degraded", "datatype": "BOOL", "shape": [2], "data": np.array([False, True])}]}
    wants = wire.binary_outputs({"outputs": [{"name": "stage", "parameters": {"binary_data": False}}],
                                 "parameters": {"binary_data_output": True}})
    body, n = wire.encode(answer, "outputs", wants)
    result = InferResult.from_response_body(body, header_length=n)
    assert result.as_numpy("label").tolist() == [b"pos", b""]
    np.testing.assert_array_equal(result.as_numpy("confidence"), [0.9, np.nan])
    assert result.get_output("stage")["data"] == [0, -1]  # binary_data=False on that output wins
    assert result.as_numpy("degraded").tolist() == [False, True]


def test_no_binary_tensor_gives_plain_json_and_no_header():
    body, n = wire.encode({"outputs": [{"name": "x", "datatype": "FP64", "shape": [2],
                                        "data": np.array([1.0, np.nan])}]}, "outputs", binary=False)
    assert n is None and json.loads(body)["outputs"][0]["data"] == [1.0, None]


BYTES_HEAD = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}]}
FP32_HEAD = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]}


@pytest.mark.parametrize("head, blobs, header, message", [
    (FP32_HEAD, [b"\0" * 8], "10000", "past the end"),
    (FP32_HEAD, [b"\0" * 8], "-3", ">= 0"),
    (FP32_HEAD, [b"\0" * 8], "abc", "must be an integer"),
    (FP32_HEAD, [b"\0" * 7], None, "runs past the end"),
    (FP32_HEAD, [b"\0" * 9], None, "add up to 8"),
    ({"inputs": [{**FP32_HEAD["inputs"][0], "parameters": {"binary_data_size": 4}}]}, [b"\0" * 4], None,
     "shape [2] of FP32 needs 8"),
    ({"inputs": [{**FP32_HEAD["inputs"][0], "parameters": {"binary_data_size": -8}}]}, [b"\0" * 8], None,
     "binary_data_size must be >= 0"),
    ({"inputs": [{**FP32_HEAD["inputs"][0], "datatype": "FP8"}]}, [b"\0" * 8], None, "unknown or unsupported datatype 'FP8'"),
    ({"inputs": [{**FP32_HEAD["inputs"][0], "shape": [-2]}]}, [b"\0" * 8], None, "negative dimension"),
    (BYTES_HEAD, [b"\x09\0\0\0ab"], None, "says 9 bytes but only 2 remain"),
    (BYTES_HEAD, [b"\x01\0\0\0a\0"], None, "too short for an element's 4-byte length"),
    ({"inputs": [{**BYTES_HEAD["inputs"][0], "shape": [2]}]}, [b"\x02\0\0\0ab"], None, "hold 1 element(s), the shape says 2"),
])
def test_malformed_bodies_say_what_is_wrong(head, blobs, header, message):
    body, n = _body(head, *blobs)
    with pytest.raises(wire.WireError, match=__import__("re").escape(message)):
        wire.decode(body, n if header is None else header, "inputs")


def test_binary_size_without_the_header_and_a_json_head_that_is_not_json():
    body, _ = _body(FP32_HEAD, b"\0" * 8)
    with pytest.raises(wire.WireError, match="needs the Inference-Header-Content-Length header"):
        wire.decode(body, None, "inputs")
    with pytest.raises(wire.WireError, match="JSON header .the first 3 bytes. is not JSON"):
        wire.decode(b'{"a"' + b"\0", 3, "inputs")
