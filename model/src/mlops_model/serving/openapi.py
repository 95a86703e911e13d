"""The OpenAPI 3.1 description of the predictor, built from the schema and the settings.

The document is assembled from tables: the paths (:data:`_OPERATIONS`, with their
answers in :data:`_SUCCESS`, :data:`_ERRORS` and :data:`_REQUESTS`; path parameters
come from the path template), the error answers by status
(:func:`_error_descriptions`; the error schema is that of the path's protocol,
:data:`_ERROR_SCHEMAS`) and the component schemas (:func:`_schemas` and
:func:`_protocol_schemas`, objects written with :func:`_object`).

The request schemas of ``/invocations`` and V2 infer describe forms that are always
accepted (a subset: MLflow's wrappers also take reordered and extra columns, V2 takes
``[N, 4]`` tensors of any N up to the limit); :data:`NOT_SUPPORTED` lists what the
protocols define that the predictor does not serve, and what such a request gets.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from mlops_model import __version__
from mlops_model.schema import CLASS_NAMES, FEATURES
from mlops_model.serving.protocols.mlflow_scoring import WRAPPERS
from mlops_model.serving.protocols.routing import MLFLOW, V2, protocol_of
from mlops_model.serving.settings import BACKEND_NAMES, Settings

_STRING: dict[str, Any] = {"type": "string"}
_NUMBER: dict[str, Any] = {"type": "number"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _object(
    properties: dict[str, Any],
    required: list[str] | None = None,
    *,
    description: str | None = None,
    closed: bool = False,
) -> dict[str, Any]:
    """An object schema; ``required`` defaults to every property, ``closed`` forbids others."""
    schema: dict[str, Any] = {"type": "object"}
    if description is not None:
        schema["description"] = description
    schema["properties"] = properties
    schema["required"] = list(properties) if required is None else required
    if closed:
        schema["additionalProperties"] = False
    return schema


# ------------------------------------------------------------------------- schemas

_MODEL_REF = _object({"name": _STRING, "version": _STRING, "alias": _STRING})

# GET /model, field by field (the app answers them in this order).
_MODEL_INFO_PROPERTIES: dict[str, Any] = {
    **_MODEL_REF["properties"],
    "run_id": {"type": ["string", "null"]},
    "loaded_at": {"type": "string", "format": "date-time"},
    "backend": {
        "type": "string",
        "enum": ["onnx", "sklearn"],
        "description": "What evaluates the forest for this worker",
    },
    "backend_requested": {
        "type": "string",
        "enum": list(BACKEND_NAMES),
        "description": "PREDICTOR_BACKEND",
    },
    "backend_fallback": {
        "oneOf": [{"type": "null"}, _object({"reason": _STRING, "detail": _STRING})],
        "description": "null, or why scikit-learn serves although ONNX was asked "
        "for (conversion failed, or its answers differed at load)",
    },
    "source": {
        "type": "string",
        "enum": ["registry", "cache"],
        "description": "cache: loaded from the last-known-good cache because the "
        "registry was unreachable when this worker started",
    },
    "preparation": {
        "type": "string",
        "enum": ["prepared", "converted", "sklearn"],
        "description": "prepared: the ONNX graph that came with the version (checked "
        "when it was registered) opened with onnxruntime alone; converted: converted "
        "by this predictor (the version has no prepared graph, or it failed its check); "
        "sklearn: served by scikit-learn",
    },
    "fetched_from": {
        "type": "string",
        "enum": ["registry", "cache"],
        "description": "registry: downloaded for this load; cache: the host's model cache",
    },
    "features": {
        "type": "array",
        "items": _object(
            {"name": _STRING, "unit": _STRING, "minimum": _NUMBER, "maximum": _NUMBER}
        ),
    },
    "classes": {"type": "array", "items": _STRING},
    "drift": _object(
        {
            "metrics": {
                "type": "boolean",
                "description": "Served rows are counted into the reference bins "
                "(predictor_drift_* metrics)",
            },
            "reference": {
                "type": "boolean",
                "description": "The version carries a drift reference (drift_reference.json)",
            },
            "reason": {
                "type": ["string", "null"],
                "description": "Why there are no drift metrics; null when there are",
            },
            "training_rows": {"type": "integer", "minimum": 1},
            "bins": {
                "type": "object",
                "description": "Per feature, the bin labels: each bin's upper edge in cm",
                "additionalProperties": {"type": "array", "items": _STRING},
            },
        },
        required=["metrics", "reference", "reason"],
        description="Drift metrics of this version",
    ),
}


def _schemas(settings: Settings) -> dict[str, Any]:
    # No range: out-of-range inputs are served (and show in the feature histograms);
    # only non-finite values (NaN, Infinity, numbers beyond float64) are refused.
    number = {"type": "number", "description": "A finite number (float64)"}
    named_row = _object(
        {
            f.name: {
                **number,
                "description": f"{f.name} in {f.unit}; observed range {f.minimum}..{f.maximum}",
                "examples": [round((f.minimum + f.maximum) / 2, 1)],
            }
            for f in FEATURES
        },
        description="One flower, features by name (any order), values in cm.",
        closed=True,
    )
    positional_row = {
        "type": "array",
        "description": "One flower, values in cm in the order "
        + ", ".join(f.name for f in FEATURES),
        "items": number,
        "minItems": len(FEATURES),
        "maxItems": len(FEATURES),
    }
    instances = {
        "type": "array",
        "minItems": 1,
        "maxItems": settings.max_rows,
        "description": "Rows: all positional or all named.",
        "oneOf": [{"items": _ref("PositionalInstance")}, {"items": _ref("NamedInstance")}],
    }
    probabilities = {
        "type": "array",
        "items": {"type": "number", "minimum": 0, "maximum": 1},
        "minItems": len(CLASS_NAMES),
        "maxItems": len(CLASS_NAMES),
        "description": "Per class, in the order " + ", ".join(CLASS_NAMES),
    }
    return {
        "Error": _object(
            {
                "error": {"type": "string", "description": "Short machine-readable code"},
                "detail": {
                    "type": "string",
                    "description": "What is wrong, naming the row and field",
                },
            }
        ),
        "NamedInstance": named_row,
        "PositionalInstance": positional_row,
        "PredictBatch": _object({"instances": instances}, closed=True),
        "PredictRequest": {"oneOf": [_ref("PredictBatch"), _ref("NamedInstance")]},
        "PredictResponse": _object(
            {
                "predictions": {
                    "type": "array",
                    "items": {"type": "string", "enum": list(CLASS_NAMES)},
                },
                "probabilities": {"type": "array", "items": probabilities},
                "model": _MODEL_REF,
            }
        ),
        "Status": _object({"status": _STRING, "model": _MODEL_REF}, required=["status"]),
        "ModelInfo": _object(_MODEL_INFO_PROPERTIES),
        **_protocol_schemas(settings),
    }


NOT_SUPPORTED = (
    "Not supported: MLflow's application/vnd.apache.parquet bodies (415), the "
    "unified LLM input format and split-orient 'inputs' tensors (a tensor without "
    "column names is 400 INVALID_PARAMETER_VALUE, as in MLflow for this model's "
    "column signature); values MLflow's pandas parsing coerces (null/NaN, booleans, "
    "numeric strings, short CSV rows) are 400 BAD_REQUEST here. V2: the binary "
    "tensor data extension (a request with an Inference-Header-Content-Length "
    "header is 400; binary_data output requests are answered with JSON tensor "
    "data), datatypes other than FP32/FP64 (400), the model repository, "
    "statistics, trace and shared-memory extensions (404), gRPC."
)


def _protocol_schemas(settings: Settings) -> dict[str, Any]:
    """The MLflow scoring and Open Inference V2 schemas."""
    width, limit = len(FEATURES), settings.max_rows
    names = [f.name for f in FEATURES]
    # MLflow refuses what float32 cannot hold (scikit-learn's input check)
    f32 = {"type": "number", "minimum": -3.4e38, "maximum": 3.4e38}
    record = _object({n: f32 for n in names}, closed=True)
    records = {"type": "array", "items": record, "minItems": 1, "maxItems": limit}
    split = _object(
        {
            "columns": {"const": names},
            "data": {
                "type": "array",
                "items": {"type": "array", "items": f32, "minItems": width, "maxItems": width},
                "minItems": 1,
                "maxItems": limit,
            },
        },
        closed=True,
    )
    wrapper_forms = {
        "dataframe_split": split,
        "dataframe_records": records,
        "instances": {"oneOf": [records, record]},
        "inputs": {"oneOf": [records, record]},
    }
    assert set(wrapper_forms) == set(WRAPPERS)
    number = {"type": "number"}
    tensor_matrix = _object(
        {
            "name": {"type": "string", "not": {"enum": names}},
            "datatype": {"enum": ["FP32", "FP64"]},
            "shape": {"const": [1, width]},
            "data": {"type": "array", "items": number, "minItems": width, "maxItems": width},
        },
    )
    per_feature = [
        _object(
            {
                "name": {"const": n},
                "datatype": {"enum": ["FP32", "FP64"]},
                "shape": {"const": [1]},
                "data": {"type": "array", "items": number, "minItems": 1, "maxItems": 1},
            }
        )
        for n in names
    ]
    tensor_out = _object(
        {
            "name": {"enum": ["predictions", "probabilities"]},
            "datatype": {"enum": ["BYTES", "FP64"]},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "data": {"type": "array"},
        }
    )
    tensor_meta = _object(
        {
            "name": _STRING,
            "datatype": _STRING,
            "shape": {"type": "array", "items": {"type": "integer"}},
        }
    )
    return {
        "MlflowError": _object(
            {
                "error_code": {
                    "type": "string",
                    "description": "MLflow's code: BAD_REQUEST (not a table), "
                    "INVALID_PARAMETER_VALUE (the model signature refuses the table), "
                    "RESOURCE_LIMIT_EXCEEDED, TEMPORARILY_UNAVAILABLE, ...",
                },
                "message": _STRING,
            }
        ),
        "InvocationsRequest": {
            "description": "Exactly one of MLflow's wrappers, and optional params "
            "(ignored: the model declares none). Also accepted: reordered and extra "
            "columns, columnar 'inputs'/'instances' objects. " + NOT_SUPPORTED,
            "oneOf": [
                _object(
                    {key: form, "params": {"description": "ignored"}},
                    required=[key],
                    closed=True,
                )
                for key, form in wrapper_forms.items()
            ],
        },
        "InvocationsResponse": _object(
            {
                "predictions": {
                    "type": "array",
                    "items": {"type": ["integer", "string"]},
                    "description": "The model's own label per row (what its predict returns)",
                }
            }
        ),
        "V2Error": _object({"error": _STRING}),
        "V2ServerMetadata": _object(
            {"name": _STRING, "version": _STRING, "extensions": {"type": "array"}}
        ),
        "V2Live": _object({"live": {"type": "boolean"}}),
        "V2Ready": _object({"ready": {"type": "boolean"}}),
        "V2ModelReady": _object({"name": _STRING, "ready": {"type": "boolean"}}),
        "V2ModelMetadata": _object(
            {
                "name": _STRING,
                "versions": {"type": "array", "items": _STRING},
                "platform": _STRING,
                "inputs": {"type": "array", "items": tensor_meta},
                "outputs": {"type": "array", "items": tensor_meta},
            }
        ),
        "V2InferRequest": {
            "description": "One FP32/FP64 tensor [N, 4] (features in schema order, data "
            "flat row-major or nested), or one tensor [N] or [N, 1] per feature named "
            f"after it; N up to {limit}. 'outputs' picks predictions and/or "
            "probabilities; 'id' is echoed. " + NOT_SUPPORTED,
            **_object(
                {
                    "id": _STRING,
                    "parameters": {"type": "object"},
                    "inputs": {
                        "oneOf": [
                            {
                                "type": "array",
                                "prefixItems": [tensor_matrix],
                                "minItems": 1,
                                "maxItems": 1,
                            },
                            {
                                "type": "array",
                                "prefixItems": per_feature,
                                "minItems": width,
                                "maxItems": width,
                            },
                        ]
                    },
                    "outputs": {
                        "type": "array",
                        "items": _object(
                            {
                                "name": {"enum": ["predictions", "probabilities"]},
                                "parameters": {"type": "object"},
                            },
                            required=["name"],
                        ),
                    },
                },
                required=["inputs"],
            ),
        },
        "V2InferResponse": _object(
            {
                "model_name": _STRING,
                "model_version": _STRING,
                "id": _STRING,
                "outputs": {"type": "array", "items": tensor_out},
            },
            required=["model_name", "model_version", "outputs"],
        ),
    }


# ------------------------------------------------------------------------- paths


def _error_descriptions(settings: Settings) -> dict[str, str]:
    """The error answers by status; every endpoint may answer 500."""
    return {
        "400": "Invalid body: not JSON, wrong shape, missing or unknown feature, "
        "a value that is not a finite number, wrong row length, empty batch",
        "413": f"More than {settings.max_rows} rows, or a body over "
        f"{settings.max_body_bytes} bytes",
        "404": "No such model, or not the version served (the error names what is served)",
        "415": "Content-Type is not application/json (/invocations: nor text/csv), or a "
        "charset other than UTF-8, or an unknown Content-Type parameter",
        "500": "Server fault (never caused by client input)",
        "503": "No model loaded yet (the worker is starting, or the registry is empty)",
    }


_V2M = "/v2/models/{name}"
_V2V = "/v2/models/{name}/versions/{version}"
# Path -> (method, operationId, summary), in the order of the document.
_OPERATIONS: dict[str, tuple[str, str, str]] = {
    "/predict": ("post", "predict", "Classify one or more flowers"),
    "/health": ("get", "health", "Liveness: 200 while the process runs"),
    "/ready": ("get", "ready", "Readiness: 200 once a model is loaded"),
    "/model": ("get", "model", "The model being served, its feature schema and classes"),
    "/metrics": ("get", "metrics", "Prometheus metrics (text exposition format)"),
    "/openapi.json": ("get", "openapi", "This document"),
    "/ping": ("get", "mlflowPing", "MLflow scoring protocol: 200 once a model is loaded"),
    "/version": ("get", "mlflowVersion", "MLflow scoring protocol: the MLflow version spoken"),
    "/invocations": ("post", "mlflowInvocations", "MLflow scoring protocol: predict"),
    "/v2": ("get", "v2ServerMetadata", "Open Inference V2: server metadata"),
    "/v2/health/live": ("get", "v2Live", "Open Inference V2: liveness"),
    "/v2/health/ready": ("get", "v2Ready", "Open Inference V2: readiness (503 until loaded)"),
    _V2M: ("get", "v2ModelMetadata", "Open Inference V2: model metadata"),
    f"{_V2M}/ready": ("get", "v2ModelReady", "Open Inference V2: model readiness"),
    f"{_V2M}/infer": ("post", "v2Infer", "Open Inference V2: inference (JSON tensors)"),
    _V2V: ("get", "v2VersionMetadata", "Open Inference V2: metadata of the served version"),
    f"{_V2V}/ready": ("get", "v2VersionReady", "Open Inference V2: the version's readiness"),
    f"{_V2V}/infer": ("post", "v2VersionInfer", "Open Inference V2: inference on a version"),
}
# Path -> its 200 answer.
_SUCCESS: dict[str, dict[str, Any]] = {
    "/predict": _json(_ref("PredictResponse"), "Predicted classes"),
    "/health": _json(_ref("Status"), "Alive"),
    "/ready": _json(_ref("Status"), "A model is loaded"),
    "/model": _json(_ref("ModelInfo"), "The model being served"),
    "/metrics": {
        "description": "Metrics of all workers",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    "/openapi.json": _json({"type": "object"}, "OpenAPI 3.1 document"),
    "/ping": _json(_ref("Status"), "A model is loaded"),
    "/version": {
        "description": "The MLflow version whose scoring protocol is spoken",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    "/invocations": _json(_ref("InvocationsResponse"), "Predictions"),
    "/v2": _json(_ref("V2ServerMetadata"), "Server metadata"),
    "/v2/health/live": _json(_ref("V2Live"), "Alive"),
    "/v2/health/ready": _json(_ref("V2Ready"), "A model is loaded"),
    _V2M: _json(_ref("V2ModelMetadata"), "Model metadata"),
    f"{_V2M}/ready": _json(_ref("V2ModelReady"), "The model is ready"),
    f"{_V2M}/infer": _json(_ref("V2InferResponse"), "Inference outputs"),
    _V2V: _json(_ref("V2ModelMetadata"), "Model metadata"),
    f"{_V2V}/ready": _json(_ref("V2ModelReady"), "The version is ready"),
    f"{_V2V}/infer": _json(_ref("V2InferResponse"), "Inference outputs"),
}
# Path -> the error statuses it answers besides 500 (see _error_descriptions).
_ERRORS: dict[str, tuple[str, ...]] = {
    "/predict": ("400", "413", "415", "503"),
    "/ready": ("503",),
    "/model": ("503",),
    "/ping": ("503",),
    "/invocations": ("400", "413", "415", "503"),
    "/v2/health/ready": ("503",),
    **{p: ("404", "503") for p in (_V2M, f"{_V2M}/ready", _V2V, f"{_V2V}/ready")},
    **{p: ("400", "404", "413", "503") for p in (f"{_V2M}/infer", f"{_V2V}/infer")},
}
# A CSV body /invocations always accepts: the header, then up to 20 rows of numbers.
_CSV_NUMBER = r"-?[0-9]{1,3}(\.[0-9]{1,6})?"
_CSV_ROWS = r"^sepal_length,sepal_width,petal_length,petal_width\n(N,N,N,N\n){1,20}$"
# Path -> {media type: its request body schema}.
_REQUESTS: dict[str, dict[str, dict[str, Any]]] = {
    "/predict": {"application/json": _ref("PredictRequest")},
    "/invocations": {
        "application/json": _ref("InvocationsRequest"),
        "text/csv": {
            "type": "string",
            "description": "A header row naming the columns, then rows (UTF-8)",
            "pattern": _CSV_ROWS.replace("N", _CSV_NUMBER),
        },
    },
    f"{_V2M}/infer": {"application/json": _ref("V2InferRequest")},
    f"{_V2V}/infer": {"application/json": _ref("V2InferRequest")},
}
# Protocol -> the schema of its error bodies.
_ERROR_SCHEMAS = {MLFLOW: "MlflowError", V2: "V2Error"}


def _parameters(path: str, settings: Settings) -> list[dict[str, Any]]:
    examples = {"name": settings.model_name, "version": "1"}
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9._-]+$"},
            "examples": {"served": {"value": examples[name]}},
        }
        for name in re.findall(r"{(\w+)}", path)
    ]


def _path_item(path: str, errors: dict[str, str], settings: Settings) -> dict[str, Any]:
    method, operation_id, summary = _OPERATIONS[path]
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary}
    parameters = _parameters(path, settings)
    if parameters:
        operation["parameters"] = parameters
    request = _REQUESTS.get(path)
    if request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {media: {"schema": schema} for media, schema in request.items()},
        }
    error_schema = _ERROR_SCHEMAS.get(protocol_of(path), "Error")
    statuses = sorted({*_ERRORS.get(path, ()), "500"})
    operation["responses"] = {
        "200": _SUCCESS[path],
        **{s: _json(_ref(error_schema), errors[s]) for s in statuses},
    }
    return {method: operation}


def build_openapi(settings: Settings) -> dict[str, Any]:
    errors = _error_descriptions(settings)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "mlops-stack Iris predictor",
            "version": __version__,
            "description": f"Serves models:/{settings.model_name}@{settings.model_alias} "
            "from the MLflow registry and follows the alias, over three protocols: "
            "its own /predict, MLflow's scoring protocol (/invocations, a drop-in for "
            "`mlflow models serve`) and the Open Inference Protocol V2 (/v2, JSON). "
            + NOT_SUPPORTED,
        },
        "paths": {path: _path_item(path, errors, settings) for path in _OPERATIONS},
        "components": {
            "schemas": _schemas(settings),
            "responses": {
                "NotFound": _error("Unknown path"),
                "MethodNotAllowed": _error("Method not allowed on this path"),
            },
        },
    }
    return copy.deepcopy(document)  # no caller shares the tables above
