"""Back up, verify, restore and upgrade an MLflow registry.

One archive (``mlflow-<UTC time>.tar.gz``) holds the backend store (SQLite
through SQLite's online backup, a consistent snapshot and never a file copy
of a live database; PostgreSQL through ``pg_dump`` in custom format), the
basic-auth accounts (SQLite's online backup), the local artifact store, and a
manifest: the MLflow version, the schema revision, the number of
experiments, runs, models, versions and aliases, and the SHA-256 of every
file. ``verify`` and ``restore`` check every file against the manifest
before anything is changed. ``upgrade`` migrates the backend store's schema
to the installed MLflow's (``mlflow db upgrade``), a SQLite one on a copy that
replaces it only once the migration worked.

Standard library only, but for PostgreSQL and ``upgrade``: the role runs it
with the MLflow venv's Python (SQLAlchemy, MLflow), the controller with its
own python3 to verify an archive before it is sent anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import IO, Any

FORMAT = 1
MANIFEST = "manifest.json"
REGISTRY_DB = "registry/mlflow.db"
REGISTRY_PGDUMP = "registry/mlflow.pgdump"
AUTH_DB = "registry/basic_auth.db"
ARTIFACTS = "artifacts"
ARCHIVE_PREFIX = "mlflow-"
ARCHIVE_SUFFIX = ".tar.gz"
# the tables whose rows the manifest counts: what a user would miss first
COUNTED_TABLES = (
    "experiments",
    "experiment_tags",
    "runs",
    "params",
    "metrics",
    "tags",
    "registered_models",
    "registered_model_tags",
    "model_versions",
    "model_version_tags",
    "registered_model_aliases",
)
METRIC = "mlflow_registry_backup_last_success_timestamp_seconds"
CHUNK = 1 << 20
EXIT_FAILED = 1
EXIT_REFUSED = 3


class BackupError(Exception):
    """A failure the user can act on; the message says what and where."""


def exception_summary(exc: BaseException) -> str:
    """The exception's type and the first line of its message: a driver's or an
    uploader's message goes on for lines (SQL, stack), one line tells what failed."""
    first = next(iter(str(exc).strip().splitlines()), "")
    return f"{type(exc).__name__}: {first}"


class Refused(BackupError):
    """The target holds data and --force was not given."""


def is_postgres(uri: str) -> bool:
    return re.match(r"postgres(ql)?(\+\w+)?://", uri) is not None


def sqlite_path(uri: str) -> Path:
    """The file of a ``sqlite:///`` backend store URI (MLflow's spelling)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        scheme = uri.split(":", 1)[0]
        raise BackupError(
            f"--backend-store-uri: only a SQLite (sqlite:///PATH) or PostgreSQL backend store "
            f"can be backed up by this tool, not {scheme!r}"
        )
    # sqlite:////var/lib/mlflow/mlflow.db is an absolute path, sqlite:///mlflow.db a relative one
    return Path(uri[len(prefix) :])


def snapshot(source: Path, target: Path) -> None:
    """Copy a live SQLite database through SQLite's online backup."""
    if not source.is_file():
        raise BackupError(f"{source}: no such database")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        # one step: the read lock is held for the whole copy, so the snapshot
        # is one consistent state of the registry
        src.backup(dst)
    except sqlite3.Error as exc:
        raise BackupError(f"{source}: online backup failed: {exc}") from exc
    finally:
        dst.close()
        src.close()


