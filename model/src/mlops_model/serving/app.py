"""The predictor's Flask application factory.

Endpoints: ``POST /predict``, ``GET /health``, ``/ready``, ``/model``, ``/metrics``,
``/openapi.json``. Every error, including 404/405/413 and server faults, is JSON
``{"error": <code>, "detail": <text>}``; no client input produces a 5xx.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mlops_model.schema import CLASS_NAMES, FEATURES
from mlops_model.serving.holder import LoadedModel, ModelHolder
from mlops_model.serving.loader import RegistryLoader
from mlops_model.serving.metrics import Metrics
from mlops_model.serving.openapi import build_openapi
from mlops_model.serving.settings import Settings
from mlops_model.serving.validation import ClientError, parse_json, to_features
from mlops_model.serving.watcher import ModelWatcher

log = logging.getLogger(__name__)

EXTENSION = "mlops_predictor"
JSON = "application/json"
KNOWN_PATHS = frozenset({"/predict", "/health", "/ready", "/model", "/metrics", "/openapi.json"})
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CLASS_ARRAY = np.array(CLASS_NAMES, dtype=object)
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class PredictorService:
    """Per-process state of the app: settings, the model holder, metrics and the watcher."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.holder = ModelHolder()
        self.metrics = Metrics()
        self.loader = RegistryLoader(settings)
        self.watcher = ModelWatcher(self.loader, self.holder, self.metrics, settings.poll_interval)
        self.openapi = json.dumps(build_openapi(settings), separators=(",", ":")).encode()

    def start(self, wait: float = 0.0) -> bool:
        """Start following the alias (idempotent); True when a model is loaded on return."""
        return self.watcher.start(wait)

    def stop(self, timeout: float = 5.0) -> None:
        self.watcher.stop(timeout)


def get_service(app: Flask) -> PredictorService:
    service: PredictorService = app.extensions[EXTENSION]
    return service


def _json_response(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status=status, mimetype=JSON)


def error_response(status: int, code: str, detail: str) -> Response:
    return _json_response({"error": code, "detail": detail}, status)


def _model_ref(model: LoadedModel) -> dict[str, str]:
    return {"name": model.name, "version": model.version, "alias": model.alias}


def create_app(settings: Settings | None = None, *, autostart: bool = True) -> Flask:
    """Build the app. With ``autostart`` the watcher starts on the first request at the
    latest; under gunicorn the ``post_worker_init`` hook starts it before the worker
    accepts connections (see ``gunicorn_conf``)."""
    settings = settings or Settings.from_env()
    app = Flask("mlops_model.serving")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    service = PredictorService(settings)
    app.extensions[EXTENSION] = service
    holder, metrics, watcher = service.holder, service.metrics, service.watcher
    not_loaded_detail = f"no model loaded yet for {settings.model_uri}"

    def not_loaded() -> Response:
        reason = watcher.last_error
        detail = f"{not_loaded_detail} (last error: {reason})" if reason else not_loaded_detail
        return error_response(503, "model_not_loaded", detail)

    @app.before_request
    def _before() -> None:
        g.started = time.perf_counter()
        if autostart and not watcher.running:
            service.start()

    @app.after_request
    def _after(response: Response) -> Response:
        path = request.path
        method = request.method
        metrics.observe_request(
            path if path in KNOWN_PATHS else "other",
            method if method in KNOWN_METHODS else "other",
            response.status_code,
            time.perf_counter() - g.get("started", time.perf_counter()),
        )
        return response

    @app.errorhandler(ClientError)
    def _client_error(exc: ClientError) -> Response:
        return error_response(exc.status, exc.code, exc.detail)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, (exc.name or "error").lower().replace(" ", "_"))
        if status == 404:
            detail = f"no endpoint at {request.path}; see /openapi.json"
        elif status == 405:
            allowed = ", ".join(sorted(getattr(exc, "valid_methods", None) or []))
            detail = f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
        elif status == 413:
            detail = f"the body is larger than {settings.max_body_bytes} bytes"
        else:
            detail = exc.description or exc.name
        response = error_response(status, code, detail)
        for key, value in exc.get_headers():
            if key.lower() != "content-type":
                response.headers[key] = value
        return response

    @app.errorhandler(Exception)
    def _server_fault(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "the predictor failed; see its log")

    @app.post("/predict")
    def predict() -> Response:
        if not request.is_json:
            raise ClientError(
                415,
                "unsupported_media_type",
                f"Content-Type must be {JSON}, got {request.mimetype or 'none'}",
            )
        raw = request.get_data(cache=False)  # 413 here when Content-Length is over the limit
        if request.content_length is None and len(raw) >= settings.max_body_bytes:
            # A chunked body is cut at the limit by werkzeug, silently: treat it as too large.
            raise RequestEntityTooLarge()
        x = to_features(parse_json(raw), settings.max_rows)
        model = holder.current  # read once: this request finishes on this model
        if model is None:
            return not_loaded()
        proba = model.predict_proba(x)
        best = proba.argmax(axis=1)
        metrics.observe_prediction(x, best)
        response = _json_response(
            {
                "predictions": _CLASS_ARRAY[best].tolist(),
                "probabilities": proba.tolist(),
                "model": _model_ref(model),
            }
        )
        response.headers["X-Model-Version"] = model.version
        return response

    @app.get("/health")
    def health() -> Response:
        return _json_response({"status": "ok"})

    @app.get("/ready")
    def ready() -> Response:
        model = holder.current
        if model is None:
            return not_loaded()
        return _json_response({"status": "ready", "model": _model_ref(model)})

    @app.get("/model")
    def model_info() -> Response:
        model = holder.current
        if model is None:
            return not_loaded()
        return _json_response(
            {
                **_model_ref(model),
                "run_id": model.run_id,
                "loaded_at": model.loaded_at.isoformat(),
                "backend": model.backend_name,
                "source": model.source,
                "features": [
                    {"name": f.name, "unit": f.unit, "minimum": f.minimum, "maximum": f.maximum}
                    for f in FEATURES
                ],
                "classes": list(CLASS_NAMES),
            }
        )

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, status=200, content_type=content_type)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return Response(service.openapi, status=200, mimetype=JSON)

    return app
