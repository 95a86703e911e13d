"""Helpers of the serving tests: model versions in a registry, the small limits, waiting."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from mlops_model.schema import CLASS_NAMES, FEATURE_NAMES, SKOPS_TRUSTED_TYPES

SKOPS_TRUSTED = list(SKOPS_TRUSTED_TYPES)
# The limits of the module-wide app fixture (conftest.py).
MAX_ROWS = 50
MAX_BODY = 64 * 1024
# A virginica row: the strong forest is sure of it, the one-split stump cannot be.
PROBE_ROW = [6.3, 3.3, 6.0, 2.5]


def iris_frame() -> tuple[pd.DataFrame, np.ndarray]:
    from sklearn.datasets import load_iris

    data = load_iris()
    x = pd.DataFrame(data.data, columns=list(FEATURE_NAMES))
    return x, np.asarray(data.target)


def log_and_register(
    tracking_uri: str,
    name: str,
    estimator: Any,
    trusted: list[str] = SKOPS_TRUSTED,
    **log_model_args: Any,
) -> str:
    """Log a fitted ``estimator`` with skops and register it; return the new version."""
    import mlflow
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(tracking_uri), mlflow.start_run():
        info = mlflow.sklearn.log_model(
            sk_model=estimator,
            name="model",
            serialization_format="skops",
            skops_trusted_types=trusted,
            registered_model_name=name,
            **log_model_args,
        )
    return str(info.registered_model_version)


def register_version(
    tracking_uri: str,
    name: str,
    estimator: Any,
    n_classes: int = len(CLASS_NAMES),
    extra_files: list[str] | None = None,
) -> str:
    """Fit, log and register ``estimator`` the way the trainer does; return the new version.

    ``n_classes`` below 3 trains on the first classes only: a version serving must refuse.
    ``extra_files`` are logged with the model, as the trainer logs its drift reference.
    """
    from mlflow.models import infer_signature

    x, y = iris_frame()
    keep = y < n_classes
    x, y = x[keep].reset_index(drop=True), y[keep]
    estimator.fit(x, y)
    return log_and_register(
        tracking_uri,
        name,
        estimator,
        signature=infer_signature(x, estimator.predict_proba(x)),
        input_example=x[:3],
        extra_files=extra_files,
    )


def set_alias(tracking_uri: str, name: str, version: str, alias: str = "champion") -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(name, alias, version)


def strong_forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=25, random_state=0)


def weak_stump() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=1, max_depth=1, random_state=0)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def fast_registry_http(monkeypatch: Any) -> None:
    """What the predictor's entry points set: short MLflow HTTP timeouts, no retries.

    The serving tests' conftests make it an autouse fixture."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
