"""mlops.stack.mlflow_model_info against a real MLflow server."""

from __future__ import annotations

import pytest
from mlops_model.ensure import ensure_model
from mlops_model.train import TrainParams

UNREACHABLE = "http://127.0.0.1:9"


def test_unknown_model_does_not_exist(mlflow_url, model_name, run_module):
    result = run_module("mlflow_model_info", {"tracking_uri": mlflow_url, "model_name": model_name})
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    assert result["exists"] is False
    assert result["versions"] == []
    assert result["aliases"] == {}


def test_lists_versions_and_aliases(mlflow_url, model_name, run_module):
    # made in-process (the mlflow_model module has its own tests): cheaper than ansible
    made = ensure_model(
        mlflow_url, model_name, "champion", TrainParams(n_estimators=20), min_accuracy=0.5
    )
    assert made["version"] == "1", made
    # through ansible: an info module must run in its --check too
    info = run_module(
        "mlflow_model_info",
        {"tracking_uri": mlflow_url, "model_name": model_name},
        "--check",
        via_ansible=True,
    )
    assert info["changed"] is False
    assert info["exists"] is True
    assert info["aliases"] == {"champion": "1"}
    assert info["latest_version"] == "1"
    (version,) = info["versions"]
    assert version["version"] == "1"
    assert version["run_id"] == made["run_id"]
    assert version["fingerprint"] == made["fingerprint"]
    assert version["gate"] == "passed"
    assert version["aliases"] == ["champion"]
    assert version["metrics"]["accuracy"] == pytest.approx(made["metrics"]["accuracy"])


def test_missing_library(run_module, python_without_mlflow):
    result = run_module(
        "mlflow_model_info", {"tracking_uri": UNREACHABLE}, python=python_without_mlflow
    )
    assert result["failed"] is True
    assert "Failed to import the required Python library (mlflow)" in result["msg"]
