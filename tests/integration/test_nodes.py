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


def test_ansible_gathers_facts_from_every_node(local_stack: Stack):
    proc = subprocess.run(
        [
            "ansible",
            "local_nodes",
            "-m",
            "ansible.builtin.setup",
            "-a",
            "filter=ansible_distribution*",
            "-o",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = {}
    for line in proc.stdout.splitlines():
        host, _, rest = line.partition(" | SUCCESS => ")
        if rest:
            seen[host] = json.loads(rest)["ansible_facts"]["ansible_distribution"]
    assert seen == dict.fromkeys(NODES, "Debian")


def test_ports_are_published_on_loopback_only(local_stack: Stack):
    proc = subprocess.run(["podman", "port", "--all"], capture_output=True, text=True, check=True)
    published = [line.split("->")[1].strip() for line in proc.stdout.splitlines() if "->" in line]
    assert published, "no published ports"
    assert all(addr.startswith("127.0.0.1:") for addr in published), published


def test_local_nodes_playbook_is_idempotent(local_stack: Stack):
    recap = ansible_playbook("playbooks/local_nodes.yml")
    assert recap.changed == {"localhost": 0}, recap.output[-3000:]
