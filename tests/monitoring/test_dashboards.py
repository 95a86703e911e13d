"""The Grafana dashboards: generated from code, committed, and only using known metrics."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from tests.support.monitoring import (
    GRAFANA_ROLE,
    PREDICTOR_METRICS,
    ROOT,
    evaluate_with_role_vars,
    metric_names,
    recorded_metrics,
)

SCRIPT = ROOT / "scripts" / "build_dashboards.py"
DASHBOARDS = GRAFANA_ROLE / "files" / "dashboards"
GRAFANA_DEFAULTS = GRAFANA_ROLE / "defaults" / "main.yml"
NAMES = ("predictor.json", "hosts.json")
# Every panel, query and query variable takes its datasource from this dashboard variable.
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}


def load(name: str) -> dict:
    return json.loads((DASHBOARDS / name).read_text())


def panels(board: dict) -> list[dict]:
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def targets(board: dict) -> list[dict]:
    return [t for panel in panels(board) for t in panel.get("targets", [])]


def datasource_refs(node: object, path: str = "") -> list[tuple[str, object]]:
    """Every value of a "datasource" key anywhere in the dashboard, with where it is."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append((f"{path}.{key}", value))
            found.extend(datasource_refs(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(datasource_refs(value, f"{path}[{index}]"))
    return found


def test_metric_name_parser():
    assert metric_names(
        'sum by (host, le) (rate(predictor_request_duration_seconds_bucket{a="x(y)"}[5m]))'
    ) == {"predictor_request_duration_seconds_bucket"}
    assert metric_names("1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes") == {
        "node_memory_MemAvailable_bytes",
        "node_memory_MemTotal_bytes",
    }
    assert metric_names('time() - up{job="x"} > 1e-9') == {"up"}


def test_committed_json_equals_generated(tmp_path):
    try:
        import grafana_foundation_sdk  # noqa: F401
    except ImportError:
        pytest.fail(
            "grafana-foundation-sdk is missing: run scripts/bootstrap.sh (requirements-dev.txt)"
        )
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in NAMES:
        generated = (tmp_path / name).read_text()
        committed = (DASHBOARDS / name).read_text()
        assert committed == generated, (
            f"{name} is out of date: run .venv/bin/python scripts/build_dashboards.py"
        )
    check = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("name", NAMES)
def test_every_target_is_promql_on_the_datasource_variable(name):
    board = load(name)
    assert board["uid"]
    assert board["title"].startswith("MLOps")
    assert targets(board)
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {panel['title']!r} has an empty expr"
            assert target["datasource"] == DATASOURCE_REF
    for variable in board["templating"]["list"][1:]:
        assert variable["datasource"] == DATASOURCE_REF, variable["name"]


@pytest.mark.parametrize("name", NAMES)
def test_no_datasource_uid_is_hard_coded(name):
    """A uid in the JSON would leave every panel without data under another
    grafana_datasource_uid: the datasource variable comes first, Prometheus-typed, with
    no current value (the role sets it), and every datasource reference goes through it."""
    board = load(name)
    first = board["templating"]["list"][0]
    assert first["type"] == "datasource", first
    assert first["name"] == "datasource", first
    assert first["query"] == "prometheus"
    assert not first.get("current"), f"the datasource variable pins {first.get('current')}"
    assert [v["name"] for v in board["templating"]["list"] if v["type"] == "datasource"] == [
        "datasource"
    ]
    refs = datasource_refs(board)
    assert refs
    pinned = [(where, ref) for where, ref in refs if ref != DATASOURCE_REF]
    assert not pinned, f"datasource references that name a uid: {pinned[:5]}"


@pytest.mark.parametrize("name", NAMES)
def test_role_points_the_dashboards_at_the_configured_datasource(name, tmp_path):
    """What the role writes to the node (its own vars/main.yml, evaluated by ansible):
    the committed dashboard with the datasource variable set to grafana_datasource_uid."""
    written = evaluate_with_role_vars(
        tmp_path,
        GRAFANA_ROLE,
        {"content": "{{ __grafana_dashboard_content }}"},
        extra_vars={
            "__grafana_dashboard_src": str(DASHBOARDS / name),
            "grafana_datasource_uid": "metrics-b",
            "grafana_datasource_name": "Metrics B",
        },
    )
    board = json.loads(written["content"])
    variable = board["templating"]["list"][0]
    assert variable["current"] == {"selected": True, "text": "Metrics B", "value": "metrics-b"}
    del variable["current"]
    assert board == load(name), "the role changed more than the datasource variable"
    defaults = yaml.safe_load(GRAFANA_DEFAULTS.read_text())
    assert defaults["grafana_datasource_uid"] == "prometheus"


def test_predictor_dashboard_uses_only_known_metrics():
    board = load("predictor.json")
    exprs = [t["expr"] for t in targets(board)]
    exprs += [
        v["query"]["query"].removeprefix("label_values(").split(",")[0]
        for v in board["templating"]["list"]
        if v["type"] == "query"
    ]
    used = set().union(*(metric_names(expr) for expr in exprs))
    known = PREDICTOR_METRICS | recorded_metrics()
    unknown = {m for m in used if m not in known and m != "up" and not m.startswith("node_")}
    assert not unknown, f"metrics the predictor does not export: {sorted(unknown)}"
    # the panels the issue asks for are there
    for needed in (
        "predictor_requests_total",
        "predictor_request_duration_seconds_bucket",
        "predictor_predictions_total",
        "predictor_feature_value_bucket",
        "predictor_model_info",
        "predictor_model_reloads_total",
        "predictor_model_reload_failures_total",
        "predictor_registry_up",
        # the drift row: the index per feature and of the class mix, served vs reference
        "version_feature:predictor_drift_psi:window",
        "version:predictor_drift_prediction_psi:window",
        "version_feature_bin:predictor_drift_served_share:window",
        "version_feature_bin:predictor_drift_reference_share:max",
    ):
        assert needed in used, needed
    quantiles = {
        q
        for e in exprs
        for q in re.findall(r"histogram_quantile\((0\.\d+)", e)
        if "predictor_request_duration_seconds_bucket" in e
    }
    assert {"0.5", "0.95", "0.99"} <= quantiles


def test_hosts_dashboard_covers_cpu_memory_disk_network():
    used = set().union(*(metric_names(t["expr"]) for t in targets(load("hosts.json"))))
    assert all(m == "up" or m.startswith("node_") for m in used), used
    for needed in (
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_filesystem_avail_bytes",
        "node_network_receive_bytes_total",
    ):
        assert needed in used, needed


def test_panel_ids_are_unique():
    for name in NAMES:
        ids = [p["id"] for p in panels(load(name))]
        assert len(ids) == len(set(ids)), name
