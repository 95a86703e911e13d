"""The OpenAPI 3.1 description of the predictor, built from the schema and the settings."""

from __future__ import annotations

from typing import Any

from mlops_model import __version__
from mlops_model.schema import CLASS_NAMES, FEATURES
from mlops_model.serving.settings import Settings


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_MODEL_INFO_FIELDS = (
    "name", "version", "alias", "run_id", "loaded_at", "backend", "backend_requested",
    "backend_fallback", "source", "features", "classes",
)  # fmt: skip
_ERROR_500 = _error("Server fault (never caused by client input)")


def build_openapi(settings: Settings) -> dict[str, Any]:
    # No range: out-of-range inputs are served (and show in the feature histograms);
    # only non-finite values (NaN, Infinity, numbers beyond float64) are refused.
    number = {"type": "number", "description": "A finite number (float64)"}
    named_row = {
        "type": "object",
        "description": "One flower, features by name (any order), values in cm.",
        "properties": {
            f.name: {
                **number,
                "description": f"{f.name} in {f.unit}; observed range {f.minimum}..{f.maximum}",
                "examples": [round((f.minimum + f.maximum) / 2, 1)],
            }
            for f in FEATURES
        },
        "required": [f.name for f in FEATURES],
        "additionalProperties": False,
    }
    positional_row = {
        "type": "array",
        "description": "One flower, values in cm in the order "
        + ", ".join(f.name for f in FEATURES),
        "items": number,
        "minItems": len(FEATURES),
        "maxItems": len(FEATURES),
    }
    model_ref = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "alias": {"type": "string"},
        },
        "required": ["name", "version", "alias"],
    }
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string", "description": "Short machine-readable code"},
                "detail": {
                    "type": "string",
                    "description": "What is wrong, naming the row and field",
                },
            },
            "required": ["error", "detail"],
        },
        "NamedInstance": named_row,
        "PositionalInstance": positional_row,
        "PredictBatch": {
            "type": "object",
            "properties": {
                "instances": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": settings.max_rows,
                    "description": "Rows: all positional or all named.",
                    "oneOf": [
                        {"items": _ref("PositionalInstance")},
                        {"items": _ref("NamedInstance")},
                    ],
                }
            },
            "required": ["instances"],
            "additionalProperties": False,
        },
        "PredictRequest": {"oneOf": [_ref("PredictBatch"), _ref("NamedInstance")]},
        "PredictResponse": {
            "type": "object",
            "properties": {
                "predictions": {
                    "type": "array",
                    "items": {"type": "string", "enum": list(CLASS_NAMES)},
                },
                "probabilities": {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "items": {"type": "number", "minimum": 0, "maximum": 1},
                        "minItems": len(CLASS_NAMES),
                        "maxItems": len(CLASS_NAMES),
                        "description": "Per class, in the order " + ", ".join(CLASS_NAMES),
                    },
                },
                "model": model_ref,
            },
            "required": ["predictions", "probabilities", "model"],
        },
        "Status": {
            "type": "object",
            "properties": {"status": {"type": "string"}, "model": model_ref},
            "required": ["status"],
        },
        "ModelInfo": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "alias": {"type": "string"},
                "run_id": {"type": ["string", "null"]},
                "loaded_at": {"type": "string", "format": "date-time"},
                "backend": {
                    "type": "string",
                    "enum": ["onnx", "sklearn"],
                    "description": "What evaluates the forest for this worker",
                },
                "backend_requested": {
                    "type": "string",
                    "enum": ["auto", "onnx", "sklearn"],
                    "description": "PREDICTOR_BACKEND",
                },
                "backend_fallback": {
                    "oneOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "properties": {
                                "reason": {"type": "string"},
                                "detail": {"type": "string"},
                            },
                            "required": ["reason", "detail"],
                        },
                    ],
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
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "unit": {"type": "string"},
                            "minimum": {"type": "number"},
                            "maximum": {"type": "number"},
                        },
                        "required": ["name", "unit", "minimum", "maximum"],
                    },
                },
                "classes": {"type": "array", "items": {"type": "string"}},
            },
            "required": list(_MODEL_INFO_FIELDS),
        },
    }
    not_loaded = _error("No model loaded yet (the worker is starting, or the registry is empty)")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mlops-stack Iris predictor",
            "version": __version__,
            "description": f"Serves models:/{settings.model_name}@{settings.model_alias} "
            "from the MLflow registry and follows the alias.",
        },
        "paths": {
            "/predict": {
                "post": {
                    "operationId": "predict",
                    "summary": "Classify one or more flowers",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("PredictRequest")}},
                    },
                    "responses": {
                        "200": _json(_ref("PredictResponse"), "Predicted classes"),
                        "400": _error(
                            "Invalid body: not JSON, wrong shape, missing or unknown feature, "
                            "a value that is not a finite number, wrong row length, empty batch"
                        ),
                        "413": _error(
                            f"More than {settings.max_rows} rows, or a body over "
                            f"{settings.max_body_bytes} bytes"
                        ),
                        "415": _error("Content-Type is not application/json"),
                        "500": _ERROR_500,
                        "503": not_loaded,
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness: 200 while the process runs",
                    "responses": {
                        "200": _json(_ref("Status"), "Alive"),
                        "500": _ERROR_500,
                    },
                }
            },
            "/ready": {
                "get": {
                    "operationId": "ready",
                    "summary": "Readiness: 200 once a model is loaded",
                    "responses": {
                        "200": _json(_ref("Status"), "A model is loaded"),
                        "500": _ERROR_500,
                        "503": not_loaded,
                    },
                }
            },
            "/model": {
                "get": {
                    "operationId": "model",
                    "summary": "The model being served, its feature schema and classes",
                    "responses": {
                        "200": _json(_ref("ModelInfo"), "The model being served"),
                        "500": _ERROR_500,
                        "503": not_loaded,
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (text exposition format)",
                    "responses": {
                        "200": {
                            "description": "Metrics of all workers",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "500": _ERROR_500,
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": _json({"type": "object"}, "OpenAPI 3.1 document"),
                        "500": _ERROR_500,
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "responses": {
                "NotFound": _error("Unknown path"),
                "MethodNotAllowed": _error("Method not allowed on this path"),
            },
        },
    }
