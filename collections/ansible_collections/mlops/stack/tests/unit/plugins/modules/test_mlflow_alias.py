"""mlops.stack.mlflow_alias, run by ``ansible`` against a real MLflow server."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from mlops_model.ensure import ensure_model
from mlops_model.train import TrainParams

UNREACHABLE = "http://127.0.0.1:9"


def aliases(url, name):
    """The model's alias map, read from MLflow itself."""
    return {
        str(alias): str(version)
        for alias, version in MlflowClient(url).get_registered_model(name).aliases.items()
    }


@pytest.fixture
def versions(mlflow_url, model_name):
    """Version 1 (champion), 2 (passed the gate, no alias), 3 (failed the gate), made in-process:
    cheaper than ansible (the mlflow_model module has its own tests)."""
    stump = TrainParams(n_estimators=1, max_depth=1)  # accuracy 0.67 < 0.9
    made = [
        ensure_model(mlflow_url, model_name, "champion", TrainParams(n_estimators=20), 0.5),
        ensure_model(mlflow_url, model_name, None, TrainParams(n_estimators=20, random_state=7)),
        ensure_model(mlflow_url, model_name, None, stump),
    ]
    assert [m["version"] for m in made] == ["1", "2", "3"], made
    assert [m["gate"] for m in made] == ["passed", "passed", "failed"], made
    assert aliases(mlflow_url, model_name) == {"champion": "1"}
    return made


def test_moves_the_alias_then_changes_nothing(mlflow_url, model_name, versions, run_module):
    args = {"tracking_uri": mlflow_url, "model_name": model_name, "alias": "champion"}
    moved = run_module("mlflow_alias", {**args, "version": "2"}, "--diff")
    assert moved.get("failed") is not True, moved
    assert moved["changed"] is True
    assert moved["model_name"] == model_name
    assert moved["alias"] == "champion"
    assert moved["version"] == "2"
    assert moved["previous_version"] == "1"
    assert moved["diff"] == {
        "before": {"alias": "champion", "version": "1"},
        "after": {"alias": "champion", "version": "2"},
    }
    assert aliases(mlflow_url, model_name) == {"champion": "2"}

    again = run_module("mlflow_alias", {**args, "version": 2}, "--diff")  # an int is fine too
    assert again.get("failed") is not True, again
    assert again["changed"] is False
    assert again["version"] == again["previous_version"] == "2"
    same = {"alias": "champion", "version": "2"}
    assert again["diff"] == {"before": same, "after": same}

    # a new alias on the same version; the other one stays
    other = run_module("mlflow_alias", {**args, "alias": "challenger", "version": "1"})
    assert other["changed"] is True, other
    assert other["previous_version"] is None
    assert aliases(mlflow_url, model_name) == {"champion": "2", "challenger": "1"}


def test_check_mode_reports_and_changes_nothing(mlflow_url, model_name, versions, run_module):
    args = {"tracking_uri": mlflow_url, "model_name": model_name, "alias": "champion"}
    # through ansible: its --check and --diff reach the module
    planned = run_module(
        "mlflow_alias", {**args, "version": "2"}, "--check", "--diff", via_ansible=True
    )
    assert planned.get("failed") is not True, planned
    assert planned["changed"] is True
    assert planned["version"] == "2"
    assert planned["previous_version"] == "1"
    assert planned["diff"]["after"] == {"alias": "champion", "version": "2"}

    removal = run_module("mlflow_alias", {**args, "state": "absent"}, "--check")
    assert removal["changed"] is True, removal
    assert removal["version"] is None
    assert removal["previous_version"] == "1"

    assert aliases(mlflow_url, model_name) == {"champion": "1"}


def test_absent_removes_the_alias(mlflow_url, model_name, versions, run_module):
    args = {"tracking_uri": mlflow_url, "model_name": model_name, "alias": "champion"}
    # with a version: only when the alias points there
    elsewhere = run_module("mlflow_alias", {**args, "version": "2", "state": "absent"})
    assert elsewhere.get("failed") is not True, elsewhere
    assert elsewhere["changed"] is False
    assert elsewhere["version"] == elsewhere["previous_version"] == "1"
    assert aliases(mlflow_url, model_name) == {"champion": "1"}

    removed = run_module("mlflow_alias", {**args, "state": "absent"}, "--diff")
    assert removed["changed"] is True, removed
    assert removed["version"] is None
    assert removed["previous_version"] == "1"
    assert removed["diff"] == {
        "before": {"alias": "champion", "version": "1"},
        "after": {"alias": "champion", "version": None},
    }
    assert aliases(mlflow_url, model_name) == {}

    again = run_module("mlflow_alias", {**args, "state": "absent"})
    assert again["changed"] is False, again
    assert again["previous_version"] is None


