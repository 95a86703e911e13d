"""The prometheus role's alert rules: checked and unit-tested by the real promtool."""

from __future__ import annotations

import yaml

from .support import PREDICTOR_METRICS, RULES_FILE, RULES_TEST_FILE, metric_names, run

REQUIRED_ALERTS = {
    "PredictorDown",
    "PredictorHighErrorRatio",
    "PredictorHighLatencyP99",
    "ModelReloadFailing",
    "RegistryUnreachable",
    "NoPredictionsServed",
    "HostDiskPressure",
    "HostMemoryPressure",
    "MlflowDown",
}


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_check_rules(promtool):
    result = run([promtool, "check", "rules", str(RULES_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(REQUIRED_ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests(promtool):
    result = run([promtool, "test", "rules", RULES_TEST_FILE.name], cwd=RULES_TEST_FILE.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_required_alert_exists_and_is_unit_tested():
    names = {rule["alert"] for rule in rules()}
    assert names == REQUIRED_ALERTS
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULES_TEST_FILE.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert tested == REQUIRED_ALERTS, "every alert needs a unit test in which it fires"


def test_rules_use_only_known_metrics():
    for rule in rules():
        for name in metric_names(rule["expr"]):
            known = name in PREDICTOR_METRICS or name == "up" or name.startswith("node_")
            assert known, f"{rule['alert']}: unknown metric {name}"


def test_predictor_down_fires_within_a_minute():
    """The integration test stops a predictor and waits for PredictorDown: keep it quick."""
    down = next(rule for rule in rules() if rule["alert"] == "PredictorDown")
    assert down["expr"] == 'up{job="predictor"} == 0'
    assert down["for"] == "30s"


def test_every_alert_has_severity_and_summary():
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
