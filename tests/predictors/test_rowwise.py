"""Row-wise int8 (``confroute export --quantize rowwise``): a dynamically quantised graph rewritten
so every activation row is quantised on its own.

* brute force: a hand-built ``quantize_dynamic``-shaped graph, rewritten, against a numpy
  reference of per-row symmetric quantisation (opset 13 and 18: ``axes`` attribute and input);
* each row's output equals the row run alone, whatever shares its batch;
* graphs the rewrite does not know are refused with the node named, never half rewritten;
* the shared MPNet int8 (issue 25's check): the same 200 SST-2 dev sentences in 5 random batch
  compositions give identical probabilities, at >= 0.918 dev accuracy (about 40 s).

Needs only onnx and onnxruntime (both environments).
"""

from __future__ import annotations

import numpy as np
import pytest
from _tiny_bert import shared_dir

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from confroute.export import batch_composition_diff, rowwise_int8_graph  # noqa: E402

K, N = 24, 5


def _dynamic_graph(opset: int = 14, *, feed: str = "MatMulInteger", rng_seed: int = 0) -> tuple[object, dict]:
    """x [B, S, K] -> DynamicQuantizeLinear -> MatMulInteger(W int8, per-column zero points) -> Cast
    -> Mul(., Mul(scale, w_scale)) -> Add(bias): the shape quantize_dynamic writes."""
    rng = np.random.default_rng(rng_seed)
    w = rng.integers(-63, 64, (K, N)).astype(np.int8)
    w_zp = rng.integers(-3, 4, N).astype(np.int8)
    w_scale = (rng.random(N) * 0.02 + 0.01).astype(np.float32)
    bias = rng.normal(size=N).astype(np.float32)
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "zp"], name="dql")]
    if feed == "MatMulInteger":
        nodes += [
            helper.make_node("MatMulInteger", ["q", "w", "zp", "w_zp"], ["y_int"], name="mmi"),
            helper.make_node("Cast", ["y_int"], ["y_cast"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["s", "w_scale"], ["scales"]),
            helper.make_node("Mul", ["y_cast", "scales"], ["y_f"]),
            helper.make_node("Add", ["y_f", "bias"], ["y"]),
        ]
    else:  # the quantised tensor goes somewhere the rewrite does not know
        nodes += [helper.make_node("Cast", ["q"], ["qf"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", ["qf", "s"], ["y_f"]),
                  helper.make_node("ReduceSum" if opset < 13 else "Identity", ["y_f"], ["y"])]
    inits = [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (w_zp, "w_zp"), (w_scale, "w_scale"), (bias, "bias"))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", K])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", N])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model, {"w": w, "w_zp": w_zp, "w_scale": w_scale, "bias": bias}


def _reference(x: np.ndarray, p: dict) -> np.ndarray:
    """Per-row symmetric uint8 quantisation (zero point 128), integer product, float scales."""
    s = np.maximum(np.abs(x).max(-1, keepdims=True) / np.float32(127), np.finfo(np.float32).tiny)
    q = np.clip(np.rint(x / s) + 128, 0, 255).astype(np.int64) - 128
    acc = q @ (p["w"].astype(np.int64) - p["w_zp"].astype(np.int64))
    return (acc * (s.astype(np.float64) * p["w_scale"])).astype(np.float64) + p["bias"]


def _session(model: object) -> object:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("opset", [13, 14, 18])
def test_rewrite_matches_per_row_reference(opset):
    model, params = _dynamic_graph(opset)
    new, n = rowwise_int8_graph(model)
    assert n == 1
    ops = [node.op_type for node in new.graph.node]
    assert "DynamicQuantizeLinear" not in ops and "MatMulInteger" not in ops and "MatMulIntegerToFloat" in ops
    rng = np.random.default_rng(opset)
    # rows of very different ranges: one tensor-wide scale would crush the small ones
    x = (rng.normal(size=(3, 7, K)) * rng.choice([0.01, 1.0, 50.0], size=(3, 7, 1))).astype(np.float32)
    x[1, 2] = 0.0  # an all-zero row (padding): scale falls back to the smallest normal float
    got = _session(new).run(None, {"x": x})[0]
    ref = _reference(x, params)
    assert got.shape == (3, 7, N)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    # the source model itself is untouched
    assert "DynamicQuantizeLinear" in [node.op_type for node in model.graph.node]


def test_each_row_is_independent_of_its_batch():
    model, _ = _dynamic_graph()
    dynamic, rowwise = _session(model), _session(rowwise_int8_graph(model)[0])
    rng = np.random.default_rng(3)
    row = rng.normal(size=(1, 4, K)).astype(np.float32)
    loud = (rng.normal(size=(5, 4, K)) * 100).astype(np.float32)  # a batch mate with a wide range
    batch = np.concatenate([row, loud])
    alone_r, batched_r = (rowwise.run(None, {"x": a})[0][0] for a in (row, batch))
    np.testing.assert_array_equal(alone_r, batched_r)
    # ... which the dynamic model is not (the reason for the rewrite): its scale is the batch's
    alone_d, batched_d = (dynamic.run(None, {"x": a})[0][0] for a in (row, batch))
    assert np.max(np.abs(alone_d - batched_d)) > 1e-3


def test_unknown_graphs_are_refused_with_the_node_named():
    model, _ = _dynamic_graph(feed="other")
    with pytest.raises(ValueError, match="DynamicQuantizeLinear 'dql'.*Cast"):
        rowwise_int8_graph(model)
    plain = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]), opset_imports=[helper.make_opsetid("", 14)])
    with pytest.raises(ValueError, match="no DynamicQuantizeLinear.*--quantize int8"):
        rowwise_int8_graph(plain)
    old, _ = _dynamic_graph(opset=12)
    with pytest.raises(ValueError, match="opset >= 13.*opset 12"):
        rowwise_int8_graph(old)


