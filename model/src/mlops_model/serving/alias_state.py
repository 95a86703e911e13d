"""One alias watcher per host: a small process polls the registry, workers read a file.

Without it every gunicorn worker asks the registry which version the alias points
at, so the request rate grows with the workers and a short poll interval multiplies
it. With it the gunicorn master starts one follower process
(``python -m mlops_model.serving.alias_state FILE``, see
:mod:`~mlops_model.serving.gunicorn_conf`) that makes one alias request every
``PREDICTOR_ALIAS_POLL_INTERVAL`` seconds (1 s by default) and writes the answer to
``FILE`` (``PREDICTOR_ALIAS_FILE``) atomically; each worker reads that file a few
times a second, which costs no network and no registry work. Per host: one small
registry request per interval, whatever the number of workers.

The file also carries the follower's failures (registry unreachable, alias
missing), so the workers keep their last-known-good behaviour unchanged. The
follower touches the file on every poll; a worker that finds it older than
:func:`stale_after` (follower dead or stuck) asks the registry itself, at
``PREDICTOR_POLL_INTERVAL``, as it did before this existed.

A process (not a thread of the master) because gunicorn forks workers from the
master: a thread there could hold a lock (logging, ssl) at the moment of a fork.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

from mlops_model.errors import RegistryUnavailable
from mlops_model.serving.errors import AliasNotFound
from mlops_model.serving.registry_client import (
    AliasResolver,
    ResolvedVersion,
    apply_registry_http_defaults,
    for_uri,
)
from mlops_model.serving.settings import Settings

log = logging.getLogger("mlops_model.serving.alias_state")  # also when run as __main__

OK, UNAVAILABLE, NOT_FOUND = "ok", "unavailable", "not_found"
# How often a worker reads the file: cheap (a local read), and it bounds the delay
# between the follower seeing a move and the worker starting to load.
WORKER_CHECK_INTERVAL = 0.2


def stale_after(interval: float) -> float:
    """Age of the file after which workers stop trusting it and ask the registry."""
    return max(5.0, 5 * interval)


@dataclass(frozen=True)
class AliasState:
    """What the follower last learnt; ``kind`` is ``ok``, ``unavailable`` or ``not_found``."""

    kind: str
    name: str
    alias: str
    version: str | None = None
    run_id: str | None = None
    error: str | None = None

    def resolved(self) -> ResolvedVersion:
        """The version, or the error the worker's own lookup would have raised."""
        if self.kind == OK and self.version is not None:
            return ResolvedVersion(self.name, self.alias, self.version, self.run_id)
        if self.kind == NOT_FOUND:
            raise AliasNotFound(self.error or f"models:/{self.name}@{self.alias}")
        raise RegistryUnavailable(None, self.error or "the registry did not answer")


def lookup(resolver: AliasResolver, name: str, alias: str) -> AliasState:
    try:
        found = resolver.resolve(name, alias)
    except AliasNotFound as exc:
        return AliasState(NOT_FOUND, name, alias, error=str(exc))
    except RegistryUnavailable as exc:
        return AliasState(UNAVAILABLE, name, alias, error=str(exc))
    return AliasState(OK, name, alias, found.version, found.run_id)


def write_state(path: Path, state: AliasState) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".alias-", dir=path.parent)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(state), out)
    os.replace(tmp, path)


def read_state(path: Path, max_age: float) -> AliasState | None:
    """The follower's last answer, or None when there is none or it is older than ``max_age``."""
    try:
        if time.time() - path.stat().st_mtime > max_age:
            return None
        return AliasState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def follow(settings: Settings, path: Path, parent: int | None = None) -> None:
    """Poll the alias every ``settings.alias_poll_interval`` s; write changes, touch always.

    Returns when the process that started it is gone (``parent``).
    """
    resolver = for_uri(settings.tracking_uri)
    interval = settings.alias_poll_interval
    last: AliasState | None = None
    while parent is None or os.getppid() == parent:
        started = time.monotonic()
        state = lookup(resolver, settings.model_name, settings.model_alias)
        try:
            if state != last:
                write_state(path, state)
                if last is None or state.kind != last.kind or state.version != last.version:
                    log.info(
                        "alias %s@%s: %s",
                        state.name,
                        state.alias,
                        f"version {state.version}" if state.kind == OK else state.error,
                    )
                last = state
            else:
                os.utime(path)  # "still current": what keeps workers from asking themselves
        except OSError as exc:
            log.warning("cannot write %s: %s", path, exc)
            last = None
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """``python -m mlops_model.serving.alias_state FILE`` (settings from the environment)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mlops_model.serving.alias_state FILE", file=sys.stderr)
        return 2
    apply_registry_http_defaults()
    logging.basicConfig(
        level=os.environ.get("PREDICTOR_LOG_LEVEL", "info").upper(),
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    signal.signal(signal.SIGTERM, _stop)
    with contextlib.suppress(KeyboardInterrupt):
        follow(Settings.from_env(), Path(args[0]), os.getppid())
    return 0


if __name__ == "__main__":
    sys.exit(main())
