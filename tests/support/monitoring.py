"""Shared helpers of the monitoring tests: paths, metric names, PromQL parsing, rendering."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "collections" / "ansible_collections" / "mlops" / "stack" / "roles"
PROMETHEUS_ROLE = ROLES / "prometheus"
GRAFANA_ROLE = ROLES / "grafana"
RULES_FILE = PROMETHEUS_ROLE / "files" / "rules" / "mlops.rules.yml"
RULES_TEST_FILE = PROMETHEUS_ROLE / "tests" / "mlops.rules.test.yml"
DRIFT_RULES_TEMPLATE = PROMETHEUS_ROLE / "templates" / "drift.rules.yml.j2"
DRIFT_RULES_TEST_FILE = PROMETHEUS_ROLE / "tests" / "drift.rules.test.yml"
REGISTRY_RULES_TEMPLATE = PROMETHEUS_ROLE / "templates" / "registry.rules.yml.j2"
REGISTRY_RULES_TEST_FILE = PROMETHEUS_ROLE / "tests" / "registry.rules.test.yml"

# Series the predictor app exports (fixed by the design; histograms as _bucket/_sum/_count).
PREDICTOR_METRICS = {
    "predictor_requests_total",
    "predictor_request_duration_seconds_bucket",
    "predictor_request_duration_seconds_sum",
    "predictor_request_duration_seconds_count",
    "predictor_predictions_total",
    "predictor_feature_value_bucket",
    "predictor_feature_value_sum",
    "predictor_feature_value_count",
    "predictor_model_info",
    "predictor_model_reloads_total",
    "predictor_model_reload_failures_total",
    "predictor_registry_last_success_timestamp_seconds",
    "predictor_registry_up",
    "predictor_drift_feature_rows_total",
    "predictor_drift_class_rows_total",
    "predictor_drift_reference_share",
    "predictor_drift_reference_class_share",
}


def recorded_metrics() -> set[str]:
    """Names the drift recording rules write (level:metric:operations), from the template."""
    return set(re.findall(r"^\s*- record: (\S+)$", DRIFT_RULES_TEMPLATE.read_text(), re.M))


PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (labels, functions and keywords removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery windows
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        word = match.group(0)
        following = expr[match.end() :].lstrip()
        if following.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        if re.match(r"\d", expr[match.start() - 1 : match.start()] or " "):
            continue  # part of a number such as 1e-9
        names.add(word)
    return names


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)


def ansible_playbook() -> str:
    candidate = Path(sys.executable).with_name("ansible-playbook")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ansible-playbook")
    if found is None:
        pytest.fail(
            "ansible-playbook not found: run scripts/bootstrap.sh to create the project venv"
        )
    return found


def ansible_env(tmp_path: Path) -> dict[str, str]:
    """Environment for an ansible-playbook run that keeps everything in tmp_path."""
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\nretry_files_enabled = false\n")
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(cfg),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        # the roles' templates use the collection's filters (mlops.stack.node_address ...)
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_NOCOLOR": "1",
    }


def run_playbook(
    tmp_path: Path,
    playbook: list[dict],
    playbook_file: Path,
    extra_vars: dict,
    inventory: str = "localhost,",
) -> None:
    """Run `playbook`, written to `playbook_file`, against `inventory` with ansible_env(tmp_path).

    `extra_vars` go in as extra vars, which outrank the roles' defaults and vars that the
    plays load as vars_files. A failed run fails the test with ansible's output.
    """
    extra_vars_file = tmp_path / "extra.yml"
    extra_vars_file.write_text(yaml.safe_dump(extra_vars))
    playbook_file.write_text(yaml.safe_dump(playbook, sort_keys=False))
    result = run(
        [ansible_playbook(), "-i", inventory, str(playbook_file), "-e", f"@{extra_vars_file}"],
        env=ansible_env(tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def evaluate_with_role_vars(
    tmp_path: Path,
    role: Path,
    expressions: dict[str, str],
    extra_vars: dict | None = None,
    cases: dict[str, dict] | None = None,
) -> dict:
    """Evaluate Jinja expressions on localhost the way the role sees them.

    The play loads the role's real defaults and vars; `extra_vars` go in as extra vars
    and the values of each of `cases` as task vars (both outrank the role's defaults and
    vars, like the facts its tasks set). Each value of `expressions` is a template
    ("{{ ... }}"); the results come back under the same keys, as JSON, per case when
    `cases` is given. One ansible-playbook run for all cases.
    """
    # the roles' defaults expect ../credentials
    (tmp_path / "playbooks").mkdir(parents=True, exist_ok=True)
    runs = cases if cases is not None else {"value": {}}
    outputs = {case: tmp_path / f"evaluated-{index}.json" for index, case in enumerate(runs)}
    playbook = [
        {
            "name": f"Evaluate expressions of {role.name}",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars_files": [str(role / "defaults" / "main.yml"), str(role / "vars" / "main.yml")],
            "tasks": [
                {
                    "name": f"Write the values of {case}",
                    "ansible.builtin.copy": {
                        "content": "{{ __evaluated | to_json }}",
                        "dest": str(outputs[case]),
                        "mode": "0644",
                    },
                    "vars": {**case_vars, "__evaluated": expressions},
                }
                for case, case_vars in runs.items()
            ],
        }
    ]
    run_playbook(tmp_path, playbook, tmp_path / "playbooks" / "evaluate.yml", extra_vars or {})
    values = {case: json.loads(path.read_text()) for case, path in outputs.items()}
    return values if cases is not None else values["value"]


def role_task(role: Path, task_file: str, name: str) -> dict:
    """The task called `name` in the role's tasks/<task_file> (blocks searched too)."""
    tasks = list(yaml.safe_load((role / "tasks" / task_file).read_text()))
    while tasks:
        task = tasks.pop(0)
        if task.get("name") == name:
            return task
        tasks.extend(task.get("block", []))
    raise AssertionError(f"no task {name!r} in {role.name}/tasks/{task_file}")


