"""The rollout load generator (tests/support/load.py) catches what it claims to.

Each test points the generator at a tiny in-process HTTP server that answers
the way a broken gateway would (bad body, wrong version, 500, stalls) and
checks that the run reports it; a good server proves the same checks stay
quiet. Short runs at high rates keep every test around a second.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.http_server import running_servers
from tests.support.load import IRIS_BODY, Load, LoadResult

ROWS = len(IRIS_BODY["instances"])
GOOD_BODY = json.dumps({"predictions": ["setosa"] * ROWS}).encode()
# Bounds of the rollout test, for the runs that must come out clean.
P99_LIMIT = 1.0
MAX_LIMIT = 5.0


@dataclass
class Answer:
    status: int = 200
    body: bytes = GOOD_BODY
    version: str | None = "3"
    delay: float = 0.0


Behaviour = Callable[[bytes], Answer]


def tiny_server(behaviour: Behaviour) -> ThreadingHTTPServer:
    """A server bound to a free loopback port whose POST answers come from ``behaviour``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            answer = behaviour(request)
            time.sleep(answer.delay)
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer.body)))
            if answer.version is not None:
                self.send_header("X-Model-Version", answer.version)
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a line per request on stderr would drown the test output

    return LoadServer(("127.0.0.1", 0), Handler)


class LoadServer(ThreadingHTTPServer):
    # The default backlog of 5 overflows when the accept loop is starved on a
    # busy machine: the kernel then drops SYNs, and the client's retry after 1 s
    # shows up as latency or a reset that the generator did not cause.
    request_queue_size = 256
    daemon_threads = True


def predict_url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/predict"


@pytest.fixture
def server() -> Iterator[Callable[[Behaviour], str]]:
    """``server(behaviour)``: the URL of a started tiny_server."""
    with running_servers() as servers:
        yield lambda behaviour: predict_url(servers.start(tiny_server(behaviour)))


def run(url: str, **options: object) -> LoadResult:
    settings: dict[str, object] = {
        "expected_versions": {"3"},
        "rate": 100.0,
        "duration": 0.5,
        "threads": 8,
        "timeout": 5.0,
    }
    settings.update(options)
    load = Load(url, **settings)  # type: ignore[arg-type]
    load.start()
    return load.join(timeout=10)


def test_good_server_gives_a_clean_run(server) -> None:
    seen: list[bytes] = []

    def good(request: bytes) -> Answer:
        seen.append(request)
        return Answer()

    result = run(server(good))
    assert result.problems(p99_limit=P99_LIMIT, max_limit=MAX_LIMIT) == [], result.summary()
    assert result.sent == result.expected_sends == 50, result.summary()
    assert result.statuses == {"200": 50}
    assert result.versions == {"3": 50}
    assert json.loads(seen[0]) == IRIS_BODY


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"<html>not json</html>", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'{"result": ["setosa", "setosa", "setosa"]}', "list of 3 predictions"),
        (b'{"predictions": ["setosa"]}', "list of 3 predictions"),
        (b'{"predictions": "setosa setosa setosa"}', "list of 3 predictions"),
        (b'["setosa", "setosa", "setosa"]', "list of 3 predictions"),
    ],
    ids=["html", "not-utf8", "no-predictions", "too-few", "not-a-list", "bare-list"],
)
def test_200_with_a_bad_body_fails(server, body: bytes, error: str) -> None:
    result = run(server(lambda _: Answer(body=body)), duration=0.2)
    assert result.sent > 0
    assert result.failed == result.sent, result.summary()
    assert error in result.errors[0], result.errors[0]
    assert result.problems(p99_limit=P99_LIMIT, max_limit=MAX_LIMIT)


@pytest.mark.parametrize(
    ("version", "error"),
    [("5", "from version '5', expected one of ['3', '4']"), (None, "without X-Model-Version")],
    ids=["unexpected", "missing"],
)
def test_200_from_an_unexpected_version_fails(server, version: str | None, error: str) -> None:
    result = run(
        server(lambda _: Answer(version=version)), expected_versions={"3", "4"}, duration=0.2
    )
    assert result.sent > 0
    assert result.failed == result.sent, result.summary()
    assert error in result.errors[0], result.errors[0]
    # (counted all the same: the report shows which versions answered)
    assert result.versions == ({version: result.sent} if version else {}), result.summary()


def version_3_running(
    server: Callable[[Behaviour], str], duration: float
) -> tuple[Load, list[str]]:
    """A load expecting version 3, 0.2 s into its run against a server answering as
    ``serving[0]`` (version "3" until the caller changes it)."""
    serving = ["3"]
    url = server(lambda _: Answer(version=serving[0]))
    load = Load(url, expected_versions={"3"}, rate=100, duration=duration, threads=8)
    load.start()
    time.sleep(0.2)
    return load, serving


