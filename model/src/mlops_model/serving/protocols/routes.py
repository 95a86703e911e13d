"""The Flask routes of the MLflow scoring and V2 protocols (the slow path and every error).

:func:`register` adds them to the app; the successful JSON inference requests are
usually answered before Flask by the app's front layer with the same functions.
Errors are raised as :class:`~mlops_model.serving.errors.ClientError`; the app
renders them in the format of the path's protocol.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from flask import Flask, Response, request

from mlops_model.serving.errors import ClientError
from mlops_model.serving.holder import LoadedModel, ModelHolder
from mlops_model.serving.metrics import Metrics
from mlops_model.serving.protocols import mlflow_scoring, v2
from mlops_model.serving.settings import Settings

JSON = "application/json"


def _json(payload: object, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status=status, mimetype=JSON)


def _answer(body: bytes, model: LoadedModel) -> Response:
    response = Response(body, status=200, mimetype=JSON)
    response.headers["X-Model-Version"] = model.version
    return response


def register(
    app: Flask,
    holder: ModelHolder,
    metrics: Metrics,
    settings: Settings,
    read_body: Callable[[], bytes],
    loaded: Callable[[], LoadedModel],
) -> None:
    """Add the protocol routes. ``loaded()`` returns the current model or raises 503."""
    served = settings.model_name

    # ------------------------------------------------------------ MLflow scoring
    @app.get("/ping")
    def ping() -> Response:
        model = loaded()
        ref = {"name": model.name, "version": model.version, "alias": model.alias}
        return _json({"status": "ready", "model": ref})

    @app.get("/version")
    def mlflow_version() -> Response:
        return Response(mlflow_scoring.MLFLOW_VERSION, status=200, mimetype="text/plain")

    @app.post("/invocations")
    def invocations() -> Response:
        kind = mlflow_scoring.media_kind(request.headers.get("Content-Type"))
        x = mlflow_scoring.features(read_body(), kind, settings.max_rows)
        model = loaded()
        return _answer(mlflow_scoring.predictions(model, x, metrics), model)

    # ------------------------------------------------------------ Open Inference V2
    def v2_model(name: str, version: str | None) -> LoadedModel:
        if name != served:
            raise ClientError(
                404,
                "not_found",
                f"model '{name}' is not served here; this server serves '{served}'",
            )
        model = loaded()
        if version is not None and version != model.version:
            raise ClientError(
                404,
                "not_found",
                f"version '{version}' of '{name}' is not served; "
                f"this server serves version '{model.version}'",
            )
        return model

    @app.get("/v2")
    def v2_server() -> Response:
        return _json(v2.server_metadata())

    @app.get("/v2/health/live")
    def v2_live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    def v2_ready() -> Response:
        loaded()
        return _json({"ready": True})

    @app.get("/v2/models/<name>")
    @app.get("/v2/models/<name>/versions/<version>")
    def v2_metadata(name: str, version: str | None = None) -> Response:
        return _json(v2.model_metadata(v2_model(name, version)))

    @app.get("/v2/models/<name>/ready")
    @app.get("/v2/models/<name>/versions/<version>/ready")
    def v2_model_ready(name: str, version: str | None = None) -> Response:
        v2_model(name, version)
        return _json({"name": name, "ready": True})

    @app.post("/v2/models/<name>/infer")
    @app.post("/v2/models/<name>/versions/<version>/infer")
    def v2_infer(name: str, version: str | None = None) -> Response:
        v2_model(name, version)  # 404 before the body is read
        if request.headers.get(v2.BINARY_HEADER) is not None:
            raise ClientError(
                400,
                "bad_request",
                "the binary tensor data extension is not supported: send JSON tensor data",
            )
        parsed = v2.parse_infer(read_body(), settings.max_rows)
        model = v2_model(name, version)  # the model this request finishes on
        return _answer(v2.infer_response(model, parsed, metrics, served), model)