def table_counts(db: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        present = {
            row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        return {
            table: con.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]  # noqa: S608 (fixed names)
            for table in COUNTED_TABLES
            if table in present
        }
    finally:
        con.close()


def schema_revision(db: Path) -> str | None:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    finally:
        con.close()
    return row[0] if row else None


def mlflow_version() -> str | None:
    for dist in ("mlflow", "mlflow-skinny"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(dist)
    return None


def holds_data(uri: str, artifacts: Path | None) -> list[str]:
    """What in the target registry a restore would lose.

    Runs, model versions, tags, a model's description and artifact files are
    data. An experiment or registered model that is only a name is not: the
    role's first converge creates those for the accounts' grants, and a host
    rebuilt after a disaster holds them before its restore.
    """
    found = []
    contents: tuple[dict[str, int], int] | None = None
    if is_postgres(uri):
        counts, described, _revision = with_postgres(uri, postgres_contents)
        contents = counts, described
    elif sqlite_path(uri).is_file():
        db = sqlite_path(uri)
        contents = table_counts(db), registered_models_with_a_description(db)
    if contents is not None:
        counts, described = contents
        for table in ("runs", "model_versions", "experiment_tags", "registered_model_tags"):
            if counts.get(table, 0):
                found.append(f"{counts[table]} {table.replace('_', ' ')}")
        if described:
            found.append(f"{described} registered models with a description")
    if artifacts is not None and artifacts.is_dir() and any(artifacts.iterdir()):
        found.append(f"files in {artifacts}")
    return found


def registered_models_with_a_description(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute(
            "SELECT COUNT(*) FROM registered_models WHERE COALESCE(description, '') != ''"
        ).fetchone()
    except sqlite3.Error:
        return 0
    finally:
        con.close()
    return int(row[0])


def libpq_environment(uri: str) -> dict[str, str]:
    """A PostgreSQL URI as libpq's variables, for pg_dump and pg_restore: the
    password stays off their command lines."""
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    query = {key: str(value) for key, value in url.query.items()}
    env = {
        "PGHOST": query.get("host", url.host or ""),
        "PGPORT": str(url.port or ""),
        "PGUSER": url.username or "",
        "PGPASSWORD": url.password or "",
        "PGDATABASE": url.database or "",
        "PGSSLMODE": query.get("sslmode", ""),
        "PGSSLROOTCERT": query.get("sslrootcert", ""),
    }
    return {name: value for name, value in env.items() if value}


def run_libpq_tool(argv: list[str], uri: str) -> None:
    """pg_dump or pg_restore against the store; its last error line on failure."""
    try:
        done = subprocess.run(
            argv,
            env={**os.environ, **libpq_environment(uri)},
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise BackupError(
            f"{argv[0]} is not installed: a PostgreSQL store needs the PostgreSQL client "
            "(Debian: postgresql-client) at least as new as the server"
        ) from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise BackupError(f"{argv[0]} failed (exit {done.returncode}): {last}")


def postgres_contents(con: Any) -> tuple[dict[str, int], int, str | None]:
    """Row counts of COUNTED_TABLES, models with a description and the schema
    revision, read through one SQLAlchemy connection."""
    import sqlalchemy

    present = set(sqlalchemy.inspect(con).get_table_names())
    counts = {
        table: int(
            con.execute(sqlalchemy.text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one()  # noqa: S608 (fixed names)
        )
        for table in COUNTED_TABLES
        if table in present
    }
    described = 0
    if "registered_models" in present:
        described = int(
            con.execute(
                sqlalchemy.text(
                    "SELECT COUNT(*) FROM registered_models WHERE COALESCE(description, '') != ''"
                )
            ).scalar_one()
        )
    revision = None
    if "alembic_version" in present:
        revision = con.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()
    return counts, described, revision


def with_postgres(uri: str, read: Any) -> Any:
    """``read(connection)`` on the store, its errors as BackupError."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.connect() as con:
            return read(con)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise BackupError(f"the backend store cannot be read: {exception_summary(exc)}") from exc
    finally:
        engine.dispose()


def dump_postgres(uri: str, target: Path) -> tuple[dict[str, int], str | None]:
    """pg_dump in custom format while MLflow serves, and the manifest's counts
    read in the very snapshot pg_dump copies (one state of the registry)."""
    import sqlalchemy

    def dump(con: Any) -> tuple[dict[str, int], str | None]:
        con.execute(sqlalchemy.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        snapshot_id = con.execute(sqlalchemy.text("SELECT pg_export_snapshot()")).scalar_one()
        counts, _described, revision = postgres_contents(con)
        # the exporting transaction stays open until pg_dump is done with its snapshot
        run_libpq_tool(
            ["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
             f"--snapshot={snapshot_id}", f"--file={target}"],
            uri,
        )  # fmt: skip
        con.rollback()
        return counts, revision

    result: tuple[dict[str, int], str | None] = with_postgres(uri, dump)
    return result


class HashingReader(io.RawIOBase):
    """Reads a file for tarfile and hashes exactly what went into the archive."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.digest.update(data)
        return data


def add_file(tar: tarfile.TarFile, path: Path, name: str) -> str:
    with path.open("rb") as stream:
        info = tar.gettarinfo(fileobj=stream, arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        reader = HashingReader(stream)
        tar.addfile(info, reader)
        return reader.digest.hexdigest()


def artifact_files(root: Path) -> Iterator[Path]:
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                yield path


def archive_name(now: dt.datetime) -> str:
    return f"{ARCHIVE_PREFIX}{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z{ARCHIVE_SUFFIX}"


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def archives(dest: Path) -> list[Path]:
    return sorted(p for p in dest.glob(f"{ARCHIVE_PREFIX}*{ARCHIVE_SUFFIX}") if p.is_file())


def backup(args: argparse.Namespace) -> Path:
    uri: str = args.backend_store_uri
    postgres = is_postgres(uri)
    db = None if postgres else sqlite_path(uri)
    dest: Path = args.dest
    if not dest.is_dir():
        raise BackupError(f"--dest: {dest} is not a directory")
    if args.artifacts is not None and not args.artifacts.is_dir():
        raise BackupError(f"--artifacts: {args.artifacts} is not a directory")
    now = dt.datetime.now(dt.UTC)
    final = dest / archive_name(now)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".backup-") as work_dir:
        work = Path(work_dir)
        if db is None:
            counts, revision = dump_postgres(uri, work / "mlflow.pgdump")
            registry, member = work / "mlflow.pgdump", REGISTRY_PGDUMP
        else:
            snapshot(db, work / "mlflow.db")
            counts, revision = table_counts(work / "mlflow.db"), schema_revision(work / "mlflow.db")
            registry, member = work / "mlflow.db", REGISTRY_DB
        if args.auth_db is not None:
            snapshot(args.auth_db, work / "basic_auth.db")
        files: dict[str, str] = {}
        partial = work / final.name
        with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
            files[member] = add_file(tar, registry, member)
            if args.auth_db is not None:
                files[AUTH_DB] = add_file(tar, work / "basic_auth.db", AUTH_DB)
            if args.artifacts is not None:
                for path in artifact_files(args.artifacts):
                    name = str(
                        PurePosixPath(ARTIFACTS, path.relative_to(args.artifacts).as_posix())
                    )
                    files[name] = add_file(tar, path, name)
            manifest = {
                "format": FORMAT,
                "created": now.isoformat(timespec="seconds"),
                "mlflow_version": mlflow_version(),
                "backend": "postgresql" if postgres else "sqlite",
                "schema_revision": revision,
                "counts": counts,
                "artifacts": args.artifacts is not None,
                "files": files,
            }
            data = json.dumps(manifest, indent=2, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(data)
            info.mtime = int(now.timestamp())
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        # nothing named like a backup exists until the archive is complete
        os.replace(partial, final)
    if args.upload_to is not None:
        # a backup is good once it is off the host too: the time of the last
        # good one is written only after the copy
        try:
            upload(final, args.upload_to)
        except Exception as exc:
            raise BackupError(
                f"{final} was written, but its copy to {args.upload_to} failed: "
                + exception_summary(exc)
            ) from exc
    for old in archives(dest)[: -args.keep]:
        old.unlink()
    if args.textfile is not None:
        write_atomically(
            args.textfile,
            f"# HELP {METRIC} Unix time of the last good backup of the MLflow registry.\n"
            f"# TYPE {METRIC} gauge\n"
            f"{METRIC} {now.timestamp():.3f}\n",
        )
    return final


def gcs_location(url: str) -> tuple[str, str]:
    """The bucket and the object name prefix of a ``gs://BUCKET[/PREFIX]`` URL."""
    bucket, _slash, prefix = url.removeprefix("gs://").partition("/")
    if not url.startswith("gs://") or not bucket:
        raise BackupError(f"--upload-to: {url!r} is not a gs://BUCKET[/PREFIX] URL")
    return bucket, prefix.strip("/")


def upload(archive: Path, url: str) -> str:
    """Copy an archive to GCS as PREFIX/NAME, never over an object of that name
    (the MLflow service account may only create objects in the bucket)."""
    from google.cloud import storage  # type: ignore[import-untyped]  # the MLflow venv's

    bucket, prefix = gcs_location(url)
    name = f"{prefix}/{archive.name}" if prefix else archive.name
    blob = storage.Client().bucket(bucket).blob(name)
    blob.upload_from_filename(str(archive), if_generation_match=0, checksum="crc32c")
    return f"gs://{bucket}/{name}"


def safe_member(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and name != ""


def read_archive(archive: Path, extract_to: Path | None = None) -> dict[str, Any]:
    """The manifest, once every file of the archive matched it; with
    ``extract_to``, the files land there as they are checked."""
    seen: dict[str, str] = {}
    manifest: dict[str, Any] | None = None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if not safe_member(member.name):
                    raise BackupError(f"{archive}: {member.name!r} would land outside the restore")
                if member.isdir():
                    continue
                if not member.isfile():
                    raise BackupError(f"{archive}: {member.name} is not a regular file")
                stream = tar.extractfile(member)
                if stream is None:
                    raise BackupError(f"{archive}: {member.name} cannot be read")
                if member.name == MANIFEST:
                    try:
                        manifest = json.loads(stream.read())
                    except ValueError as exc:
                        raise BackupError(
                            f"{archive}: {MANIFEST} is not valid JSON: {exc}"
                        ) from exc
                    continue
                digest = hashlib.sha256()
                out = None
                if extract_to is not None:
                    target = extract_to / member.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    out = target.open("wb")
                try:
                    while chunk := stream.read(CHUNK):
                        digest.update(chunk)
                        if out is not None:
                            out.write(chunk)
                finally:
                    if out is not None:
                        out.close()
                seen[member.name] = digest.hexdigest()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise BackupError(f"{archive}: truncated or not a backup archive ({exc})") from exc
    if manifest is None:
        raise BackupError(f"{archive}: {MANIFEST} is missing")
    if manifest.get("format") != FORMAT:
        raise BackupError(
            f"{archive}: {MANIFEST} has format {manifest.get('format')!r}, not {FORMAT}"
        )
    expected: dict[str, str] = manifest.get("files", {})
    for name in sorted(expected):
        if name not in seen:
            raise BackupError(f"{archive}: {name} is in the manifest but missing from the archive")
        if seen[name] != expected[name]:
            raise BackupError(f"{archive}: {name} does not match its checksum in the manifest")
    unlisted = sorted(set(seen) - set(expected))
    if unlisted:
        raise BackupError(f"{archive}: {unlisted[0]} is not in the manifest")
    if REGISTRY_DB not in expected and REGISTRY_PGDUMP not in expected:
        raise BackupError(f"{archive}: the manifest lists no {REGISTRY_DB} or {REGISTRY_PGDUMP}")
    return manifest


def swap_in(staged: Path, target: Path) -> None:
    """Put a restored file or folder in place of the target, atomically for a
    file; a folder's former content is removed only once the new one is in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if staged.is_dir():
        former = target.with_name(f".{target.name}.before-restore")
        if former.exists():
            shutil.rmtree(former)
        if target.exists():
            os.replace(target, former)
        os.replace(staged, target)
        if former.exists():
            shutil.rmtree(former)
        return
    os.replace(staged, target)
    # a journal left by the former database must not be replayed into this one
    for suffix in ("-journal", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            target.with_name(target.name + suffix).unlink()


def restore(args: argparse.Namespace) -> dict[str, Any]:
    uri: str = args.backend_store_uri
    postgres = is_postgres(uri)
    db = None if postgres else sqlite_path(uri)
    # everything is checked before the target is touched
    manifest = read_archive(args.archive)
    member = REGISTRY_PGDUMP if postgres else REGISTRY_DB
    if member not in manifest["files"]:
        raise BackupError(
            f"{args.archive}: the archive holds a {'SQLite' if postgres else 'PostgreSQL'} "
            f"registry, the target is {'PostgreSQL' if postgres else 'SQLite'}"
        )
    if args.auth_db is not None and AUTH_DB not in manifest["files"]:
        raise BackupError(
            f"{args.archive}: --auth-db given, but the archive holds no accounts database"
        )
    if args.artifacts is not None and not manifest.get("artifacts"):
        raise BackupError(
            f"{args.archive}: --artifacts given, but the archive holds no artifact store"
        )
    found = holds_data(uri, args.artifacts)
    if found and not args.force:
        where = "in PostgreSQL" if db is None else f"at {db}"
        raise Refused(
            f"the registry {where} holds data ({', '.join(found)}); restoring would replace it. "
            "Restore anyway with --force (restore.yml: -e restore_force=true)"
        )
    # staged next to the targets, so that each swap is a rename on one filesystem
    staging = args.archive.parent if db is None else db.parent
    with tempfile.TemporaryDirectory(dir=staging, prefix=".restore-") as work_dir:
        work = Path(work_dir)
        read_archive(args.archive, extract_to=work)
        if args.artifacts is not None:
            staged_artifacts = work / ARTIFACTS
            staged_artifacts.mkdir(exist_ok=True)
            if staged_artifacts.stat().st_dev != args.artifacts.parent.stat().st_dev:
                moved = Path(tempfile.mkdtemp(dir=args.artifacts.parent, prefix=".restore-"))
                shutil.move(str(staged_artifacts), moved / ARTIFACTS)
                staged_artifacts = moved / ARTIFACTS
            swap_in(staged_artifacts, args.artifacts)
            with contextlib.suppress(OSError):
                staged_artifacts.parent.rmdir()
        if args.auth_db is not None:
            swap_in(work / AUTH_DB, args.auth_db)
        if db is None:
            # one transaction: a failure leaves the database as it was
            run_libpq_tool(
                ["pg_restore", "--clean", "--if-exists", "--no-owner", "--no-privileges",
                 "--single-transaction", "--exit-on-error",
                 f"--dbname={libpq_environment(uri).get('PGDATABASE', '')}",
                 str(work / REGISTRY_PGDUMP)],
                uri,
            )  # fmt: skip
        else:
            swap_in(work / REGISTRY_DB, db)
    return manifest


def restore_and_upgrade(args: argparse.Namespace) -> dict[str, Any]:
    """A restore, then, with --upgrade, the migration of an archive from an
    older release to the installed MLflow's schema (nothing to do otherwise)."""
    manifest = restore(args)
    result: dict[str, Any] = {"restored": str(args.archive), "counts": manifest["counts"]}
    if args.upgrade:
        try:
            result["schema"] = upgrade(args)
        except BackupError as exc:
            raise BackupError(
                f"restored {args.archive} (MLflow {manifest.get('mlflow_version')}), "
                f"but its migration to the installed MLflow failed: {exc}"
            ) from exc
    return result


def inspect(args: argparse.Namespace) -> dict[str, Any]:
    db = sqlite_path(args.backend_store_uri)
    if not db.is_file():
        raise BackupError(f"{db}: no such database")
    return {"schema_revision": schema_revision(db), "counts": table_counts(db)}


def store_revision(uri: str) -> str | None:
    """The schema revision of a backend store; None before MLflow created it."""
    if uri.startswith("sqlite:"):
        db = sqlite_path(uri)
        return schema_revision(db) if db.is_file() else None
    revision: str | None = with_postgres(uri, lambda con: postgres_contents(con)[2])
    return revision


def installed_head() -> str:
    """The newest schema revision the installed MLflow knows."""
    from importlib.util import find_spec

    from alembic.script import ScriptDirectory

    spec = find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        raise BackupError("MLflow is not installed beside this interpreter")
    migrations = Path(next(iter(spec.submodule_search_locations)), "store", "db_migrations")
    head = ScriptDirectory(str(migrations)).get_current_head()
    if head is None:
        raise BackupError(f"{migrations}: no schema revision found")
    return head


def migrate(uri: str) -> None:
    """``mlflow db upgrade`` in this process: a database server's URI, which
    holds its password, stays off every command line."""
    from mlflow.db import commands

    try:
        commands.main(args=["upgrade", uri], standalone_mode=False)
    # whatever stopped the migration (SQL, alembic, a disk), the user reads it
    except Exception as exc:
        # one line: SQLAlchemy appends the statement and a link on lines of their own
        first = next(iter(str(exc).strip().splitlines()), "")
        raise BackupError(f"mlflow db upgrade failed: {type(exc).__name__}: {first}") from exc


def upgrade(args: argparse.Namespace) -> dict[str, Any]:
    """Migrate the stopped registry's schema to the installed MLflow's.

    MLflow's migrations are not transactional: a SQLite store is migrated on
    a copy beside it, which replaces it by a rename only once the migration
    reached the installed head. A failure leaves the store as it was."""
    uri: str = args.backend_store_uri
    before = store_revision(uri)
    head = installed_head()
    result: dict[str, Any] = {"from": before, "to": head, "mlflow_version": mlflow_version()}
    if before is None or before == head:
        return {**result, "to": before, "migrated": False}
    if not uri.startswith("sqlite:"):
        migrate(uri)
        after = store_revision(uri)
    else:
        db = sqlite_path(uri)
        staged = db.with_name(f".{db.name}.upgrading")
        staged.unlink(missing_ok=True)
        try:
            snapshot(db, staged)
            migrate(f"sqlite:///{staged}")
            after = schema_revision(staged)
            if after == head:
                shutil.copymode(db, staged)
                swap_in(staged, db)
        finally:
            staged.unlink(missing_ok=True)
    if after != head:
        left = before if uri.startswith("sqlite:") else after
        raise BackupError(
            f"the migration ended at schema revision {after!r}, not {head!r}; "
            f"the registry was left at {left!r}"
        )
    return {**result, "migrated": True}


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = main.add_subparsers(dest="command", required=True)

    def store(p: argparse.ArgumentParser) -> None:
        # from the environment by default: a database server's URI holds its password
        p.add_argument(
            "--backend-store-uri",
            default=os.environ.get("MLFLOW_BACKEND_STORE_URI"),
            help="sqlite:///PATH or postgresql://... (default: $MLFLOW_BACKEND_STORE_URI)",
        )

    p = sub.add_parser("backup", help="write a new archive while MLflow serves")
    store(p)
    p.add_argument("--auth-db", type=Path, help="the basic-auth accounts database")
    p.add_argument("--artifacts", type=Path, help="the local artifact store")
    p.add_argument("--dest", type=Path, required=True, help="folder of the archives")
    p.add_argument("--keep", type=int, default=7, help="how many archives to keep (>= 1)")
    p.add_argument("--textfile", type=Path, help="write the time of this good backup here")
    p.add_argument(
        "--upload-to", help="also copy the archive to gs://BUCKET[/PREFIX] (Google Cloud Storage)"
    )

    p = sub.add_parser("verify", help="check every file of an archive against its manifest")
    p.add_argument("archive", type=Path)

    p = sub.add_parser("restore", help="replace a stopped registry with an archive")
    p.add_argument("archive", type=Path)
    store(p)
    p.add_argument("--auth-db", type=Path)
    p.add_argument("--artifacts", type=Path)
    p.add_argument("--force", action="store_true", help="replace a registry that holds data")
    p.add_argument(
        "--upgrade",
        action="store_true",
        help="then migrate it to the installed MLflow's schema (an archive of an older release)",
    )

    p = sub.add_parser("inspect", help="the schema revision and row counts of a registry")
    store(p)

    p = sub.add_parser(
        "upgrade", help="migrate a stopped registry to the installed MLflow's schema"
    )
    store(p)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # What it writes is the registry's, as MLflow's own unit writes it (UMask=0027):
    # a restored database or artifact is never readable by other users.
    os.umask(0o027)
    try:
        if args.command != "verify" and not args.backend_store_uri:
            raise BackupError(
                "--backend-store-uri: not given, and MLFLOW_BACKEND_STORE_URI is not set"
            )
        if args.command == "backup":
            if args.keep < 1:
                raise BackupError("--keep: must be at least 1")
            if args.upload_to is not None:
                gcs_location(args.upload_to)
            print(backup(args))
        elif args.command == "verify":
            manifest = read_archive(args.archive)
            print(
                json.dumps(
                    {
                        k: manifest[k]
                        for k in ("created", "mlflow_version", "schema_revision", "counts")
                    }
                )
            )
        elif args.command == "restore":
            print(json.dumps(restore_and_upgrade(args)))
        elif args.command == "upgrade":
            print(json.dumps(upgrade(args)))
        else:
            print(json.dumps(inspect(args)))
    except Refused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
