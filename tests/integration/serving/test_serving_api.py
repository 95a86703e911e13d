"""The HTTP contract of the predictor (Flask test client, model from the real registry)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from mlops_model.schema import CLASS_NAMES, FEATURE_NAMES
from mlops_model.serving.app import get_service
from mlops_model.serving.metrics import iter_samples
from mlops_model.serving.settings import Settings

from tests.support.serving import MAX_BODY, MAX_ROWS

ROW = [5.1, 3.5, 1.4, 0.2]
NAMED = dict(zip(FEATURE_NAMES, ROW, strict=True))


def post(client: FlaskClient, body: Any, content_type: str = "application/json") -> Any:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post("/predict", data=data, content_type=content_type)


def test_three_input_shapes_give_identical_predictions(
    client: FlaskClient, serving_models: Any
) -> None:
    rows = [ROW, [6.3, 3.3, 6.0, 2.5], [5.7, 2.8, 4.1, 1.3]]
    named = [dict(zip(FEATURE_NAMES, r, strict=True)) for r in rows]
    shuffled = [dict(reversed(list(n.items()))) for n in named]  # key order must not matter
    answers = [
        post(client, {"instances": rows}),
        post(client, {"instances": named}),
        post(client, {"instances": shuffled}),
    ]
    singles = [post(client, n) for n in shuffled]
    for resp in answers + singles:
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert resp.mimetype == "application/json"
    bodies = [r.get_json() for r in answers]
    assert bodies[0] == bodies[1] == bodies[2]
    body = bodies[0]
    assert body["predictions"] == ["setosa", "virginica", "versicolor"]
    assert [s.get_json()["predictions"][0] for s in singles] == body["predictions"]
    assert [s.get_json()["probabilities"][0] for s in singles] == body["probabilities"]
    for probs in body["probabilities"]:
        assert len(probs) == len(CLASS_NAMES)
        assert sum(probs) == pytest.approx(1.0)
    version = serving_models.strong
    assert body["model"] == {"name": serving_models.name, "version": version, "alias": "champion"}
    assert answers[0].headers["X-Model-Version"] == version


def test_predictions_match_scikit_learn(
    client: FlaskClient, make_app: Any, serving_models: Any
) -> None:
    """Both backends answer what scikit-learn's predict_proba answers: the lean forest
    path exactly, the default ONNX backend within the parity tolerance, same labels."""
    import numpy as np
    from mlops_model.serving.checks import self_check_rows

    x = self_check_rows(seed=7)[:MAX_ROWS]
    lean_app = make_app(
        Settings(
            model_name=serving_models.name,
            tracking_uri=serving_models.url,
            poll_interval=60,
            max_rows=MAX_ROWS,
            backend="sklearn",
        )
    )
    assert get_service(lean_app).start(wait=60)
    lean: Any = get_service(lean_app).holder.current.backend  # type: ignore[union-attr]
    assert (lean.name, lean.lean) == ("sklearn", True)
    reference = lean.reference_proba(x)
    lean_body = post(lean_app.test_client(), {"instances": x.tolist()}).get_json()
    np.testing.assert_allclose(lean_body["probabilities"], reference, atol=1e-12)

    body = post(client, {"instances": x.tolist()}).get_json()
    assert client.get("/model").get_json()["backend"] == "onnx"
    np.testing.assert_allclose(body["probabilities"], reference, atol=1e-5)
    assert body["predictions"] == lean_body["predictions"]


BAD_INPUTS = [
    # (id, body, content type, status, error code, text the detail must contain)
    ("not-json", "{nope", "application/json", 400, "invalid_json", "not valid JSON"),
    ("empty-body", "", "application/json", 400, "invalid_json", "not valid JSON"),
    ("text-plain", json.dumps({"instances": [ROW]}), "text/plain", 415, "unsupported_media_type",
     "application/json"),
    ("form", "a=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type",
     "application/json"),
    ("top-level-list", [ROW], None, 400, "invalid_shape", "got array"),
    ("top-level-null", None, None, 400, "invalid_shape", "got null"),
    ("top-level-number", 3, None, 400, "invalid_shape", "got number"),
    ("instances-object", {"instances": NAMED}, None, 400, "invalid_shape", "'instances'"),
    ("instances-null", {"instances": None}, None, 400, "invalid_shape", "'instances'"),
    ("extra-top-level", {"instances": [ROW], "params": {}}, None, 400, "unknown_field", "params"),
    ("empty-batch", {"instances": []}, None, 400, "empty_batch", "'instances'"),
    ("row-null", {"instances": [None]}, None, 400, "invalid_row", "instances[0]"),
    ("row-number", {"instances": [ROW, 5]}, None, 400, "invalid_row", "instances[1]"),
    ("mixed-rows", {"instances": [ROW, NAMED]}, None, 400, "invalid_row", "instances[1]"),
    ("short-row", {"instances": [ROW, [1, 2, 3]]}, None, 400, "wrong_row_length",
     "instances[1] has 3 values"),
    ("long-row", {"instances": [[*ROW, 1.0]]}, None, 400, "wrong_row_length",
     "instances[0] has 5 values"),
    ("string-value", {"instances": [[5.1, "3.5", 1.4, 0.2]]}, None, 400, "invalid_value",
     "instances[0][1] (sepal_width)"),
    ("bool-value", {"instances": [ROW, [5.1, 3.5, True, 0.2]]}, None, 400, "invalid_value",
     "instances[1][2] (petal_length)"),
    ("null-value", {"instances": [[5.1, 3.5, 1.4, None]]}, None, 400, "invalid_value",
     "instances[0][3] (petal_width)"),
    ("nested-list-value", {"instances": [[[5.1], 3.5, 1.4, 0.2]]}, None, 400, "invalid_value",
     "instances[0][0] (sepal_length)"),
    ("dict-value", {"instances": [[{"v": 1}, 3.5, 1.4, 0.2]]}, None, 400, "invalid_value",
     "instances[0][0] (sepal_length)"),
    ("nan-literal", '{"instances": [[5.1, NaN, 1.4, 0.2]]}', "application/json", 400,
     "not_finite", "instances[0][1] (sepal_width)"),
    ("infinity-literal", '{"instances": [[5.1, 3.5, Infinity, 0.2]]}', "application/json", 400,
     "not_finite", "instances[0][2] (petal_length)"),
    ("minus-infinity-named", '{"sepal_length": -Infinity, "sepal_width": 3.5, '
     '"petal_length": 1.4, "petal_width": 0.2}', "application/json", 400, "not_finite",
     "sepal_length"),
    ("overflowing-float", '{"instances": [[5.1, 3.5, 1.4, 1e999]]}', "application/json", 400,
     "not_finite", "instances[0][3] (petal_width)"),
    ("overflowing-int", '{"instances": [[5.1, 3.5, 1.4, 1' + "0" * 400 + "]]}",
     "application/json", 400, "not_finite", "instances[0][3] (petal_width)"),
    ("int-too-many-digits", '{"instances": [[5.1, 3.5, 1.4, 1' + "0" * 5000 + "]]}",
     "application/json", 400, "invalid_json", "digits"),
    ("deep-nesting", "[" * 20_000 + "]" * 20_000, "application/json", 400, "invalid_json",
     "nested too deeply"),
    ("invalid-utf8", b'{"instances": [[5.1, 3.5, 1.4, 0.2]], "\xff": 1}', "application/json", 400,
     "invalid_json", "not valid JSON"),
    ("missing-feature-single", {k: v for k, v in NAMED.items() if k != "petal_width"}, None, 400,
     "missing_feature", "petal_width"),
    ("missing-feature-batch", {"instances": [NAMED, {k: v for k, v in NAMED.items()
                                                      if k != "sepal_width"}]}, None, 400,
     "missing_feature", "instances[1] is missing feature 'sepal_width'"),
    ("unknown-feature-single", {**NAMED, "colour": 1.0}, None, 400, "unknown_feature", "colour"),
    ("misspelt-feature", {"instances": [{**{k: v for k, v in NAMED.items() if k != "petal_length"},
                                         "petal_lenght": 1.4}]}, None, 400, "unknown_feature",
     "petal_lenght"),
    ("string-named", {**NAMED, "petal_width": "0.2"}, None, 400, "invalid_value",
     "'petal_width'"),
    ("bool-named-batch", {"instances": [NAMED, {**NAMED, "sepal_length": False}]}, None, 400,
     "invalid_value", "instances[1].sepal_length"),
    ("too-many-rows", {"instances": [ROW] * (MAX_ROWS + 1)}, None, 413, "too_many_rows",
     f"limit of {MAX_ROWS}"),
    ("body-too-large", {"instances": [ROW], "pad": "x" * MAX_BODY}, None, 413,
     "payload_too_large", str(MAX_BODY)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "named"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUTS],
)
def test_bad_input_is_a_json_client_error(
    client: FlaskClient,
    body: Any,
    content_type: str | None,
    status: int,
    code: str,
    named: str,
) -> None:
    resp = post(client, body, content_type or "application/json")
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    payload = resp.get_json()
    assert set(payload) == {"error", "detail"}
    assert payload["error"] == code
    assert named in payload["detail"]


def test_rows_up_to_the_limit_are_accepted(client: FlaskClient) -> None:
    resp = post(client, {"instances": [[1, 2, 3, 4]] * MAX_ROWS})  # ints are numbers too
    assert resp.status_code == 200
    assert len(resp.get_json()["predictions"]) == MAX_ROWS


def test_extreme_finite_values_are_served(client: FlaskClient) -> None:
    rows = [[1.7976931348623157e308, -1e308, 0, 1e-300], [-0.0, 2**62, 1e38, 3.5e38]]
    resp = post(client, {"instances": rows})
    assert resp.status_code == 200, resp.get_data(as_text=True)


def test_unknown_route_and_wrong_method_are_json(client: FlaskClient) -> None:
    resp = client.get("/nope")
    assert resp.status_code == 404
    assert resp.get_json()["error"] == "not_found"
    assert "/nope" in resp.get_json()["detail"]
    resp = client.get("/predict")
    assert resp.status_code == 405
    assert resp.get_json()["error"] == "method_not_allowed"
    assert "POST" in resp.headers["Allow"]
    resp = client.delete("/health")
    assert resp.status_code == 405
    assert resp.mimetype == "application/json"


def test_health_ready_model(client: FlaskClient, serving_models: Any) -> None:
    assert client.get("/health").get_json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.get_json()["model"]["version"] == serving_models.strong
    info = client.get("/model").get_json()
    assert info["name"] == serving_models.name
    assert info["version"] == serving_models.strong
    assert info["alias"] == "champion"
    assert (info["backend"], info["backend_requested"]) == ("onnx", "auto")
    assert info["backend_fallback"] is None
    assert len(info["run_id"]) == 32
    assert info["loaded_at"].endswith("+00:00")
    assert [f["name"] for f in info["features"]] == list(FEATURE_NAMES)
    assert all(f["unit"] == "cm" and f["minimum"] < f["maximum"] for f in info["features"])
    assert info["classes"] == list(CLASS_NAMES)


def test_openapi_document(client: FlaskClient) -> None:
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    doc = resp.get_json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) >= {
        "/predict", "/health", "/ready", "/model", "/metrics", "/openapi.json",
        "/ping", "/version", "/invocations", "/v2", "/v2/health/live", "/v2/health/ready",
        "/v2/models/{name}", "/v2/models/{name}/ready", "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    }  # fmt: skip
    predict = doc["paths"]["/predict"]["post"]
    assert set(predict["responses"]) >= {"200", "400", "413", "415", "503"}
    assert "requestBody" in predict
    for name in ("/ready", "/model"):
        assert "503" in doc["paths"][name]["get"]["responses"]
    schemas = doc["components"]["schemas"]
    assert schemas["Error"]["required"] == ["error", "detail"]
    assert schemas["PredictBatch"]["properties"]["instances"]["maxItems"] == MAX_ROWS

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(doc):  # every reference resolves
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_metrics_count_requests_and_predictions(app: Flask) -> None:
    client = app.test_client()
    before = client.get("/metrics").get_data(as_text=True)

    def count(text: str, **labels: str) -> float:
        return sum(
            v
            for lab, v in iter_samples(text, "predictor_requests_total")
            if all(lab.get(k) == want for k, want in labels.items())
        )

    for _ in range(3):
        post(client, {"instances": [ROW, ROW]})
    post(client, {"instances": []})
    after_resp = client.get("/metrics")
    assert after_resp.status_code == 200
    assert after_resp.mimetype == "text/plain"
    after = after_resp.get_data(as_text=True)
    ok = count(after, endpoint="/predict", status="200") - count(
        before, endpoint="/predict", status="200"
    )
    bad = count(after, endpoint="/predict", status="400") - count(
        before, endpoint="/predict", status="400"
    )
    assert (ok, bad) == (3, 1)
    setosa = dict(
        (lab["class"], v) for lab, v in iter_samples(after, "predictor_predictions_total")
    )
    assert setosa["setosa"] >= 6
    info = list(iter_samples(after, "predictor_model_info"))
    assert info == [
        ({"name": "serving-iris", "version": "1", "alias": "champion", "backend": "onnx"}, 1.0),
    ]
    buckets = {
        lab["le"]: v
        for lab, v in iter_samples(after, "predictor_feature_value_bucket")
        if lab["feature"] == "petal_width"
    }
    assert buckets["0.0"] == 0
    assert buckets["0.5"] >= 6  # petal_width 0.2 lands in the (0, 0.5] bucket
    assert buckets["+Inf"] >= buckets["8.0"] >= buckets["0.5"]
    assert [v for _, v in iter_samples(after, "predictor_registry_up")] == [1.0]
    durations = [lab for lab, _ in iter_samples(after, "predictor_request_duration_seconds_count")]
    assert {"endpoint": "/predict", "protocol": "predictor"} in durations


def test_not_ready_until_a_model_is_loaded(make_app: Any, serving_models: Any) -> None:
    settings = Settings(model_name=serving_models.name, tracking_uri=serving_models.url)
    client = make_app(settings, autostart=False).test_client()
    assert client.get("/health").status_code == 200
    for path in ("/ready", "/model"):
        resp = client.get(path)
        assert resp.status_code == 503
        assert resp.get_json()["error"] == "model_not_loaded"
    resp = post(client, {"instances": [ROW]})
    assert resp.status_code == 503
    assert resp.get_json()["error"] == "model_not_loaded"
    # client errors stay client errors while not ready
    assert post(client, {"instances": []}).status_code == 400
    assert client.get("/metrics").status_code == 200


def test_missing_alias_keeps_the_app_not_ready(make_app: Any, serving_models: Any) -> None:
    settings = Settings(
        model_name="no-such-model", tracking_uri=serving_models.url, poll_interval=0.2
    )
    app = make_app(settings)
    assert get_service(app).start(wait=30) is False
    client = app.test_client()
    resp = client.get("/ready")
    assert resp.status_code == 503
    assert "alias not found" in resp.get_json()["detail"]
    text = client.get("/metrics").get_data(as_text=True)
    assert next(iter_samples(text, "predictor_model_reload_failures_total"))[1] >= 1
    assert next(iter_samples(text, "predictor_registry_up"))[1] == 1  # registry answered
