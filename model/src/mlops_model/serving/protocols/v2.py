"""The Open Inference Protocol V2 over REST (KServe, Triton, Seldon MLServer), JSON only.

Inference input: either one ``FP32``/``FP64`` tensor of shape ``[N, 4]`` (features in
schema order; ``data`` flat row-major or nested), or one tensor per feature, named
after it, of shape ``[N]`` or ``[N, 1]``. Outputs: ``predictions`` (``BYTES``, the
class names, ``[N]``) and ``probabilities`` (``FP64``, ``[N, 3]``, columns in class
order); the request's ``outputs`` list picks among them, its ``id`` is echoed.
Values follow the predictor's shared rules (finite numbers only).

Not supported: the binary tensor data extension. A request carrying binary input
(an ``Inference-Header-Content-Length`` header) is refused with 400; a request
asking for binary *outputs* (``"binary_data": true``, tritonclient's default) gets
plain JSON, which such clients parse when the header is absent.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import orjson

from mlops_model import __version__
from mlops_model.schema import CLASS_NAMES, FEATURE_NAMES
from mlops_model.serving.errors import ClientError
from mlops_model.serving.holder import FloatArray, LoadedModel
from mlops_model.serving.metrics import Metrics
from mlops_model.serving.validation import json_type, number_rows, parse_json

SERVER_NAME = "mlops-predictor"
INPUT_NAME = "input"
OUTPUTS: tuple[str, ...] = ("predictions", "probabilities")
FLOAT_TYPES = frozenset({"FP32", "FP64"})
BINARY_HEADER = "Inference-Header-Content-Length"
_WIDTH = len(FEATURE_NAMES)
_CLASSES = list(CLASS_NAMES)
_FEATURE_SET = frozenset(FEATURE_NAMES)


def bad(message: str, status: int = 400) -> ClientError:
    return ClientError(status, "bad_request" if status == 400 else "payload_too_large", message)


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": __version__, "extensions": []}


def model_metadata(model: LoadedModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": f"mlops-stack-{model.backend_name}",
        "inputs": [{"name": INPUT_NAME, "datatype": "FP64", "shape": [-1, _WIDTH]}],
        "outputs": [
            {"name": "predictions", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(CLASS_NAMES)]},
        ],
    }


class InferRequest:
    """A validated inference request: features, the outputs asked for, the id to echo."""

    __slots__ = ("id", "outputs", "x")

    def __init__(self, x: FloatArray, outputs: tuple[str, ...], request_id: str | None) -> None:
        self.x = x
        self.outputs = outputs
        self.id = request_id


def parse_infer(raw: bytes, max_rows: int) -> InferRequest:
    body = parse_json(raw)
    if type(body) is not dict:
        raise bad(f"the body must be a JSON object with 'inputs', got {json_type(body)}")
    request_id = body.get("id")
    if request_id is not None and type(request_id) is not str:
        raise bad(f"'id' must be a string, got {json_type(request_id)}")
    inputs = body.get("inputs")
    if type(inputs) is not list or not inputs or not all(type(t) is dict for t in inputs):
        raise bad("'inputs' must be a non-empty list of tensor objects")
    first_name = inputs[0].get("name")
    if len(inputs) == 1 and not (type(first_name) is str and first_name in _FEATURE_SET):
        x = _matrix_input(inputs[0], max_rows)
    else:
        x = _per_feature_inputs(inputs, max_rows)
    return InferRequest(x, _requested_outputs(body.get("outputs")), request_id)


def _requested_outputs(outputs: Any) -> tuple[str, ...]:
    if outputs is None:
        return OUTPUTS
    if type(outputs) is not list or not all(type(o) is dict for o in outputs):
        raise bad("'outputs' must be a list of objects with a 'name'")
    names = tuple(o.get("name") for o in outputs)
    for name in names:
        if name not in OUTPUTS:
            raise bad(f"unknown output {name!r}; the outputs are {', '.join(OUTPUTS)}")
    return names or OUTPUTS


def _tensor(tensor: dict[str, Any]) -> tuple[str, list[int], list[Any]]:
    name = tensor.get("name")
    shape, datatype, data = tensor.get("shape"), tensor.get("datatype"), tensor.get("data")
    if type(name) is not str:
        raise bad("every input needs a 'name' (a string)")
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        raise bad(f"input '{name}': 'shape' must be a list of non-negative integers")
    if type(datatype) is not str or datatype not in FLOAT_TYPES:
        raise bad(f"input '{name}': datatype {datatype!r} is not supported; use FP32 or FP64")
    if type(data) is not list:
        raise bad(f"input '{name}': 'data' must be a list (JSON tensor data)")
    if data and type(data[0]) is list:  # nested: row-major, flattened here
        try:
            data = _flatten(data)
        except TypeError:
            raise bad(f"input '{name}': nested 'data' must be lists of numbers") from None
    return name, shape, data


def _flatten(data: list[Any]) -> list[Any]:
    while data and type(data[0]) is list:
        if not all(type(r) is list for r in data):
            raise TypeError
        data = list(itertools.chain.from_iterable(data))
    return data


def _rows(n: int, max_rows: int, where: str) -> None:
    if n == 0:
        raise bad(f"{where}: the batch is empty (shape has 0 rows)")
    if n > max_rows:
        raise bad(f"{where}: {n} rows, more than the limit of {max_rows}", 413)


def _matrix_input(tensor: dict[str, Any], max_rows: int) -> FloatArray:
    name, shape, data = _tensor(tensor)
    if len(shape) != 2 or shape[1] != _WIDTH:
        raise bad(
            f"input '{name}': shape must be [N, {_WIDTH}] (features "
            f"{', '.join(FEATURE_NAMES)}), or send one tensor per feature; got {shape}"
        )
    n = shape[0]
    _rows(n, max_rows, f"input '{name}'")
    if len(data) != n * _WIDTH:
        raise bad(f"input '{name}': shape {shape} needs {n * _WIDTH} values, got {len(data)}")
    rows = [data[i : i + _WIDTH] for i in range(0, len(data), _WIDTH)]
    return number_rows(rows, lambda i, j: f"input '{name}' row {i} ({FEATURE_NAMES[j]})")


def _per_feature_inputs(inputs: list[dict[str, Any]], max_rows: int) -> FloatArray:
    columns: dict[str, list[Any]] = {}
    for tensor in inputs:
        name, shape, data = _tensor(tensor)
        if name not in _FEATURE_SET:
            raise bad(
                f"unknown input '{name}': send one [N, {_WIDTH}] tensor, or one tensor "
                f"per feature named {', '.join(FEATURE_NAMES)}"
            )
        if name in columns:
            raise bad(f"input '{name}' is given twice")
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise bad(f"input '{name}': shape must be [N] or [N, 1], got {shape}")
        _rows(shape[0], max_rows, f"input '{name}'")
        if len(data) != shape[0]:
            raise bad(f"input '{name}': shape {shape} needs {shape[0]} values, got {len(data)}")
        columns[name] = data
    missing = [f for f in FEATURE_NAMES if f not in columns]
    if missing:
        raise bad(f"missing input(s) {', '.join(missing)}: one tensor per feature is needed")
    lengths = {len(c) for c in columns.values()}
    if len(lengths) != 1:
        raise bad("the feature inputs differ in their number of rows")
    rows = [list(r) for r in zip(*(columns[f] for f in FEATURE_NAMES), strict=True)]
    return number_rows(rows, lambda i, j: f"input '{FEATURE_NAMES[j]}' row {i}")


def infer_response(
    model: LoadedModel, request: InferRequest, metrics: Metrics, model_name: str
) -> bytes:
    """The body of a successful infer: the outputs asked for, in the order asked."""
    x = request.x
    proba = model.predict_proba(x)
    best = proba.argmax(axis=1)
    metrics.observe_prediction(x, best)
    n = len(best)
    outputs: list[dict[str, Any]] = []
    for name in request.outputs:
        if name == "predictions":
            labels = [_CLASSES[i] for i in best.tolist()]
            outputs.append({"name": name, "datatype": "BYTES", "shape": [n], "data": labels})
        else:
            flat = np.ascontiguousarray(proba, dtype=np.float64).ravel()
            shape = [n, len(CLASS_NAMES)]
            outputs.append({"name": name, "datatype": "FP64", "shape": shape, "data": flat})
    answer: dict[str, Any] = {"model_name": model_name, "model_version": model.version}
    if request.id is not None:
        answer["id"] = request.id
    answer["outputs"] = outputs
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})
