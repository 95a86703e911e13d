"""Each role checks its variables together first (tasks/preflight.yml, tag always):
a combination it cannot run with stops the play in the preflight, before any
task that installs or writes anything has run.

A real ``ansible-playbook`` runs the role on localhost in check mode with a tag
no task has, so only the always-tagged tasks (argument validation and the
preflight) are eligible; the report must show the preflight task failing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GROUPS = ("mlflow", "predictors", "monitoring", "gateway")

# role, the wrong combination, the preflight task that must refuse it
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("mlflow_server", {"mlflow_server_admin_password": "short"},  # pragma: allowlist secret
     "Check the configured MLflow passwords"),
    ("mlflow_server", {"mlflow_server_metrics_port": 5000},
     "Refuse a metrics listener on the server's own port"),
    ("gateway", {"gateway_stats_port": 8080}, "Refuse settings HAProxy would only reject"),
    ("prometheus", {"prometheus_storage_retention_time": "15 days"},
     "Refuse flags Prometheus would only reject"),
    ("node_exporter", {"node_exporter_web_listen_address": "0.0.0.0"},
     "Refuse a listen address the exporter"),
    ("predictor", {"predictor_tracking_uri": "mlflow-1:5000"},
     "Refuse settings the predictor would only reject"),
    ("grafana", {"grafana_http_port": 80}, "Refuse a port Grafana cannot bind"),
]  # fmt: skip


def run_role(role: str, variables: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    play = [
        {
            "name": f"Preflight of {role}",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "tasks": [
                {
                    "name": f"Import {role}",
                    "ansible.builtin.import_role": {"name": f"mlops.stack.{role}"},
                    "vars": {
                        **variables,
                        # generated secrets go to tmp, never to the project's credentials/
                        "mlflow_server_credentials_dir": str(tmp_path / "credentials"),
                        "grafana_credentials_dir": str(tmp_path / "credentials"),
                    },
                }
            ],
        }
    ]
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    groups = "".join(f"[{group}]\nlocalhost\n" for group in GROUPS)
    (tmp_path / "hosts.ini").write_text(
        f"localhost ansible_python_interpreter={sys.executable}\n{groups}"
    )
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i", str(tmp_path / "hosts.ini"), "--check", "--tags", "preflight_only", str(playbook),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON report (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


@pytest.mark.parametrize(
    ("role", "variables", "refused_by"), CASES, ids=[f"{r}:{next(iter(v))}" for r, v, _ in CASES]
)
def test_preflight_refuses_before_anything_changes(
    role: str, variables: dict[str, Any], refused_by: str, tmp_path: Path
) -> None:
    report = run_role(role, variables, tmp_path)
    tasks = [task for play in report["plays"] for task in play["tasks"]]
    ran = [(t["task"]["name"], t["hosts"]["localhost"]) for t in tasks]
    failed = [name for name, result in ran if result.get("failed")]
    assert failed, f"nothing refused {variables}: {[name for name, _ in ran]}"
    assert failed[0].startswith(f"mlops.stack.{role} : {refused_by}"), failed
    # only argument validation and preflight checks ran before it
    for name, result in ran:
        assert result["action"] in {
            "ansible.builtin.validate_argument_spec",
            "ansible.builtin.assert",
        }, name
