"""The public endpoint, as a client on the internet meets it: HTTPS only, a key per client,
a rate limit per key, and keys that never leave a trace.

Against the lab gateway (gateway-1, https://127.0.0.1:8443), converged with the
production settings: its certificate from the lab CA (credentials/ca.crt) and the
lab's client key (credentials/gateway-client-key). The rate-limit and revocation
test converges the gateway with a second client and then without it, under load
with the first key: a converge that changes keys drops no request.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.lab_http import (
    CREDENTIALS,
    IRIS_ROWS,
    gateway_key,
    lab_tls,
    post_gateway,
)
from tests.support.load import gateway_load

from .conftest import ROOT, Stack, ansible_playbook, podman_exec

pytestmark = pytest.mark.nodes

HOST, PORT = "127.0.0.1", 8443
BODY = {"instances": IRIS_ROWS}
# A second client for the limit and revocation test (not a real secret).
BURST_KEY = "burst-client-key-for-the-rate-limit-test"  # pragma: allowlist secret (test key)
BURST_LIMIT = 5


def request(
    path: str, headers: dict[str, str], method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    """One request over a fresh verified HTTPS connection: status, headers, body."""
    conn = http.client.HTTPSConnection(HOST, PORT, timeout=10, context=lab_tls())
    try:
        body = json.dumps(BODY).encode() if method == "POST" else None
        conn.request(
            method, path, body=body, headers={"Content-Type": "application/json", **headers}
        )
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_the_gateway_speaks_https_only_with_hsts_and_h2(local_stack: Stack) -> None:
    status, headers, _ = request("/predict", {"X-API-Key": gateway_key()})
    assert status == 200
    assert headers["strict-transport-security"] == "max-age=63072000"
    # the certificate is valid for both loopback names, verified against the lab CA
    for name in ("localhost", "127.0.0.1"):
        with (
            socket.create_connection((HOST, PORT), timeout=5) as raw,
            lab_tls().wrap_socket(raw, server_hostname=name) as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    h2 = ssl.create_default_context(cafile=str(CREDENTIALS / "ca.crt"))
    h2.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection((HOST, PORT), timeout=5) as raw,
        h2.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
    # plain HTTP on the HTTPS port gets no HTTP answer at all
    plain = http.client.HTTPConnection(HOST, PORT, timeout=5)
    plain.request("GET", "/health")
    with pytest.raises((http.client.HTTPException, OSError)):
        plain.getresponse()


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Basic cmVhZGVyOnNlY3JldA=="}, "missing API key"),
        ({"X-API-Key": "not-a-key-of-this-gateway"}, "unknown or revoked API key"),
        ({"Authorization": "Bearer not-a-key-of-this-gateway"}, "unknown or revoked API key"),
    ],
    ids=["none", "basic-auth", "wrong-header", "wrong-bearer"],
)
def test_a_prediction_without_a_valid_key_gets_401_json(
    local_stack: Stack, headers: dict[str, str], error: str
) -> None:
    for path in ("/predict", "/invocations", "/v2/models/iris/infer", "/metrics", "/model"):
        status, answer, body = request(path, headers)
        assert status == 401, (path, body)
        assert answer["content-type"] == "application/json"
        assert error in json.loads(body)["error"], body
        assert answer["www-authenticate"].startswith("Bearer")
        assert answer["strict-transport-security"] == "max-age=63072000"


def test_the_key_works_in_either_header_and_health_stays_open(local_stack: Stack) -> None:
    key = gateway_key()
    for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
        status, _, body = request("/predict", headers)
        assert status == 200, body
        assert len(json.loads(body)["predictions"]) == len(IRIS_ROWS)
    for path in ("/health", "/ready", "/ping", "/v2/health/live", "/v2/health/ready"):
        status, _, body = request(path, {}, method="GET")
        assert status == 200, (path, body)


def client_counters(client: str) -> tuple[float, float]:
    """(requests, rate-limited) of a client, from the gateway's /metrics/clients."""
    text = podman_exec("gateway-1", "curl", "-fsS", "http://127.0.0.1:8404/metrics/clients").stdout
    values = {"haproxy_client_requests_total": 0.0, "haproxy_client_rate_limited_total": 0.0}
    for line in text.splitlines():
        for name in values:
            if line.startswith(f'{name}{{client="{client}"}} '):
                values[name] = float(line.rsplit(" ", 1)[1])
    return values["haproxy_client_requests_total"], values["haproxy_client_rate_limited_total"]


