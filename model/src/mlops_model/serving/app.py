"""The predictor's Flask application factory.

Endpoints: ``POST /predict``, ``GET /health``, ``/ready``, ``/model``, ``/metrics``,
``/openapi.json``; MLflow's scoring protocol (``GET /ping``, ``/version``, ``POST
/invocations``, :mod:`~mlops_model.serving.protocols.mlflow_scoring`) and the Open
Inference Protocol V2 (``/v2/...``, :mod:`~mlops_model.serving.protocols.v2`). Every
error, including 404/405/413 and server faults, is JSON in the format of the
path's protocol: ``{"error": <code>, "detail": <text>}`` for the predictor's own
endpoints, ``{"error_code": ..., "message": ...}`` for MLflow's, ``{"error": <text>}``
for V2; no client input produces a 5xx.

``/health`` keeps its meaning (liveness: 200 while the process runs). In MLflow's
scoring server ``/health`` is a synonym of ``/ping`` and both answer 200 once the
model is loaded, which MLflow's server always is once it listens; here ``/ping``
is that readiness check (503 until a model is loaded) and ``/health`` stays the
liveness check that systemd, the role's checks and the gateway documentation rely
on. With a model loaded, both answer 200, as MLflow's do.

A small WSGI layer in front of Flask (:class:`_Front`) answers the plain successful
``POST /predict``, ``POST /invocations`` (JSON) and V2 infer without Flask's
per-request machinery and hands everything else to Flask; both compute the answer
with the same function, byte for byte.
"""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any

import numpy as np
import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mlops_model.schema import CLASS_NAMES, FEATURES
from mlops_model.serving.errors import ClientError
from mlops_model.serving.holder import FloatArray, LoadedModel, ModelHolder
from mlops_model.serving.loader import RegistryLoader
from mlops_model.serving.metrics import Metrics
from mlops_model.serving.openapi import build_openapi
from mlops_model.serving.protocols import mlflow_scoring, routes, v2
from mlops_model.serving.protocols.routing import MLFLOW, V2, classify, protocol_of
from mlops_model.serving.settings import Settings
from mlops_model.serving.validation import parse_json, to_features
from mlops_model.serving.watcher import ModelWatcher

log = logging.getLogger(__name__)

EXTENSION = "mlops_predictor"
JSON = "application/json"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CLASS_LIST = list(CLASS_NAMES)
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
# Our error codes by status, as MLflow's error codes (for the /invocations family).
_MLFLOW_CODES = {
    400: "BAD_REQUEST",
    404: "ENDPOINT_NOT_FOUND",
    405: "BAD_REQUEST",
    413: "RESOURCE_LIMIT_EXCEEDED",
    415: "BAD_REQUEST",
    503: "TEMPORARILY_UNAVAILABLE",
}


class PredictorService:
    """Per-process state of the app: settings, the model holder, metrics and the watcher."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.holder = ModelHolder()
        self.metrics = Metrics(drift=settings.drift_metrics)
        self.loader = RegistryLoader(settings)
        self.watcher = ModelWatcher(self.loader, self.holder, self.metrics, settings.poll_interval)
        self.openapi = json.dumps(build_openapi(settings), separators=(",", ":")).encode()

    def start(self, wait: float = 0.0) -> bool:
        """Start following the alias (idempotent); True when a model is loaded on return."""
        return self.watcher.start(wait)

    def stop(self, timeout: float = 5.0) -> None:
        self.watcher.stop(timeout)
        self.metrics.close()


def get_service(app: Flask) -> PredictorService:
    service: PredictorService = app.extensions[EXTENSION]
    return service


def _json_response(payload: Any, status: int = 200) -> Response:
    # orjson: compact, UTF-8, numpy arrays written directly (float64 as the shortest
    # repr that reads back to the same double, like json.dumps); ~10x json.dumps.
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status=status, mimetype=JSON)


def error_response(status: int, code: str, detail: str) -> Response:
    """An error in the format of the request path's protocol (inside a request)."""
    protocol = protocol_of(request.path)
    if protocol == MLFLOW:
        mlflow_code = code if code.isupper() else _MLFLOW_CODES.get(status, "INTERNAL_ERROR")
        body = mlflow_scoring.error_body(mlflow_code, detail)
        return Response(body, status=status, mimetype=JSON)
    if protocol == V2:
        return Response(v2.error_body(detail), status=status, mimetype=JSON)
    return _json_response({"error": code, "detail": detail}, status)


def _fallback(model: LoadedModel) -> dict[str, str] | None:
    fallback = model.backend_fallback
    return None if fallback is None else {"reason": fallback.reason, "detail": fallback.detail}


def _model_ref(model: LoadedModel) -> dict[str, str]:
    return {"name": model.name, "version": model.version, "alias": model.alias}


