"""Build the mlops_model wheel, unless the one in the dist folder was built from these sources.

Prints JSON: the wheel's path and whether it was built now. The sources'
digest is kept beside the wheel; pip runs only when it differs, so a run
that changed no source spends no time on the build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

STAMP = "source.sha256"
SKIPPED_PARTS = {"__pycache__", "build"}


def source_digest(source: Path) -> str:
    digest = hashlib.sha256()
    files = [source / "pyproject.toml", *sorted((source / "src").rglob("*"))]
    for path in files:
        relative = path.relative_to(source)
        if not path.is_file() or SKIPPED_PARTS & set(relative.parts):
            continue
        if any(part.endswith(".egg-info") for part in relative.parts):
            continue
        digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def current_wheel(dist: Path, digest: str) -> Path | None:
    stamp = dist / STAMP
    wheels = sorted(dist.glob("mlops_model-*.whl"))
    if len(wheels) == 1 and stamp.is_file() and stamp.read_text().strip() == digest:
        return wheels[0]
    return None


def build(source: Path, dist: Path, digest: str) -> Path:
    shutil.rmtree(source / "build", ignore_errors=True)
    shutil.rmtree(dist, ignore_errors=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(dist),
            str(source),
        ],
        check=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},  # byte-identical rebuilds
    )
    (wheel,) = dist.glob("mlops_model-*.whl")
    (dist / STAMP).write_text(digest + "\n")
    return wheel


def main(source_arg: str, dist_arg: str) -> int:
    source, dist = Path(source_arg).resolve(), Path(dist_arg).resolve()
    digest = source_digest(source)
    wheel = current_wheel(dist, digest)
    built = wheel is None
    if wheel is None:
        wheel = build(source, dist, digest)
    print(json.dumps({"path": str(wheel), "built": built}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
