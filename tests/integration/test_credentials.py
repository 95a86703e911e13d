"""The lab's credentials stay where only root reads them, on every node that holds one.

The services get their accounts from a root-only environment file: no password or
key from ``credentials/`` shows in what any local user sees (``systemctl show``,
``ps``) or in the unit's journal.
"""

from __future__ import annotations

import pytest

from .conftest import ROOT, Stack, podman_exec

pytestmark = pytest.mark.nodes

# node, unit, the account its environment file names (None: the server's own)
UNITS = (
    ("mlflow-1", "mlflow", None),
    ("predictor-1", "predictor", "reader"),
    ("predictor-2", "predictor", "reader"),
)


def lab_secrets() -> dict[str, str]:
    secrets = {p.name: p.read_text().strip() for p in (ROOT / "credentials").glob("mlflow_*")}
    assert {"mlflow_admin_password", "mlflow_reader_password", "mlflow_secret_key"} <= set(secrets)
    return secrets


def shown(node: str, *cmd: str) -> str:
    proc = podman_exec(node, *cmd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize(("node", "unit", "account"), UNITS, ids=[f"{n}:{u}" for n, u, _ in UNITS])
def test_credentials_are_in_a_root_only_file_and_nowhere_else(
    local_stack: Stack, node: str, unit: str, account: str | None
) -> None:
    env_file = f"/etc/default/{unit}"
    assert shown(node, "stat", "-c", "%U %G %a", env_file).split() == ["root", "root", "600"]
    assert env_file in shown(node, "systemctl", "show", "-p", "EnvironmentFiles", unit)
    if account is not None:
        assert f'MLFLOW_TRACKING_USERNAME="{account}"' in shown(node, "cat", env_file).splitlines()
    visible = {
        "systemctl show": shown(node, "systemctl", "show", unit),
        "ps": shown(node, "ps", "-eo", "args"),
        "journal": shown(node, "journalctl", "-u", unit, "--no-pager", "-o", "cat"),
    }
    leaks = [
        f"{name} in {where}"
        for name, secret in lab_secrets().items()
        for where, text in visible.items()
        if secret in text
    ]
    assert not leaks, leaks
