"""Every molecule scenario of every collection role: create, converge,
idempotence, verify and destroy on real podman nodes with systemd."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "collections/ansible_collections/mlops/stack/roles"
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


@pytest.mark.molecule
@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_scenario(scenario: Path, tmp_path: Path):
    role_dir = scenario.parents[2]
    env = dict(os.environ, MLOPS_ROOT=str(ROOT), PY_COLORS="0", ANSIBLE_FORCE_COLOR="0")
    log = tmp_path / "molecule.log"
    with log.open("w") as out:
        proc = subprocess.run(
            ["molecule", "test", "-s", scenario.parent.name],
            cwd=role_dir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1500,
        )
    if proc.returncode != 0:
        tail = log.read_text()[-6000:]
        pytest.fail(f"molecule {scenario_id(scenario)} failed:\n{tail}")
