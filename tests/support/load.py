"""A bounded load generator for the rollout tests: POST /predict at a fixed rate.

Threads send requests on a fixed schedule (slot *i* is due at ``i / rate``
seconds after the start) until the duration is over, the hard cap on the
number of requests is reached, or :meth:`Load.stop` is called; it always stops
by itself. Each request opens a new connection (``Connection: close``), so a
gateway that refuses or drops connections is seen as such.

Every answer is checked. A request fails unless it is answered 200 with a JSON
body holding one prediction per row sent, from a model version the caller
expects (``X-Model-Version``, one of ``expected_versions``); connection errors
and timeouts fail too. The schedule is checked as well: a slot that was not
sent within ``max_lag`` seconds of its due time is *missed*, so a gateway that
stalls (every thread stuck in a request) shows as missed sends instead of as a
quiet, lower rate. A worker thread that dies is recorded in
``worker_errors``. :meth:`LoadResult.problems` lists all of it.

Only meant for loopback addresses (``http://127.0.0.1:PORT``, or ``https://``
with a context that verifies the server; :func:`gateway_load` sends through
the lab gateway with its client key).
"""

from __future__ import annotations

import http.client
import json
import math
import ssl
import threading
import time
import traceback
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .lab_http import GATEWAY, IRIS_ROWS, gateway_headers, lab_tls

IRIS_BODY: dict[str, list[list[float]]] = {"instances": IRIS_ROWS}
# Whatever the rate and duration asked for, never more than this many requests.
HARD_CAP = 20_000
# Error strings kept per run: enough to see a pattern, bounded for a long phase.
MAX_ERRORS = 50


