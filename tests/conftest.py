"""Shared fixtures: a real MLflow tracking server, started once per session."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers live in tests/support (bench/ uses the same ones); import them from there.
from tests.support.mlflow_server import MlflowServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One real MLflow server for the whole session; tests use distinct model names."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mlflow_env(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    return mlflow_server.url


@pytest.fixture
def unique_model_name(request: pytest.FixtureRequest) -> str:
    """A registered-model name no other test uses, so tests share one server safely."""
    return "iris-" + "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]


def have(tool: str) -> bool:
    return shutil.which(tool) is not None or Path(sys.executable).with_name(tool).exists()


os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
