"""The registry's backup tool (the mlflow_server role's files/mlflow_backup.py),
run as the role runs it: a process of its own, with this interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOL = (
    ROOT / "collections/ansible_collections/mlops/stack/roles/mlflow_server/files/mlflow_backup.py"
)


def run_tool(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