@dataclass
class LoadResult:
    """What one run of the generator saw."""

    # requests that got an answer or an error (each one also counted in statuses)
    sent: int = 0
    failed: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    # The model versions that answered 200 (X-Model-Version), with counts.
    versions: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    # Seconds from the start until every thread had finished.
    duration: float = 0.0
    # Seconds the schedule ran: the duration, or until stop() (or join() gave up).
    scheduled: float = 0.0
    # rate x scheduled (capped by the request limit): what the schedule asked for.
    expected_sends: int = 0
    # Slots due at least max_lag before the schedule ended that were never sent,
    # and slots sent more than max_lag after their due time.
    unsent: int = 0
    late: int = 0
    # Unexpected exceptions that ended a worker thread, and threads still
    # running when join() gave up waiting.
    worker_errors: list[str] = field(default_factory=list)

    @property
    def missed(self) -> int:
        """Slots not sent on schedule: unsent or late."""
        return self.unsent + self.late

    def percentile(self, q: float) -> float:
        """Latency percentile in seconds (nearest rank); 0 without requests."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[rank - 1]

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def max_latency(self) -> float:
        return max(self.latencies, default=0.0)

    def problems(self, *, p99_limit: float, max_limit: float) -> list[str]:
        """Everything that makes this run a failure, one sentence each; empty when clean.

        The latency limits are in seconds.
        """
        found: list[str] = []
        if self.sent == 0:
            found.append("no request was sent")
        if self.failed:
            found.append(
                f"{self.failed} of {self.sent} requests failed: {json.dumps(self.errors[:10])}"
            )
        if self.worker_errors:
            found.append(f"worker threads died: {json.dumps(self.worker_errors)}")
        if self.missed:
            found.append(
                f"{self.missed} of {self.expected_sends} scheduled requests missed "
                f"({self.unsent} never sent, {self.late} sent late); {self.sent} sent"
            )
        if self.p99 >= p99_limit:
            found.append(f"p99 latency {self.p99 * 1000:.0f} ms >= {p99_limit * 1000:.0f} ms")
        if self.max_latency >= max_limit:
            found.append(
                f"max latency {self.max_latency * 1000:.0f} ms >= {max_limit * 1000:.0f} ms"
            )
        return found

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "expected_sends": self.expected_sends,
            "missed": self.missed,
            "p50_ms": round(self.percentile(50) * 1000, 1),
            "p99_ms": round(self.p99 * 1000, 1),
            "max_ms": round(self.max_latency * 1000, 1),
            "rate_per_s": round(self.sent / self.duration, 1) if self.duration else 0.0,
            "statuses": dict(self.statuses),
            "versions": dict(self.versions),
            "errors": self.errors[:10],
            "worker_errors": self.worker_errors,
        }


class Load:
    """``with Load(url, expected_versions={"3"}, rate=40, duration=60) as load: ...``,
    then ``load.result``.

    Leaving the ``with`` block stops the schedule (requests already sent finish)
    and waits for the threads. :meth:`expect_versions` changes the versions a
    200 may come from while the load runs.
    """

    def __init__(
        self,
        url: str,
        *,
        expected_versions: Iterable[str],
        rate: float = 40.0,
        duration: float = 60.0,
        threads: int = 8,
        timeout: float = 10.0,
        max_lag: float = 1.0,
        max_requests: int | None = None,
        body: dict[str, list[list[float]]] | None = None,
        headers: dict[str, str] | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        if rate <= 0 or duration <= 0 or max_lag <= 0:
            raise ValueError("rate, duration and max_lag must be positive")
        parts = urllib.parse.urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"load only goes to loopback addresses, not {url}")
        if parts.scheme == "https" and context is None:
            raise ValueError("an https URL needs the context that verifies its certificate")
        self.host = parts.hostname
        self.context = context if parts.scheme == "https" else None
        self.port = parts.port or (443 if self.context else 80)
        self.headers = {
            "Content-Type": "application/json",
            "Connection": "close",
            **(headers or {}),
        }
        self.path = parts.path or "/"
        self.rate = rate
        self.duration = duration
        self.timeout = timeout
        self.max_lag = max_lag
        self.limit = min(max_requests or math.ceil(rate * duration), HARD_CAP)
        document = IRIS_BODY if body is None else body
        self.rows = len(document["instances"])
        self.payload = json.dumps(document).encode()
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._expected = self._version_set(expected_versions)
        self._next = 0
        # Which slots a thread began to send: the unsent ones are found from it.
        self._begun = bytearray(self.limit)
        self._late = 0
        self._worker_errors: list[str] = []
        self._stop = threading.Event()
        self._stopped_at: float | None = None
        self._threads = [
            threading.Thread(target=self._worker, name=f"load-{i}", daemon=True)
            for i in range(threads)
        ]
        self._started = 0.0

    # -- control

    def start(self) -> Load:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def expect_versions(self, versions: Iterable[str]) -> None:
        """From now on a 200 must come from one of ``versions``.

        A request is judged by the set in force when it was sent: one already in
        flight may still be answered by a version the new set leaves out.
        """
        new = self._version_set(versions)
        with self._lock:
            self._expected = new

    def stop(self) -> LoadResult:
        with self._lock:
            if self._stopped_at is None:
                self._stopped_at = time.monotonic() - self._started
        self._stop.set()
        return self.join()

    def join(self, timeout: float | None = None) -> LoadResult:
        """Wait until the schedule is over (or stopped) and every request has finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
        self._tally()
        return self.result

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def done(self) -> bool:
        return not any(t.is_alive() for t in self._threads)

    # -- work

    @staticmethod
    def _version_set(versions: Iterable[str]) -> frozenset[str]:
        # A lone string would become a set of its characters ("12" -> {"1", "2"}).
        if isinstance(versions, str):
            raise TypeError("expected_versions is a collection of versions, not one string")
        found = frozenset(versions)
        if not found:
            raise ValueError("expected_versions is empty: every answer would fail")
        return found

    def _claim(self) -> tuple[int, float] | None:
        """The next slot (index, due time), or None when the schedule is over.

        Slots already more than max_lag overdue are skipped: they are missed
        anyway, and sending a stall's backlog in one burst would load the
        gateway harder than the rate asked for and run past the duration.
        """
        with self._lock:
            if self._stop.is_set():
                return None
            overdue = time.monotonic() - self._started - self.max_lag
            index = max(self._next, math.ceil(overdue * self.rate))
            if index >= self.limit:
                return None
            due = index / self.rate
            if due >= self.duration:
                return None
            self._next = index + 1
            return index, self._started + due

    def _worker(self) -> None:
        try:
            while (slot := self._claim()) is not None:
                index, due = slot
                wait = due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                lag = time.monotonic() - due
                with self._lock:
                    self._begun[index] = 1
                    if lag > self.max_lag:
                        self._late += 1
                self._send_one()
        except Exception as exc:
            # A dead thread would only lower the rate, which would look like a
            # quieter run: it is recorded so that the run fails.
            where = traceback.extract_tb(exc.__traceback__)[-1]
            with self._lock:
                self._worker_errors.append(
                    f"{threading.current_thread().name}: {type(exc).__name__}: {exc} "
                    f"({where.filename}:{where.lineno})"
                )

    def _tally(self) -> None:
        """Fill in the schedule's figures from what the threads did (again on each join)."""
        now = time.monotonic() - self._started
        running = [t.name for t in self._threads if t.is_alive()]
        with self._lock:
            if self._stopped_at is not None:
                end = min(self.duration, self._stopped_at)
            elif running:  # join() gave up: the schedule so far
                end = min(self.duration, now)
            else:
                # Not stopped, so the schedule was owed in full, even when the
                # threads ended early because they died.
                end = self.duration
            # Slots due in the last max_lag before the end may not have been
            # sent yet without being late: they are not counted as unsent.
            cutoff = end - self.max_lag
            owed = 0 if cutoff < 0 else min(self.limit, math.floor(cutoff * self.rate) + 1)
            result = self.result
            result.scheduled = end
            result.expected_sends = min(self.limit, math.ceil(end * self.rate))
            result.unsent = owed - sum(self._begun[:owed])
            result.late = self._late
            result.worker_errors = list(self._worker_errors) + (
                [f"threads still running after join(): {', '.join(running)}"] if running else []
            )
            result.duration = now

    def _check(
        self, status: int, version: str | None, body: bytes, expected: frozenset[str]
    ) -> str | None:
        """Why an answer is a failure, or None for a good one."""
        if status != 200:
            return f"HTTP {status}"
        if version is None:
            return "HTTP 200 without X-Model-Version"
        if version not in expected:
            return f"HTTP 200 from version {version!r}, expected one of {sorted(expected)}"
        try:
            document = json.loads(body)
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            return f"HTTP 200 with a body that is not JSON ({exc}): {body[:80]!r}"
        predictions = document.get("predictions") if isinstance(document, dict) else None
        if not isinstance(predictions, list) or len(predictions) != self.rows:
            return f"HTTP 200 without a list of {self.rows} predictions: {body[:80]!r}"
        return None

    def _send_one(self) -> None:
        with self._lock:
            expected = self._expected
        started = time.perf_counter()
        status = "error"
        version = None
        error = None
        conn = (
            http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self.context
            )
            if self.context
            else http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        )
        try:
            conn.request("POST", self.path, body=self.payload, headers=self.headers)
            response = conn.getresponse()
            body = response.read()
            status = str(response.status)
            version = response.getheader("X-Model-Version")
            error = self._check(response.status, version, body, expected)
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        elapsed = time.perf_counter() - started
        with self._lock:
            result = self.result
            result.sent += 1
            result.statuses[status] += 1
            result.latencies.append(elapsed)
            if version and status == "200":  # unexpected ones too: they show what answered
                result.versions[version] += 1
            if error is not None:
                result.failed += 1
                if len(result.errors) < MAX_ERRORS:
                    result.errors.append(f"{time.monotonic() - self._started:.2f}s {error}")


def gateway_load(path: str = "/predict", **kwargs: Any) -> Load:
    """A :class:`Load` through the lab gateway: HTTPS verified against the lab CA, with its key."""
    return Load(f"{GATEWAY}{path}", headers=gateway_headers(), context=lab_tls(), **kwargs)
