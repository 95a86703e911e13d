"""The venv of the inference clients (``requirements-clients.txt``).

kserve pins fastapi, pydantic, protobuf and numpy versions of its own; in the project
venv they would move what mlflow and schemathesis need. So the clients get a venv of
their own, built the first time a test needs it and reused after, by every checkout of
this machine (a fresh clone in CI too): it lives in the machine's cache (``$MLOPS_CACHE``,
see scripts/env.sh) under a name made of the hash of the requirements file and of the
interpreter. A stamp in the venv holds that hash; a venv without it (a build that stopped
half-way) is built again from scratch, and venvs of other hashes are removed once a new
one is built. A file lock keeps two test processes (pytest-xdist) from building at once.

Run as ``python -m tests.support.clients_venv`` it builds (or finds) the venv and
prints its python.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements-clients.txt"
CACHE = Path(os.environ.get("MLOPS_CACHE") or Path.home() / ".cache" / "mlops-stack")
PREFIX = "clients-venv-"
STAMP_NAME = ".requirements.sha256"
BUILD_TIMEOUT = 1200


@dataclass(frozen=True)
class ClientsVenv:
    python: Path
    # seconds the build took; None when a venv built earlier was reused
    built_in: float | None
    size_mib: float


def wanted_stamp(requirements: Path, python: str) -> str:
    digest = hashlib.sha256(requirements.read_bytes())
    # a venv is bound to its interpreter: another Python means another venv
    digest.update(Path(python).resolve().as_posix().encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def size_mib(path: Path) -> float:
    files = (p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return sum(p.stat().st_size for p in files) / 2**20


def ensure(
    cache: Path = CACHE, requirements: Path = REQUIREMENTS, python: str = sys.executable
) -> ClientsVenv:
    """The clients venv, built when missing or stale; raises CalledProcessError on failure."""
    cache.mkdir(parents=True, exist_ok=True)
    want = wanted_stamp(requirements, python)
    venv = cache / f"{PREFIX}{want[:16]}"
    stamp = venv / STAMP_NAME
    with open(cache / f"{PREFIX}lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built_in = None
        if not (stamp.is_file() and stamp.read_text().strip() == want):
            start = time.monotonic()
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
            subprocess.run(
                [*pip, "install", "--quiet", "-r", str(requirements)],
                check=True,
                timeout=BUILD_TIMEOUT,
            )
            # written last: a venv without it is a build that did not finish
            stamp.write_text(want + "\n")
            built_in = time.monotonic() - start
            for old in cache.glob(f"{PREFIX}*"):
                if old.is_dir() and old != venv:
                    shutil.rmtree(old, ignore_errors=True)
    return ClientsVenv(venv / "bin" / "python", built_in, size_mib(venv))


def main() -> int:
    found = ensure()
    how = "reused" if found.built_in is None else f"built in {found.built_in:.0f} s"
    print(f"{found.python} ({how}, {found.size_mib:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
