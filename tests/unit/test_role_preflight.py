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

# What the project's group_vars give these roles in a real run.
TRAIN = {
    "train_tracking_uri": "http://127.0.0.1:5004",
    "train_python": sys.executable,
    "train_tracking_username": "writer",
    "train_tracking_password": "a-writer-password",  # pragma: allowlist secret
}
# two nodes (the test's inventory names them), one image that need not exist
# a case's key for variables of the inventory's two nodes, not of the play
HOST_VARS = "host_vars"
NODES = {"local_nodes_hosts": ["node-a", "node-b"], "local_nodes_image": "localhost/none"}

# role, the wrong combination, the preflight task that must refuse it
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("mlflow_server", {"mlflow_server_admin_password": "short"},  # pragma: allowlist secret
     "Check the configured MLflow passwords"),
    ("mlflow_server", {"mlflow_server_metrics_port": 5000},
     "Refuse listeners that would share a port"),
    ("mlflow_server", {"mlflow_server_internal_port": 5005},
     "Refuse listeners that would share a port"),
    ("mlflow_server", {"mlflow_server_backup_keep": 0},
     "Refuse backup settings the units or the backup tool would only reject"),
    ("mlflow_server", {"mlflow_server_backup_dir": "/var/lib/mlflow/artifacts/backups"},
     "Refuse backup settings the units or the backup tool would only reject"),
    ("mlflow_server", {"mlflow_server_backup_upload_to": "s3://registry-backups/mlflow-1"},
     "Refuse backup settings the units or the backup tool would only reject"),
    ("gateway", {"gateway_stats_port": 443}, "Refuse settings HAProxy would only reject"),
    ("gateway", {"gateway_client_keys": [{"name": "ci", "key": "too-short"}]},
     "Refuse a client key entry the gateway could not use"),
    ("gateway", {"gateway_client_keys": [{"name": "ci", "sha256": "f" * 63}]},
     "Refuse a client key entry the gateway could not use"),
    ("gateway", {"gateway_client_keys": [{"name": "a", "key": "k" * 20},
                                         {"name": "b", "key": "k" * 20}]},
     "Refuse two clients with one name or one key"),
    ("prometheus", {"prometheus_storage_retention_time": "15 days"},
     "Refuse flags Prometheus would only reject"),
    ("node_exporter", {"node_exporter_web_listen_address": "0.0.0.0"},
     "Refuse a listen address the exporter"),
    ("node_exporter", {"node_exporter_textfile_directory": "/var/lib/node exporter"},
     "Refuse a textfile folder the flags file cannot hold"),
    ("predictor", {"predictor_tracking_uri": "mlflow-1:5000"},
     "Refuse settings the predictor would only reject"),
    ("predictor", {"predictor_tracking_ca_certificate": "/etc/ssl/certs/mlflow-ca.crt"},
     "Refuse settings the predictor would only reject"),
    ("grafana", {"grafana_http_port": 80}, "Refuse a port Grafana cannot bind"),
    # the project's own roles (roles/), beside the collection's
    ("train", {**TRAIN, "train_tracking_password": ""},
     "Refuse training settings the registry or the gate would only reject"),
    ("train", {**TRAIN, "train_min_accuracy": 1.5},
     "Refuse training settings the registry or the gate would only reject"),
    ("local_nodes", {**NODES, "local_nodes_hosts": ["node-a", "node-a"]},
     "Refuse nodes that would collide on this machine"),
    # both nodes ask for the same SSH port in the inventory
    ("local_nodes", {**NODES, HOST_VARS: "local_nodes_ssh_port=2299"},
     "Refuse nodes that would collide on this machine"),
]  # fmt: skip
# Roles of this repository are not in the collection's namespace.
PROJECT_ROLES = {"train", "local_nodes"}


def case_id(role: str, variables: dict[str, Any]) -> str:
    """role:the variable the case sets wrong (not one of the base values above)."""
    base = {**TRAIN, **NODES}
    wrong = [key for key, value in variables.items() if base.get(key, object()) != value]
    return f"{role}:{wrong[0]}"


def role_name(role: str) -> str:
    return role if role in PROJECT_ROLES else f"mlops.stack.{role}"


def run_role(role: str, variables: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    variables = dict(variables)
    node_vars = variables.pop(HOST_VARS, "")
    play = [
        {
            "name": f"Preflight of {role}",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "tasks": [
                {
                    "name": f"Import {role}",
                    "ansible.builtin.import_role": {"name": role_name(role)},
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
        f"localhost ansible_python_interpreter={sys.executable}\n"
        f"node-a ansible_connection=local {node_vars}\n"
        f"node-b ansible_connection=local {node_vars}\n" + groups
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
    ("role", "variables", "refused_by"),
    CASES,
    ids=[case_id(role, variables) for role, variables, _ in CASES],
)
def test_preflight_refuses_before_anything_changes(
    role: str, variables: dict[str, Any], refused_by: str, tmp_path: Path
) -> None:
    report = run_role(role, variables, tmp_path)
    tasks = [task for play in report["plays"] for task in play["tasks"]]
    ran = [(t["task"]["name"], t["hosts"]["localhost"]) for t in tasks]
    failed = [name for name, result in ran if result.get("failed")]
    assert failed, f"nothing refused {variables}: {[name for name, _ in ran]}"
    assert failed[0].startswith(f"{role_name(role)} : {refused_by}"), failed
    # only argument validation and preflight checks ran before it
    for name, result in ran:
        assert result["action"] in {
            "ansible.builtin.validate_argument_spec",
            "ansible.builtin.assert",
        }, name
