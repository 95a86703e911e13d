"""bench/serve_bench.py for real: its FAIL rules against servers that answer wrong, and
one whole run with tiny durations (about a minute on two cores).

wrk is required, never skipped: ``scripts/bootstrap.sh --test`` (``./stack test``)
and ``--bench`` install it. Without it these tests fail and say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench import serve_bench as sb
from tests.support.http_server import running_servers
from tests.support.net import free_port
from tests.support.tools import required_tool

ROOT = Path(__file__).resolve().parents[2]
RIGHT = b'{"predictions": ["setosa"]}'
WRONG = b'{"predictions": ["virginica"]}'
ONE_SETOSA = sb.Expected((frozenset({"setosa"}),))
# short runs, a load this small Python server takes
LOAD = sb.LoadSettings(duration=1, warmup=0, connections=2, threads=1)


@pytest.fixture(scope="module", autouse=True)
def wrk() -> str:
    return required_tool(
        "wrk",
        "scripts/bootstrap.sh --test (or --bench) installs it "
        "(apt-get install wrk); the benchmark's tests do not run without it",
    )


class Handler(BaseHTTPRequestHandler):
    """Answers POST /predict as ``server.mode`` says; wrk sends no User-Agent, urllib does."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body in one segment: no 40 ms stalls

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        server: FakeServer = self.server  # type: ignore[assignment]
        with server.lock:
            server.served += 1
            first = server.served == 1
        from_wrk = "Python-urllib" not in self.headers.get("User-Agent", "")
        status, body, drop = 200, RIGHT, False
        if server.mode == "500-to-wrk" and from_wrk:
            status = 500
        elif server.mode == "wrong-after-first" and not first:
            body = WRONG
        elif server.mode == "drop-wrk-connections" and from_wrk:
            drop = True  # closed after the answer although keep-alive was promised
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if drop:
            self.wfile.flush()
            self.connection.shutdown(2)
            self.close_connection = True


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", free_port()), Handler)
        self.mode = mode
        self.served = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        """The base URL: each case names its path (``/predict`` here)."""
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def fake() -> Iterator[Callable[[str], FakeServer]]:
    """``fake(mode)``: a started FakeServer answering as ``mode`` says."""
    with running_servers() as servers:
        yield lambda mode: servers.start(FakeServer(mode))


def drive(url: str, tmp_path: Path, workers: int = 1, load: sb.LoadSettings = LOAD) -> sb.Result:
    body = tmp_path / "body.json"
    body.write_bytes(b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}')
    return sb.drive(
        "ours",
        url,
        lambda: [os.getpid()],  # this process stands in for the server's one worker
        workers,
        {"single": sb.Case(body, ONE_SETOSA)},
        load,
        2,
        tmp_path,
    )


def test_a_clean_run_passes_with_every_sample_checked(fake, tmp_path):
    server = fake("right")
    res = drive(server.url, tmp_path)
    assert res.ok, res.failures
    stats = res.cases["single"]
    assert stats["requests"] > 0
    assert stats["answers_checked"] == 5  # 1 before, 2 during and 2 after the run
    assert server.served >= stats["requests"] + 5


def test_non_2xx_under_load_fails(fake, tmp_path):
    warm = sb.LoadSettings(duration=1, warmup=1, connections=2, threads=1)
    res = drive(fake("500-to-wrk").url, tmp_path, load=warm)
    assert not res.ok
    assert any(f.startswith("single warm-up (wrk): ") and "non-2xx" in f for f in res.failures)
    assert any(f.startswith("single run (wrk): ") and "non-2xx" in f for f in res.failures)


def test_socket_errors_under_load_fail(fake, tmp_path):
    res = drive(fake("drop-wrk-connections").url, tmp_path)
    assert not res.ok
    assert any("socket errors: connect 0, read " in f for f in res.failures), res.failures


def test_a_wrong_answer_with_status_200_fails(fake, tmp_path):
    # wrk sees only 200s here: the samples are what catches it, during and after the run
    res = drive(fake("wrong-after-first").url, tmp_path)
    assert not res.ok
    assert [f.split(":")[0] for f in res.failures] == [
        "single during the run",
        "single after the run",
    ]
    assert "row 0 got 'virginica', the model says setosa" in res.failures[0]


def test_a_server_that_does_not_answer_fails_before_the_load(tmp_path):
    res = drive(f"http://127.0.0.1:{free_port()}", tmp_path)
    assert not res.ok
    assert res.failures[0].startswith("single: wrong answer before the load: no answer")
    assert "single" not in res.cases


def test_wrk_that_cannot_connect_fails(tmp_path):
    lua = sb.lua_script(tmp_path / "x.lua", tmp_path / "body.json")
    with pytest.raises(sb.RunFailed, match="unable to connect"):
        LOAD.wrk(f"http://127.0.0.1:{free_port()}/predict", lua, 1)


def test_another_worker_count_than_asked_fails(fake, tmp_path):
    res = drive(fake("right").url, tmp_path, workers=2)
    assert res.failures == ["1 worker processes, 2 asked for"]


@pytest.mark.timeout(600)
def test_bench_end_to_end(tmp_path):
    """The real benchmark, all three servers, one worker each (mirrored to mlflow); ours in
    each of its protocols."""
    out = tmp_path / "bench.json"
    argv = [
        sys.executable, "bench/serve_bench.py",
        "--duration", "1", "--warmup", "0", "--samples", "2",
        # not the role's 2: only a mirrored count gives mlflow one worker
        "--set", "PREDICTOR_WORKERS=1",
        "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=540, check=False)
    tail = f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, tail
    assert "workers per server: ours 1, mlflow 1 (mlflow models serve --workers 1)" in proc.stdout
    report = json.loads(out.read_text())
    assert report["failed"] == {}
    assert report["settings"]["workers"] == 1
    for target in sb.TARGET_NAMES:
        res = report["results"][target]
        assert res["ok"], (target, res["failures"])
        assert len(res["workers"]) == 1, (target, res["workers"])
        assert list(res["cases"]) == [name for name, *_ in sb.PLAN[target]]
        for stats in res["cases"].values():
            assert stats["requests"] > 0
            assert stats["answers_checked"] == 5
    assert set(report["ratios"]) == {ratio.key for ratio in sb.RATIOS}
    # the table: a row per protocol of ours, each with its req/s over /predict's
    rows = {
        tuple(line.split()[:2]): line.split()
        for line in proc.stdout.splitlines()
        if line.startswith("ours ")
    }
    for path, key in (
        ("/invocations", "invocations_rps_vs_predict"),
        (f"/v2/models/{sb.MODEL_NAME}/infer", "v2_rps_vs_predict"),
    ):
        # server, endpoint, "1 row" (two words), req/s, then req/s over /predict's
        assert rows["ours", path][5] == f"{report['ratios'][key]:.2f}", proc.stdout
    verdicts = {c["target"] for c in report["targets"]}
    assert {"invocations_rps_vs_predict", "v2_rps_vs_predict"} <= verdicts
