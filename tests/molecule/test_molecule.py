"""Every molecule scenario of every collection role: create, converge,
idempotence, verify and destroy on real podman nodes with systemd, reached
over SSH like the local nodes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "collections/ansible_collections/mlops/stack/roles"
SECONDS_PROPERTY = "scenario_seconds"
LOGS = ROOT / ".work" / "molecule-logs"
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


class ScenarioRuns:
    """Every selected scenario, run in the background by a pool of ``jobs`` threads.

    Scenarios have their own nodes and networks (mol-*), apart from the local
    nodes of the end-to-end tests, so they can run while those run. Those with
    the most nodes start first.
    """

    def __init__(self, scenarios: list[Path], jobs: int, logs: Path, beside_nodes: bool) -> None:
        self.jobs = jobs
        self.beside_nodes = beside_nodes
        self.started = time.monotonic()
        self.finished: float | None = None
        self._pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="molecule")
        self.runs: dict[Path, tuple[Future[tuple[int, float]], Path]] = {}
        for scenario in sorted(scenarios, key=lambda path: -path.read_text().count("- name:")):
            log = logs / (scenario_id(scenario).replace("/", "-") + ".log")
            self.runs[scenario] = (self._pool.submit(run_scenario, scenario, log), log)
        for future, _log in self.runs.values():
            future.add_done_callback(self._note_the_end)

    def _note_the_end(self, _: Future[tuple[int, float]]) -> None:
        if all(future.done() for future, _log in self.runs.values()):
            self.finished = time.monotonic()

    def shutdown(self) -> None:
        """Wait for the scenarios under way; those not started yet are dropped
        (an interrupted session)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


RUNS = pytest.StashKey[ScenarioRuns]()


def start_scenarios(session: pytest.Session) -> ScenarioRuns | None:
    """Start the selected scenarios at the start of the test loop, so they run
    beside the end-to-end tests (./stack test puts their results last).

    MLOPS_MOLECULE_JOBS scenarios at a time: by default 1 beside the end-to-end
    tests, which leave part of the machine idle (they converge one host at a
    time and wait on alerts and timed load), and 2 when the scenarios run
    alone. On a 2-core machine the two phases together took 35.5 min, against
    38 min one after the other: the machine was then busy 93% of the time.
    """
    selected = [
        item.callspec.params["scenario"]
        for item in session.items
        if isinstance(item, pytest.Function) and item.originalname == "test_scenario"
    ]
    if not selected or session.config.option.collectonly:
        return None
    beside_nodes = any(item.get_closest_marker("nodes") for item in session.items)
    jobs = int(os.environ.get("MLOPS_MOLECULE_JOBS", "1" if beside_nodes else "2"))
    make_the_node_key()
    # each scenario's whole log stays there after the run, for a look at a failure
    # beyond the tail the test shows
    shutil.rmtree(LOGS, ignore_errors=True)
    LOGS.mkdir(parents=True)
    runs = ScenarioRuns(selected, jobs, LOGS, beside_nodes)
    session.config.stash[RUNS] = runs
    return runs


@pytest.fixture(scope="session")
def scenario_runs(request: pytest.FixtureRequest) -> ScenarioRuns:
    return request.config.stash[RUNS]


@pytest.mark.molecule
@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_scenario(
    scenario: Path,
    scenario_runs: ScenarioRuns,
    record_property: Callable[[str, object], None],
):
    future, log = scenario_runs.runs[scenario]
    rc, seconds = future.result()
    # the scenarios run in the background: tests/molecule/conftest.py prints each
    # one's own time at the end
    record_property(SECONDS_PROPERTY, seconds)
    if rc != 0:
        tail = log.read_text()[-6000:]
        pytest.fail(f"molecule {scenario_id(scenario)} failed:\n{tail}")
