"""Processes started in a session of their own, stopped with their whole process group,
for the tests and bench/ (``mlflow server``, the benchmarked servers)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def start_in_session(
    argv: list[str], env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a process group of its own (stop_group ends
    it and its children), its output and errors into ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_group(proc: subprocess.Popen[bytes], term_wait: float, kill_wait: float = 10.0) -> None:
    """End the process group ``proc`` leads (started with ``start_new_session=True``).

    SIGTERM to the group, SIGKILL when anything of it is still there ``term_wait``
    seconds later; returns once the leader is reaped and the group is empty, or
    ``kill_wait`` seconds after the SIGKILL. A server's children (gunicorn's or
    uvicorn's workers, ``mlflow server``'s web server) go with it.
    """
    for sig, wait in ((signal.SIGTERM, term_wait), (signal.SIGKILL, kill_wait)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            # reaped first: an unreaped leader would keep its group "alive"
            if proc.poll() is not None and not group_alive(proc.pid):
                return
            time.sleep(0.1)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a pid reused by someone else's group: not ours any more
        return False
    return True
