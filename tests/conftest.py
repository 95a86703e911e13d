"""Shared fixtures: a real MLflow tracking server, started once per session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout} s")
        time.sleep(0.5)


class MlflowServer:
    """A real `mlflow server` process with a SQLite registry and proxied artifacts."""

    def __init__(
        self,
        root: Path,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.extra_args = extra_args
        # the job workers (huey) are not used by the tests and cost a core
        self.env = dict(env if env is not None else os.environ)
        self.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [
                mlflow_bin,
                "server",
                *self.extra_args,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--backend-store-uri",
                f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.root / "artifacts"),
                "--serve-artifacts",
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            env=self.env,
        )
        wait_http(f"{self.url}/health")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


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
