"""Request path -> (metric endpoint label, protocol), with bounded label values.

The endpoint label of a V2 path is its template (``/v2/models/{name}/infer``), so a
client cannot create series by inventing model names; unknown paths are ``other``.
"""

from __future__ import annotations

PREDICTOR = "predictor"
MLFLOW = "mlflow"
V2 = "v2"
OTHER = "other"
PROTOCOLS: tuple[str, ...] = (PREDICTOR, MLFLOW, V2, OTHER)

_FIXED: dict[str, tuple[str, str]] = {
    **{p: (p, PREDICTOR) for p in ("/predict", "/health", "/ready", "/model", "/metrics")},
    "/openapi.json": ("/openapi.json", PREDICTOR),
    **{p: (p, MLFLOW) for p in ("/ping", "/version", "/invocations")},
    **{p: (p, V2) for p in ("/v2", "/v2/health/live", "/v2/health/ready")},
}
_V2_MODELS = "/v2/models/"
_UNKNOWN = (OTHER, OTHER)


def classify(path: str) -> tuple[str, str]:
    """The endpoint label and protocol of a path (``("other", "other")`` when unknown)."""
    hit = _FIXED.get(path)
    if hit is not None:
        return hit
    if not path.startswith(_V2_MODELS):
        return _UNKNOWN
    parts = path[len(_V2_MODELS) :].split("/")
    template = "/v2/models/{name}"
    if len(parts) >= 3 and parts[1] == "versions":
        template += "/versions/{version}"
        parts = [parts[0], *parts[3:]]
    if len(parts) == 1 and parts[0]:
        return template, V2
    if len(parts) == 2 and parts[0] and parts[1] in ("ready", "infer"):
        return f"{template}/{parts[1]}", V2
    return _UNKNOWN


def protocol_of(path: str) -> str:
    """The protocol whose error format a path answers in (its prefix decides)."""
    if path.startswith("/v2"):
        return V2
    if path in ("/invocations", "/ping", "/version"):
        return MLFLOW
    return PREDICTOR
