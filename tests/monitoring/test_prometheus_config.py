"""The prometheus role's prometheus.yml, rendered by ansible from a fake inventory and
checked by the real promtool."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.monitoring import RULES_FILE, lab_inventory, render_prometheus_config, run


def jobs(config: dict) -> dict[str, dict]:
    return {job["job_name"]: job for job in config["scrape_configs"]}


def targets(job: dict) -> list[str]:
    return sorted(t for group in job.get("static_configs") or [] for t in group["targets"])


def host_labels(job: dict) -> dict[str, str]:
    return {group["targets"][0]: group["labels"]["host"] for group in job["static_configs"]}


def check_config(promtool: str, rendered: Path) -> None:
    shutil.copy(RULES_FILE, rendered.parent / "rules" / RULES_FILE.name)
    result = run([promtool, "check", "config", str(rendered)])
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool also loaded the rules through the rule_files glob
    assert "9 rules found" in result.stdout + result.stderr


def test_lab_inventory_renders_a_valid_config(tmp_path, promtool):
    rendered, config = render_prometheus_config(tmp_path, lab_inventory())
    check_config(promtool, rendered)

    assert config["global"]["scrape_interval"] == "10s"
    assert config["global"]["evaluation_interval"] == "10s"
    assert config["rule_files"] == [str(rendered.parent / "rules" / "*.yml")]
    by_name = jobs(config)
    assert set(by_name) == {"prometheus", "node", "predictor", "mlflow"}
    assert targets(by_name["prometheus"]) == ["127.0.0.1:9090"]
    assert targets(by_name["node"]) == sorted(
        f"{h}:9100" for h in ("mlflow-1", "predictor-1", "predictor-2", "monitor-1")
    )
    assert targets(by_name["predictor"]) == ["predictor-1:5001", "predictor-2:5001"]
    assert by_name["predictor"]["metrics_path"] == "/metrics"
    assert targets(by_name["mlflow"]) == ["mlflow-1:5005"]  # mlflow_server_metrics_port
    assert by_name["mlflow"]["metrics_path"] == "/metrics"
    assert host_labels(by_name["predictor"]) == {
        "predictor-1:5001": "predictor-1",
        "predictor-2:5001": "predictor-2",
    }


def test_a_third_predictor_adds_targets(tmp_path, promtool):
    rendered, config = render_prometheus_config(tmp_path, lab_inventory(predictors=3))
    check_config(promtool, rendered)
    by_name = jobs(config)
    assert targets(by_name["predictor"]) == [f"predictor-{i}:5001" for i in (1, 2, 3)]
    assert "predictor-3:9100" in targets(by_name["node"])


def test_gateway_job_only_with_a_gateway_group(tmp_path, promtool):
    _, without = render_prometheus_config(tmp_path / "without", lab_inventory())
    assert "gateway" not in jobs(without)

    empty = lab_inventory()
    empty["all"]["children"]["gateway"] = {"hosts": {}}
    _, with_empty = render_prometheus_config(tmp_path / "empty", empty)
    assert "gateway" not in jobs(with_empty)

    rendered, config = render_prometheus_config(tmp_path / "with", lab_inventory(gateway=True))
    check_config(promtool, rendered)
    gateway = jobs(config)["gateway"]
    assert targets(gateway) == ["monitor-1:8404"]
    assert gateway["metrics_path"] == "/metrics"
    # a host in two groups gets one node exporter target
    assert targets(jobs(config)["node"]).count("monitor-1:9100") == 1


def test_addresses_ports_and_exclusions_come_from_variables(tmp_path, promtool):
    inventory = lab_inventory()
    del inventory["all"]["vars"]
    hosts = inventory["all"]["children"]
    hosts["predictors"]["hosts"]["predictor-1"] = {"mlops_node_address": "10.0.0.11"}
    hosts["predictors"]["hosts"]["predictor-2"] = {"ansible_host": "10.0.0.12"}
    hosts["mlflow"]["hosts"]["mlflow-1"] = {
        "ansible_host": "203.0.113.5",
        "mlops_node_address": "10.0.0.5",
    }
    rendered, config = render_prometheus_config(
        tmp_path,
        inventory,
        extra_vars={
            "prometheus_predictor_port": 8001,
            "prometheus_node_exporter_exclude_hosts": ["monitor-1"],
            "prometheus_web_listen_address": "10.0.0.9:9091",
            "prometheus_scrape_interval": "15s",
            "prometheus_external_labels": {"site": "lab"},
            "prometheus_alertmanagers": ["alertmanager-1:9093"],
            "prometheus_extra_scrape_configs": [
                {
                    "job_name": "extra",
                    "scrape_interval": "1m",
                    "static_configs": [{"targets": ["extra-1:9999"]}],
                },
            ],
        },
    )
    check_config(promtool, rendered)
    by_name = jobs(config)
    assert targets(by_name["predictor"]) == ["10.0.0.11:8001", "10.0.0.12:8001"]
    assert targets(by_name["mlflow"]) == ["10.0.0.5:5005"]
    # inventory name as fallback address
    assert "monitor-1:9100" not in targets(by_name["node"])
    assert targets(by_name["node"]) == ["10.0.0.11:9100", "10.0.0.12:9100", "10.0.0.5:9100"]
    assert targets(by_name["prometheus"]) == ["10.0.0.9:9091"]
    assert config["global"]["scrape_interval"] == "15s"
    assert config["global"]["external_labels"] == {"site": "lab"}
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager-1:9093"
    ]
    assert by_name["extra"] == {
        "job_name": "extra",
        "scrape_interval": "1m",
        "static_configs": [{"targets": ["extra-1:9999"]}],
    }


def test_prometheus_alone_still_renders(tmp_path, promtool):
    """A monitoring host with no other groups (the molecule scenario): empty jobs stay valid."""
    inventory = {"all": {"children": {"monitoring": {"hosts": {"monitor-1": None}}}}}
    rendered, config = render_prometheus_config(tmp_path, inventory)
    check_config(promtool, rendered)
    by_name = jobs(config)
    assert targets(by_name["node"]) == ["monitor-1:9100"]
    assert targets(by_name["predictor"]) == []
    assert targets(by_name["mlflow"]) == []
