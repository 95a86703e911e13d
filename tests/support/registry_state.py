"""The lab registry's whole state as a user reads it back through MLflow's REST
API (as the admin), for the backup, restore and disaster tests to compare."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.support.lab_http import MLFLOW, lab_tls, mlflow_auth

API = f"{MLFLOW}/api/2.0/mlflow"


def mlflow_call(path: str, body: dict[str, Any] | None = None) -> Any:
    """The lab's MLflow REST API as the admin: GET without a body, POST with one."""
    data = None if body is None else json.dumps(body).encode()
    headers = {**mlflow_auth("admin"), "Content-Type": "application/json"}
    request = urllib.request.Request(f"{API}/{path}", data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=30, context=lab_tls()) as resp:
        return json.load(resp)


def registry_dump() -> dict[str, Any]:
    """Every experiment, run (params, metrics, tags), model, version, tag and alias."""
    experiments = mlflow_call("experiments/search?max_results=1000").get("experiments", [])
    runs = mlflow_call(
        "runs/search",
        {"experiment_ids": [e["experiment_id"] for e in experiments], "max_results": 1000},
    ).get("runs", [])
    models = mlflow_call("registered-models/search?max_results=1000").get("registered_models", [])
    versions = mlflow_call("model-versions/search?max_results=1000").get("model_versions", [])
    return {
        "experiments": sorted(experiments, key=lambda e: e["experiment_id"]),
        "runs": sorted(runs, key=lambda r: r["info"]["run_id"]),
        "models": sorted(models, key=lambda m: m["name"]),
        "versions": sorted(versions, key=lambda v: (v["name"], int(v["version"]))),
    }
