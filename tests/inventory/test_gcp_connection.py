"""How Ansible connects to GCP instances, and what it requires before it does,
shown without Google: the inventory's own variables over the constructed
stand-in (tests/support/gcp.py), and an `ssh` that records its arguments
instead of connecting."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.support.gcp import ROOT, ansible_tool, clean_env, constructed_inventory

VAULT_VARIABLES = yaml.safe_load((ROOT / "playbooks" / "preflight.yml").read_text())[0]["vars"][
    "preflight_vault_variables"
]


def recording_ssh(tmp_path: Path) -> tuple[Path, Path]:
    """An ssh executable that writes each call's arguments to a log and fails."""
    log = tmp_path / "ssh-calls.log"
    stub = tmp_path / "ssh"
    stub.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" >> {log}\necho "-- end of call" >> {log}\nexit 255\n'
    )
    stub.chmod(0o755)
    return stub, log


def playbook(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ansible_tool("ansible-playbook"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=clean_env(tmp_path, **env),
    )


def test_a_delegated_task_tunnels_to_the_instance_it_runs_on(tmp_path: Path) -> None:
    """playbooks/predictor.yml drains a predictor on the gateway with delegate_to:
    that connection must open its IAP tunnel to the gateway and check the
    gateway's host key, not the predictor's."""
    inv = constructed_inventory(tmp_path)
    stub, log = recording_ssh(tmp_path)
    play = tmp_path / "delegated.yml"
    play.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "A predictor's task that runs on the gateway",
                    "hosts": "mlops-predictor-1",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Ping the gateway",
                            "ansible.builtin.ping": None,
                            "delegate_to": "mlops-gateway-1",
                        }
                    ],
                }
            ]
        )
    )
    playbook(
        tmp_path,
        "-i",
        str(inv),
        str(play),
        "-e",
        f"ansible_ssh_executable={stub}",
        GCP_SSH_VIA_IAP="true",
    )
    calls = log.read_text().split("-- end of call\n")
    assert calls[0], "ssh was never called"
    first = calls[0]
    assert "start-iap-tunnel mlops-gateway-1 %p" in first, first
    assert "HostKeyAlias=mlops-gateway-1" in first, first
    assert "mlops-predictor-1" not in first, first


def test_without_the_vault_file_a_gcp_run_stops_before_any_change(tmp_path: Path) -> None:
    inv = constructed_inventory(tmp_path)
    stub, log = recording_ssh(tmp_path)
    run = playbook(tmp_path, "-i", str(inv), "site.yml", "-e", f"ansible_ssh_executable={stub}")
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    assert "ansible-vault create" in output, output[-3000:]
    for name in VAULT_VARIABLES:
        assert name in output, f"the message does not name {name}"
    assert not log.exists(), "a host was contacted before the preflight stopped the run"


def test_with_the_vault_variables_the_preflight_passes(tmp_path: Path) -> None:
    inv = constructed_inventory(tmp_path)
    vault = tmp_path / "vault.yml"
    vault.write_text(yaml.safe_dump({name: f"test-{name}" for name in VAULT_VARIABLES}))
    run = playbook(tmp_path, "-i", str(inv), "playbooks/preflight.yml", "-e", f"@{vault}")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]


def test_the_lab_needs_no_vault(tmp_path: Path) -> None:
    run = playbook(tmp_path, "playbooks/preflight.yml")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
