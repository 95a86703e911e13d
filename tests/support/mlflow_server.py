"""A real ``mlflow server`` (SQLite registry, proxied artifacts), for the tests and bench/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.net import free_port, wait_http
from tests.support.process import stop_group


class MlflowServer:
    """A real `mlflow server` process with a SQLite registry and proxied artifacts.

    It runs in a session of its own and stop() ends the whole process group:
    ``mlflow server`` starts its web server as a child, which must not outlive
    the test session or the benchmark.
    """

    def __init__(
        self,
        root: Path,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.extra_args = extra_args
        # the job workers (huey) are not used by the tests and cost a core
        self.env = dict(env if env is not None else os.environ)
        self.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    mlflow_bin,
                    "server",
                    *self.extra_args,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--backend-store-uri",
                    f"sqlite:///{self.root / 'mlflow.db'}",
                    "--artifacts-destination",
                    str(self.root / "artifacts"),
                    "--serve-artifacts",
                    "--workers",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=self.env,
                start_new_session=True,
            )
        proc = self.proc
        try:
            wait_http(f"{self.url}/health", timeout, alive=lambda: proc.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"mlflow server did not start: {exc}\n{self.log_tail()}") from exc

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        stop_group(proc, term_wait=20.0)
