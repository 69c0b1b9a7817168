"""Row-wise int8: a dynamically quantised ONNX model made batch-invariant, at int8 speed.

ONNX Runtime's dynamic quantisation (``quantize_dynamic``, what ``confroute export --quantize
int8`` writes) quantises each matrix multiplication's input with **one** scale and zero point
computed at run time from the whole input tensor (``DynamicQuantizeLinear``). In a batch that
tensor holds every text of the batch (and its padding), so a text's probabilities depend on the
texts it was batched with: up to 0.41 apart on 200 SST-2 dev sentences for the shared MPNet
(``docs/serving.md``), which is why such a fallback had to be served one text per call.

:func:`rowwise_int8_graph` (and :func:`confroute.export.rowwise_int8` on a model directory) rewrites each ``DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul``
chain so that every **row** (every token of every text) is quantised with its own symmetric scale
``max|x_row| / 127`` and zero point 128, computed from that row alone; the integer product then
runs in ONNX Runtime's fused ``MatMulIntegerToFloat`` kernel with the row scales as its
``a_scale``. A row's integers, and so a text's output, no longer depend on any other row: outputs
are equal whatever the batch composition and padding (0 difference measured; the float
operations outside the matrix products are row-wise too). The int8 weights, their scales and zero
points are kept as they are: nothing is recalibrated and no float32 model is needed.

Measured on the shared MPNet int8 (SST-2 dev, 1 ONNX Runtime thread; ``benchmarks/bench_fallback.py``,
docs/backends.md): dev accuracy 0.9197 (dynamic int8 one text per call 0.9220, batched 0.9117;
float32 0.9220), 0 batch-composition difference, and sorted batches of 32 at 0.92x the speed of the
dynamic model's batches: 1.78x its one-text-per-call rate.

The rewritten graph uses one ONNX Runtime contrib operator (``com.microsoft.MatMulIntegerToFloat``):
it runs on ONNX Runtime's CPU provider, not on other runtimes. Only ``onnx`` and ``onnxruntime``
are needed (no quantisation tools, any numpy).

Part of :mod:`confroute.export` (which re-exports its public names).
"""

from __future__ import annotations

from typing import Any

import numpy as np


__all__ = ["rowwise_int8_graph", "import_onnx"]

_PREFIX = "confroute_rowwise"


def import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError("rowwise_int8 rewrites ONNX graphs with the onnx package: "
                          "pip install 'confroute[onnx]'") from None
    return onnx


def _opset(model: Any) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    raise ValueError("the model declares no default-domain opset")


class _Graph:
    """Producers, consumers and constant values of a graph (what the pattern match reads)."""

    def __init__(self, graph: Any, numpy_helper: Any) -> None:
        self.consumers: dict[str, list[Any]] = {}
        self.producer: dict[str, Any] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
            for name in node.output:
                self.producer[name] = node
        self.constants: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.outputs = {o.name for o in graph.output}

    def only_consumer(self, name: str, op_type: str, where: str) -> Any:
        users = self.consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != op_type or name in self.outputs:
            found = [u.op_type for u in users] + (["graph output"] if name in self.outputs else [])
            raise ValueError(f"{where}: expected {name!r} to feed one {op_type} node, found {found or 'nothing'}; "
                             "rowwise_int8 rewrites graphs written by onnxruntime.quantization.quantize_dynamic")
        return users[0]


