"""Versions prepared at registration: predictors open their ONNX graph with onnxruntime
alone; versions without it (or whose graph fails its check rows) are converted as before."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlops_model.serving import loader as loader_module
from mlops_model.serving.app import get_service
from mlops_model.serving.fast_path import build_fast_path, read_checks
from mlops_model.serving.settings import Settings

from tests.support.serving import PROBE_ROW, iris_frame, strong_forest


def started(make_app: Any, settings: Settings) -> Any:
    app = make_app(settings)
    service = get_service(app)
    assert service.start(wait=60), service.watcher.last_error
    return app.test_client()


def test_prepared_version_serves_without_conversion(
    prepared_models: Any, make_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_conversion(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a prepared version must not be converted at load")

    monkeypatch.setattr(loader_module, "fetch_and_prepare", no_conversion)
    settings = Settings(
        model_name=prepared_models.name,
        tracking_uri=prepared_models.url,
        poll_interval=60,
        cache_dir=str(tmp_path / "cache"),
    )
    client = started(make_app, settings)
    info = client.get("/model").get_json()
    assert info["version"] == prepared_models.strong
    assert info["backend"] == "onnx"
    assert info["preparation"] == "prepared"
    assert info["fetched_from"] == "registry"
    resp = client.post("/predict", json={"instances": [PROBE_ROW]})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    x, y = iris_frame()  # the fixture's strong version: the same forest, fitted the same way
    want = strong_forest().fit(x, y).predict_proba(np.array([PROBE_ROW], dtype=np.float32))
    assert np.allclose(resp.get_json()["probabilities"], want, atol=1e-6)

    # a restart (another worker, or the service) opens the host cache: no download
    again = started(make_app, settings).get("/model").get_json()
    assert (again["preparation"], again["fetched_from"]) == ("prepared", "cache")


def test_version_without_preparation_is_converted_at_load(client: Any) -> None:
    info = client.get("/model").get_json()  # serving_models: registered by plain MLflow
    assert info["backend"] == "onnx"
    assert info["preparation"] == "converted"
    assert info["fetched_from"] == "registry"


def test_prepared_graph_failing_its_check_rows_is_converted_instead(
    prepared_models: Any, make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = loader_module.read_checks

    def wrong_answers(model_dir: Path) -> Any:
        checks = real(model_dir)
        return dataclasses.replace(checks, probabilities=checks.probabilities[:, ::-1].copy())

    monkeypatch.setattr(loader_module, "read_checks", wrong_answers)
    settings = Settings(
        model_name=prepared_models.name, tracking_uri=prepared_models.url, poll_interval=60
    )
    info = started(make_app, settings).get("/model").get_json()
    assert info["version"] == prepared_models.strong
    assert info["preparation"] == "converted"
    assert info["backend"] == "onnx"


def test_build_fast_path_writes_checked_files_or_says_why_not(tmp_path: Path) -> None:
    x, y = iris_frame()
    forest = strong_forest().fit(x, y)
    done = build_fast_path(forest, tmp_path / "ok" / "extra_files")
    assert done.tag == "passed", done.reason
    checks = read_checks(tmp_path / "ok")
    assert checks.rows.shape[0] == checks.probabilities.shape[0] > 6
    assert np.array_equal(checks.probabilities, forest.predict_proba(checks.rows))

    strict = build_fast_path(forest, tmp_path / "strict", tolerance=-1.0)
    assert strict.tag.startswith("failed: parity: probabilities differ"), strict.tag
    assert not strict.files
    assert not (tmp_path / "strict").exists()

    unfit = build_fast_path(strong_forest(), tmp_path / "unfit")
    assert unfit.tag.startswith("failed: not a servable classifier"), unfit.tag
