"""Drift metrics of the predictor: served rows in the reference bins of the served version."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from mlops_model.drift import DRIFT_REFERENCE_FILE, DriftReference
from mlops_model.schema import CLASS_NAMES, FEATURE_NAMES
from mlops_model.serving.app import get_service
from mlops_model.serving.metrics import iter_samples
from mlops_model.serving.settings import Settings

from tests.support.serving import register_version, set_alias, strong_forest

# Hand-made edges: every test row's bin is known without computing quantiles.
EDGES = {
    "sepal_length": [5.0, 6.0],
    "sepal_width": [3.0],
    "petal_length": [2.0, 5.0],
    "petal_width": [1.0],
}
# A second version's reference: other edges, so its bins have other labels.
OTHER_EDGES = {
    "sepal_length": [5.5],
    "sepal_width": [2.5, 3.5],
    "petal_length": [3.0],
    "petal_width": [0.5, 1.5],
}


def reference(edges: dict[str, list[float]]) -> dict[str, Any]:
    def even(n: int) -> list[float]:
        return [1.0 / n] * n

    return {
        "schema": 1,
        "kind": "mlops.drift_reference",
        "n_rows": 120,
        "features": [
            {"name": name, "edges": edges[name], "shares": even(len(edges[name]) + 1)}
            for name in FEATURE_NAMES
        ],
        "classes": {"labels": list(CLASS_NAMES), "shares": [0.2, 0.3, 0.5]},
    }


def register_with(url: str, name: str, tmp: Path, doc: dict[str, Any] | None) -> str:
    """A version of the strong forest, with ``doc`` as its drift reference (or none)."""
    if doc is None:
        return register_version(url, name, strong_forest())
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / DRIFT_REFERENCE_FILE
    path.write_text(json.dumps(doc))
    return register_version(url, name, strong_forest(), extra_files=[str(path)])


@pytest.fixture(scope="module")
def drift_models(mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("drift-references")
    name = "drift-iris"
    url = mlflow_server.url
    return {
        "url": url,
        "name": name,
        "first": register_with(url, name, tmp / "first", reference(EDGES)),
        "second": register_with(url, name, tmp / "second", reference(OTHER_EDGES)),
        "none": register_with(url, name, tmp / "none", None),
    }


@pytest.fixture
def serve(
    drift_models: dict[str, str], make_app: Callable[..., Flask]
) -> Callable[..., tuple[Flask, Any]]:
    def start(version_key: str, **settings: Any) -> tuple[Flask, Any]:
        set_alias(drift_models["url"], drift_models["name"], drift_models[version_key])
        app = make_app(
            Settings(
                model_name=drift_models["name"],
                tracking_uri=drift_models["url"],
                poll_interval=60,
                **settings,
            )
        )
        service = get_service(app)
        assert service.start(wait=60), service.watcher.last_error
        return app, service

    return start


def samples(app: Flask, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return {tuple(sorted(labels.items())): value for labels, value in iter_samples(text, name)}


def feature_rows(app: Flask, version: str) -> dict[tuple[str, str], float]:
    return {
        (dict(key)["feature"], dict(key)["bin"]): value
        for key, value in samples(app, "predictor_drift_feature_rows_total").items()
        if dict(key)["version"] == version
    }


def predict(app: Flask, rows: list[list[float]]) -> list[str]:
    answer = app.test_client().post("/predict", json={"instances": rows})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return list(answer.get_json()["predictions"])


def test_rows_land_in_the_bins_of_the_reference(serve, drift_models):
    app, _ = serve("first")
    version = drift_models["first"]
    before = feature_rows(app, version)
    # every bin exists before any traffic: a bin nobody hits is a 0 share, not a gap
    assert len(before) == sum(len(e) + 1 for e in EDGES.values())
    assert set(before.values()) == {0.0}
    # A value on an edge belongs to the bin it closes, as with a histogram's le.
    few = [[5.0, 3.0, 2.0, 1.0], [5.5, 3.5, 4.0, 0.2], [7.0, 2.0, 6.5, 2.0]]
    predict(app, few)
    many = [[4.0, 2.9, 1.4, 0.2]] * 20  # over the small-batch path: numpy binning
    predict(app, many)
    after = feature_rows(app, version)
    expected = dict.fromkeys(before, 0.0)
    expected.update(
        {
            ("sepal_length", "5.0"): 1 + 20,
            ("sepal_length", "6.0"): 1,
            ("sepal_length", "+Inf"): 1,
            ("sepal_width", "3.0"): 1 + 1 + 20,
            ("sepal_width", "+Inf"): 1,
            ("petal_length", "2.0"): 1 + 20,
            ("petal_length", "5.0"): 1,
            ("petal_length", "+Inf"): 1,
            ("petal_width", "1.0"): 1 + 1 + 20,
            ("petal_width", "+Inf"): 1,
        }
    )
    assert after == expected


def test_predicted_classes_are_counted_with_the_version(serve, drift_models):
    app, _ = serve("first")
    version = drift_models["first"]
    predicted = predict(
        app, [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]] + [[5.0, 3.4, 1.5, 0.2]] * 18
    )
    counted = {
        dict(key)["class"]: value
        for key, value in samples(app, "predictor_drift_class_rows_total").items()
        if dict(key)["version"] == version
    }
    assert counted == {c: float(predicted.count(c)) for c in CLASS_NAMES}
    shares = {
        dict(key)["class"]: value
        for key, value in samples(app, "predictor_drift_reference_class_share").items()
        if dict(key)["version"] == version
    }
    assert shares == {"setosa": 0.2, "versicolor": 0.3, "virginica": 0.5}


def test_a_model_swap_moves_the_bins_and_the_reference(serve, drift_models):
    app, service = serve("first")
    first, second = drift_models["first"], drift_models["second"]
    predict(app, [[5.0, 3.0, 2.0, 1.0]])
    set_alias(drift_models["url"], drift_models["name"], second)
    assert service.watcher.check_once()
    predict(app, [[5.0, 3.0, 2.0, 1.0]])
    # the first version's rows stay counted; the new rows go to the new bins
    assert feature_rows(app, first)[("petal_length", "2.0")] == 1
    assert feature_rows(app, second)[("petal_length", "3.0")] == 1
    assert feature_rows(app, second)[("sepal_width", "3.5")] == 1
    # only the served version's reference is exported: the rules compare with it
    shares = samples(app, "predictor_drift_reference_share")
    assert {dict(key)["version"] for key in shares} == {second}
    assert shares[(("bin", "+Inf"), ("feature", "petal_length"), ("version", second))] == 0.5
    drift = app.test_client().get("/model").get_json()["drift"]
    assert drift["bins"]["petal_length"] == ["3.0", "+Inf"]


def test_model_reports_the_reference(serve, drift_models):
    app, _ = serve("first")
    drift = app.test_client().get("/model").get_json()["drift"]
    assert drift == {
        "metrics": True,
        "reference": True,
        "reason": None,
        "training_rows": 120,
        "bins": {name: [*map(repr, edges), "+Inf"] for name, edges in EDGES.items()},
    }


def test_the_off_switch_leaves_no_drift_metrics(serve):
    app, _ = serve("first", drift_metrics=False)
    predict(app, [[5.0, 3.0, 2.0, 1.0]])
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert "predictor_drift_" not in text
    assert "predictor_feature_value_bucket" in text  # the fixed histograms stay
    drift = app.test_client().get("/model").get_json()["drift"]
    assert drift["metrics"] is False
    assert drift["reference"] is True
    assert "PREDICTOR_DRIFT_METRICS" in drift["reason"]


def test_without_a_reference_it_serves_and_says_why(serve):
    app, _ = serve("none")
    predict(app, [[5.0, 3.0, 2.0, 1.0]])
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert "predictor_drift_feature_rows_total{" not in text
    assert "predictor_drift_reference_share{" not in text
    drift = app.test_client().get("/model").get_json()["drift"]
    assert drift["metrics"] is False
    assert drift["reference"] is False
    assert DRIFT_REFERENCE_FILE in drift["reason"]


def test_the_setting_reads_true_and_false():
    assert Settings.from_env({}).drift_metrics is True
    assert Settings.from_env({"PREDICTOR_DRIFT_METRICS": "false"}).drift_metrics is False
    assert Settings.from_env({"PREDICTOR_DRIFT_METRICS": "on"}).drift_metrics is True


def test_a_reference_that_does_not_fit_is_refused_with_a_reason():
    doc = reference(EDGES)
    doc["features"][2]["edges"] = [5.0, 2.0]
    with pytest.raises(ValueError, match="petal_length: edges are not strictly increasing"):
        DriftReference.from_dict(doc)
    doc = reference(EDGES)
    doc["features"][0]["shares"] = [0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="add up to 1"):
        DriftReference.from_dict(doc)
    doc = reference(EDGES)
    doc["schema"] = 2
    with pytest.raises(ValueError, match="schema 2"):
        DriftReference.from_dict(doc)
