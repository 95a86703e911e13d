"""A bounded load generator for the rollout tests: POST /predict at a fixed rate.

Threads send requests on a fixed schedule (request *i* is due at ``i / rate``
seconds after the start) until the duration is over, the hard cap on the
number of requests is reached, or :meth:`Load.stop` is called; it always stops
by itself. Each request opens a new connection (``Connection: close``), so a
gateway that refuses or drops connections is seen as such. A failed request is
any answer other than 200 and any connection error or timeout.

Only meant for loopback addresses (``http://127.0.0.1:PORT``).
"""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

IRIS_BODY = {"instances": [[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.8, 3.0, 5.9, 2.3]]}
# Whatever the rate and duration asked for, never more than this many requests.
HARD_CAP = 20_000


@dataclass
class LoadResult:
    """What one run of the generator saw."""

    sent: int = 0
    failed: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    # The model versions that answered (from the X-Model-Version header), with counts.
    versions: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    duration: float = 0.0

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

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "p50_ms": round(self.percentile(50) * 1000, 1),
            "p99_ms": round(self.p99 * 1000, 1),
            "max_ms": round(max(self.latencies, default=0.0) * 1000, 1),
            "rate_per_s": round(self.sent / self.duration, 1) if self.duration else 0.0,
            "statuses": dict(self.statuses),
            "versions": dict(self.versions),
            "errors": self.errors[:10],
        }


class Load:
    """``with Load(url, rate=40, duration=60) as load: ...; result = load.result``.

    Leaving the ``with`` block stops the schedule (requests already sent finish)
    and waits for the threads.
    """

    def __init__(
        self,
        url: str,
        *,
        rate: float = 40.0,
        duration: float = 60.0,
        threads: int = 8,
        timeout: float = 10.0,
        max_requests: int | None = None,
        body: Any = None,
    ) -> None:
        if rate <= 0 or duration <= 0:
            raise ValueError("rate and duration must be positive")
        parts = urllib.parse.urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"load only goes to loopback addresses, not {url}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.rate = rate
        self.duration = duration
        self.timeout = timeout
        self.limit = min(max_requests or math.ceil(rate * duration), HARD_CAP)
        self.payload = json.dumps(IRIS_BODY if body is None else body).encode()
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
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

    def stop(self) -> LoadResult:
        self._stop.set()
        return self.join()

    def join(self, timeout: float | None = None) -> LoadResult:
        """Wait until the schedule is over (or stopped) and every request has finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
        self.result.duration = time.monotonic() - self._started
        return self.result

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def done(self) -> bool:
        return not any(t.is_alive() for t in self._threads)

    # -- work

    def _claim(self) -> float | None:
        """The due time of the next request, or None when the schedule is over."""
        with self._lock:
            index = self._next
            if index >= self.limit or self._stop.is_set():
                return None
            due = index / self.rate
            if due >= self.duration:
                return None
            self._next += 1
            return self._started + due

    def _worker(self) -> None:
        while (due := self._claim()) is not None:
            wait = due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            self._send_one()

    def _send_one(self) -> None:
        started = time.perf_counter()
        status = "error"
        version = None
        error = None
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(
                "POST",
                self.path,
                body=self.payload,
                headers={"Content-Type": "application/json", "Connection": "close"},
            )
            response = conn.getresponse()
            response.read()
            status = str(response.status)
            version = response.getheader("X-Model-Version")
            if response.status != 200:
                error = f"HTTP {response.status}"
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
            if version:
                result.versions[version] += 1
            if error is not None:
                result.failed += 1
                if len(result.errors) < 50:
                    result.errors.append(f"{time.monotonic() - self._started:.2f}s {error}")
