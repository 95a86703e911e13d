"""mlops_model against a real MLflow server (tests/conftest.py): idempotence, gate, check mode."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from mlops_model import ensure
from mlops_model.errors import InvalidParameter, RegistryError, RegistryUnavailable
from mlops_model.gate import GATE_TAG
from mlops_model.registry import Registry
from mlops_model.schema import FINGERPRINT_TAG
from mlops_model.train import TrainParams, fingerprint

UNREACHABLE = "http://127.0.0.1:9"
STRONG = TrainParams(n_estimators=20, max_depth=5)  # accuracy 0.93+ on the holdout
WEAK = TrainParams(n_estimators=1, max_depth=1)  # a stump: accuracy 0.67


def versions(url: str, name: str) -> list[str]:
    found = MlflowClient(url).search_model_versions(f"name = '{name}'")
    return sorted((mv.version for mv in found), key=int)


def run_count(url: str) -> int:
    client = MlflowClient(url)
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return len(client.search_runs(ids, run_view_type=ViewType.ALL, max_results=5000))


def alias_of(url: str, name: str, alias: str = "champion") -> str | None:
    return MlflowClient(url).get_registered_model(name).aliases.get(alias)


def test_same_params_twice_make_one_version(mlflow_server, unique_model_name):
    url, name = mlflow_server.url, unique_model_name
    first = ensure.ensure_model(url, name, "champion", STRONG, min_accuracy=0.9)
    assert first["changed"] is True
    assert first["created"] is True
    assert first["version"] == "1"
    assert first["promoted"] is True
    assert first["alias_before"] is None
    assert first["alias_after"] == "1"
    assert first["gate"] == "passed"
    assert first["fingerprint"] == fingerprint(STRONG)
    runs = run_count(url)

    second = ensure.ensure_model(url, name, "champion", STRONG, min_accuracy=0.9)
    assert second["changed"] is False
    assert second["created"] is False
    assert second["version"] == "1"
    assert second["run_id"] == first["run_id"]
    assert second["metrics"] == pytest.approx(first["metrics"])
    assert second["confusion_matrix"] == first["confusion_matrix"]
    assert "already points to version 1" in second["reason"]
    assert versions(url, name) == ["1"]
    assert run_count(url) == runs

    # the fingerprint is on the run and on the version; the dataset digest on the run
    client = MlflowClient(url)
    mv = client.get_model_version(name, "1")
    assert mv.tags[FINGERPRINT_TAG] == first["fingerprint"]
    assert mv.tags[GATE_TAG] == "passed"
    run = client.get_run(first["run_id"])
    assert run.data.tags[FINGERPRINT_TAG] == first["fingerprint"]
    assert run.data.params["n_estimators"] == "20"
    assert run.data.params["dataset_digest"] == run.data.tags["mlops.dataset_digest"]
    assert run.data.metrics["accuracy"] == pytest.approx(first["metrics"]["accuracy"])
    assert run.inputs.dataset_inputs, "the Iris dataset is logged with log_input"
    artifacts = {a.path for a in client.list_artifacts(first["run_id"])}
    assert "confusion_matrix.json" in artifacts
    # the drift reference: with the run, and inside the model the predictor downloads
    assert "drift_reference.json" in artifacts
    from mlflow.artifacts import download_artifacts
    from mlops_model.drift import DriftReference

    model_dir = download_artifacts(
        artifact_uri=client.get_model_version_download_uri(name, "1"), tracking_uri=url
    )
    stored = json.loads((Path(model_dir) / "extra_files" / "drift_reference.json").read_text())
    assert DriftReference.from_dict(stored).n_rows == first["metrics"]["n_train"]


def test_logged_model_is_skops_with_signature(mlflow_server, unique_model_name):
    url, name = mlflow_server.url, unique_model_name
    result = ensure.ensure_model(url, name, None, STRONG, min_accuracy=0.5)
    import mlflow

    mlflow.set_tracking_uri(url)
    model_info = mlflow.models.get_model_info(result["model_uri"])
    sklearn_flavor = model_info.flavors["sklearn"]
    assert sklearn_flavor["serialization_format"] == "skops"
    assert sklearn_flavor["skops_trusted_types"] == ["sklearn.tree._tree.Tree"]
    assert model_info.signature is not None
    assert [c.name for c in model_info.signature.inputs] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]


def test_new_params_make_a_new_version(mlflow_server, unique_model_name):
    url, name = mlflow_server.url, unique_model_name
    first = ensure.ensure_model(url, name, "champion", STRONG, min_accuracy=0.5)
    other = TrainParams(n_estimators=25, max_depth=5, random_state=7)
    second = ensure.ensure_model(url, name, "champion", other, min_accuracy=0.5)
    assert second["created"] is True
    assert second["version"] == "2"
    assert second["fingerprint"] != first["fingerprint"]
    assert versions(url, name) == ["1", "2"]


def test_gate_keeps_alias_and_force_moves_it(mlflow_server, unique_model_name):
    url, name = mlflow_server.url, unique_model_name
    champion = ensure.ensure_model(url, name, "champion", STRONG, min_accuracy=0.5)
    assert champion["alias_after"] == "1"

    # a stump passes min_accuracy 0.5 but is worse than the champion: alias stays
    weak = ensure.ensure_model(url, name, "champion", WEAK, min_accuracy=0.5)
    assert weak["created"] is True
    assert weak["version"] == "2"
    assert weak["promoted"] is False
    assert weak["alias_before"] == weak["alias_after"] == "1"
    assert "current holder's accuracy" in weak["reason"]
    assert alias_of(url, name) == "1"

    # min_accuracy 0.9: the stump fails the gate, and force does not lower the bar
    failed = ensure.ensure_model(url, name, "champion", WEAK, min_accuracy=0.9, force=True)
    assert failed["created"] is False
    assert failed["changed"] is False
    assert "below min_accuracy" in failed["reason"]
    assert alias_of(url, name) == "1"

    # force moves the alias to the existing weak version without a new version
    forced = ensure.ensure_model(url, name, "champion", WEAK, min_accuracy=0.5, force=True)
    assert forced["created"] is False
    assert forced["changed"] is True
    assert forced["promoted"] is True
    assert forced["alias_after"] == "2"
    assert "forced" in forced["reason"]
    assert alias_of(url, name) == "2"
    assert versions(url, name) == ["1", "2"]


def test_failed_gate_is_tagged_and_helpers(mlflow_server, unique_model_name):
    url, name = mlflow_server.url, unique_model_name
    ensure.ensure_model(url, name, "champion", STRONG, min_accuracy=0.9)
    bad = ensure.ensure_model(url, name, "champion", WEAK, min_accuracy=0.9)
    assert bad["gate"] == "failed"
    assert bad["promoted"] is False
    with Registry(url) as registry:
        assert registry.versions_passing_gate(name) == ["1"]
        registry.set_alias(name, "challenger", "2")
        assert registry.alias_version(name, "challenger") == "2"
    # the promote helper refuses versions that failed the gate, unless told otherwise
    with pytest.raises(InvalidParameter, match="did not pass the gate"):
        ensure.set_alias(url, name, "champion", "2")
    moved = ensure.set_alias(url, name, "champion", "2", require_gate=False)
    assert moved["changed"] is True
    assert moved["alias_before"] == "1"
    again = ensure.set_alias(url, name, "champion", "2", require_gate=False)
    assert again["changed"] is False
    back = ensure.set_alias(url, name, "champion", "1", check_mode=True)
    assert back["changed"] is True
    assert alias_of(url, name) == "2"


def test_check_mode_writes_nothing(mlflow_server, unique_model_name):
    url, name = mlflow_server.url, unique_model_name
    runs = run_count(url)
    fresh = ensure.ensure_model(url, name, "champion", STRONG, min_accuracy=0.5, check_mode=True)
    assert fresh["changed"] is True
    assert fresh["created"] is True
    assert fresh["version"] is None
    assert fresh["run_id"] is None
    assert fresh["promoted"] is True
    assert fresh["metrics"]["accuracy"] >= 0.9
    assert run_count(url) == runs
    assert ensure.model_info(url, name)["exists"] is False
    assert MlflowClient(url).get_experiment_by_name(name) is None

    ensure.ensure_model(url, name, "champion", STRONG, min_accuracy=0.5)
    runs = run_count(url)
    other = TrainParams(n_estimators=15, max_depth=6, random_state=3)
    planned = ensure.ensure_model(url, name, "champion", other, min_accuracy=0.5, check_mode=True)
    assert planned["created"] is True
    assert planned["version"] is None
    assert run_count(url) == runs
    assert versions(url, name) == ["1"]
    assert alias_of(url, name) == "1"

    weak_real = ensure.ensure_model(url, name, "challenger", WEAK, min_accuracy=0.5)
    assert weak_real["alias_after"] == "2"
    # check mode on an existing version: would move champion (forced), but does not
    planned = ensure.ensure_model(
        url, name, "champion", WEAK, min_accuracy=0.5, force=True, check_mode=True
    )
    assert planned["changed"] is True
    assert planned["promoted"] is True
    assert planned["alias_after"] == "2"
    assert alias_of(url, name) == "1"


def test_alias_none_registers_without_alias(mlflow_server, unique_model_name):
    url, name = mlflow_server.url, unique_model_name
    result = ensure.ensure_model(url, name, "", STRONG, min_accuracy=0.5)
    assert result["alias"] is None
    assert result["promoted"] is False
    assert result["reason"] == "no alias requested"
    assert MlflowClient(url).get_registered_model(name).aliases == {}


def test_failed_registration_deletes_the_run(mlflow_server, unique_model_name, monkeypatch):
    url, name = mlflow_server.url, unique_model_name

    def refuse(self, **kwargs):
        raise RegistryError("registry refused the version (injected)")

    # the fault is injected in our code; MLflow itself is real
    monkeypatch.setattr(Registry, "register_version", refuse)
    with pytest.raises(RegistryError, match="injected"):
        ensure.ensure_model(url, name, "champion", STRONG, min_accuracy=0.5)
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    fp = fingerprint(STRONG)
    query = f"tags.`{FINGERPRINT_TAG}` = '{fp}'"
    exp = [experiment.experiment_id]
    assert client.search_runs(exp, query, run_view_type=ViewType.ACTIVE_ONLY) == []
    assert len(client.search_runs(exp, query, run_view_type=ViewType.DELETED_ONLY)) == 1
    assert versions(url, name) == []

    monkeypatch.undo()  # the next attempt succeeds and does not reuse the deleted run
    result = ensure.ensure_model(url, name, "champion", STRONG, min_accuracy=0.5)
    assert result["created"] is True
    assert result["version"] == "1"


def test_model_info(mlflow_server, unique_model_name):
    url, name = mlflow_server.url, unique_model_name
    assert ensure.model_info(url, name) == {
        "exists": False,
        "model_name": name,
        "versions": [],
        "aliases": {},
        "latest_version": None,
    }
    made = ensure.ensure_model(url, name, "champion", STRONG, min_accuracy=0.5)
    info = ensure.model_info(url, name)
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
    assert version["model_uri"] == f"models:/{name}/1"


def test_unreachable_server_fails_fast():
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match=r"127\.0\.0\.1:9") as info:
        ensure.ensure_model(UNREACHABLE, "iris", "champion", STRONG)
    assert time.monotonic() - started < 10
    assert info.value.uri == UNREACHABLE
    with pytest.raises(RegistryUnavailable, match="unreachable"):
        ensure.model_info(UNREACHABLE, "iris")


def test_bad_input_fails_before_any_network():
    # an unreachable URI proves validation happens first
    with pytest.raises(InvalidParameter, match="alias 'v1' is reserved"):
        ensure.ensure_model(UNREACHABLE, "iris", "v1", STRONG)
    with pytest.raises(InvalidParameter, match="min_accuracy must be between 0 and 1"):
        ensure.ensure_model(UNREACHABLE, "iris", "champion", STRONG, min_accuracy=1.01)
    with pytest.raises(InvalidParameter, match="model_name"):
        ensure.ensure_model(UNREACHABLE, "bad/name", "champion", STRONG)
    with pytest.raises(InvalidParameter, match="n_estimators must be >= 1, got 0"):
        ensure.params_from_mapping({"n_estimators": 0})


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops_model", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_train_check_and_info(mlflow_server, unique_model_name):
    url, name = mlflow_server.url, unique_model_name
    done = cli(
        "train",
        "--tracking-uri",
        url,
        "--model-name",
        name,
        "--n-estimators",
        "20",
        "--max-depth",
        "5",
        "--min-accuracy",
        "0.5",
        "--check",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # stdout is only the JSON result
    assert result["check_mode"] is True
    assert result["version"] is None
    info = cli("info", "--tracking-uri", url, "--model-name", name)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["exists"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n-estimators", "0"], "n_estimators must be >= 1, got 0"),
        (["--alias", "latest"], "alias 'latest' is reserved"),
        (["--test-size", "0.95"], "test_size must be > 0 and < 0.9"),
        (["--max-depth", "deep"], "--max-depth"),
    ],
)
def test_cli_bad_input_exits_1(args, message):
    done = cli("train", "--tracking-uri", UNREACHABLE, *args)
    assert done.returncode == 1
    assert message in done.stderr
    assert done.stdout == ""


def test_cli_unreachable_exits_1():
    done = cli("info", "--tracking-uri", UNREACHABLE)
    assert done.returncode == 1
    assert "MLflow tracking server http://127.0.0.1:9 is unreachable" in done.stderr


def test_registered_versions_carry_their_prepared_onnx_model(mlflow_server, unique_model_name):
    from mlflow.artifacts import download_artifacts
    from mlops_model.serving.fast_path import read_checks

    url, name = mlflow_server.url, unique_model_name
    made = ensure.ensure_model(url, name, None, STRONG, min_accuracy=0.9)
    client = MlflowClient(url)
    assert client.get_model_version(name, made["version"]).tags["mlops.fast_path"] == "passed"
    model_dir = Path(download_artifacts(f"models:/{name}/{made['version']}", tracking_uri=url))
    assert (model_dir / "extra_files" / "fast-path-model.onnx").stat().st_size > 0
    assert read_checks(model_dir).rows.shape[1] == 4

    # refused by the gate once the preparation is recorded as failed; prepare repairs it
    client.set_model_version_tag(name, made["version"], "mlops.fast_path", "failed: test")
    with pytest.raises(InvalidParameter, match="failed its preparation") as refused:
        ensure.set_alias(url, name, "champion", made["version"], require_fast_path=True)
    assert refused.value.field == "require_fast_path"
    assert alias_of(url, name) is None
    prepared = ensure.prepare_version(url, name, made["version"])
    assert (prepared["fast_path_before"], prepared["fast_path"]) == ("failed: test", "passed")
    again = ensure.prepare_version(url, name, made["version"])
    assert again["changed"] is False
    moved = ensure.set_alias(url, name, "champion", made["version"], require_fast_path=True)
    assert moved["changed"] is True