@pytest.fixture
def burst_client(tmp_path: Path) -> Iterator[Path]:
    """Converge the gateway with a second client (5 requests/s); converge it away after."""
    keys = [
        {"name": "default", "key": gateway_key(), "rate_limit": 20000},
        {"name": "burst", "key": BURST_KEY, "rate_limit": BURST_LIMIT},
    ]
    with_burst = tmp_path / "with-burst.json"
    with_burst.write_text(json.dumps({"gateway_client_keys": keys}))
    ansible_playbook("playbooks/gateway.yml", "-e", f"@{with_burst}")
    yield with_burst
    ansible_playbook("playbooks/gateway.yml")


def test_a_client_over_its_limit_gets_429_then_recovers_and_a_revoked_key_gets_401(
    local_stack: Stack, burst_client: Path
) -> None:
    before = client_counters("burst")
    answers = [request("/predict", {"X-API-Key": BURST_KEY}) for _ in range(3 * BURST_LIMIT)]
    statuses = [status for status, _, _ in answers]
    assert statuses[:BURST_LIMIT] == [200] * BURST_LIMIT, statuses
    refused = [(headers, body) for status, headers, body in answers if status == 429]
    assert refused, statuses
    assert set(statuses) == {200, 429}, statuses
    headers, body = refused[0]
    assert headers["content-type"] == "application/json"
    assert "rate limit" in json.loads(body)["error"]
    retry_after = int(headers["retry-after"])
    assert retry_after >= 1
    # the default client is not slowed by another client's limit
    assert post_gateway("/predict", BODY)[0] == 200
    time.sleep(retry_after)
    assert request("/predict", {"X-API-Key": BURST_KEY})[0] == 200
    # counted per client, under the client's name
    after = client_counters("burst")
    assert after[0] - before[0] == len(answers) + 1
    assert after[1] - before[1] == len(refused)

    # revoke: converge without the burst client, while the default client's load runs
    with gateway_load(expected_versions=version_served(), rate=20, duration=300) as load:
        time.sleep(1)
        ansible_playbook("playbooks/gateway.yml")
        time.sleep(1)
    result = load.result
    assert not result.problems(p99_limit=2.0, max_limit=5.0), result.summary()
    assert result.sent > 20, result.summary()
    status, headers, body = request("/predict", {"X-API-Key": BURST_KEY})
    assert status == 401, body
    assert "unknown or revoked" in json.loads(body)["error"]


def version_served() -> set[str]:
    status, body = post_gateway("/predict", BODY)
    assert status == 200, body
    return {str(body["model"]["version"])}


def test_no_key_reaches_the_logs_or_the_predictors(local_stack: Stack) -> None:
    key = gateway_key()
    # a few requests that HAProxy does log (errors): wrong keys, a refused method
    request("/predict", {"X-API-Key": BURST_KEY})
    request("/predict", {"Authorization": f"Bearer {key}x"})
    request("/predict", {"X-API-Key": key}, method="GET")
    secrets = {key, BURST_KEY, f"{key}x"}
    for node in ("gateway-1", "predictor-1", "predictor-2"):
        journal = podman_exec(node, "journalctl", "--no-pager", "-o", "cat").stdout
        logs = podman_exec(node, "sh", "-c", "cat /var/log/haproxy.log /var/log/syslog 2>/dev/null")
        for secret in secrets:
            assert secret not in journal, f"a client key in {node}'s journal"
            assert secret not in logs.stdout, f"a client key in {node}'s log files"
    # the gateway holds the key's hash, never the key
    config = podman_exec("gateway-1", "sh", "-c", "cat /etc/haproxy/*.map /etc/haproxy/haproxy.cfg")
    assert key not in config.stdout
    assert f"{hashlib.sha256(key.encode()).hexdigest()} default" in config.stdout


def readme_curl(host_port: str) -> str:
    """The README's first curl to https://HOST_PORT/predict, continuation lines joined."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith(f"curl https://{host_port}/predict")
    )
    command = []
    for line in lines[start:]:
        command.append(line.rstrip("\\").strip())
        if not line.endswith("\\"):
            break
    return " ".join(command)


def test_the_readme_curl_works_as_printed_and_fails_without_its_key(local_stack: Stack) -> None:
    command = readme_curl("127.0.0.1:8443")
    assert "--cacert credentials/ca.crt" in command
    answered = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout)["predictions"] == ["setosa", "virginica"], answered.stdout
    without_key = subprocess.run(
        ["bash", "-c", command.replace("X-API-Key:", "X-Not-The-Key:") + " -w ' %{http_code}'"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert without_key.stdout.endswith(" 401"), without_key.stdout