def _match(g: _Graph, dql: Any) -> list[tuple[Any, Any, Any, str, str]]:
    """Every ``MatMulInteger -> Cast -> Mul(., Mul(scale, w_scale))`` fed by ``dql``, as
    (matmul, cast, mul, w_scale name, scales-product name)."""
    q, scale, zero_point = dql.output
    where = f"DynamicQuantizeLinear {dql.name or dql.output[0]!r}"
    chains = []
    for mm in g.consumers.get(q, []):
        if mm.op_type != "MatMulInteger" or list(mm.input[:1]) != [q] or len(mm.input) < 3 or mm.input[2] != zero_point:
            raise ValueError(f"{where}: its output feeds {mm.op_type} {mm.name!r}, not a MatMulInteger "
                             "(input A, with its zero point): rowwise_int8 rewrites MatMul layers only")
        weight = mm.input[1]
        if weight not in g.constants or g.constants[weight].ndim != 2:
            raise ValueError(f"{where}: MatMulInteger {mm.name!r} multiplies by {weight!r}, not a constant 2-D weight")
        cast = g.only_consumer(mm.output[0], "Cast", where)
        mul = g.only_consumer(cast.output[0], "Mul", where)
        product = [i for i in mul.input if i != cast.output[0]]
        node = g.producer.get(product[0]) if len(product) == 1 else None
        if node is None or node.op_type != "Mul" or scale not in node.input:
            raise ValueError(f"{where}: {mul.name!r} does not multiply by (activation scale x weight scale)")
        w_scale = [i for i in node.input if i != scale]
        if len(w_scale) != 1 or w_scale[0] not in g.constants:
            raise ValueError(f"{where}: the weight scale of {mm.name!r} is not a constant")
        chains.append((mm, cast, mul, w_scale[0], product[0]))
    users = {id(u) for u in g.consumers.get(scale, [])}
    if users - {id(g.producer[c[4]]) for c in chains} or scale in g.outputs:
        raise ValueError(f"{where}: its scale is used outside the MatMul layers it quantises")
    if not chains:
        raise ValueError(f"{where}: its output feeds no MatMulInteger")
    return chains


def _bias_add(g: _Graph, name: str, n_out: int) -> tuple[Any, str] | None:
    """The ``Add`` of a constant bias of ``n_out`` floats that is the only use of ``name``, if any."""
    users = g.consumers.get(name, [])
    if len(users) != 1 or users[0].op_type != "Add" or name in g.outputs:
        return None
    other = [i for i in users[0].input if i != name]
    if len(other) != 1 or other[0] not in g.constants:
        return None
    value = g.constants[other[0]]
    if value.shape != (n_out,) or value.dtype != np.float32:
        return None
    return users[0], other[0]


