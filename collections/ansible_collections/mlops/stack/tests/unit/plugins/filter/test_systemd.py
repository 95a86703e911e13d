"""mlops.stack.systemd_sandbox: one base sandbox, each unit's settings over it,
and the three templates that render it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.mlops.stack.plugins.filter import systemd

COLLECTION = Path(__file__).resolve().parents[4]
ROLES = COLLECTION / "roles"


def directives(text: str) -> list[tuple[str, str]]:
    return [
        (key, value)
        for key, _sep, value in (line.partition("=") for line in text.splitlines())
        if key[:1].isupper() and key.isalnum()
    ]


def test_the_base_alone_is_every_directive_once_but_the_syscall_filter():
    lines = directives(systemd.systemd_sandbox())
    keys = [key for key, _value in lines]
    assert keys == sorted(keys)
    assert keys.count("SystemCallFilter") == 2
    assert len(set(keys)) == len(keys) - 1
    assert ("ProtectSystem", "strict") in lines
    assert ("CapabilityBoundingSet", "") in lines


def test_a_setting_replaces_the_base_none_removes_it_a_list_repeats_it():
    lines = directives(
        systemd.systemd_sandbox(
            {
                "RestrictAddressFamilies": "AF_UNIX",
                "ProcSubset": None,
                "SystemCallFilter": ["@system-service"],
                "PrivateNetwork": True,
                "ProtectHome": False,
                "LimitNOFILE": 65536,
            }
        )
    )
    assert [v for k, v in lines if k == "RestrictAddressFamilies"] == ["AF_UNIX"]
    assert "ProcSubset" not in dict(lines)
    assert [v for k, v in lines if k == "SystemCallFilter"] == ["@system-service"]
    assert ("PrivateNetwork", "yes") in lines
    assert ("ProtectHome", "no") in lines
    assert ("LimitNOFILE", "65536") in lines


@pytest.mark.parametrize(
    "settings", [{"Bad Key": "x"}, {"Protect=System": "x"}, {"ExecStart": "a\nExecStartPre=b"}]
)
def test_a_setting_that_would_write_another_directive_is_refused(settings: dict[str, str]):
    with pytest.raises(ValueError, match=r"directive name|one line"):
        systemd.systemd_sandbox(settings)


def test_the_units_render_the_sandbox_with_their_own_settings(tmp_path: Path):
    """The hardening drop-in, a Python service's unit and MLflow's backup unit,
    rendered by Ansible as the roles write them."""
    templates = {
        "dropin": ROLES / "systemd_hardening/templates/hardening.conf.j2",
        "python": ROLES / "python_service/templates/service.unit.j2",
        "backup": ROLES / "mlflow_server/templates/mlflow-backup.service.j2",
    }
    # name: (template, variables of that render only)
    renders: dict[str, tuple[Path, dict[str, Any]]] = {
        name: (path, {}) for name, path in templates.items()
    }
    # the backup unit of a host that keeps its archives, and of one that copies them to GCS
    renders["backup"] = (
        templates["backup"],
        {"__mlflow_server_backup_network": False, "__mlflow_server_is_postgres": False},
    )
    renders["backup_upload"] = (
        templates["backup"],
        {"__mlflow_server_backup_network": True, "__mlflow_server_is_postgres": False},
    )
    playbook = tmp_path / "render.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        + "".join(
            f"    - ansible.builtin.copy:\n"
            f"        dest: {tmp_path / name}\n"
            f"        content: \"{{{{ lookup('ansible.builtin.template', '{path}') }}}}\"\n"
            f"      vars: {json.dumps(task_vars)}\n"
            for name, (path, task_vars) in renders.items()
        )
    )
    variables = {
        "systemd_hardening_unit": "haproxy",
        "systemd_hardening_settings": {"AmbientCapabilities": "CAP_NET_BIND_SERVICE"},
        "python_service_name": "predictor",
        "python_service_user": "predictor",
        "__python_service_env_file": "/etc/predictor.env",
        "python_service_home": "/var/lib/predictor",
        "python_service_exec_start": "/opt/predictor/bin/gunicorn",
        "python_service_exec_reload": "",
        "python_service_read_write_paths": ["/var/cache/predictor"],
        "mlflow_server_user": "mlflow",
        "mlflow_server_home": "/var/lib/mlflow",
        "mlflow_server_backup_dir": "/var/backups/mlflow",
        "mlflow_server_backup_textfile_dir": "",
        "__mlflow_server_backup_exec_start": ["/opt/mlflow/bin/python", "backup.py"],
    }
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTION.parents[2]),
        "ANSIBLE_HOME": str(tmp_path / "ansible"),
    }
    subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,",
         "-c", "local", "-e", f"@{extra}", "-e", f"ansible_python_interpreter={sys.executable}",
         str(playbook)],
        check=True, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    base = directives(systemd.systemd_sandbox())
    dropin = directives((tmp_path / "dropin").read_text())
    assert dropin == directives(
        systemd.systemd_sandbox({"AmbientCapabilities": "CAP_NET_BIND_SERVICE"})
    )
    python = dict(directives((tmp_path / "python").read_text()))
    # the interpreters' allowances, and the rest of the base
    assert "ProcSubset" not in python
    assert python["ReadWritePaths"] == "/var/lib/predictor /var/cache/predictor"
    assert python["ProtectSystem"] == "strict"
    backup = directives((tmp_path / "backup").read_text())
    assert [v for k, v in backup if k == "RestrictAddressFamilies"] == ["AF_UNIX"]
    assert ("PrivateNetwork", "yes") in backup
    in_base = dict(base).keys()
    expected = {(k, v) for k, v in base if k != "RestrictAddressFamilies"}
    assert {(k, v) for k, v in backup if k in in_base} == expected | {
        ("RestrictAddressFamilies", "AF_UNIX")
    }
    # the copy to GCS needs the network, and nothing else changes
    upload = dict(directives((tmp_path / "backup_upload").read_text()))
    assert upload["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    assert upload["PrivateNetwork"] == "no"
    network = ("RestrictAddressFamilies", "PrivateNetwork")
    assert {k: v for k, v in upload.items() if k not in network} == {
        k: v for k, v in backup if k not in network
    }
