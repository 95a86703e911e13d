"""The real thing: gunicorn with two workers, metrics merged across them, SIGHUP reload."""

from __future__ import annotations

import http.client
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlops_model.serving.metrics import iter_samples

from tests.support.gunicorn_predictor import Predictor, running_predictor
from tests.support.serving import PROBE_ROW, wait_for

MAX_BODY = 8192


@pytest.fixture
def predictor(serving_models: Any, tmp_path: Path) -> Iterator[Predictor]:
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "prometheus" / "gauge_livemax_1.db").write_bytes(b"stale")  # cleaned at start
    with running_predictor(
        serving_models, tmp_path, PREDICTOR_MAX_BODY_BYTES=str(MAX_BODY)
    ) as server:
        yield server


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