def test_cli_refuses_a_float_onnx_dir(tmp_path):
    from confroute.cli import main

    model, _ = _dynamic_graph(feed="other")
    (tmp_path / "m").mkdir()
    onnx.save(model, str(tmp_path / "m" / "model.onnx"))
    assert main(["export", str(tmp_path / "m"), str(tmp_path / "o"), "--quantize", "rowwise"]) == 2
    assert not (tmp_path / "o" / "model.onnx").exists()


SHARED = shared_dir()
MPNET = SHARED / "models" / "mpnet-sst2-int8"
DEV = SHARED / "data" / "sst2" / "dev.tsv"


@pytest.mark.shared
def test_shared_mpnet_rowwise_is_batch_invariant_and_accurate(tmp_path, capsys):
    for path in (MPNET, DEV):
        if not path.exists():
            pytest.skip(f"shared assets not found: {path} (set CONFROUTE_SHARED to their folder)")
    from confroute.cli import main
    from confroute.integrations.io import load_texts
    from confroute.predictors import ONNXRuntimePredictor

    out = tmp_path / "mpnet-rowwise"
    assert main(["export", str(MPNET), str(out), "--quantize", "rowwise"]) == 0
    assert "batch of 32: 0.00e+00" in capsys.readouterr().out
    assert (out / "tokenizer.json").is_file()
    data = load_texts(DEV)
    texts, labels = list(data.texts), np.asarray(data.labels).astype(int)
    model = ONNXRuntimePredictor(out, num_threads=2, batch_size=32, sort_by_length=False)
    # 5 random batch compositions (sizes 1-32) of the same 200 sentences
    assert batch_composition_diff(model, texts[:200], compositions=5, max_batch_size=32) <= 1e-5
    sorted_model = ONNXRuntimePredictor(out, num_threads=2, batch_size=32, sort_by_length=True)
    accuracy = float(np.mean(sorted_model.predict(texts).probs.argmax(1) == labels))
    assert accuracy >= 0.918, accuracy
