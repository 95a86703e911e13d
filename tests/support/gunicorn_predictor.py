"""A real predictor under gunicorn (production config, two workers), for the serving tests
that must see what users hit: worker processes, merged metrics, real HTTP."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlops_model.serving.metrics import iter_samples

from tests.support.net import free_port
from tests.support.serving import set_alias, wait_for


class Predictor:
    def __init__(self, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = proc
        self.log = log
        self.ready_after = 0.0  # seconds from the start of gunicorn to the first ready worker

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        # A new connection per request, so the kernel spreads them over both workers.
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def predict(self, payload: Any) -> tuple[int, Any]:
        status, raw = self.request(
            "POST", "/predict", json.dumps(payload), {"Content-Type": "application/json"}
        )
        return status, json.loads(raw)

    def metrics(self) -> str:
        status, raw = self.request("GET", "/metrics")
        assert status == 200
        return raw.decode()

    def ready(self) -> bool:
        try:
            return self.request("GET", "/ready")[0] == 200
        except OSError:
            return False

    def reloads(self) -> float:
        try:
            return next(iter_samples(self.metrics(), "predictor_model_reloads_total"))[1]
        except OSError:  # between workers during a reload
            return -1

    def workers(self) -> set[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return {int(pid) for pid in children.read_text().split() if not _is_follower(int(pid))}


def _is_follower(pid: int) -> bool:
    """The host's alias follower, the master's one child that is not a worker."""
    try:
        return b"mlops_model.serving.alias_state" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@contextlib.contextmanager
def running_predictor(serving_models: Any, workdir: Path, **settings: str) -> Iterator[Predictor]:
    """gunicorn serving the strong version, both workers loaded; stopped on exit.

    ``settings`` are extra ``PREDICTOR_*`` environment variables.
    """
    set_alias(serving_models.url, serving_models.name, serving_models.strong)
    port = free_port()
    (workdir / "prometheus").mkdir(exist_ok=True)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": serving_models.url,
        "PREDICTOR_MODEL_NAME": serving_models.name,
        "PREDICTOR_MODEL_ALIAS": "champion",
        "PREDICTOR_BIND": f"127.0.0.1:{port}",
        "PREDICTOR_WORKERS": "2",
        "PREDICTOR_POLL_INTERVAL": "30",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"),
        **settings,
    }
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    log = workdir / "gunicorn.log"
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                gunicorn,
                "-c", "python:mlops_model.serving.gunicorn_conf",
                "mlops_model.serving.wsgi:app",
            ],
            env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Predictor(port, proc, log)
    try:
        wait_for(lambda: proc.poll() is not None or server.ready(), 120, "gunicorn to be ready")
        server.ready_after = time.monotonic() - started
        assert proc.poll() is None, log.read_text()
        wait_for(lambda: server.reloads() == 2, 60, "both workers to load the model")
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
