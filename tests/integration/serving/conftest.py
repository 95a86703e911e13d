"""Fixtures of the serving tests: real model versions in a real MLflow registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from mlops_model.serving.app import create_app, get_service
from mlops_model.serving.settings import Settings

from tests.support.serving import (
    MAX_BODY,
    MAX_ROWS,
    fast_registry_http,
    register_version,
    set_alias,
    strong_forest,
    weak_stump,
)


@pytest.fixture(autouse=True)
def _fast_registry_http(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_registry_http(monkeypatch)


@dataclass(frozen=True)
class Registered:
    url: str
    name: str
    strong: str  # version of the good forest
    weak: str  # version of the one-split stump


@pytest.fixture(scope="session")
def serving_models(mlflow_server: Any) -> Registered:
    """Two versions of one registered model on the shared server; alias -> strong."""
    name = "serving-iris"
    strong = register_version(mlflow_server.url, name, strong_forest())
    weak = register_version(mlflow_server.url, name, weak_stump())
    set_alias(mlflow_server.url, name, strong)
    return Registered(url=mlflow_server.url, name=name, strong=strong, weak=weak)


@pytest.fixture(scope="session")
def prepared_models(mlflow_server: Any) -> Registered:
    """Two versions prepared for the fast path (as ``python -m mlops_model prepare`` does)."""
    from mlops_model.ensure import prepare_version

    name = "serving-iris-prepared"
    strong = register_version(mlflow_server.url, name, strong_forest())
    weak = register_version(mlflow_server.url, name, weak_stump())
    for version in (strong, weak):
        assert prepare_version(mlflow_server.url, name, version)["fast_path"] == "passed"
    set_alias(mlflow_server.url, name, strong)
    return Registered(url=mlflow_server.url, name=name, strong=strong, weak=weak)


@pytest.fixture
def make_app() -> Iterator[Callable[..., Flask]]:
    """Build apps (watchers not started); their watcher threads stop at teardown."""
    apps: list[Flask] = []

    def make(settings: Settings, autostart: bool = False) -> Flask:
        app = create_app(settings, autostart=autostart)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        get_service(app).stop(timeout=5)


@pytest.fixture(scope="module")
def app(serving_models: Registered) -> Iterator[Flask]:
    """One app per test module, serving the registry's champion, with the small
    limits of tests/support/serving.py (MAX_ROWS, MAX_BODY)."""
    settings = Settings(
        model_name=serving_models.name,
        tracking_uri=serving_models.url,
        poll_interval=60,
        max_rows=MAX_ROWS,
        max_body_bytes=MAX_BODY,
    )
    app = create_app(settings, autostart=False)
    service = get_service(app)
    assert service.start(wait=60), service.watcher.last_error
    yield app
    service.stop()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