def _prediction(model: LoadedModel, x: FloatArray, metrics: Metrics) -> bytes:
    """The body of a successful ``/predict``: the one place it is computed."""
    proba = model.predict_proba(x)
    best = proba.argmax(axis=1)
    metrics.observe_prediction(x, best)
    return orjson.dumps(
        {
            "predictions": [_CLASS_LIST[i] for i in best.tolist()],
            "probabilities": np.ascontiguousarray(proba, dtype=np.float64),
            "model": _model_ref(model),
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


class _Front:
    """WSGI middleware in front of the Flask app, for the cost of the hot path.

    * starts the watcher on the first request (``autostart``);
    * answers the plain successful ``POST /predict``, ``POST /invocations`` and V2
      infer (of the served model, without a version in the path) itself:
      ``Content-Type: application/json`` (V2: any, without binary data), a
      ``Content-Length`` within the limit, a body that validates, a model loaded.
      Everything else (any error, chunked bodies, other content types, other
      endpoints) goes to Flask, with the body already read handed over, so every
      answer but the plain success is Flask's own. Flask's
      request context, routing and response objects cost about as much as the
      prediction itself;
    * counts and times every request, 404s and faults included (what Flask
      ``before_request``/``after_request`` hooks did, without their cost).
    """

    def __init__(
        self, flask_app: Any, service: PredictorService, settings: Settings, autostart: bool
    ) -> None:
        self.flask_app = flask_app
        self.service = service
        self.autostart = autostart
        self.max_body = settings.max_body_bytes
        self.max_rows = settings.max_rows
        self.holder = service.holder
        self.metrics = service.metrics
        self.observe = service.metrics.observe_request
        self.model_name = settings.model_name
        self.v2_infer = f"/v2/models/{settings.model_name}/infer"
        self.fast = {
            "/predict": self._predict_body,
            "/invocations": self._invocations_body,
            self.v2_infer: self._v2_body,
        }

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        started = time.perf_counter()
        if self.autostart and not self.service.watcher.running:
            self.service.start()
        path = "/" + str(environ.get("PATH_INFO", "")).lstrip("/")  # as werkzeug's request.path
        method = environ.get("REQUEST_METHOD", "")
        handler = self.fast.get(path) if method == "POST" else None
        answer = None if handler is None else self._fast_answer(environ, path, handler)
        if answer is not None:
            body, version = answer
            start_response(
                "200 OK",
                [
                    ("Content-Type", JSON),
                    ("Content-Length", str(len(body))),
                    ("X-Model-Version", version),
                ],
            )
            result: Any = [body]
            status = 200
        else:
            statuses: list[str] = []

            def record_status(status: str, headers: Any, exc_info: Any = None) -> Any:
                statuses.append(status)
                return start_response(status, headers, exc_info)

            result = self.flask_app(environ, record_status)
            status = int(statuses[-1].split(" ", 1)[0]) if statuses else 500
        endpoint, protocol = classify(path)
        self.observe(
            endpoint,
            method if method in KNOWN_METHODS else "other",
            status,
            time.perf_counter() - started,
            protocol,
        )
        return result

    def _predict_body(self, raw: bytes, model: LoadedModel) -> bytes:
        return _prediction(model, to_features(parse_json(raw), self.max_rows), self.metrics)

    def _invocations_body(self, raw: bytes, model: LoadedModel) -> bytes:
        x = mlflow_scoring.features(raw, "json", self.max_rows)
        return mlflow_scoring.predictions(model, x, self.metrics)

    def _v2_body(self, raw: bytes, model: LoadedModel) -> bytes:
        request = v2.parse_infer(raw, self.max_rows)
        return v2.infer_response(model, request, self.metrics, self.model_name)

    def _fast_answer(
        self, environ: dict[str, Any], path: str, handler: Any
    ) -> tuple[bytes, str] | None:
        """The body and model version of a plain successful answer, or None for Flask."""
        if path == self.v2_infer:
            if "HTTP_INFERENCE_HEADER_CONTENT_LENGTH" in environ:
                return None
        elif environ.get("CONTENT_TYPE") != JSON:
            return None
        length = str(environ.get("CONTENT_LENGTH") or "")
        if not length.isdigit() or int(length) > self.max_body:
            return None
        raw = environ["wsgi.input"].read(int(length))
        model = self.holder.current  # read once: this request finishes on this model
        try:
            if len(raw) == int(length) and model is not None:
                return handler(raw, model), model.version
        except Exception:  # noqa: S110 - Flask answers it again, with its error handling
            pass
        environ["wsgi.input"] = io.BytesIO(raw)
        return None


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

    def loaded() -> LoadedModel:
        """The current model, or a 503 ClientError (rendered in the path's protocol)."""
        model = holder.current  # read once: the request finishes on this model
        if model is None:
            reason = watcher.last_error
            detail = f"{not_loaded_detail} (last error: {reason})" if reason else not_loaded_detail
            raise ClientError(503, "model_not_loaded", detail)
        return model

    def read_body() -> bytes:
        raw = request.get_data(cache=False)  # 413 here when Content-Length is over the limit
        if request.content_length is None and len(raw) >= settings.max_body_bytes:
            # A chunked body is cut at the limit by werkzeug, silently: treat it as too large.
            raise RequestEntityTooLarge()
        return raw

    app.wsgi_app = _Front(  # type: ignore[method-assign]
        app.wsgi_app, service, settings, autostart
    )

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
        x = to_features(parse_json(read_body()), settings.max_rows)
        model = holder.current  # read once: this request finishes on this model
        if model is None:
            return not_loaded()
        response = Response(_prediction(model, x, metrics), status=200, mimetype=JSON)
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
                "backend_requested": settings.backend,
                # null, or why scikit-learn serves although ONNX was asked for
                "backend_fallback": _fallback(model),
                "source": model.source,
                # "prepared" (ONNX checked at registration), "converted" or "sklearn"
                "preparation": model.preparation,
                # "registry" (downloaded) or "cache" (the host's model cache)
                "fetched_from": model.fetched,
                "features": [
                    {"name": f.name, "unit": f.unit, "minimum": f.minimum, "maximum": f.maximum}
                    for f in FEATURES
                ],
                "classes": list(CLASS_NAMES),
                "drift": metrics.drift_status(model),
            }
        )

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, status=200, content_type=content_type)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return Response(service.openapi, status=200, mimetype=JSON)

    routes.register(app, holder, metrics, settings, read_body, loaded)

    return app
