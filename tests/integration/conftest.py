"""The local stack, converged once per session from scratch on real podman
nodes: every end-to-end test reuses it instead of building its own."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODES = ("mlflow-1", "predictor-1", "predictor-2", "monitor-1", "gateway-1")


@dataclass
class Recap:
    output: str
    changed: dict[str, int]
    failed: dict[str, int]


def parse_recap(output: str) -> Recap:
    changed: dict[str, int] = {}
    failed: dict[str, int] = {}
    for host, ok_changed, fail in re.findall(
        r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", output, re.M
    ):
        changed[host] = int(ok_changed)
        failed[host] = int(fail)
    return Recap(output, changed, failed)


def ansible_playbook(*args: str, check: bool = True, timeout: int = 1800) -> Recap:
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        ["ansible-playbook", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    recap = parse_recap(proc.stdout)
    if check and proc.returncode != 0:
        command = " ".join(args)
        pytest.fail(
            f"ansible-playbook {command} failed:\n{proc.stdout[-8000:]}\n{proc.stderr[-2000:]}"
        )
    return recap


@dataclass
class Stack:
    first: Recap
    second: Recap | None = None
    prometheus_restarted: bool | None = None


@pytest.fixture(scope="session")
def local_stack() -> Stack:
    """Remove any leftover nodes, create fresh ones and converge site.yml.

    The nodes stay up after the session, for a look at what the tests saw;
    the next session starts from scratch again. ``MLOPS_E2E_REUSE_NODES=1``
    (for working on one test, never in ./stack test) converges the running
    nodes instead: the tests that judge a bare machine's first converge
    (test_site.py) do not hold then.
    """
    if os.environ.get("MLOPS_E2E_REUSE_NODES") != "1":
        ansible_playbook("playbooks/local_nodes.yml", "-e", "local_nodes_state=absent")
    ansible_playbook("playbooks/local_nodes.yml")
    return Stack(first=ansible_playbook("site.yml"))


def podman_exec(node: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "exec", node, *cmd], capture_output=True, text=True, timeout=120
    )
