"""Write, or read back, what the upgrade test compares across an MLflow upgrade.

``write`` fills the registry as the older release stores it (a run with
params, metrics, tags and an artifact; a model with two versions, tags, a
description and aliases), ``read`` reads it; both print the same JSON. Runs on
the node with the server's own venv.
"""

import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

EXPERIMENT = "upgrade-proof"
MODEL = "upgrade-iris"


def write(client: MlflowClient) -> None:
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({"n_estimators": 50, "max_depth": 4})
        mlflow.log_metric("accuracy", 0.93)
        mlflow.set_tag("gate", "passed")
        payload = Path(tmp, "model", "weights.txt")
        payload.parent.mkdir()
        payload.write_text("weights before the upgrade\n")
        mlflow.log_artifacts(str(payload.parent), artifact_path="model")
    client.create_registered_model(MODEL, description="registered by the older release")
    client.set_registered_model_tag(MODEL, "owner", "molecule")
    for _version in range(2):
        version = client.create_model_version(
            MODEL, f"runs:/{run.info.run_id}/model", run.info.run_id
        )
        client.set_model_version_tag(MODEL, version.version, "gate", "passed")
    client.set_registered_model_alias(MODEL, "champion", "2")
    client.set_registered_model_alias(MODEL, "previous", "1")


def read(client: MlflowClient) -> dict[str, Any]:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    model = client.get_registered_model(MODEL)
    versions = client.search_model_versions(f"name='{MODEL}'")
    with tempfile.TemporaryDirectory() as out:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"runs:/{run.info.run_id}/model", dst_path=out
        )
        weights = hashlib.sha256(Path(local, "weights.txt").read_bytes()).hexdigest()
    return {
        "run": {
            "id": run.info.run_id,
            "params": run.data.params,
            "metrics": run.data.metrics,
            "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
            "weights_sha256": weights,
        },
        "model": {
            "description": model.description,
            "tags": model.tags,
            "aliases": dict(sorted(model.aliases.items())),
        },
        "versions": sorted(
            (
                {"version": v.version, "run_id": v.run_id, "source": v.source, "tags": v.tags}
                for v in versions
            ),
            key=lambda v: int(v["version"]),
        ),
    }


if __name__ == "__main__":
    mlflow.set_tracking_uri(sys.argv[1])
    registry = MlflowClient()
    if sys.argv[2] == "write":
        write(registry)
    # the last line: the script module's output carries MLflow's progress bars too
    print(json.dumps(read(registry), sort_keys=True))
