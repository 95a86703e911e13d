"""mlops.stack.mlflow_model, run by ``ansible`` against a real MLflow server."""

from __future__ import annotations

import time

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from mlops_model.ensure import ensure_model
from mlops_model.train import TrainParams

UNREACHABLE = "http://127.0.0.1:9"
FAST = {"n_estimators": 20, "max_depth": 5, "min_accuracy": 0.5}


def counts(url, name):
    client = MlflowClient(url)
    versions = len(client.search_model_versions(f"name = '{name}'"))
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs = len(client.search_runs(ids, run_view_type=ViewType.ALL, max_results=5000))
    return versions, runs


def test_second_run_changes_nothing(mlflow_url, model_name, run_module):
    args = {"tracking_uri": mlflow_url, "model_name": model_name, **FAST}
    first = run_module("mlflow_model", args)
    assert first.get("failed") is not True, first
    assert first["changed"] is True
    assert first["created"] is True
    assert first["version"] == "1"
    assert first["alias_after"] == "1"
    assert first["promoted"] is True

    second = run_module("mlflow_model", args, "--diff")
    assert second["changed"] is False, second
    same = {"alias": "champion", "version": "1", "model_version": "1"}
    assert second["diff"] == {"before": same, "after": same}
    assert second["version"] == "1"
    assert second["run_id"] == first["run_id"]
    assert second["fingerprint"] == first["fingerprint"]
    assert counts(mlflow_url, model_name)[0] == 1


def test_check_mode_writes_nothing_and_diff(mlflow_url, model_name, run_module):
    args = {"tracking_uri": mlflow_url, "model_name": model_name, **FAST}
    before = counts(mlflow_url, model_name)
    # through ansible: its --check and --diff reach the module
    planned = run_module("mlflow_model", args, "--check", "--diff", via_ansible=True)
    assert planned["changed"] is True, planned
    assert planned["created"] is True
    assert planned["version"] is None
    assert planned["check_mode"] is True
    assert planned["diff"] == {
        "before": {"alias": "champion", "version": None, "model_version": None},
        "after": {
            "alias": "champion",
            "version": "(new version)",
            "model_version": "(new version)",
        },
    }
    assert counts(mlflow_url, model_name) == before

    # create it in-process (cheaper than another ansible run), then plan again: no change
    made = ensure_model(
        mlflow_url,
        model_name,
        "champion",
        TrainParams(n_estimators=20, max_depth=5),
        min_accuracy=0.5,
    )
    assert made["fingerprint"] == planned["fingerprint"]
    again = run_module("mlflow_model", args, "--check", "--diff")
    assert again["changed"] is False
    assert again["diff"]["before"] == again["diff"]["after"]


def test_alias_null_moves_no_alias(mlflow_url, model_name, run_module):
    result = run_module(
        "mlflow_model",
        {"tracking_uri": mlflow_url, "model_name": model_name, "alias": None, **FAST},
    )
    assert result["changed"] is True, result
    assert result["alias"] is None
    assert result["promoted"] is False
    assert MlflowClient(mlflow_url).get_registered_model(model_name).aliases == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"n_estimators": 0}, "n_estimators must be >= 1, got 0"),
        ({"alias": "v3"}, "alias 'v3' is reserved"),
    ],
)
def test_bad_parameters_fail_naming_them(run_module, args, message):
    # validation happens before any network access: the URI is never contacted
    result = run_module("mlflow_model", {"tracking_uri": UNREACHABLE, **args})
    assert result["failed"] is True
    assert message in result["msg"]
    assert result["changed"] is False


def test_unreachable_server_fails_naming_the_uri(run_module):
    started = time.monotonic()
    result = run_module("mlflow_model", {"tracking_uri": UNREACHABLE})
    assert result["failed"] is True
    assert f"MLflow tracking server {UNREACHABLE} is unreachable" in result["msg"]
    assert time.monotonic() - started < 60


def test_missing_library_uses_missing_required_lib(run_module, python_without_mlflow):
    result = run_module("mlflow_model", {"tracking_uri": UNREACHABLE}, python=python_without_mlflow)
    assert result["failed"] is True
    assert "Failed to import the required Python library (mlflow)" in result["msg"]


def test_require_fast_path_refuses_an_unprepared_version(mlflow_url, model_name, run_module):
    # registered without the alias, then stripped of its preparation: as another tool's
    made = ensure_model(mlflow_url, model_name, None, TrainParams(n_estimators=20, max_depth=5))
    client = MlflowClient(mlflow_url)
    assert client.get_model_version(model_name, made["version"]).tags["mlops.fast_path"] == "passed"
    client.delete_model_version_tag(model_name, made["version"], "mlops.fast_path")
    args = {"tracking_uri": mlflow_url, "model_name": model_name, **FAST, "min_accuracy": 0.9}
    refused = run_module("mlflow_model", {**args, "require_fast_path": True})
    assert refused["failed"] is True, refused
    assert refused["parameter"] == "require_fast_path"
    assert "never prepared" in refused["msg"]
    assert "mlops_model prepare" in refused["msg"]
    assert not client.get_registered_model(model_name).aliases
    assert counts(mlflow_url, model_name)[0] == 1  # the same version, nothing new registered
