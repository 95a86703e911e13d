"""Prometheus on the local stack: targets up, rules loaded, every dashboard
expression answered with data, and the predictor-down alert fires and
resolves."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.support.lab_http import IRIS_ROWS, get_json, post_json, prom_query, wait_until

from .conftest import ROOT, Stack, podman_exec

pytestmark = pytest.mark.nodes

DASHBOARDS = ROOT / "collections/ansible_collections/mlops/stack/roles/grafana/files/dashboards"
# What Grafana would put in for its template variables when all is selected.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "30s",
    "$__range": "15m",
    "$instance": ".*",
    "$host": ".*",
    "$job": ".*",
    "$feature": ".*",
}


@pytest.fixture(scope="module")
def traffic(local_stack: Stack) -> None:
    """Some /predict traffic on both predictors, then enough time for two scrapes."""
    for _ in range(20):
        for port in (5001, 5002):
            status, _ = post_json(f"http://127.0.0.1:{port}/predict", {"instances": IRIS_ROWS})
            assert status == 200
    post_json("http://127.0.0.1:5001/predict", {"instances": []})  # a 4xx for the error ratio
    time.sleep(25)


def panel_expressions() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dash = json.loads(path.read_text())
        panels = list(dash.get("panels", []))
        while panels:
            panel = panels.pop()
            panels.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((path.stem, panel.get("title", "?"), target["expr"]))
    return found


def test_every_target_is_up(local_stack: Stack):
    def all_up():
        targets = get_json("http://127.0.0.1:9090/api/v1/targets")["data"]["activeTargets"]
        down = [
            (t["labels"]["job"], t["labels"]["instance"], t["lastError"])
            for t in targets
            if t["health"] != "up"
        ]
        return targets if not down else None

    targets = wait_until(all_up, timeout=90, what="every Prometheus target up")
    jobs = {t["labels"]["job"] for t in targets}
    assert {"prometheus", "node", "predictor", "mlflow"} <= jobs
    instances = {t["labels"]["instance"] for t in targets if t["labels"]["job"] == "predictor"}
    assert len(instances) == 2, instances


def test_alert_rules_are_loaded(local_stack: Stack):
    groups = get_json("http://127.0.0.1:9090/api/v1/rules")["data"]["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"PredictorDown", "ModelReloadFailing", "RegistryUnreachable"} <= names


@pytest.mark.parametrize(("dashboard", "title", "expr"), panel_expressions())
def test_dashboard_expression_returns_data(traffic, dashboard: str, title: str, expr: str):
    query = expr
    for var, value in GRAFANA_VARIABLES.items():
        query = query.replace(var, value)
    assert not re.search(r"\$\w+", query), f"unresolved variable in {query}"
    assert prom_query(query), f"{dashboard} / {title}: no data for {query}"


def test_predictor_down_alert_fires_and_resolves(traffic):
    def alert_state() -> str | None:
        alerts = get_json("http://127.0.0.1:9090/api/v1/alerts")["data"]["alerts"]
        for alert in alerts:
            if alert["labels"]["alertname"] == "PredictorDown":
                return alert["state"]
        return None

    assert alert_state() is None
    podman_exec("predictor-2", "systemctl", "stop", "predictor")
    try:
        wait_until(lambda: alert_state() == "firing", timeout=120, what="PredictorDown firing")
    finally:
        podman_exec("predictor-2", "systemctl", "start", "predictor")
    wait_until(lambda: alert_state() is None, timeout=120, what="PredictorDown resolved")
