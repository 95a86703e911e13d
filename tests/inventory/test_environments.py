"""The lab runs the production settings: every variable whose effective value
differs between inventories/local and inventories/gcp is listed, with its
reason, in docs/environments.md, and every listed one really differs.

The GCP side is a static stand-in for the gcp_compute plugin
(tests/support/gcp.py): host data shaped like the plugin's, run through
gcp.yml's own `groups` and `compose`, beside the real inventories/gcp/group_vars.
Both sides are read by `ansible-inventory` with the playbooks' own group_vars,
as ansible-playbook reads them; values are compared as written.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.gcp import HOSTS, constructed_inventory

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "inventories" / "local"
GCP = ROOT / "inventories" / "gcp"
TABLE = ROOT / "docs" / "environments.md"


def inventory_listing(inventory: Path) -> dict[str, Any]:
    """`ansible-inventory --list`, with the playbooks' own group_vars."""
    cli = Path(sys.executable).with_name("ansible-inventory")
    # facts gathered by earlier runs are no setting: keep the fact cache out
    env = dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED="true", ANSIBLE_CACHE_PLUGIN="memory")
    proc = subprocess.run(
        [str(cli), "-i", str(inventory), "--playbook-dir", str(ROOT / "playbooks"), "--list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(proc.stdout)


def effective_vars(inventory: Path) -> dict[str, dict[str, Any]]:
    """The variables of the first host of each role group."""
    data = inventory_listing(inventory)
    # the stand-in hands compose the raw API fields; the plugin keeps only their
    # prefixed copies (gcp_name, gcp_zone, ...)
    raw_fields = set().union(*(fields.keys() for fields in HOSTS.values()))
    hostvars = {
        host: {key: value for key, value in variables.items() if key not in raw_fields}
        for host, variables in data["_meta"]["hostvars"].items()
    }
    role_groups = yaml.safe_load((GCP / "gcp.yml").read_text())["groups"]
    return {group: hostvars[sorted(data[group]["hosts"])[0]] for group in role_groups}


def listed() -> dict[str, str]:
    """Variable name (or glob) -> reason, from the table's rows."""
    rows = re.findall(r"^\|\s*`([^`]+)`\s*\|(.*)\|\s*$", TABLE.read_text(), re.M)
    return {name: reason.strip() for name, reason in rows}


def differences(
    local: dict[str, dict[str, Any]], gcp: dict[str, dict[str, Any]]
) -> dict[str, set[str]]:
    """Variable -> the groups in which its value differs (or is set on one side only)."""
    found: dict[str, set[str]] = {}
    for group in local:
        keys = set(local[group]) | set(gcp[group])
        for key in keys:
            mine, theirs = local[group].get(key, "<unset>"), gcp[group].get(key, "<unset>")
            if json.dumps(mine, sort_keys=True) != json.dumps(theirs, sort_keys=True):
                found.setdefault(key, set()).add(group)
    return found


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    standin = constructed_inventory(tmp_path_factory.mktemp("gcp"))
    return differences(effective_vars(LOCAL), effective_vars(standin))


def test_every_difference_is_listed_with_a_reason(found: dict[str, set[str]]) -> None:
    table = listed()
    unlisted = {
        key: sorted(groups)
        for key, groups in found.items()
        if not any(fnmatch.fnmatchcase(key, pattern) for pattern in table)
    }
    assert not unlisted, (
        f"variables that differ between inventories/local and inventories/gcp but are "
        f"not in {TABLE.relative_to(ROOT)}: {unlisted}"
    )
    assert all(reason.strip(" |") for reason in table.values()), "a listed row has no reason"


def test_every_listed_difference_is_real(found: dict[str, set[str]]) -> None:
    stale = [
        pattern
        for pattern in listed()
        if not any(fnmatch.fnmatchcase(key, pattern) for key in found)
    ]
    assert not stale, f"{TABLE.relative_to(ROOT)} lists variables that no longer differ: {stale}"


def test_the_lab_runs_mlflow_with_accounts(found: dict[str, set[str]]) -> None:
    # the production switches are shared, never an inventory's own
    for key in (
        "mlflow_server_auth_enabled",
        "mlflow_server_accounts",
        "predictor_tracking_password",
    ):
        assert key not in found, f"{key} differs between the lab and GCP"


def test_the_lab_is_reached_over_ssh_with_pipelining() -> None:
    """`ansible-inventory -i inventories/local --host NODE`: SSH, as on GCP,
    never the podman connection."""
    listing = inventory_listing(LOCAL)
    hostvars = listing["_meta"]["hostvars"]
    assert hostvars, "no local nodes"
    for host, variables in hostvars.items():
        assert variables["ansible_connection"] in {"ssh", "ansible.builtin.ssh"}, host
        assert variables["ansible_ssh_pipelining"] is True, host
