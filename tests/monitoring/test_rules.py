"""The prometheus role's alert rules: checked and unit-tested by the real promtool."""

from __future__ import annotations

import shutil

import pytest
import yaml

from tests.support.monitoring import (
    DRIFT_RULES_TEST_FILE,
    PREDICTOR_METRICS,
    REGISTRY_RULES_TEST_FILE,
    RULES_FILE,
    RULES_TEST_FILE,
    metric_names,
    recorded_metrics,
    render_drift_rules,
    render_registry_rules,
    run,
)

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


DRIFT_ALERTS = {"InputDrift", "PredictionDrift"}


def rules(path=RULES_FILE) -> list[dict]:
    doc = yaml.safe_load(path.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def drift_rules(tmp_path_factory: pytest.TempPathFactory):
    """The drift rules as the role writes them with its defaults."""
    return render_drift_rules(tmp_path_factory.mktemp("drift-rules"))


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


@pytest.fixture(scope="module")
def registry_rules(tmp_path_factory: pytest.TempPathFactory):
    """The registry backup rule as the role writes it with its defaults."""
    return render_registry_rules(tmp_path_factory.mktemp("registry-rules"))


def test_every_alert_has_severity_and_summary(drift_rules, registry_rules):
    templated = rules(drift_rules) + rules(registry_rules)
    for rule in rules() + [r for r in templated if "alert" in r]:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_drift_rules_check_and_pass_their_unit_tests(promtool, drift_rules):
    checked = run([promtool, "check", "rules", str(drift_rules)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    shutil.copy(DRIFT_RULES_TEST_FILE, drift_rules.parent)
    result = run([promtool, "test", "rules", DRIFT_RULES_TEST_FILE.name], cwd=drift_rules.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_drift_alert_fires_in_a_unit_test(drift_rules):
    assert {rule["alert"] for rule in rules(drift_rules) if "alert" in rule} == DRIFT_ALERTS
    cases = [
        case
        for test in yaml.safe_load(DRIFT_RULES_TEST_FILE.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    assert {case["alertname"] for case in cases if case.get("exp_alerts")} == DRIFT_ALERTS
    # and each is also proven quiet somewhere (resolved, thin traffic, a promotion)
    assert {case["alertname"] for case in cases if not case.get("exp_alerts")} >= DRIFT_ALERTS


def test_drift_rules_use_only_known_metrics(drift_rules):
    recorded = recorded_metrics()
    for rule in rules(drift_rules):
        for name in metric_names(rule["expr"]):
            assert name in PREDICTOR_METRICS or name in recorded, f"unknown metric {name}"
    written = {rule["record"] for rule in rules(drift_rules) if "record" in rule}
    assert written == recorded


def test_drift_rules_follow_the_role_variables(tmp_path, promtool):
    """What the end-to-end drift test shortens, and the thresholds, reach the rules."""
    rendered = render_drift_rules(
        tmp_path,
        {
            "prometheus_drift_window": "1m",
            "prometheus_drift_for": "30s",
            "prometheus_drift_psi_threshold": 0.4,
            "prometheus_drift_prediction_psi_threshold": 0.3,
            "prometheus_drift_min_rows": 50,
        },
    )
    assert run([promtool, "check", "rules", str(rendered)]).returncode == 0
    by_name = {rule.get("alert") or rule["record"]: rule for rule in rules(rendered)}
    assert (
        "[1m]"
        in by_name["version_feature_bin:predictor_drift_feature_rows:increase_window"]["expr"]
    )
    assert "[1m]" in by_name["version_class:predictor_drift_class_rows:increase_window"]["expr"]
    assert "> 0.4" in by_name["InputDrift"]["expr"]
    assert ">= 50" in by_name["InputDrift"]["expr"]
    assert "> 0.3" in by_name["PredictionDrift"]["expr"]
    assert by_name["InputDrift"]["for"] == by_name["PredictionDrift"]["for"] == "30s"


def test_registry_backup_rule_checks_and_passes_its_unit_tests(promtool, registry_rules):
    checked = run([promtool, "check", "rules", str(registry_rules)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert [rule["alert"] for rule in rules(registry_rules)] == ["RegistryBackupStale"]
    shutil.copy(REGISTRY_RULES_TEST_FILE, registry_rules.parent)
    result = run(
        [promtool, "test", "rules", REGISTRY_RULES_TEST_FILE.name], cwd=registry_rules.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_registry_backup_rule_follows_its_variable(tmp_path, promtool):
    rendered = render_registry_rules(tmp_path, {"prometheus_registry_backup_max_age_hours": 50})
    assert run([promtool, "check", "rules", str(rendered)]).returncode == 0
    (rule,) = rules(rendered)
    assert rule["expr"].rstrip().endswith("> 50 * 3600")
