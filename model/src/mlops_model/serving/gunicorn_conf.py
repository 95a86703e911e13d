"""gunicorn configuration of the predictor: ``gunicorn -c python:mlops_model.serving.gunicorn_conf
mlops_model.serving.wsgi:app``.

Settings come from environment variables (defaults in brackets):
``PREDICTOR_BIND`` [127.0.0.1:5001], ``PREDICTOR_WORKERS`` [2], ``PREDICTOR_THREADS`` [1],
``PREDICTOR_TIMEOUT`` [30], ``PREDICTOR_GRACEFUL_TIMEOUT`` [30], ``PREDICTOR_KEEPALIVE`` [5],
``PREDICTOR_BACKLOG`` [2048], ``PREDICTOR_MAX_REQUESTS`` [0: never recycle a worker],
``PREDICTOR_ACCESS_LOG`` [unset: off; ``-`` for stdout], ``PREDICTOR_LOG_LEVEL`` [info].

The hooks: ``on_starting`` empties ``PROMETHEUS_MULTIPROC_DIR`` (a private temporary
directory when unset), ``post_worker_init`` starts the model watcher in each worker
and waits for its first model before the worker accepts connections,
``worker_exit`` stops it, ``child_exit`` retires a dead worker's live gauges.
``when_ready`` starts the host's one alias follower
(:mod:`~mlops_model.serving.alias_state`: one registry request per
``PREDICTOR_ALIAS_POLL_INTERVAL`` [1 s] for all workers, written to
``PREDICTOR_ALIAS_FILE``, a private temporary file when unset); ``on_exit`` stops it.
SIGHUP to the master restarts the workers gracefully, which reloads the model.
"""

from __future__ import annotations

import glob
import logging
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

# Before anything imports prometheus_client: it picks its multiprocess value class at import.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="predictor-metrics-")

from mlops_model.serving.registry_client import apply_registry_http_defaults
from mlops_model.serving.settings import Settings

apply_registry_http_defaults()

# Set before the workers fork, so that each of them reads the file the follower writes.
_follow = Settings.from_env().alias_poll_interval > 0
if _follow and not os.environ.get("PREDICTOR_ALIAS_FILE"):
    os.environ["PREDICTOR_ALIAS_FILE"] = os.path.join(
        tempfile.mkdtemp(prefix="predictor-alias-"), "alias.json"
    )
_follower: subprocess.Popen[bytes] | None = None


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not an integer") from None


def _app_logging(level: str) -> None:
    """The app's own log lines (model loads, swaps, failures) beside gunicorn's, on stderr."""
    logger = logging.getLogger("mlops_model")
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter(
            "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "%Y-%m-%d %H:%M:%S %z",
        )
    )
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


bind = [b.strip() for b in os.environ.get("PREDICTOR_BIND", "127.0.0.1:5001").split(",")]
workers = _int("PREDICTOR_WORKERS", 2)
threads = _int("PREDICTOR_THREADS", 1)
timeout = _int("PREDICTOR_TIMEOUT", 30)
graceful_timeout = _int("PREDICTOR_GRACEFUL_TIMEOUT", 30)
keepalive = _int("PREDICTOR_KEEPALIVE", 5)
backlog = _int("PREDICTOR_BACKLOG", 2048)
max_requests = _int("PREDICTOR_MAX_REQUESTS", 0)
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("PREDICTOR_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("PREDICTOR_LOG_LEVEL", "info")
_app_logging(loglevel)
proc_name = "mlops-predictor"
# Heartbeat files on tmpfs: a slow disk must not make the master kill healthy workers.
_SHM = "/dev/shm"  # noqa: S108 - gunicorn's documented choice for its heartbeat files
worker_tmp_dir = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) else None
preload_app = False  # each worker loads its own model after fork
# gunicorn >= 25 opens a control socket under $HOME by default: a service user with a
# read-only home (ProtectHome) cannot, and two instances would share one path.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """Master start: metrics files of a previous run must not leak into this one."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
    server.log.info("prometheus multiprocess directory: %s", path)


def when_ready(server: Any) -> None:
    """Master: start the host's alias follower (a process: the master forks workers)."""
    global _follower
    if not _follow:
        return
    path = os.environ["PREDICTOR_ALIAS_FILE"]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    argv = [sys.executable, "-m", "mlops_model.serving.alias_state", path]
    _follower = subprocess.Popen(argv, env=env)
    server.log.info("alias follower %s writes %s", _follower.pid, path)


def on_exit(server: Any) -> None:
    if _follower is not None and _follower.poll() is None:
        _follower.terminate()
        try:
            _follower.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _follower.kill()


def post_worker_init(worker: Any) -> None:
    """In the worker, after the app is loaded and before it accepts connections."""
    from mlops_model.serving.app import get_service

    service = get_service(worker.wsgi)
    budget = service.settings.initial_load_timeout
    deadline = time.monotonic() + budget
    service.start()
    while not service.watcher.wait_first_check(min(1.0, max(deadline - time.monotonic(), 0))):
        worker.notify()  # keep the master's heartbeat check happy while the model loads
        if time.monotonic() >= deadline:
            break
    model = service.holder.current
    if model is None:
        worker.log.warning(
            "worker %s starts without a model (%s); /ready answers 503 until one loads",
            worker.pid,
            service.watcher.last_error or f"not loaded within {budget} s",
        )
    else:
        worker.log.info("worker %s serves %s version %s", worker.pid, model.name, model.version)


def worker_exit(server: Any, worker: Any) -> None:
    from mlops_model.serving.app import EXTENSION

    service = getattr(worker, "wsgi", None)
    extensions = getattr(service, "extensions", {})
    if EXTENSION in extensions:
        extensions[EXTENSION].stop(timeout=1.0)


def child_exit(server: Any, worker: Any) -> None:
    """Master side: a worker died; its live gauges (model info, registry up) go with it."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
