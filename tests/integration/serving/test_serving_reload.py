"""Hot reload when the alias moves, and a registry outage that must not hurt serving."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlops_model.serving.app import get_service
from mlops_model.serving.holder import LoadedModel, ModelHolder
from mlops_model.serving.metrics import iter_samples
from mlops_model.serving.settings import Settings

from tests.support.serving import PROBE_ROW, register_version, set_alias, strong_forest, wait_for


def metric(client: Any, name: str) -> list[tuple[dict[str, str], float]]:
    return list(iter_samples(client.get("/metrics").get_data(as_text=True), name))


def predict(client: Any) -> tuple[str, list[float]]:
    resp = client.post("/predict", json={"instances": [PROBE_ROW]})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    return body["model"]["version"], body["probabilities"][0]


def test_holder_swap_leaves_in_flight_references_alone() -> None:
    class Constant:
        name = "constant"

        def __init__(self, p: float) -> None:
            self.p = p

        def predict_proba(self, x: Any) -> Any:
            return np.full((x.shape[0], 3), self.p)

    def model(version: str, p: float) -> LoadedModel:
        from datetime import UTC, datetime

        return LoadedModel("m", version, "a", None, datetime.now(UTC), Constant(p))

    holder = ModelHolder(model("1", 0.1))
    in_flight = holder.current
    previous = holder.swap(model("2", 0.2))
    assert previous is in_flight
    assert in_flight is not None
    assert in_flight.version == "1"
    assert in_flight.predict_proba(np.zeros((1, 4)))[0, 0] == 0.1
    assert holder.current is not None
    assert holder.current.version == "2"


def test_alias_move_is_picked_up_without_failed_requests(
    make_app: Any, serving_models: Any
) -> None:
    url, name = serving_models.url, serving_models.name
    set_alias(url, name, serving_models.strong)
    app = make_app(Settings(model_name=name, tracking_uri=url, poll_interval=0.5))
    assert get_service(app).start(wait=60)
    client = app.test_client()
    version, strong_probs = predict(client)
    assert version == serving_models.strong

    # Clients keep predicting while the alias moves: none may fail, and every answer
    # must come wholly from the version it names.
    seen: list[tuple[str, list[float]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer() -> None:
        own = app.test_client()
        try:
            while not stop.is_set():
                seen.append(predict(own))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        set_alias(url, name, serving_models.weak)
        wait_for(
            lambda: client.get("/model").get_json()["version"] == serving_models.weak,
            timeout=60,
            what="the predictor to serve the weak version",
        )
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        set_alias(url, name, serving_models.strong)
    assert not errors, errors

    version, weak_probs = predict(client)
    assert version == serving_models.weak
    assert not np.allclose(weak_probs, strong_probs)  # the stump cannot be sure of virginica
    by_version = {serving_models.strong: strong_probs, serving_models.weak: weak_probs}
    assert seen
    for seen_version, probs in seen:
        np.testing.assert_allclose(probs, by_version[seen_version])

    info = metric(client, "predictor_model_info")
    assert [labels["version"] for labels, _ in info] == [serving_models.weak]
    assert metric(client, "predictor_model_reloads_total")[0][1] == 2
    assert metric(client, "predictor_model_reload_failures_total")[0][1] == 0


def test_registry_outage_keeps_the_loaded_model(
    make_app: Any, mlflow_server: Any, tmp_path: Path
) -> None:
    # A second real server of our own, so the shared one keeps running.
    server = type(mlflow_server)(tmp_path / "mlflow-outage")
    server.start()
    try:
        version = register_version(server.url, "outage-iris", strong_forest())
        set_alias(server.url, "outage-iris", version)
        settings = Settings(
            model_name="outage-iris",
            tracking_uri=server.url,
            poll_interval=0.3,
            cache_dir=str(tmp_path / "cache"),
        )
        app = make_app(settings)
        service = get_service(app)
        assert service.start(wait=60), service.watcher.last_error
        client = app.test_client()
        assert metric(client, "predictor_registry_up")[0][1] == 1
        last_success = metric(client, "predictor_registry_last_success_timestamp_seconds")[0][1]
        assert last_success > 0

        server.stop()
        wait_for(
            lambda: metric(client, "predictor_registry_up")[0][1] == 0,
            timeout=30,
            what="predictor_registry_up to drop to 0",
        )
        wait_for(
            lambda: metric(client, "predictor_model_reload_failures_total")[0][1] >= 2,
            timeout=30,
            what="reload failures to be counted",
        )
        for _ in range(5):
            assert predict(client)[0] == version
            assert client.get("/ready").status_code == 200
        assert client.get("/model").get_json()["version"] == version
        assert "registry unreachable" in (service.watcher.last_error or "")
        # the last success does not move during the outage
        stale = metric(client, "predictor_registry_last_success_timestamp_seconds")[0][1]
        assert stale == pytest.approx(last_success, abs=5)
        assert [lab["version"] for lab, _ in metric(client, "predictor_model_info")] == [version]

        # A worker (re)started during the outage serves the last known good model.
        restarted = make_app(settings)
        assert get_service(restarted).start(wait=60)
        fresh = restarted.test_client()
        info = fresh.get("/model").get_json()
        assert (info["version"], info["source"]) == (version, "cache")
        assert fresh.get("/ready").status_code == 200
        assert predict(fresh)[0] == version
        assert metric(fresh, "predictor_registry_up")[0][1] == 0
    finally:
        server.stop()


def test_a_broken_version_is_refused_and_the_current_one_kept(
    make_app: Any, serving_models: Any
) -> None:
    url, name = serving_models.url, serving_models.name
    set_alias(url, name, serving_models.strong)
    app = make_app(Settings(model_name=name, tracking_uri=url, poll_interval=0.3))
    service = get_service(app)
    assert service.start(wait=60)
    client = app.test_client()
    # A forest that only knows two of the three classes cannot serve the schema.
    bad = register_version(url, name, strong_forest(), n_classes=2)
    try:
        set_alias(url, name, bad)
        wait_for(
            lambda: metric(client, "predictor_model_reload_failures_total")[0][1] >= 1,
            timeout=60,
            what="the broken version to be refused",
        )
        assert f"version {bad} rejected" in (service.watcher.last_error or "")
        assert predict(client)[0] == serving_models.strong
        assert client.get("/model").get_json()["version"] == serving_models.strong
        assert client.get("/ready").status_code == 200
        assert metric(client, "predictor_registry_up")[0][1] == 1
        # A refused version is retried with backoff (0.6 s, 1.2 s, ...), not on every poll.
        failures = metric(client, "predictor_model_reload_failures_total")[0][1]
        time.sleep(1.5)
        assert metric(client, "predictor_model_reload_failures_total")[0][1] <= failures + 2
    finally:
        set_alias(url, name, serving_models.strong)
    wait_for(
        lambda: service.watcher.last_error is None, timeout=10, what="the alias back on strong"
    )
    assert metric(client, "predictor_model_reloads_total")[0][1] == 1  # never swapped
