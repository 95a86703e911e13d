"""Drift alerts end to end on the local stack.

Rows sampled from Iris go through the gateway: no drift alert. Then the same
rows with petal length + 2 cm: InputDrift fires for petal_length and names no
other feature. Then Iris again: it resolves.

The prometheus role's drift rules are re-converged with a 30 s window, 15 s
``for`` and a low row floor (the role's variables; the scrape and evaluation
interval are the role's 10 s: three samples per window), and put back to the
defaults at the end, so test_site.py's second converge still reports no change.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.support.lab_http import get_json, post_gateway, prom_query, wait_until

from .conftest import Stack, ansible_playbook

pytestmark = pytest.mark.nodes

PROMETHEUS = "http://127.0.0.1:9090"
PREDICTORS = ("http://127.0.0.1:5001", "http://127.0.0.1:5002")
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
SHIFTED = "petal_length"
SHORT_RULES = {
    "prometheus_drift_window": "30s",
    "prometheus_drift_for": "15s",
    "prometheus_drift_min_rows": "100",
}
# Rows per request and pause between requests: ~40 rows/s, thousands per window.
BATCH = 20
PAUSE = 0.5


def iris_rows() -> list[list[float]]:
    from sklearn.datasets import load_iris

    return [[float(v) for v in row] for row in load_iris().data]


def converge_rules(extra: dict[str, str]) -> None:
    args = [arg for key, value in extra.items() for arg in ("-e", f"{key}={value}")]
    ansible_playbook("playbooks/monitoring.yml", "--tags", "prometheus_configure", *args)


def drift_alerts(name: str = "InputDrift") -> list[dict[str, Any]]:
    """Alerts of ``name``, pending and firing."""
    found = get_json(f"{PROMETHEUS}/api/v1/alerts")["data"]["alerts"]
    return [a for a in found if a["labels"].get("alertname") == name]


def drift_rules_evaluated_at() -> float:
    """When Prometheus last evaluated the drift rules (epoch seconds; 0 before the first)."""
    groups = get_json(f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]
    (group,) = (g for g in groups if g["name"] == "mlops-drift")
    # RFC 3339 with nanoseconds: keep the microseconds datetime reads
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", group["lastEvaluation"]).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


class Traffic:
    """Batches of Iris rows through the gateway from a thread; ``shift`` moves one feature."""

    def __init__(self) -> None:
        self.rows = iris_rows()
        self.shift = 0.0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drift-traffic", daemon=True)
        self._random = random.Random(19)

    def _run(self) -> None:
        column = FEATURES.index(SHIFTED)
        while not self._stop.wait(PAUSE):
            batch = [list(row) for row in self._random.choices(self.rows, k=BATCH)]
            for row in batch:
                row[column] += self.shift
            try:
                status, body = post_gateway("/predict", {"instances": batch})
            except OSError as exc:
                self.failures.append(repr(exc))
                continue
            if status != 200:
                self.failures.append(f"{status}: {body}")

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


@pytest.fixture(scope="module")
def short_drift_rules(local_stack: Stack) -> Iterator[None]:
    for base in PREDICTORS:
        drift = get_json(f"{base}/model")["drift"]
        assert drift["metrics"], (
            f"{base} serves without drift metrics: {drift['reason']} "
            "(a champion trained before the drift reference existed? retrain it)"
        )
    converge_rules(SHORT_RULES)
    converged = time.time()
    # Prometheus carries an alert's state over a reload: an alert of the default
    # hour-long window (a previous run's shifted rows) stays active until the
    # short rules have been evaluated once.
    wait_until(
        lambda: drift_rules_evaluated_at() > converged,
        timeout=60,
        interval=2,
        what="the short drift rules evaluated",
    )
    try:
        yield
    finally:
        converge_rules({})


def test_input_drift_fires_for_the_shifted_feature_and_resolves(short_drift_rules):
    with Traffic() as traffic:
        # A window of Iris rows only: every feature judged, none drifting.
        def judged() -> bool:
            found = {
                r["metric"]["feature"]
                for r in prom_query(
                    "version_feature:predictor_drift_psi:window"
                    " and on (version, feature)"
                    " version_feature:predictor_drift_feature_rows:increase_window >= 100"
                )
            }
            return found == set(FEATURES)

        wait_until(judged, timeout=90, interval=5, what="the PSI of every feature over 100 rows")
        # quiet for twice the rules' `for`: not even pending
        quiet_until = time.monotonic() + 30
        while time.monotonic() < quiet_until:
            assert not drift_alerts(), drift_alerts()
            time.sleep(5)
        psi = {
            r["metric"]["feature"]: float(r["value"][1])
            for r in prom_query("version_feature:predictor_drift_psi:window")
        }
        assert max(psi.values()) < 0.25, psi

        traffic.shift = 2.0

        def firing() -> list[dict[str, Any]] | None:
            alerts = drift_alerts()
            return alerts if any(a["state"] == "firing" for a in alerts) else None

        alerts = wait_until(firing, timeout=150, interval=5, what="InputDrift firing")
        assert {a["labels"]["feature"] for a in alerts} == {SHIFTED}, alerts

        traffic.shift = 0.0
        wait_until(lambda: not drift_alerts(), timeout=150, interval=5, what="InputDrift resolved")
    assert not traffic.failures, traffic.failures[:5]
