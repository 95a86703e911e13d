"""site.yml on the local nodes: converges, and a second run changes nothing."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.support.lab_http import MLFLOW, get_json, lab_tls, mlflow_auth

from .conftest import Stack, ansible_playbook, podman_exec

pytestmark = pytest.mark.nodes


def prometheus_started_at() -> str:
    return podman_exec(
        "monitor-1", "systemctl", "show", "prometheus", "-p", "ExecMainStartTimestampMonotonic"
    ).stdout.strip()


@pytest.fixture(scope="module")
def second_run(local_stack: Stack) -> Stack:
    started = prometheus_started_at()
    local_stack.second = ansible_playbook("site.yml")
    local_stack.prometheus_restarted = prometheus_started_at() != started
    return local_stack


def test_first_converge_changes_every_node(local_stack: Stack):
    assert local_stack.first.changed.get("mlflow-1", 0) > 0
    assert not any(local_stack.first.failed.values())


def test_second_converge_reports_no_change(second_run: Stack):
    assert second_run.second is not None
    changed = {h: n for h, n in second_run.second.changed.items() if n}
    assert changed == {}, second_run.second.output[-6000:]


def test_champion_is_registered_and_visible_on_loopback(second_run: Stack):
    url = f"{MLFLOW}/api/2.0/mlflow/registered-models/get?name=iris"
    model = get_json(url, account="reader")["registered_model"]
    aliases = {a["alias"]: a["version"] for a in model.get("aliases", [])}
    assert "champion" in aliases, model
    # the second converge trained nothing new
    versions_url = f"{MLFLOW}/api/2.0/mlflow/model-versions/search?filter=name%3D%27iris%27"
    versions = get_json(versions_url, account="reader")["model_versions"]
    assert len(versions) == 1, [v["version"] for v in versions]


def test_the_lab_registry_runs_with_accounts(local_stack: Stack):
    """The production default: no anonymous access, and the predictors' account
    may not move the model's alias (any account may create models of its own:
    MLflow makes their creator their manager)."""
    url = f"{MLFLOW}/api/2.0/mlflow/registered-models/get?name=iris"
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        get_json(url)
    assert anonymous.value.code == 401
    request = urllib.request.Request(
        f"{MLFLOW}/api/2.0/mlflow/registered-models/alias",
        data=b'{"name": "iris", "alias": "by-the-reader", "version": "1"}',
        headers={"Content-Type": "application/json", **mlflow_auth("reader")},
    )
    with pytest.raises(urllib.error.HTTPError) as reader_write:
        urllib.request.urlopen(request, timeout=10, context=lab_tls())
    assert reader_write.value.code == 403


def test_second_converge_does_not_restart_prometheus(second_run: Stack):
    assert second_run.prometheus_restarted is False