def test_expected_versions_change_during_the_run(server) -> None:
    load, serving = version_3_running(server, duration=1.0)
    load.expect_versions({"3", "4"})
    # A request is judged by the versions expected when it was sent: the ones
    # in flight under {"3"} finish (with room for a busy machine) before the
    # server moves on.
    time.sleep(0.5)
    serving[0] = "4"
    time.sleep(0.2)
    load.expect_versions({"4"})
    result = load.join(timeout=10)
    assert result.failed == 0, result.summary()
    assert set(result.versions) == {"3", "4"}, result.summary()


def test_version_moving_without_the_caller_expecting_it_fails(server) -> None:
    load, serving = version_3_running(server, duration=0.4)
    serving[0] = "4"
    result = load.join(timeout=10)
    assert 0 < result.failed < result.sent, result.summary()
    assert all("from version '4'" in error for error in result.errors), result.errors


def test_server_error_fails(server) -> None:
    result = run(server(lambda _: Answer(status=500, body=b'{"error": "boom"}')), duration=0.2)
    assert result.sent > 0
    assert result.failed == result.sent, result.summary()
    assert result.statuses == {"500": result.sent}
    assert result.errors[0].endswith("HTTP 500"), result.errors[0]


def test_refused_connection_fails(server) -> None:
    srv = tiny_server(lambda _: Answer())
    srv.server_close()  # the port is free again: nothing listens
    result = run(predict_url(srv), duration=0.2)
    assert result.failed == result.sent > 0, result.summary()
    assert result.statuses == {"error": result.sent}


def test_stalled_server_shows_as_missed_sends(server) -> None:
    # Two threads, each stuck 0.6 s per request, cannot keep 50 requests/s:
    # every answer is a good one, only the schedule shows the stall.
    url = server(lambda _: Answer(delay=0.6))
    result = run(url, rate=50, duration=1.0, threads=2, max_lag=0.2)
    assert result.failed == 0, result.summary()
    assert result.expected_sends == 50
    assert result.sent <= 6, result.summary()
    assert result.missed >= 50 - 6 - 10, result.summary()  # (the last 0.2 s is not owed yet)
    problems = result.problems(p99_limit=P99_LIMIT, max_limit=MAX_LIMIT)
    assert any("scheduled requests missed" in p for p in problems), problems


def test_late_start_counts_as_missed(server, monkeypatch: pytest.MonkeyPatch) -> None:
    # A thread held up between taking a slot and sending it (as a starved
    # thread on a busy machine would be) sends after the slot's due time.
    claim = Load._claim

    def held_up(self: Load) -> tuple[int, float] | None:
        slot = claim(self)
        time.sleep(0.25)
        return slot

    monkeypatch.setattr(Load, "_claim", held_up)
    result = run(server(lambda _: Answer()), rate=40, duration=0.3, threads=4, max_lag=0.1)
    assert result.failed == 0, result.summary()
    assert result.late > 0, result.summary()
    assert result.missed >= result.late


def test_slow_answers_break_the_latency_bounds(server) -> None:
    result = run(server(lambda _: Answer(delay=0.15)), duration=0.3, threads=16)
    assert result.failed == 0, result.summary()
    assert result.missed == 0, result.summary()
    problems = result.problems(p99_limit=0.1, max_limit=0.12)
    assert any(p.startswith("p99 latency") for p in problems), problems
    assert any(p.startswith("max latency") for p in problems), problems
    assert result.problems(p99_limit=P99_LIMIT, max_limit=MAX_LIMIT) == []


def test_dying_worker_is_surfaced(server, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Load) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Load, "_send_one", boom)
    result = run(server(lambda _: Answer()), threads=3, duration=0.3, max_lag=0.1)
    assert len(result.worker_errors) == 3, result.worker_errors
    assert all("RuntimeError: boom" in error for error in result.worker_errors)
    assert result.sent == result.failed == 0
    # With every thread gone the schedule is not kept either.
    assert result.missed > 0, result.summary()
    problems = result.problems(p99_limit=P99_LIMIT, max_limit=MAX_LIMIT)
    assert any(p.startswith("worker threads died") for p in problems), problems


def test_threads_still_running_at_join_are_surfaced(server) -> None:
    load = Load(server(lambda _: Answer(delay=1.0)), expected_versions={"3"}, rate=20, duration=0.1)
    load.start()
    early = load.join(timeout=0.3)
    assert any("still running" in error for error in early.worker_errors), early.worker_errors
    final = load.stop()
    assert final.worker_errors == [], final.worker_errors
    assert final.failed == 0


def test_a_lone_version_string_is_refused() -> None:
    with pytest.raises(TypeError):
        Load("http://127.0.0.1:1/predict", expected_versions="12")
    with pytest.raises(ValueError, match="empty"):
        Load("http://127.0.0.1:1/predict", expected_versions=set())