def test_missing_version_fails_naming_it(mlflow_url, model_name, versions, run_module):
    args = {"tracking_uri": mlflow_url, "model_name": model_name, "alias": "champion"}
    result = run_module("mlflow_alias", {**args, "version": "7"})
    assert result["failed"] is True, result
    assert result["changed"] is False
    assert result["parameter"] == "version"
    assert f"{model_name!r} has no version 7" in result["msg"]
    assert aliases(mlflow_url, model_name) == {"champion": "1"}


def test_version_that_failed_the_gate_needs_require_gate_false(
    mlflow_url, model_name, versions, run_module
):
    args = {"tracking_uri": mlflow_url, "model_name": model_name, "alias": "champion"}
    refused = run_module("mlflow_alias", {**args, "version": "3"})
    assert refused["failed"] is True, refused
    assert refused["parameter"] == "version"
    assert "did not pass the gate" in refused["msg"]
    assert aliases(mlflow_url, model_name) == {"champion": "1"}

    forced = run_module("mlflow_alias", {**args, "version": "3", "require_gate": False})
    assert forced.get("failed") is not True, forced
    assert forced["changed"] is True
    assert aliases(mlflow_url, model_name) == {"champion": "3"}


@pytest.mark.parametrize(
    ("args", "parameter", "message"),
    [
        ({"alias": "latest", "version": "1"}, "alias", "reserved by MLflow"),
        ({"alias": "v2", "version": "1"}, "alias", "reserved by MLflow"),
        ({"alias": "bad alias", "version": "1"}, "alias", "'bad alias' is invalid"),
        ({"alias": "", "version": "1"}, "alias", "alias must not be empty"),
        ({"alias": "champion", "state": "absent", "version": "x"}, "version", "positive integer"),
        ({"alias": "champion", "version": "0"}, "version", "positive integer"),
        ({"model_name": "no/slash", "alias": "champion", "version": "1"}, "model_name", "invalid"),
    ],
)
def test_bad_parameters_fail_naming_them(run_module, args, parameter, message):
    # checked before the (unreachable) server is asked anything
    result = run_module("mlflow_alias", {"tracking_uri": UNREACHABLE, **args})
    assert result["failed"] is True, result
    assert result["parameter"] == parameter, result
    assert message in result["msg"], result["msg"]
    assert "unreachable" not in result["msg"]


def test_present_needs_a_version(run_module):
    result = run_module("mlflow_alias", {"tracking_uri": UNREACHABLE, "alias": "champion"})
    assert result["failed"] is True, result
    assert "state is present but all of the following are missing: version" in result["msg"]


def test_unreachable_server_fails_naming_the_uri(run_module):
    result = run_module(
        "mlflow_alias", {"tracking_uri": UNREACHABLE, "alias": "champion", "version": "1"}
    )
    assert result["failed"] is True, result
    assert result["changed"] is False
    assert f"MLflow tracking server {UNREACHABLE} is unreachable" in result["msg"]
    assert result["tracking_uri"] == UNREACHABLE


def test_missing_library(run_module, python_without_mlflow):
    result = run_module(
        "mlflow_alias",
        {"tracking_uri": UNREACHABLE, "alias": "champion", "version": "1"},
        python=python_without_mlflow,
    )
    assert result["failed"] is True
    assert "Failed to import the required Python library (mlflow)" in result["msg"]


def test_require_fast_path_refuses_a_version_whose_preparation_failed(
    mlflow_url, model_name, versions, run_module
):
    client = MlflowClient(mlflow_url)
    # the trainer prepared every version it registered
    tags = [client.get_model_version(model_name, v).tags.get("mlops.fast_path") for v in "12"]
    assert tags == ["passed", "passed"]
    client.set_model_version_tag(
        model_name, "2", "mlops.fast_path", "failed: parity: labels differ on 1 of 1150 rows"
    )
    args = {"tracking_uri": mlflow_url, "model_name": model_name, "alias": "champion"}
    refused = run_module("mlflow_alias", {**args, "version": "2", "require_fast_path": True})
    assert refused["failed"] is True, refused
    assert refused["parameter"] == "require_fast_path"
    assert "failed its preparation" in refused["msg"]
    assert "labels differ" in refused["msg"]
    assert aliases(mlflow_url, model_name) == {"champion": "1"}

    # off by default: the predictors convert such a version at load
    moved = run_module("mlflow_alias", {**args, "version": "2"})
    assert moved.get("failed") is not True, moved
    assert aliases(mlflow_url, model_name) == {"champion": "2"}
