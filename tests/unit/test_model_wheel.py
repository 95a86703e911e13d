"""The controller builds the mlops_model wheel only when its sources changed."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILDER = ROOT / "roles/model_wheel/files/build_wheel.py"


def build(source: Path, dist: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, str(BUILDER), str(source), str(dist)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(proc.stdout)


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_wheel_is_rebuilt_only_when_a_source_changes(tmp_path: Path) -> None:
    source = tmp_path / "model"
    shutil.copytree(
        ROOT / "model", source, ignore=shutil.ignore_patterns("build", "__pycache__", "*.egg-info")
    )
    dist = tmp_path / "dist"

    first = build(source, dist)
    assert first["built"] is True
    first_digest = sha256(first["path"])

    again = build(source, dist)
    assert again == {"path": first["path"], "built": False}
    assert sha256(again["path"]) == first_digest

    # a byte cache or build folder is not a source
    (source / "src/mlops_model/__pycache__").mkdir(exist_ok=True)
    (source / "src/mlops_model/__pycache__/stale.pyc").write_bytes(b"\0")
    assert build(source, dist)["built"] is False

    module = source / "src/mlops_model/__init__.py"
    module.write_text(module.read_text() + "\n# changed\n")
    changed = build(source, dist)
    assert changed["built"] is True
    assert sha256(changed["path"]) != first_digest
    assert sorted(p.name for p in dist.glob("*.whl")) == [Path(changed["path"]).name]
