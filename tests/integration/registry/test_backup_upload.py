"""The backup tool's copy of each archive to a GCS bucket (``--upload-to``), the
off-host copy of a GCP deployment.

GCS itself is out of reach here: a local GCS emulator (gcp-storage-emulator,
which speaks the JSON API the google-cloud-storage client uses) stands in for
the bucket. What this proves is the tool's side: the object's name and bytes,
that a backup whose copy failed is not reported good, and that it removes no
older archive. The bucket's access rules are Terraform's
(tests/terraform/test_terraform.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backup_tool import run_tool
from tests.support.net import free_port, wait_http
from tests.support.process import stop_group

BUCKET = "registry-backups"


@pytest.fixture(scope="module")
def gcs() -> Iterator[str]:
    """The emulator's address, with an empty BUCKET."""
    port = free_port()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gcp-storage-emulator")),
            "start", "--host", "127.0.0.1", "--port", str(port),
            "--in-memory", "--quiet", "--default-bucket", BUCKET,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/storage/v1/b/{BUCKET}", 30, alive=lambda: proc.poll() is None)
        yield url
    finally:
        stop_group(proc, term_wait=10)


def bucket_objects(gcs: str) -> dict[str, bytes]:
    from google.cloud import storage  # type: ignore[import-untyped]

    os.environ["STORAGE_EMULATOR_HOST"] = gcs
    try:
        blobs = storage.Client().bucket(BUCKET).list_blobs()
        return {blob.name: blob.download_as_bytes() for blob in blobs}
    finally:
        del os.environ["STORAGE_EMULATOR_HOST"]


def backup(
    registry: Path, upload_to: str, gcs: str, keep: int = 7
) -> subprocess.CompletedProcess[str]:
    return run_tool(
        "backup",
        "--backend-store-uri", f"sqlite:///{registry / 'mlflow.db'}",
        "--dest", registry / "backups", "--keep", str(keep),
        "--textfile", registry / "backup.prom",
        "--upload-to", upload_to,
        env=dict(os.environ, STORAGE_EMULATOR_HOST=gcs),
    )  # fmt: skip


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        con.execute("CREATE TABLE experiments (experiment_id INTEGER, name TEXT)")
        con.execute("INSERT INTO experiments VALUES (1, 'iris')")
    con.close()
    (tmp_path / "backups").mkdir()
    return tmp_path


def test_each_archive_lands_in_the_bucket_under_the_prefix(gcs: str, registry: Path) -> None:
    done = backup(registry, f"gs://{BUCKET}/mlflow-1", gcs)
    assert done.returncode == 0, done.stderr
    archive = Path(done.stdout.strip())
    objects = bucket_objects(gcs)
    name = f"mlflow-1/{archive.name}"
    assert name in objects, sorted(objects)
    assert hashlib.sha256(objects[name]).digest() == hashlib.sha256(archive.read_bytes()).digest()
    assert (registry / "backup.prom").is_file(), "a copied backup is a good one"


def test_a_failed_copy_is_not_a_good_backup_and_removes_nothing(gcs: str, registry: Path) -> None:
    first = backup(registry, f"gs://{BUCKET}/mlflow-1", gcs, keep=1)
    assert first.returncode == 0, first.stderr
    good_time = (registry / "backup.prom").read_text()

    failed = backup(registry, "gs://no-such-bucket/mlflow-1", gcs, keep=1)
    assert failed.returncode == 1
    error = failed.stderr.strip()
    assert "was written, but its copy to gs://no-such-bucket/mlflow-1 failed" in error, error
    # one line that names the error's type, not the client library's whole message
    assert len(error.splitlines()) == 1, error
    assert re.search(r"failed: [A-Za-z]+: \S", error), error
    # the last good time stays the older one, so RegistryBackupStale can fire
    assert (registry / "backup.prom").read_text() == good_time
    # with --keep 1 a good backup would have removed the first archive
    kept = sorted(p.name for p in (registry / "backups").glob("mlflow-*.tar.gz"))
    assert Path(first.stdout.strip()).name in kept, kept
    assert len(kept) == 2, kept


def test_an_upload_url_that_is_not_gcs_is_refused_before_any_backup(
    gcs: str, registry: Path
) -> None:
    refused = backup(registry, "s3://bucket/prefix", gcs)
    assert refused.returncode == 1
    assert "--upload-to: 's3://bucket/prefix' is not a gs://BUCKET[/PREFIX] URL" in refused.stderr
    assert not list((registry / "backups").iterdir())
