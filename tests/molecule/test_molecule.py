"""Every molecule scenario of every collection role: create, converge,
idempotence, verify and destroy on real podman nodes with systemd, reached
over SSH like the local nodes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "collections/ansible_collections/mlops/stack/roles"
SECONDS_PROPERTY = "scenario_seconds"
SCENARIOS = sorted(ROLES.glob("*/molecule/*/molecule.yml"))


def scenario_id(path: Path) -> str:
    return f"{path.parents[2].name}/{path.parent.name}"


def test_every_public_role_has_a_scenario():
    # Internal helpers (python_service, systemd_hardening) run inside the public
    # roles' scenarios; their meta description says so.
    internal = {
        p.name
        for p in ROLES.iterdir()
        if "Internal helper" in (p / "meta" / "main.yml").read_text()
    }
    assert internal >= {"python_service", "systemd_hardening"}, internal
    roles = {p.name for p in ROLES.iterdir() if p.is_dir()} - internal
    tested = {p.parents[2].name for p in SCENARIOS}
    assert roles <= tested, f"roles without a molecule scenario: {sorted(roles - tested)}"


def run_scenario(scenario: Path, log: Path) -> tuple[int, float]:
    """The scenario's exit status and how many seconds it took."""
    env = dict(os.environ, MLOPS_ROOT=str(ROOT), PY_COLORS="0", ANSIBLE_FORCE_COLOR="0")
    start = time.monotonic()
    with log.open("w") as out:
        rc = subprocess.run(
            ["molecule", "test", "-s", scenario.parent.name],
            cwd=scenario.parents[2],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1500,
        ).returncode
    return rc, time.monotonic() - start


def make_the_node_key() -> None:
    """The controller's SSH key for the nodes, made once before the scenarios start:
    every scenario's create step makes it on first use, and two of them at once on
    a fresh clone could each write half of it."""
    subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible")), "localhost", "-c", "local",
            "-m", "ansible.builtin.include_role", "-a", "name=local_nodes tasks_from=ssh_key",
            "-e", f"local_nodes_ssh_dir={ROOT / '.work' / 'ssh'}",
            "-e", f"ansible_python_interpreter={sys.executable}",
        ],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="session")
def scenario_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[Path, tuple[Future[tuple[int, float]], Path]]]:
    """Every selected scenario, MLOPS_MOLECULE_JOBS (default 2) at a time.

    Scenarios have their own nodes and networks, and spend much of their time
    waiting on apt and pip inside the nodes, so two share the machine's two
    cores well. Those with the most nodes start first.
    """
    selected = [
        item.callspec.params["scenario"]
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.originalname == "test_scenario"
    ]
    selected.sort(key=lambda path: -path.read_text().count("- name:"))
    make_the_node_key()
    logs = tmp_path_factory.mktemp("molecule")
    jobs = int(os.environ.get("MLOPS_MOLECULE_JOBS", "2"))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        runs = {}
        for scenario in selected:
            log = logs / (scenario_id(scenario).replace("/", "-") + ".log")
            runs[scenario] = (pool.submit(run_scenario, scenario, log), log)
        yield runs


@pytest.mark.molecule
@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_scenario(
    scenario: Path,
    scenario_runs: dict[Path, tuple[Future[tuple[int, float]], Path]],
    record_property: Callable[[str, object], None],
):
    future, log = scenario_runs[scenario]
    rc, seconds = future.result()
    # the scenarios run in the background, two at a time: tests/molecule/conftest.py
    # prints each one's own time at the end
    record_property(SECONDS_PROPERTY, seconds)
    if rc != 0:
        tail = log.read_text()[-6000:]
        pytest.fail(f"molecule {scenario_id(scenario)} failed:\n{tail}")