def render_prometheus_template(
    tmp_path: Path,
    template: Path,
    dest: str,
    extra_vars: dict,
    host: str = "localhost",
    inventory: str = "localhost,",
) -> None:
    """Render a template of the prometheus role to `dest` for `host` with ansible's template
    module, the role's real defaults and vars loaded and `extra_vars` over them."""
    playbook = [
        {
            "name": f"Render {template.name}",
            "hosts": host,
            "connection": "local",
            "gather_facts": False,
            "vars_files": [
                str(PROMETHEUS_ROLE / "defaults" / "main.yml"),
                str(PROMETHEUS_ROLE / "vars" / "main.yml"),
            ],
            "tasks": [
                {
                    "name": "Render the template",
                    "ansible.builtin.template": {
                        "src": str(template),
                        "dest": dest,
                        "mode": "0644",
                    },
                }
            ],
        }
    ]
    run_playbook(
        tmp_path, playbook, tmp_path / f"render-{template.stem}.yml", extra_vars, inventory
    )


def render_prometheus_config(
    tmp_path: Path, inventory: dict, extra_vars: dict | None = None, host: str = "monitor-1"
) -> tuple[Path, dict]:
    """Render the role's prometheus.yml template for `host` of `inventory` with ansible itself.

    The play loads the role's real defaults and vars; overrides go in as extra vars
    (vars_files outrank play vars). Returns the rendered file and its parsed YAML.
    """
    etc = tmp_path / "etc"
    (etc / "rules").mkdir(parents=True, exist_ok=True)
    inventory_file = tmp_path / "hosts.yml"
    inventory_file.write_text(yaml.safe_dump(inventory))
    render_prometheus_template(
        tmp_path,
        PROMETHEUS_ROLE / "templates" / "prometheus.yml.j2",
        # where the role itself puts it, so a wrong path in the role's vars shows here too
        "{{ __prometheus_config_file }}",
        {"prometheus_config_dir": str(etc), **(extra_vars or {})},
        host=host,
        inventory=str(inventory_file),
    )
    rendered = etc / "prometheus.yml"
    return rendered, yaml.safe_load(rendered.read_text())


def lab_inventory(predictors: int = 2, gateway: bool = False) -> dict:
    """The four-node lab (mlflow-1, predictor-N, monitor-1), optionally with a gateway group."""
    children: dict = {
        "mlflow": {"hosts": {"mlflow-1": None}},
        "predictors": {"hosts": {f"predictor-{i}": None for i in range(1, predictors + 1)}},
        "monitoring": {"hosts": {"monitor-1": None}},
    }
    if gateway:
        children["gateway"] = {"hosts": {"monitor-1": None}}
    return {
        "all": {"vars": {"mlops_node_address": "{{ inventory_hostname }}"}, "children": children}
    }


def render_drift_rules(tmp_path: Path, extra_vars: dict | None = None) -> Path:
    """The prometheus role's drift rules as the role writes them (ansible's template module,
    the role's real defaults and vars; overrides as extra vars): ``tmp_path/drift.rules.yml``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    rendered = tmp_path / "drift.rules.yml"
    render_prometheus_template(tmp_path, DRIFT_RULES_TEMPLATE, str(rendered), extra_vars or {})
    return rendered


def render_registry_rules(tmp_path: Path, extra_vars: dict | None = None) -> Path:
    """The prometheus role's registry backup rule as the role writes it:
    ``tmp_path/registry.rules.yml``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    rendered = tmp_path / "registry.rules.yml"
    render_prometheus_template(tmp_path, REGISTRY_RULES_TEMPLATE, str(rendered), extra_vars or {})
    return rendered
