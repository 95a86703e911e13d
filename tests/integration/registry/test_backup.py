"""The registry's backup tool against a real MLflow server that keeps serving and
taking writes: the restore is identical, a damaged archive changes nothing."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
import stat
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.backup_tool import run_tool as tool
from tests.support.mlflow_server import MlflowServer
from tests.support.serving import register_version, set_alias, strong_forest, weak_stump

EXPERIMENT = "backup-proof"
MODEL = "backup-iris"
WRITER_METRIC = "written_during_backup"


def store_args(root: Path) -> list[str]:
    return [
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts",
        str(root / "artifacts"),
    ]


def checksums(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def registry_state(url: str) -> dict[str, Any]:
    """Everything a user reads back from the registry about this test's
    experiment and model, artifact checksums included."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = {}
    for run in client.search_runs([experiment.experiment_id], max_results=1000):
        artifacts = {}
        for path in walk_artifacts(client, run.info.run_id):
            local = client.download_artifacts(run.info.run_id, path)
            artifacts[path] = hashlib.sha256(Path(local).read_bytes()).hexdigest()
        runs[run.info.run_id] = {
            "name": run.info.run_name,
            "status": run.info.status,
            "times": (run.info.start_time, run.info.end_time),
            "params": run.data.params,
            "tags": run.data.tags,
            "metrics": {
                key: [
                    (m.step, m.value, m.timestamp)
                    for m in client.get_metric_history(run.info.run_id, key)
                ]
                for key in run.data.metrics
            },
            "artifacts": artifacts,
        }
    model = client.get_registered_model(MODEL)
    versions = {
        v.version: {"source": v.source, "run_id": v.run_id, "tags": v.tags, "status": v.status}
        for v in client.search_model_versions(f"name='{MODEL}'")
    }
    return {
        "experiment": (experiment.name, experiment.tags, experiment.lifecycle_stage),
        "runs": runs,
        "model": (model.name, model.description, model.tags, model.aliases),
        "versions": versions,
    }


def walk_artifacts(client: Any, run_id: str, path: str | None = None) -> Iterator[str]:
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            yield from walk_artifacts(client, run_id, info.path)
        else:
            yield info.path


@pytest.fixture(scope="module")
def populated(mlflow_server: MlflowServer) -> MlflowServer:
    """An experiment with runs (params, stepped metrics, tags, an artifact) and a
    model with two tagged versions and an alias, on the session's server."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    client = MlflowClient(tracking_uri=mlflow_server.url)
    experiment = client.create_experiment(EXPERIMENT, tags={"team": "platform"})
    with _use_tracking_uri(mlflow_server.url):
        for seed in range(2):
            with mlflow.start_run(experiment_id=experiment, run_name=f"run-{seed}"):
                mlflow.log_params({"seed": seed, "depth": 3 + seed})
                for step in range(5):
                    mlflow.log_metric("loss", 1.0 / (step + 1 + seed), step=step)
                mlflow.set_tags({"purpose": "backup proof"})
                mlflow.log_text(f"notes of run {seed}\n", "notes/readme.txt")
    strong = register_version(mlflow_server.url, MODEL, strong_forest())
    weak = register_version(mlflow_server.url, MODEL, weak_stump())
    set_alias(mlflow_server.url, MODEL, strong)
    client.set_registered_model_tag(MODEL, "owner", "ml-team")
    client.set_model_version_tag(MODEL, weak, "gate", "failed")
    return mlflow_server


def metric_writer(url: str, stop: threading.Event) -> tuple[threading.Thread, str]:
    """Logs one step after another to a run of the experiment until stopped."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    run_id = client.create_run(experiment.experiment_id, run_name="writer").info.run_id

    def write() -> None:
        step = 0
        while not stop.is_set():
            client.log_metric(run_id, WRITER_METRIC, float(step), step=step)
            step += 1

    return threading.Thread(target=write, daemon=True), run_id


def test_restore_gives_back_the_registry_as_it_was_while_it_took_writes(
    populated: MlflowServer, tmp_path: Path
):
    dest = tmp_path / "backups"
    dest.mkdir()
    stop = threading.Event()
    writer, writer_run = metric_writer(populated.url, stop)
    writer.start()
    try:
        result = tool("backup", *store_args(populated.root), "--dest", dest, "--keep", "3",
                      "--textfile", dest / "backup.prom")  # fmt: skip
    finally:
        stop.set()
        writer.join(timeout=30)
    assert result.returncode == 0, result.stderr
    archive = Path(result.stdout.strip().splitlines()[-1])
    assert archive.parent == dest
    assert archive.is_file()
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == sorted(
        [archive.name, "backup.prom"]
    ), "nothing half-written is left beside the archive"
    assert (
        "mlflow_registry_backup_last_success_timestamp_seconds "
        in (dest / "backup.prom").read_text()
    )
    before = registry_state(populated.url)

    restored_root = tmp_path / "restored"
    restored_root.mkdir()
    result = tool("restore", archive, *store_args(restored_root))
    assert result.returncode == 0, result.stderr
    # as MLflow's unit writes them (UMask=0027), so a converge finds nothing to change
    assert stat.S_IMODE((restored_root / "artifacts").stat().st_mode) == 0o750
    assert stat.S_IMODE((restored_root / "mlflow.db").stat().st_mode) == 0o640
    restored = MlflowServer(restored_root)
    restored.start()
    try:
        after = registry_state(restored.url)
    finally:
        restored.stop()

    # the writer kept logging after the snapshot: the restore holds a prefix of its
    # steps with no gap, and everything else exactly as it was
    written = before["runs"].pop(writer_run)["metrics"][WRITER_METRIC]
    snapshot = after["runs"].pop(writer_run)["metrics"].get(WRITER_METRIC, [])
    assert snapshot == written[: len(snapshot)]
    assert after == before
    manifest = json.loads(tool("verify", archive).stdout)
    assert manifest["counts"]["registered_model_aliases"] >= 1
    assert manifest["schema_revision"]


