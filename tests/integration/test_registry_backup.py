"""backup.yml and restore.yml on the lab's MLflow host while the predictors serve
through the gateway: a refused restore changes nothing, a forced one gives the
registry back as it was at the backup, and no prediction fails meanwhile."""

from __future__ import annotations

import tarfile
import time

import pytest

from tests.support.lab_http import get_json, prom_query, wait_until
from tests.support.load import gateway_load
from tests.support.registry_state import mlflow_call, registry_dump

from .conftest import ROOT, Stack, ansible_playbook

pytestmark = pytest.mark.nodes

BACKUP_METRIC = "mlflow_registry_backup_last_success_timestamp_seconds"


def champion() -> str:
    model = mlflow_call("registered-models/get?name=iris")["registered_model"]
    return next(a["version"] for a in model["aliases"] if a["alias"] == "champion")


def test_restore_refuses_then_gives_back_the_registry_while_predictions_flow(
    local_stack: Stack,
):
    ansible_playbook("playbooks/backup.yml")
    archive = sorted((ROOT / "backups" / "mlflow-1").glob("mlflow-*.tar.gz"))[-1]
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    # the lab runs with accounts and local artifacts: both are in the archive
    assert {"manifest.json", "registry/mlflow.db", "registry/basic_auth.db"} <= names
    assert any(name.startswith("artifacts/") for name in names)
    at_backup = registry_dump()
    serving = champion()

    # a change after the backup, for the restore to undo (the lab's runs and
    # versions are what make the registry one a restore refuses to replace)
    mlflow_call("experiments/create", {"name": f"made-after-the-backup-{time.time_ns()}"})
    changed = registry_dump()
    assert changed != at_backup

    with gateway_load(expected_versions={serving}, rate=20, duration=600, threads=8) as load:
        refused = ansible_playbook("playbooks/restore.yml", check=False)
        assert refused.failed.get("mlflow-1"), refused.output[-3000:]
        assert "Restore refused" in refused.output
        assert "restore_force=true" in refused.output
        assert registry_dump() == changed, "a refused restore changes nothing"

        ansible_playbook(
            "playbooks/restore.yml",
            "-e", "restore_force=true",
            "-e", f"restore_archive={archive.relative_to(ROOT)}",
        )  # fmt: skip
        assert registry_dump() == at_backup
        # the restored files are the role's as it left them: a converge changes nothing
        recap = ansible_playbook("playbooks/mlflow.yml")
        assert recap.changed.get("mlflow-1") == 0, recap.output[-3000:]
    problems = load.result.problems(p99_limit=1.0, max_limit=5.0)
    assert not problems, "; ".join(problems)


def test_prometheus_watches_the_last_good_backup(local_stack: Stack):
    """The first converge took a backup; its time reached Prometheus through the
    node exporter's textfile collector, and RegistryBackupStale watches it, quiet."""
    (sample,) = wait_until(
        lambda: prom_query(
            'mlflow_registry_backup_last_success_timestamp_seconds{instance=~"mlflow-1:.*"}'
        ),
        timeout=90,
        what="the backup time in Prometheus",
    )
    assert time.time() - float(sample["value"][1]) < 24 * 3600
    groups = get_json("http://127.0.0.1:9090/api/v1/rules")["data"]["groups"]
    (rule,) = (r for g in groups for r in g["rules"] if r["name"] == "RegistryBackupStale")
    assert rule["state"] == "inactive"
