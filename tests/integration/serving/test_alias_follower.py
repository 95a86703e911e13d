"""One alias follower per host: the registry request rate does not grow with the workers,
an alias move reaches every worker within about a second, a restart from the cache is quick."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mlops_model.errors import RegistryUnavailable
from mlops_model.serving.alias_state import (
    NOT_FOUND,
    OK,
    UNAVAILABLE,
    AliasState,
    write_state,
)
from mlops_model.serving.errors import AliasNotFound
from mlops_model.serving.loader import RegistryLoader
from mlops_model.serving.settings import Settings

from tests.support.gunicorn_predictor import Predictor, running_predictor
from tests.support.http_server import running_servers
from tests.support.serving import PROBE_ROW, set_alias

ALIAS_PATH = "/api/2.0/mlflow/registered-models/alias"


class CountingProxy(ThreadingHTTPServer):
    """Forwards every request to the MLflow server and counts them by path."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = urllib.parse.urlsplit(upstream).netloc
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def count(self, path: str) -> int:
        with self.lock:
            return self.counts[path]


class _Forward(BaseHTTPRequestHandler):
    server: CountingProxy

    def _forward(self) -> None:
        with self.server.lock:
            self.server.counts[urllib.parse.urlsplit(self.path).path] += 1
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "connection"}}
        conn = http.client.HTTPConnection(self.server.upstream, timeout=30)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in {"transfer-encoding", "connection", "content-length"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the predictor gave up on this request
            self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _forward

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def proxy(prepared_models: Any) -> Iterator[CountingProxy]:
    with running_servers() as servers:
        yield servers.start(CountingProxy(prepared_models.url))


def versions_seen(predictor: Predictor, n: int = 6) -> set[str]:
    seen = set()
    for _ in range(n):  # a new connection each: both workers answer
        status, body = predictor.predict({"instances": [PROBE_ROW]})
        assert status == 200, body  # a swap never fails a request
        seen.add(body["model"]["version"])
    return seen


def test_one_follower_per_host_follows_the_alias_and_restarts_from_the_cache(
    prepared_models: Any, proxy: CountingProxy, tmp_path: Path
) -> None:
    via_proxy = dataclasses.replace(prepared_models, url=proxy.url)
    interval = 0.5
    settings = {
        # without the follower each of the 2 workers would ask every 0.5 s: 4 requests/s
        "PREDICTOR_POLL_INTERVAL": str(interval),
        "PREDICTOR_ALIAS_POLL_INTERVAL": str(interval),
        "PREDICTOR_CACHE_DIR": str(tmp_path / "cache"),
    }
    try:
        with running_predictor(via_proxy, tmp_path, **settings) as predictor:
            before, idle = proxy.count(ALIAS_PATH), 3.0
            time.sleep(idle)
            per_second = (proxy.count(ALIAS_PATH) - before) / idle
            assert 0.5 / interval <= per_second <= 1.4 / interval, per_second

            set_alias(prepared_models.url, prepared_models.name, prepared_models.weak)
            moved = time.monotonic()
            # a bound for "followed at all", not a speed figure: the rollout suite
            # and promote.yml measure alias to fleet on the lab
            while versions_seen(predictor) != {prepared_models.weak}:
                assert time.monotonic() - moved < 20.0, "alias move not picked up"
            status, info = predictor.request("GET", "/model")
            assert status == 200
            assert b'"preparation":"prepared"' in info

        # a restart with the version in the host cache: ready from it, nothing downloaded
        # (its time is printed; the lab's rollout suite holds the 3 s goal)
        gets = proxy.count("/api/2.0/mlflow/model-versions/get")
        with running_predictor(
            dataclasses.replace(via_proxy, strong=prepared_models.weak), tmp_path, **settings
        ) as predictor:
            ready = predictor.ready_after
            status, info = predictor.request("GET", "/model")
            assert b'"fetched_from":"cache"' in info, info
        print(f"restart from the host cache: ready after {ready:.2f} s")
        assert proxy.count("/api/2.0/mlflow/model-versions/get") == gets
    finally:
        # the fixture is the session's: other tests expect the strong champion
        set_alias(prepared_models.url, prepared_models.name, prepared_models.strong)


def test_workers_read_the_follower_file_and_ask_the_registry_when_it_is_stale(
    serving_models: Any, tmp_path: Path
) -> None:
    path = tmp_path / "alias.json"
    settings = Settings(
        model_name=serving_models.name,
        tracking_uri=serving_models.url,
        poll_interval=7,
        alias_file=str(path),
        alias_poll_interval=1,
    )
    loader = RegistryLoader(settings)
    name = serving_models.name

    write_state(path, AliasState(OK, name, "champion", "41", "run"))
    assert loader.resolve().version == "41"
    assert loader.poll_delay() < 1
    write_state(path, AliasState(UNAVAILABLE, name, "champion", error="registry down"))
    with pytest.raises(RegistryUnavailable, match="registry down"):
        loader.resolve()  # the watcher keeps its model, as when it asks itself
    write_state(path, AliasState(NOT_FOUND, name, "champion", error="no alias"))
    with pytest.raises(AliasNotFound):
        loader.resolve()

    # the follower stopped touching it: ask the registry, at the normal interval
    old = time.time() - 60
    os.utime(path, (old, old))
    assert loader.resolve().version == serving_models.strong
    assert loader.poll_delay() == 7
