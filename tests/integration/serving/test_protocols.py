"""The MLflow scoring and Open Inference V2 protocols of the predictor app.

A real version in a real registry (``serving_models``); every answer is compared
with what ``/predict`` says for the same rows. The contract with the real
``mlflow models serve`` is tests/integration/test_scoring_contract.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from mlops_model.schema import CLASS_NAMES, FEATURE_NAMES
from mlops_model.serving.app import get_service
from mlops_model.serving.metrics import iter_samples
from mlops_model.serving.protocols.mlflow_scoring import MLFLOW_VERSION
from mlops_model.serving.protocols.routing import classify
from mlops_model.serving.settings import Settings

from tests.support.serving import MAX_BODY

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5], [6.0, 2.9, 4.5, 1.5]]
J = "application/json"


@pytest.fixture
def name(serving_models: Any) -> str:
    return str(serving_models.name)


@pytest.fixture
def version(app: Flask) -> str:
    model = get_service(app).holder.current
    assert model is not None
    return model.version


def predict(client: FlaskClient, rows: list[list[float]]) -> dict[str, Any]:
    resp = client.post("/predict", json={"instances": rows})
    assert resp.status_code == 200, resp.data
    answer: dict[str, Any] = resp.get_json()
    return answer


def post(client: FlaskClient, path: str, body: Any, content_type: str | None = J) -> Any:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    headers = {} if content_type is None else {"Content-Type": content_type}
    return client.post(path, data=data, headers=headers)


# ------------------------------------------------------------------ MLflow scoring


def test_ping_version_and_health(client: FlaskClient) -> None:
    assert client.get("/ping").status_code == 200
    assert client.get("/health").get_json() == {"status": "ok"}  # our liveness, unchanged
    resp = client.get("/version")
    assert resp.status_code == 200
    assert resp.get_data(as_text=True) == MLFLOW_VERSION


def test_the_pinned_mlflow_is_the_version_we_answer_like() -> None:
    import mlflow

    assert mlflow.__version__ == MLFLOW_VERSION


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": list(FEATURE_NAMES), "data": ROWS}},
        {
            "dataframe_split": {
                "columns": list(FEATURE_NAMES)[::-1],
                "data": [r[::-1] for r in ROWS],
            }
        },
        {"dataframe_records": [dict(zip(FEATURE_NAMES, r, strict=True)) for r in ROWS]},
        {"instances": [dict(zip(FEATURE_NAMES, r, strict=True)) for r in ROWS]},
        {"inputs": {f: [r[j] for r in ROWS] for j, f in enumerate(FEATURE_NAMES)}},
        {"inputs": [dict(zip(FEATURE_NAMES, r, strict=True)) for r in ROWS], "params": {"a": 1}},
    ],
)
def test_invocations_wrappers_answer_the_model_labels(client: FlaskClient, body: Any) -> None:
    expected = [CLASS_NAMES.index(c) for c in predict(client, ROWS)["predictions"]]
    for content_type in (J, "application/json; charset=utf-8"):  # fast path and Flask's
        resp = post(client, "/invocations", body, content_type)
        assert resp.status_code == 200, resp.data
        assert resp.get_json() == {"predictions": expected}
        assert resp.headers["X-Model-Version"]


def test_invocations_csv(client: FlaskClient) -> None:
    expected = [CLASS_NAMES.index(c) for c in predict(client, ROWS)["predictions"]]
    text = ",".join(FEATURE_NAMES) + "\n" + "\n".join(",".join(map(str, r)) for r in ROWS)
    resp = post(client, "/invocations", text, "text/csv")
    assert resp.status_code == 200, resp.data
    assert resp.get_json() == {"predictions": expected}


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("text/plain", "{}", 415, "BAD_REQUEST"),
        ("application/json; charset=latin-1", "{}", 415, "BAD_REQUEST"),
        ("application/json; foo=bar", "{}", 415, "BAD_REQUEST"),
        ("application/vnd.apache.parquet", b"PAR1", 415, "BAD_REQUEST"),
        (None, "{}", 415, "BAD_REQUEST"),
        (J, "{nope", 400, "BAD_REQUEST"),
        (J, {"instances": ROWS}, 400, "INVALID_PARAMETER_VALUE"),
        (J, {"dataframe_records": [{"sepal_length": 1}]}, 400, "INVALID_PARAMETER_VALUE"),
        (J, {"inputs": [], "instances": []}, 400, "BAD_REQUEST"),
        (J, {"dataframe_split": {"columns": list(FEATURE_NAMES), "data": ROWS * 20}},
         413, "RESOURCE_LIMIT_EXCEEDED"),
        (J, "x" * (MAX_BODY + 1), 413, "RESOURCE_LIMIT_EXCEEDED"),
    ],
)  # fmt: skip
def test_invocations_errors_are_mlflow_shaped(
    client: FlaskClient, content_type: str | None, body: Any, status: int, code: str
) -> None:
    resp = post(client, "/invocations", body, content_type)
    assert resp.status_code == status, resp.data
    answer = resp.get_json()
    assert answer["error_code"] == code
    assert answer["message"]


def test_not_loaded_answers_each_protocol_in_its_format(make_app: Any) -> None:
    app = make_app(Settings(model_name="nothing", tracking_uri="http://127.0.0.1:9"))
    client = app.test_client()
    resp = client.post(
        "/invocations", json={"inputs": dict(zip(FEATURE_NAMES, ROWS[0], strict=True))}
    )
    assert resp.status_code == 503
    assert resp.get_json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert client.get("/ping").status_code == 503
    resp = client.get("/v2/health/ready")
    assert resp.status_code == 503
    assert "no model loaded" in resp.get_json()["error"]
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/health").status_code == 200


# ------------------------------------------------------------------ Open Inference V2


def test_v2_health_and_metadata(client: FlaskClient, name: str, version: str) -> None:
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    assert client.get("/v2").get_json()["name"] == "mlops-predictor"
    for path in (f"/v2/models/{name}", f"/v2/models/{name}/versions/{version}"):
        meta = client.get(path).get_json()
        assert meta["name"] == name
        assert meta["versions"] == [version]
        assert meta["inputs"][0]["shape"] == [-1, 4]
        assert [o["name"] for o in meta["outputs"]] == ["predictions", "probabilities"]
    for path in (f"/v2/models/{name}/ready", f"/v2/models/{name}/versions/{version}/ready"):
        assert client.get(path).get_json() == {"name": name, "ready": True}


def test_v2_other_models_and_versions_are_404_naming_what_is_served(
    client: FlaskClient, name: str, version: str
) -> None:
    resp = client.get(f"/v2/models/{name}/versions/999")
    assert resp.status_code == 404
    assert f"serves version '{version}'" in resp.get_json()["error"]
    resp = post(client, "/v2/models/other/infer", {"inputs": []})
    assert resp.status_code == 404
    assert f"serves '{name}'" in resp.get_json()["error"]
    assert client.get("/v2/models/x/nothing").status_code == 404
    assert "error" in client.get("/v2/models/x/nothing").get_json()


def matrix(rows: list[list[float]], datatype: str = "FP64", nested: bool = False) -> Any:
    data: Any = rows if nested else [v for r in rows for v in r]
    return {"name": "input-0", "datatype": datatype, "shape": [len(rows), 4], "data": data}


@pytest.mark.parametrize(
    "inputs",
    [
        [matrix(ROWS)],
        [matrix(ROWS, "FP32")],
        [matrix(ROWS, nested=True)],
        [
            {"name": f, "datatype": "FP64", "shape": [len(ROWS)], "data": [r[j] for r in ROWS]}
            for j, f in enumerate(FEATURE_NAMES)
        ][::-1],
        [
            {"name": f, "datatype": "FP32", "shape": [len(ROWS), 1], "data": [r[j] for r in ROWS]}
            for j, f in enumerate(FEATURE_NAMES)
        ],
    ],
)
def test_v2_infer_answers_like_predict(
    client: FlaskClient, name: str, version: str, inputs: Any
) -> None:
    expected = predict(client, ROWS)
    for path in (f"/v2/models/{name}/infer", f"/v2/models/{name}/versions/{version}/infer"):
        resp = post(client, path, {"id": "r-1", "inputs": inputs})
        assert resp.status_code == 200, resp.data
        answer = resp.get_json()
        assert answer["id"] == "r-1"
        assert answer["model_name"] == name
        assert answer["model_version"] == version
        out = {o["name"]: o for o in answer["outputs"]}
        assert out["predictions"]["data"] == expected["predictions"]
        assert out["predictions"]["shape"] == [3]
        assert out["probabilities"]["shape"] == [3, 3]
        flat = [p for row in expected["probabilities"] for p in row]
        assert out["probabilities"]["data"] == flat


def test_v2_outputs_and_binary_data_requests(client: FlaskClient, name: str) -> None:
    body = {
        "inputs": [matrix(ROWS[:1])],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        "parameters": {"binary_data_output": True},
    }
    resp = post(client, f"/v2/models/{name}/infer", body)
    assert resp.status_code == 200
    assert "Inference-Header-Content-Length" not in resp.headers
    answer = resp.get_json()
    assert [o["name"] for o in answer["outputs"]] == ["probabilities"]
    assert "id" not in answer
    resp = client.post(
        f"/v2/models/{name}/infer",
        data=json.dumps({"inputs": [matrix(ROWS[:1])]}),
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": "9",
        },
    )
    assert resp.status_code == 400
    assert "binary tensor" in resp.get_json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ("{nope", 400, "not valid JSON"),
        ([], 400, "JSON object"),
        ({"inputs": []}, 400, "non-empty list"),
        ({"inputs": [{**matrix(ROWS), "datatype": "INT64"}]}, 400, "FP32 or FP64"),
        ({"inputs": [{**matrix(ROWS), "datatype": {}}]}, 400, "FP32 or FP64"),
        ({"inputs": [{**matrix(ROWS), "name": {}}]}, 400, "'name'"),
        ({"inputs": [{**matrix(ROWS), "shape": "x"}]}, 400, "'shape'"),
        ({"inputs": [matrix(ROWS)], "outputs": [{"name": {}}]}, 400, "unknown output"),
        ({"inputs": [{**matrix(ROWS), "shape": [3, 3]}]}, 400, "[N, 4]"),
        ({"inputs": [{**matrix(ROWS), "shape": [2, 4]}]}, 400, "needs 8 values"),
        ({"inputs": [{**matrix(ROWS), "data": [True] * 12}]}, 400, "must be a number"),
        ({"inputs": [matrix(ROWS)], "outputs": [{"name": "x"}]}, 400, "unknown output"),
        ({"inputs": [matrix(ROWS)], "id": 5}, 400, "'id'"),
        ({"inputs": [{"name": "sepal_length", "datatype": "FP64", "shape": [1], "data": [1]}]},
         400, "missing input"),
        ({"inputs": [matrix(ROWS * 20)]}, 413, "limit"),
    ],
)  # fmt: skip
def test_v2_errors(client: FlaskClient, name: str, body: Any, status: int, words: str) -> None:
    resp = post(client, f"/v2/models/{name}/infer", body)
    assert resp.status_code == status, resp.data
    assert words in resp.get_json()["error"]


def test_v2_non_finite_values_are_refused(client: FlaskClient, name: str) -> None:
    raw = b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], '
    raw += b'"data": [NaN, 1, 1, 1]}]}'
    resp = post(client, f"/v2/models/{name}/infer", raw)
    assert resp.status_code == 400
    assert "NaN" in resp.get_json()["error"]


# ------------------------------------------------------------------ metrics and routing


def test_requests_are_counted_by_protocol(client: FlaskClient, name: str) -> None:
    post(client, f"/v2/models/{name}/infer", {"inputs": [matrix(ROWS)]})
    post(client, "/invocations", {"inputs": [dict(zip(FEATURE_NAMES, ROWS[0], strict=True))]})
    client.get("/v2/models/made-up-name")
    text = client.get("/metrics").get_data(as_text=True)
    seen = {
        (labels["endpoint"], labels["protocol"])
        for labels, _ in iter_samples(text, "predictor_request_duration_seconds_count")
    }
    assert ("/v2/models/{name}/infer", "v2") in seen
    assert ("/invocations", "mlflow") in seen
    assert ("/v2/models/{name}", "v2") in seen
    assert not any("made-up" in endpoint for endpoint, _ in seen)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/predict", ("/predict", "predictor")),
        ("/invocations", ("/invocations", "mlflow")),
        ("/v2/health/ready", ("/v2/health/ready", "v2")),
        ("/v2/models/a", ("/v2/models/{name}", "v2")),
        ("/v2/models/a/infer", ("/v2/models/{name}/infer", "v2")),
        ("/v2/models/a/versions/3", ("/v2/models/{name}/versions/{version}", "v2")),
        ("/v2/models/a/versions/3/ready", ("/v2/models/{name}/versions/{version}/ready", "v2")),
        ("/v2/models/a/versions/3/other", ("other", "other")),
        ("/v2/models/", ("other", "other")),
        ("/nothing", ("other", "other")),
    ],
)
def test_endpoint_labels_are_templates(path: str, expected: tuple[str, str]) -> None:
    assert classify(path) == expected
