"""The real thing: gunicorn with two workers, metrics merged across them, SIGHUP reload."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlops_model.serving.metrics import iter_samples
from serving_helpers import PROBE_ROW, set_alias, wait_for

MAX_BODY = 8192


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Predictor:
    def __init__(self, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.port = port
        self.proc = proc
        self.log = log

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
        return {int(pid) for pid in children.read_text().split()}


@pytest.fixture
def predictor(serving_models: Any, tmp_path: Path) -> Iterator[Predictor]:
    set_alias(serving_models.url, serving_models.name, serving_models.strong)
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": serving_models.url,
        "PREDICTOR_MODEL_NAME": serving_models.name,
        "PREDICTOR_MODEL_ALIAS": "champion",
        "PREDICTOR_BIND": f"127.0.0.1:{port}",
        "PREDICTOR_WORKERS": "2",
        "PREDICTOR_POLL_INTERVAL": "30",
        "PREDICTOR_MAX_BODY_BYTES": str(MAX_BODY),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "prometheus" / "gauge_livemax_1.db").write_bytes(b"stale")  # cleaned at start
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                gunicorn,
                "-c", "python:mlops_model.serving.gunicorn_conf",
                "mlops_model.serving.wsgi:app",
            ],
            env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Predictor(port, proc, log)
    try:
        wait_for(lambda: proc.poll() is not None or server.ready(), 120, "gunicorn to be ready")
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


def predict_total(text: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for labels, value in iter_samples(text, "predictor_requests_total"):
        if labels["endpoint"] == "/predict":
            totals[labels["status"]] = totals.get(labels["status"], 0) + value
    return totals


def test_two_workers_metrics_add_up_and_sighup_reloads(
    predictor: Predictor, serving_models: Any
) -> None:
    assert not (predictor.log.parent / "prometheus" / "gauge_livemax_1.db").exists()
    assert len(predictor.workers()) == 2
    n_ok, n_bad = 40, 5
    for i in range(n_ok):
        status, body = predictor.predict({"instances": [PROBE_ROW] * (1 + i % 3)})
        assert status == 200, body
        assert body["model"]["version"] == serving_models.strong
    for _ in range(n_bad):
        status, body = predictor.predict({"instances": [[1, 2, 3]]})
        assert status == 400
        assert body["error"] == "wrong_row_length"

    # a chunked body (no Content-Length) over the byte limit: 413 while reading
    def chunks() -> Iterator[bytes]:
        yield b'{"instances": ['
        for _ in range(MAX_BODY // 10):
            yield b"[5.1,3.5,1.4,0.2],"
        yield b"[5.1,3.5,1.4,0.2]]}"

    conn = http.client.HTTPConnection("127.0.0.1", predictor.port, timeout=10)
    try:
        conn.request(
            "POST", "/predict", body=chunks(), encode_chunked=True,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        resp = conn.getresponse()
        assert resp.status == 413
        assert json.loads(resp.read())["error"] == "payload_too_large"
    finally:
        conn.close()

    text = predictor.metrics()
    assert predict_total(text) == {"200": n_ok, "400": n_bad, "413": 1}
    rows = sum(v for _, v in iter_samples(text, "predictor_predictions_total"))
    assert rows == sum(1 + i % 3 for i in range(n_ok))
    info = list(iter_samples(text, "predictor_model_info"))
    assert [(labels["version"], v) for labels, v in info] == [(serving_models.strong, 1.0)]
    assert [v for _, v in iter_samples(text, "predictor_registry_up")] == [1.0]
    assert next(iter_samples(text, "predictor_model_reloads_total"))[1] == 2  # one per worker

    # SIGHUP: gunicorn replaces both workers; the new ones load the model again.
    old = predictor.workers()
    predictor.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: len(predictor.workers()) == 2 and not (predictor.workers() & old),
        60,
        "gunicorn to replace its workers after SIGHUP",
    )
    wait_for(lambda: predictor.reloads() == 4, 90, "both new workers to load the model")
    status, body = predictor.predict({"instances": [PROBE_ROW]})
    assert status == 200
    text = predictor.metrics()
    # counters of the dead workers survive; their live gauges are gone
    assert predict_total(text) == {"200": n_ok + 1, "400": n_bad, "413": 1}
    info = list(iter_samples(text, "predictor_model_info"))
    assert [(labels["version"], v) for labels, v in info] == [(serving_models.strong, 1.0)]
    assert [v for _, v in iter_samples(text, "predictor_registry_up")] == [1.0]
