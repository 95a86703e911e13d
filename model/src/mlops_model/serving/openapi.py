"""The OpenAPI 3.1 description of the predictor, built from the schema and the settings.

The document is assembled from tables: the paths (:data:`_OPERATIONS`, with their
answers in :data:`_SUCCESS`, :data:`_ERRORS` and :data:`_REQUESTS`), the error answers
by status (:func:`_error_descriptions`) and the component schemas (:func:`_schemas`,
objects written with :func:`_object`).
"""

from __future__ import annotations

import copy
from typing import Any

from mlops_model import __version__
from mlops_model.schema import CLASS_NAMES, FEATURES
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
    "features": {
        "type": "array",
        "items": _object(
            {"name": _STRING, "unit": _STRING, "minimum": _NUMBER, "maximum": _NUMBER}
        ),
    },
    "classes": {"type": "array", "items": _STRING},
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
    }


# ------------------------------------------------------------------------- paths


def _error_descriptions(settings: Settings) -> dict[str, str]:
    """The error answers by status; every endpoint may answer 500."""
    return {
        "400": "Invalid body: not JSON, wrong shape, missing or unknown feature, "
        "a value that is not a finite number, wrong row length, empty batch",
        "413": f"More than {settings.max_rows} rows, or a body over "
        f"{settings.max_body_bytes} bytes",
        "415": "Content-Type is not application/json",
        "500": "Server fault (never caused by client input)",
        "503": "No model loaded yet (the worker is starting, or the registry is empty)",
    }


# Path -> (method, operationId, summary), in the order of the document.
_OPERATIONS: dict[str, tuple[str, str, str]] = {
    "/predict": ("post", "predict", "Classify one or more flowers"),
    "/health": ("get", "health", "Liveness: 200 while the process runs"),
    "/ready": ("get", "ready", "Readiness: 200 once a model is loaded"),
    "/model": ("get", "model", "The model being served, its feature schema and classes"),
    "/metrics": ("get", "metrics", "Prometheus metrics (text exposition format)"),
    "/openapi.json": ("get", "openapi", "This document"),
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
}
# Path -> the error statuses it answers besides 500 (see _error_descriptions).
_ERRORS: dict[str, tuple[str, ...]] = {
    "/predict": ("400", "413", "415", "503"),
    "/ready": ("503",),
    "/model": ("503",),
}
# Path -> the component schema of its JSON request body.
_REQUESTS: dict[str, str] = {"/predict": "PredictRequest"}


def _path_item(path: str, errors: dict[str, str]) -> dict[str, Any]:
    method, operation_id, summary = _OPERATIONS[path]
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary}
    request = _REQUESTS.get(path)
    if request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(request)}},
        }
    statuses = sorted({*_ERRORS.get(path, ()), "500"})
    operation["responses"] = {"200": _SUCCESS[path], **{s: _error(errors[s]) for s in statuses}}
    return {method: operation}


def build_openapi(settings: Settings) -> dict[str, Any]:
    errors = _error_descriptions(settings)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "mlops-stack Iris predictor",
            "version": __version__,
            "description": f"Serves models:/{settings.model_name}@{settings.model_alias} "
            "from the MLflow registry and follows the alias.",
        },
        "paths": {path: _path_item(path, errors) for path in _OPERATIONS},
        "components": {
            "schemas": _schemas(settings),
            "responses": {
                "NotFound": _error("Unknown path"),
                "MethodNotAllowed": _error("Method not allowed on this path"),
            },
        },
    }
    return copy.deepcopy(document)  # no caller shares the tables above
