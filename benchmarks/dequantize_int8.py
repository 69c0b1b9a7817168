"""Undo ONNX Runtime's dynamic int8 quantisation: int8 weights, float32 activations.

The shared MPNet fallback (``../shared/models/mpnet-sst2-int8``) exists only as a dynamically
quantised ONNX graph (``quantize_dynamic``, per-channel 7-bit weights); its float32 export and
PyTorch weights were not kept. This rewrites every ``DynamicQuantizeLinear -> MatMulInteger ->
Cast -> Mul(scales)`` chain into one float32 ``MatMul`` on the dequantised weights
``(W_int8 - zero_point) * scale`` (per output channel), so that the activations are no longer
quantised at run time. The result is the *weight-only* int8 model (candidate (b) of issue 25): the
same int8 weights, float32 activations, and so outputs that do not depend on which rows share a
batch. It is also the float32 graph that static (calibrated) quantisation starts from.

The embedding tables (``Gather`` + ``DequantizeLinear``) are left as they are: they are
dequantised element by element, which is already batch-invariant.

Usage (numpy 2 + onnx>=1.16 environment, e.g. ``.venv-quantize``)::

    python benchmarks/dequantize_int8.py ../shared/models/mpnet-sst2-int8 .cache/mpnet-sst2-wq
"""

from __future__ import annotations

import argparse
import collections
import shutil
from pathlib import Path


def dequantize(src: Path, dst: Path) -> int:
    """Write ``dst/model.onnx`` (and the tokenizer files); return the number of MatMuls rewritten."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src / "model.onnx"))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = collections.defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)
    drop: set[int] = set()
    new_inits = []
    replace: dict[int, object] = {}
    count = 0
    for n in g.node:
        if n.op_type != "MatMulInteger":
            continue
        xq, wq, _xzp, wzp = n.input
        dql = producer[xq]
        assert dql.op_type == "DynamicQuantizeLinear", dql.op_type
        (cast,) = consumers[n.output[0]]
        (mul,) = consumers[cast.output[0]]
        assert cast.op_type == "Cast" and mul.op_type == "Mul", (cast.op_type, mul.op_type)
        scales_mul = producer[[i for i in mul.input if i != cast.output[0]][0]]
        assert scales_mul.op_type == "Mul"
        w_scale_name = [i for i in scales_mul.input if i in inits][0]
        w = numpy_helper.to_array(inits[wq]).astype(np.float32)
        zp = numpy_helper.to_array(inits[wzp]).astype(np.float32)
        scale = numpy_helper.to_array(inits[w_scale_name]).astype(np.float32)
        w_fp = ((w - zp) * scale).astype(np.float32)
        name = wq.replace("_quantized", "") + "_dequantized"
        new_inits.append(numpy_helper.from_array(w_fp, name))
        replace[id(mul)] = helper.make_node("MatMul", [dql.input[0], name], list(mul.output),
                                            name=n.name + "_fp32")
        drop.update({id(n), id(cast)})
        count += 1
    nodes = [replace.get(id(n), n) for n in g.node if id(n) not in drop]
    # Drop what no longer feeds anything (the DynamicQuantizeLinear nodes, the scale products).
    outputs = {o.name for o in g.output}
    while True:
        used = {i for n in nodes for i in n.input} | outputs
        keep = [n for n in nodes if any(o in used for o in n.output)]
        if len(keep) == len(nodes):
            break
        nodes = keep
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    kept = [i for i in g.initializer if i.name in used] + new_inits
    del g.initializer[:]
    g.initializer.extend(kept)
    onnx.checker.check_model(model)
    dst.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst / "model.onnx"))
    for f in src.iterdir():
        if f.name != "model.onnx":
            shutil.copyfile(f, dst / f.name)
    return count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    ns = p.parse_args()
    n = dequantize(ns.src, ns.dst)
    print(f"wrote {ns.dst / 'model.onnx'}: {n} MatMulInteger chains -> float32 MatMul")


if __name__ == "__main__":
    main()