# long: one flat list of the nodes each rewritten chain becomes, in graph order
def rowwise_int8_graph(model: Any) -> tuple[Any, int]:
    """A copy of ``model`` (an ``onnx.ModelProto`` from ``quantize_dynamic``) whose activations are
    quantised row by row; returns ``(new_model, layers_rewritten)``.

    Each ``DynamicQuantizeLinear(x)`` becomes: ``s = max(max|x| over the last axis / 127, tiny)``
    per row, ``q = QuantizeLinear(reshape(x, [-1, K]), s, 128)`` (per-axis, uint8); each
    ``MatMulInteger(q, W, zp, w_zp) -> Cast -> Mul(., s * w_scale)`` becomes
    ``MatMulIntegerToFloat(q, W, s[:, None], w_scale, 128, w_zp)`` reshaped back to ``x``'s
    leading shape. Everything else is kept.

    Raises
    ------
    ValueError
        When the model has no ``DynamicQuantizeLinear``, or one feeds anything but the pattern
        above (the message names the node): such a model is left to the caller, never half
        rewritten.

    Examples
    --------
    >>> import onnx                                                           # doctest: +SKIP
    >>> new, n = rowwise_int8_graph(onnx.load("mpnet-sst2-int8/model.onnx"))  # doctest: +SKIP
    >>> n                                                                     # doctest: +SKIP
    50
    """
    onnx = import_onnx()
    from onnx import helper, numpy_helper

    model = type(model).FromString(model.SerializeToString())
    opset = _opset(model)
    if opset < 13:
        raise ValueError(f"rowwise_int8 needs opset >= 13 (per-axis QuantizeLinear); the model has opset {opset}: "
                         "export it again with opset 13 or later")
    graph = model.graph
    g = _Graph(graph, numpy_helper)
    dqls = [n for n in graph.node if n.op_type == "DynamicQuantizeLinear"]
    if not dqls:
        raise ValueError("the model has no DynamicQuantizeLinear node: rowwise_int8 rewrites a dynamically "
                         "quantised model (confroute export --quantize int8, or quantize_dynamic)")
    p = _PREFIX
    consts: dict[str, np.ndarray] = {
        f"{p}_127": np.array(127.0, np.float32),
        f"{p}_tiny": np.array(np.finfo(np.float32).tiny, np.float32),
        f"{p}_zp": np.array(128, np.uint8),
        f"{p}_zp1": np.array([128], np.uint8),
        f"{p}_m1": np.array([-1], np.int64),
        f"{p}_0": np.array([0], np.int64),
        f"{p}_rows1": np.array([-1, 1], np.int64),
    }
    replace: dict[int, list[Any]] = {}
    drop: set[int] = set()

    def reduce(op: str, x: str, out: str) -> Any:
        if opset >= 18:  # axes became an input
            return helper.make_node(op, [x, f"{p}_m1"], [out], keepdims=1)
        return helper.make_node(op, [x], [out], axes=[-1], keepdims=1)

    for k, dql in enumerate(dqls):
        chains = _match(g, dql)
        x, (q, _, _) = dql.input[0], dql.output
        t = f"{p}{k}_"
        rows_scale = t + "scale_rows"   # [rows, 1]
        replace[id(dql)] = [
            reduce("ReduceMax", x, t + "max"),
            reduce("ReduceMin", x, t + "min"),
            helper.make_node("Neg", [t + "min"], [t + "negmin"]),
            helper.make_node("Max", [t + "max", t + "negmin"], [t + "absmax"]),
            helper.make_node("Div", [t + "absmax", f"{p}_127"], [t + "s0"]),
            helper.make_node("Max", [t + "s0", f"{p}_tiny"], [t + "s"]),
            helper.make_node("Reshape", [t + "s", f"{p}_m1"], [t + "scale"]),
            helper.make_node("Reshape", [t + "s", f"{p}_rows1"], [rows_scale]),
            helper.make_node("Shape", [x], [t + "shape"]),
            helper.make_node("Gather", [t + "shape", f"{p}_m1"], [t + "k"], axis=0),
            helper.make_node("Concat", [f"{p}_m1", t + "k"], [t + "shape2"], axis=0),
            helper.make_node("Reshape", [x, t + "shape2"], [t + "x2"]),
            helper.make_node("Shape", [t + "scale"], [t + "n"]),
            helper.make_node("Expand", [f"{p}_zp1", t + "n"], [t + "zps"]),
            helper.make_node("QuantizeLinear", [t + "x2", t + "scale", t + "zps"], [q], axis=0),
            helper.make_node("Slice", [t + "shape", f"{p}_0", f"{p}_m1"], [t + "lead"]),
        ]
        for j, (mm, cast, mul, w_scale, product) in enumerate(chains):
            n_out = int(g.constants[mm.input[1]].shape[1])
            u = f"{t}{j}_"
            consts[u + "n"] = np.array([n_out], np.int64)
            inputs = [q, mm.input[1], rows_scale, w_scale, f"{p}_zp"] + ([mm.input[3]] if len(mm.input) > 3 else [])
            out, y2 = mul.output[0], u + "y2"
            matmul = [helper.make_node("MatMulIntegerToFloat", inputs, [y2], domain="com.microsoft",
                                       name=mm.name or u + "matmul")]
            bias = _bias_add(g, out, n_out)
            if bias is not None:
                # The layer's bias is added to the 2-D product, before the reshape (as a separate
                # Add, not MatMulIntegerToFloat's bias input: with a per-row a_scale, ONNX Runtime
                # 1.32 multiplies the bias by the row's scale too, measured).
                matmul.append(helper.make_node("Add", [y2, bias[1]], [u + "biased"]))
                drop.add(id(bias[0]))
                out, y2 = bias[0].output[0], u + "biased"
            replace[id(mm)] = matmul + [
                helper.make_node("Concat", [t + "lead", u + "n"], [u + "shape"], axis=0),
                helper.make_node("Reshape", [y2, u + "shape"], [out]),
            ]
            drop.update((id(cast), id(mul), id(g.producer[product])))
    nodes = []
    for node in graph.node:
        if id(node) not in drop:
            nodes.extend(replace.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in consts.items())
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    # Recorded intermediate shapes are dropped (ONNX Runtime infers what it needs): with them it
    # fuses the float parts into SkipLayerNormalization and BiasGelu, which ran about 12% slower on
    # the row-wise MPNet here (1 thread; 0.9197 against 0.9209 dev accuracy: one sentence moves).
    del graph.value_info[:]
    if model.ByteSize() < 2**31 - 2**20:  # the checker takes protobufs under 2 GB only
        onnx.checker.check_model(model)
    return model, len(dqls)
