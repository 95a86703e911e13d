"""bench/gateway_overhead.py for real, on the lab, with tiny durations: it measures both
targets clean (no error, every answer 2xx), writes its figures, and leaves predictor-2
back in rotation on the gateway and every thread of the nodes it kept apart back on
every core. The figures themselves are the benchmark's to print."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tools import required_tool

from .conftest import ROOT, Stack, podman_exec

pytestmark = pytest.mark.nodes


def server_state(server: str) -> str:
    stat = podman_exec(
        "gateway-1", "sh", "-c", "echo 'show stat' | socat stdio /run/haproxy/admin.sock"
    ).stdout
    row = next(line for line in stat.splitlines() if line.startswith(f"predictors,{server},"))
    return row.split(",")[17]


def cores_of_every_thread(node: str) -> set[frozenset[int]]:
    """The CPU sets a lab node's threads may run on (one set per distinct value)."""
    top = subprocess.run(["podman", "top", node, "hpid"], capture_output=True, text=True)
    assert top.returncode == 0, top.stderr
    found = set()
    for pid in top.stdout.split()[1:]:
        for task in (Path("/proc") / pid / "task").glob("*"):
            try:
                found.add(frozenset(os.sched_getaffinity(int(task.name))))
            except ProcessLookupError:
                continue
    return found


def test_the_gateway_benchmark_runs_clean_and_restores_the_rotation(
    local_stack: Stack, tmp_path: Path
) -> None:
    required_tool("wrk", "scripts/bootstrap.sh --test installs it (apt-get install wrk)")
    out = tmp_path / "gateway.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.gateway_overhead", "--duration", "2", "--warmup", "1",
         "--connections", "4", "--threads", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(out.read_text())
    for target in ("direct", "gateway"):
        assert report[target]["requests"] > 0, report
        assert report[target]["non_2xx"] == 0, report
    assert report["gateway_share_of_direct"] > 0, report
    assert "gateway / direct throughput" in run.stdout, run.stdout
    assert server_state("predictor-2") == "UP"
    every = frozenset(os.sched_getaffinity(0))
    if len(every) >= 2:
        first, second = sorted(every)[:2]
        apart = f"predictor-1 on CPU {first}; gateway-1 and wrk on CPU {second}"
        assert report["cores"] == apart, report
    for node in ("predictor-1", "gateway-1"):
        assert cores_of_every_thread(node) == {every}, f"{node} was left pinned"