@pytest.fixture
def archive(populated: MlflowServer, tmp_path: Path) -> Path:
    dest = tmp_path / "backups"
    dest.mkdir()
    result = tool("backup", *store_args(populated.root), "--dest", dest)
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def live_target(archive: Path, tmp_path: Path) -> Path:
    """A registry that holds data: the archive restored once."""
    target = tmp_path / "target"
    target.mkdir()
    assert tool("restore", archive, *store_args(target)).returncode == 0
    return target


def tamper(archive: Path, out: Path, victim_prefix: str) -> str:
    """Copy of the archive with one byte of one file changed, the manifest kept."""
    with tarfile.open(archive, "r:gz") as src, tarfile.open(out, "w:gz") as dst:
        victim = next(
            m.name for m in src.getmembers() if m.name.startswith(victim_prefix) and m.isfile()
        )
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name == victim and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            dst.addfile(member, None if data is None else io.BytesIO(data))
    return victim


@pytest.mark.parametrize("victim_prefix", ["artifacts/", "registry/mlflow.db"])
def test_a_tampered_archive_is_refused_naming_the_file_and_nothing_changes(
    archive: Path, live_target: Path, tmp_path: Path, victim_prefix: str
):
    bad = tmp_path / "tampered.tar.gz"
    victim = tamper(archive, bad, victim_prefix)
    before = checksums(live_target)

    verified = tool("verify", bad)
    assert verified.returncode == 1
    assert f"{victim} does not match its checksum" in verified.stderr
    restored = tool("restore", bad, *store_args(live_target), "--force")
    assert restored.returncode == 1
    assert victim in restored.stderr
    assert checksums(live_target) == before


def test_a_truncated_archive_is_refused_and_nothing_changes(
    archive: Path, live_target: Path, tmp_path: Path
):
    cut = tmp_path / "truncated.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    before = checksums(live_target)

    result = tool("restore", cut, *store_args(live_target), "--force")
    assert result.returncode == 1
    assert "truncated" in result.stderr
    assert checksums(live_target) == before


def test_restore_refuses_a_registry_that_holds_data_unless_forced(archive: Path, live_target: Path):
    (live_target / "artifacts" / "marker.txt").write_text("written after the restore\n")
    before = checksums(live_target)

    refused = tool("restore", archive, *store_args(live_target))
    assert refused.returncode == 3
    assert "holds data" in refused.stderr
    assert "restore_force=true" in refused.stderr
    assert checksums(live_target) == before

    forced = tool("restore", archive, *store_args(live_target), "--force")
    assert forced.returncode == 0, forced.stderr
    assert not (live_target / "artifacts" / "marker.txt").exists()


def test_a_failed_backup_leaves_the_previous_ones_and_keep_prunes_the_oldest(
    populated: MlflowServer, tmp_path: Path
):
    dest = tmp_path / "backups"
    dest.mkdir()
    made = []
    for _ in range(3):
        result = tool("backup", *store_args(populated.root), "--dest", dest, "--keep", "2",
                      "--textfile", dest / "backup.prom")  # fmt: skip
        assert result.returncode == 0, result.stderr
        made.append(Path(result.stdout.strip().splitlines()[-1]).name)
    assert sorted(p.name for p in dest.glob("mlflow-*.tar.gz")) == made[1:]
    good = checksums(dest)

    failed = tool("backup", "--backend-store-uri", f"sqlite:///{tmp_path / 'missing.db'}",
                  "--dest", dest, "--keep", "2", "--textfile", dest / "backup.prom")  # fmt: skip
    assert failed.returncode == 1
    assert "missing.db: no such database" in failed.stderr
    assert checksums(dest) == good, "the good archives and the last-success time stay as they were"


def test_a_backend_store_it_cannot_back_up_is_named(tmp_path: Path):
    result = tool("backup", "--backend-store-uri", "mysql://mlflow@db/mlflow", "--dest", tmp_path)
    assert result.returncode == 1
    assert "--backend-store-uri" in result.stderr
    assert "'mysql'" in result.stderr


def strip_registry(db: Path, keep: str = "", description: str = "") -> None:
    """Empty the tables a restore would lose, but ``keep``; set every model's description."""
    con = sqlite3.connect(db)
    with con:
        for table in ("runs", "model_versions", "experiment_tags", "registered_model_tags"):
            if table != keep:
                con.execute(f'DELETE FROM "{table}"')
        con.execute("UPDATE registered_models SET description = ?", (description,))
    con.close()


def test_a_rebuilt_host_whose_registry_holds_only_names_is_restored_without_force(
    archive: Path, live_target: Path
):
    """A rebuilt MLflow host's first converge creates the experiment and the
    registered model that the accounts' grants name, empty: no data to lose.
    One run, or one model's description, is data."""
    shutil.rmtree(live_target / "artifacts")
    (live_target / "artifacts").mkdir()
    db = live_target / "mlflow.db"
    for keep, description in (("runs", ""), ("", "kept by hand")):
        strip_registry(db, keep, description)
        refused = tool("restore", archive, *store_args(live_target))
        assert refused.returncode == 3, (keep, description, refused.stderr)
        assert "holds data" in refused.stderr

    strip_registry(db)
    restored = tool("restore", archive, *store_args(live_target))
    assert restored.returncode == 0, restored.stderr
