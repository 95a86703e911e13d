"""A background thread per worker process that follows the registry alias.

Every ``poll_interval`` seconds it asks the registry which version the alias
points at. When that differs from the version being served, it loads and
self-checks the new version and swaps it in. Any failure (registry unreachable,
alias missing, load or self-check error) keeps the current model, is logged and
counted. A version that failed is retried with exponential backoff (capped at
five minutes) rather than on every poll, so a broken version does not make every
worker download it again and again; moving the alias elsewhere retries at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Protocol

from mlops_model.errors import RegistryUnavailable
from mlops_model.serving.errors import AliasNotFound
from mlops_model.serving.holder import LoadedModel, ModelHolder
from mlops_model.serving.metrics import Metrics
from mlops_model.serving.registry_client import ResolvedVersion

log = logging.getLogger(__name__)

MAX_FAILED_BACKOFF = 300.0


class Loader(Protocol):
    def resolve(self) -> ResolvedVersion: ...

    def load(self, resolved: ResolvedVersion) -> LoadedModel: ...

    def load_cached(self) -> LoadedModel | None: ...


class ModelWatcher:
    """Polls the alias and swaps models into ``holder``; one per process."""

    def __init__(
        self, loader: Loader, holder: ModelHolder, metrics: Metrics, poll_interval: float
    ) -> None:
        self.loader = loader
        self.holder = holder
        self.metrics = metrics
        self.poll_interval = poll_interval
        # Serialises start/stop; the events are replaced on a (post-fork) restart.
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._stop = threading.Event()
        self._first_check = threading.Event()
        self._start_lock = threading.Lock()
        self._check_lock = threading.Lock()
        # version -> (consecutive failures, monotonic time before which it is not retried)
        self._failed: dict[str, tuple[int, float]] = {}
        self.last_error: str | None = None
        self._tried_cache = False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._pid == os.getpid()

    def start(self, wait: float = 0.0) -> bool:
        """Start the thread (idempotent, fork-aware); wait up to ``wait`` s for the first check.

        Returns True when a model is loaded on return.
        """
        with self._start_lock:
            if not self.running:
                # After a fork the parent's thread does not exist here: start afresh.
                self._stop = threading.Event()
                self._first_check = threading.Event()
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="predictor-model-watcher", daemon=True
                )
                self._thread.start()
        if wait > 0:
            self.wait_first_check(wait)
        return self.holder.current is not None

    def wait_first_check(self, timeout: float) -> bool:
        """Wait until the first poll since :meth:`start` finished (loaded or failed)."""
        return self._first_check.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        stop, first_check = self._stop, self._first_check
        while not stop.is_set():
            try:
                self.check_once()
            except Exception:  # the thread must survive anything
                log.exception("model watcher: unexpected error")
            first_check.set()
            stop.wait(self._delay())

    def _delay(self) -> float:
        """Seconds to the next poll: short while a host-wide follower answers for us."""
        delay = getattr(self.loader, "poll_delay", None)
        return float(delay()) if callable(delay) else self.poll_interval

    def check_once(self) -> bool:
        """One poll. Returns True when a new model was swapped in."""
        with self._check_lock:
            return self._check()

    def _check(self) -> bool:
        try:
            resolved = self.loader.resolve()
        except RegistryUnavailable as exc:
            self.metrics.registry_checked(False)
            if self.holder.current is None and not self._tried_cache:
                self._tried_cache = True
                if self._serve_cached():
                    return True
            return self._failure(f"registry unreachable: {exc}")
        except AliasNotFound as exc:
            self.metrics.registry_checked(True)
            return self._failure(f"alias not found: {exc}")
        self.metrics.registry_checked(True)

        current = self.holder.current
        # A model from the cache is replaced by the registry's copy once it answers.
        if (
            current is not None
            and current.version == resolved.version
            and current.source != "cache"
        ):
            self.last_error = None
            return False
        failed = self._failed.get(resolved.version)
        if failed is not None and time.monotonic() < failed[1]:
            return False

        served = current.version if current else "none"
        log.info("loading %s version %s (serving: %s)", resolved.name, resolved.version, served)
        try:
            model = self.loader.load(resolved)
        except RegistryUnavailable as exc:
            self.metrics.registry_checked(False)
            return self._failure(f"download of version {resolved.version} failed: {exc}")
        except Exception as exc:  # ModelLoadError, SelfCheckError, or anything unforeseen
            fails = failed[0] + 1 if failed else 1
            backoff = min(self.poll_interval * 2**fails, MAX_FAILED_BACKOFF)
            self._failed[resolved.version] = (fails, time.monotonic() + backoff)
            return self._failure(f"version {resolved.version} rejected: {exc}")

        previous = self.holder.swap(model)
        self.metrics.model_served(model)
        self.metrics.reloads.inc()
        self._failed.pop(resolved.version, None)
        self.last_error = None
        log.info(
            "now serving %s version %s (was %s)",
            model.name,
            model.version,
            previous.version if previous else "none",
        )
        return True

    def _serve_cached(self) -> bool:
        """A worker starting during a registry outage serves the last known good model."""
        try:
            model = self.loader.load_cached()
        except Exception as exc:
            log.warning("the cached model is unusable: %s", exc)
            return False
        if model is None:
            return False
        self.holder.swap(model)
        self.metrics.model_served(model)
        self.metrics.reloads.inc()
        self.metrics.reload_failures.inc()  # the registry check itself did fail
        self.last_error = "registry unreachable: serving the cached version"
        log.warning(
            "registry unreachable: serving cached %s version %s until it answers",
            model.name,
            model.version,
        )
        return True

    def _failure(self, message: str) -> bool:
        repeated = message == self.last_error
        self.last_error = message
        self.metrics.reload_failures.inc()
        keeping = self.holder.current
        # An outage fails every poll: say it once, then only at debug level.
        log.log(
            logging.DEBUG if repeated else logging.WARNING,
            "model check failed, %s: %s",
            f"keeping version {keeping.version}" if keeping else "no model loaded yet",
            message,
        )
        return False
