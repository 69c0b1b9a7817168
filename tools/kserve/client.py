"""Run KServe's Python client (kserve 0.21.0) against an OIP endpoint, from the kserve venv.

``tools/kserve_venv.sh`` builds that venv (kserve pins clash with the main one). The test runs this
file there as a subprocess: it reads ``{"url", "model", "name", "datatype", "data"}`` as JSON on
stdin, sends one inference request with the client's defaults (``InferenceRESTClient`` with the
``v2`` protocol, ``InferInput.set_data_from_numpy`` with its default ``binary_data=True``), and
prints ``{output name: list}`` as JSON.
"""

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def main() -> None:
    a = json.load(sys.stdin)
    if a["datatype"] == "BYTES":
        arr = np.array(a["data"], dtype=object)
    else:
        arr = np.array(a["data"], dtype={"FP32": np.float32, "FP64": np.float64}[a["datatype"]])
    tensor = InferInput(name=a["name"], shape=list(arr.shape), datatype=a["datatype"])
    tensor.set_data_from_numpy(arr)  # default: binary_data=True
    request = InferRequest(model_name=a["model"], infer_inputs=[tensor])
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    try:
        response = await client.infer(a["url"], request, model_name=a["model"])
    finally:
        await client.close()
    out = {}
    for o in response.outputs:
        values = o.as_numpy().tolist()
        out[o.name] = [v.decode() if isinstance(v, bytes) else v for v in values]
    params = tensor.parameters or {}
    print(json.dumps({"outputs": out, "binary_request": "binary_data_size" in dict(params)}))


asyncio.run(main())
