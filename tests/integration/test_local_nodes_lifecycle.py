"""local_nodes.yml in both directions, on a throwaway node of its own so the
shared stack is not disturbed: present twice is idempotent, absent leaves no
container and no network behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conftest import ansible_playbook

pytestmark = pytest.mark.nodes

NODE = "mlops-lifecycle-check"
NETWORK = "mlops-lifecycle-check"


def podman_names(*args: str) -> set[str]:
    out = subprocess.run(["podman", *args], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_present_twice_then_absent(tmp_path: Path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    local_nodes:\n      hosts:\n"
        f"        {NODE}:\n          local_nodes_published_ports: []\n"
    )
    common = (
        "-i",
        str(inventory),
        "-e",
        f"local_nodes_network={NETWORK}",
        "playbooks/local_nodes.yml",
    )
    try:
        first = ansible_playbook(*common)
        assert first.changed["localhost"] > 0
        assert NODE in podman_names("ps", "--format", "{{.Names}}")
        second = ansible_playbook(*common)
        assert second.changed["localhost"] == 0, second.output[-3000:]
    finally:
        ansible_playbook(*common, "-e", "local_nodes_state=absent")
    assert NODE not in podman_names("ps", "-a", "--format", "{{.Names}}")
    assert NETWORK not in podman_names("network", "ls", "--format", "{{.Name}}")
    again = ansible_playbook(*common, "-e", "local_nodes_state=absent")
    assert again.changed["localhost"] == 0
