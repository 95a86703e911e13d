"""HTTP helpers for the end-to-end tests against the lab stack (loopback only):
MLflow accounts, the gateway's client key, the lab CA, JSON requests, Prometheus
queries, polling."""

from __future__ import annotations

import base64
import functools
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# MLflow's TLS front (published by podman on this machine's loopback): HTTPS
# only, its certificate from the lab CA.
MLFLOW = "https://127.0.0.1:5000"
# The gateway: HTTPS only, with the lab's client key, its certificate from the lab CA.
GATEWAY = "https://127.0.0.1:8443"
CREDENTIALS = ROOT / "credentials"
# The lab CA's certificate, which signs every lab certificate.
LAB_CA = CREDENTIALS / "ca.crt"

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.8, 3.0, 5.9, 2.3]]


def mlflow_auth(account: str) -> dict[str, str]:
    """Basic-auth header of a lab MLflow account (passwords in credentials/)."""
    password = (ROOT / "credentials" / f"mlflow_{account}_password").read_text().strip()
    token = base64.b64encode(f"{account}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def gateway_key() -> str:
    """The lab's client key (credentials/gateway-client-key, the key alone on one line)."""
    return (CREDENTIALS / "gateway-client-key").read_text().strip()


def gateway_headers() -> dict[str, str]:
    return {"X-API-Key": gateway_key()}


@functools.cache
def lab_tls() -> ssl.SSLContext:
    """Verifies a certificate against the lab CA (credentials/ca.crt), host names included."""
    return ssl.create_default_context(cafile=str(LAB_CA))


def tls_for(url: str) -> ssl.SSLContext | None:
    """The lab CA's context for an https URL, None for plain HTTP."""
    return lab_tls() if url.startswith("https:") else None


def get_json(url: str, timeout: float = 10, account: str | None = None) -> Any:
    """GET a JSON document; `account` signs in to the lab's MLflow as that account.
    An https URL is verified against the lab CA."""
    headers = mlflow_auth(account) if account else {}
    with urllib.request.urlopen(
        urllib.request.Request(url, headers=headers), timeout=timeout, context=tls_for(url)
    ) as resp:
        return json.load(resp)


def post_json(
    url: str, body: Any, timeout: float = 10, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """POST a JSON body; an https URL is verified against the lab CA."""
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=tls_for(url)) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def post_gateway(path: str, body: Any, timeout: float = 10) -> tuple[int, Any]:
    """POST a JSON body to the gateway with the lab's client key."""
    return post_json(f"{GATEWAY}{path}", body, timeout=timeout, headers=gateway_headers())


def prom_query(expr: str) -> list[dict[str, Any]]:
    url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = get_json(url)
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 2.0, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")
