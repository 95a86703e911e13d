"""The backup tool's ``upgrade``, against a real MLflow registry whose schema is
an older release's: the migration keeps every version and alias, and a failed
one changes nothing.

The release-to-release upgrade, with the older MLflow installed, is the
mlflow_server role's molecule default scenario; here the older schema is made
by MLflow's own downgrade migrations.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.support.backup_tool import run_tool as tool
from tests.support.mlflow_server import MlflowServer
from tests.support.serving import register_version, set_alias, strong_forest, weak_stump

MODEL = "upgrade-iris"
# the newest schema revision of MLflow 3.16 (requirements-upgrade-from.txt)
OLDER_SCHEMA = "b7e2c1a4d9f3"  # pragma: allowlist secret (an alembic revision)
# a table the migrations after OLDER_SCHEMA create: planted first, it makes them fail
CREATED_BY_THE_MIGRATION = "job_locks"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def revision(db: Path) -> str:
    with sqlite3.connect(db) as con:
        return str(con.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def to_older_schema(db: Path) -> None:
    """Take the registry back to the older release's schema, as it would have
    written it, with MLflow's own downgrade migrations."""
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config

    command.downgrade(_get_alembic_config(f"sqlite:///{db}"), OLDER_SCHEMA)


def state(url: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    model = client.get_registered_model(MODEL)
    versions = client.search_model_versions(f"name='{MODEL}'")
    runs = {v.run_id: client.get_run(v.run_id).data for v in versions}
    return {
        "model": (model.description, model.tags, model.aliases),
        "versions": sorted((v.version, v.source, v.run_id, v.tags) for v in versions),
        "runs": {run_id: (data.params, data.metrics) for run_id, data in runs.items()},
    }


@pytest.fixture(scope="module")
def older_registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A registry with two versions, tags and two aliases, stopped, at the
    older release's schema; and its state read while it served."""
    root = tmp_path_factory.mktemp("upgrade")
    server = MlflowServer(root)
    server.start()
    try:
        from mlflow import MlflowClient

        strong = register_version(server.url, MODEL, strong_forest())
        weak = register_version(server.url, MODEL, weak_stump())
        set_alias(server.url, MODEL, strong)
        set_alias(server.url, MODEL, weak, alias="challenger")
        client = MlflowClient(tracking_uri=server.url)
        client.set_registered_model_tag(MODEL, "owner", "ml-team")
        client.set_model_version_tag(MODEL, weak, "gate", "failed")
        before = state(server.url)
    finally:
        server.stop()
    to_older_schema(root / "mlflow.db")
    return root, before


def copy_of(registry: tuple[Path, dict[str, Any]], tmp_path: Path) -> Path:
    """The module's registry, copied for one test (artifacts included)."""
    root, _ = registry
    shutil.copytree(root, tmp_path / "registry", ignore=shutil.ignore_patterns("server.log"))
    return tmp_path / "registry"


def test_the_upgrade_migrates_an_older_schema_and_keeps_every_version_and_alias(
    older_registry: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root = copy_of(older_registry, tmp_path)
    db = root / "mlflow.db"
    uri = f"sqlite:///{db}"
    done = tool("upgrade", "--backend-store-uri", uri)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["from"] == OLDER_SCHEMA
    assert report["migrated"] is True
    assert revision(db) == report["to"] != OLDER_SCHEMA
    assert not list(root.glob(".mlflow.db.upgrading*")), "the migrated copy was left behind"

    server = MlflowServer(root)
    server.start()
    try:
        assert state(server.url) == older_registry[1]
    finally:
        server.stop()

    # a second run finds nothing to do and changes nothing
    checksum = sha256(db)
    again = tool("upgrade", "--backend-store-uri", uri)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["migrated"] is False
    assert sha256(db) == checksum


def test_a_failed_migration_leaves_the_registry_as_the_older_release_wrote_it(
    older_registry: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root = copy_of(older_registry, tmp_path)
    db = root / "mlflow.db"
    with sqlite3.connect(db) as con:
        con.execute(f"CREATE TABLE {CREATED_BY_THE_MIGRATION} (lock_key TEXT)")
    con.close()
    checksum = sha256(db)

    failed = tool("upgrade", "--backend-store-uri", f"sqlite:///{db}")
    assert failed.returncode == 1
    error = failed.stderr.strip().splitlines()[-1]
    assert error.startswith("error: mlflow db upgrade failed:"), failed.stderr
    assert CREATED_BY_THE_MIGRATION in error
    assert sha256(db) == checksum, "the failed migration changed the registry"
    assert revision(db) == OLDER_SCHEMA
    assert not list(root.glob(".mlflow.db.upgrading*")), "the half-migrated copy was left behind"


def test_upgrade_names_the_store_it_needs(tmp_path: Path) -> None:
    missing = tool("upgrade")
    assert missing.returncode == 1
    assert "--backend-store-uri" in missing.stderr
    assert "MLFLOW_BACKEND_STORE_URI" in missing.stderr
