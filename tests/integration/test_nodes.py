"""The local testbed: real systemd hosts that Ansible reaches."""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import NODES, ROOT, Stack, ansible_playbook, podman_exec

pytestmark = pytest.mark.nodes


def test_every_node_runs_systemd_without_failed_units(local_stack: Stack):
    for node in NODES:
        state = podman_exec(node, "systemctl", "is-system-running").stdout.strip()
        failed = podman_exec(node, "systemctl", "--failed", "--no-legend").stdout.strip()
        assert state == "running", f"{node}: {state}; failed units: {failed}"


def test_ansible_reaches_every_node_over_ssh_as_the_unprivileged_user(local_stack: Stack):
    """As on GCP: SSH with the generated key, the `ansible` login, root only through sudo."""
    proc = subprocess.run(
        [
            "ansible",
            "local_nodes",
            "-m",
            "ansible.builtin.setup",
            "-o",
            "-a",
            "filter=ansible_user_id,ansible_distribution",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    facts = {
        host: json.loads(rest)["ansible_facts"]
        for host, _, rest in (line.partition(" | SUCCESS => ") for line in proc.stdout.splitlines())
        if rest
    }
    seen = {host: (f["ansible_distribution"], f["ansible_user_id"]) for host, f in facts.items()}
    assert seen == dict.fromkeys(NODES, ("Debian", "ansible"))
    # the nodes refuse root and password logins
    key = ROOT / ".work" / "ssh" / "id_ed25519"
    root_login = subprocess.run(
        [
            "ssh",
            "-p",
            "2201",
            "-i",
            str(key),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "root@127.0.0.1",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert root_login.returncode == 255, root_login.stderr
    assert "Permission denied" in root_login.stderr


def test_ports_are_published_on_loopback_only(local_stack: Stack):
    proc = subprocess.run(["podman", "port", "--all"], capture_output=True, text=True, check=True)
    published = [line.split("->")[1].strip() for line in proc.stdout.splitlines() if "->" in line]
    assert published, "no published ports"
    assert all(addr.startswith("127.0.0.1:") for addr in published), published


def test_local_nodes_playbook_is_idempotent(local_stack: Stack):
    recap = ansible_playbook("playbooks/local_nodes.yml")
    assert recap.changed == {"localhost": 0}, recap.output[-3000:]
