"""What each converged node listens on is exactly what the design allows.

Read from the kernel's socket tables inside each node (/proc/net/tcp*, udp*),
so a debug port, a stray exporter or a service bound to a port nobody
firewalls shows up here before it reaches a cloud instance.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import NODES, ROOT, Stack, podman_exec

pytestmark = pytest.mark.nodes

# Inventory group -> TCP ports its hosts may listen on (docs/security.md).
ALLOWED_TCP: dict[str, dict[int, str]] = {
    "all": {9100: "node exporter", 22: "SSH (Ansible, as on GCP)"},
    "mlflow": {5000: "MLflow's TLS front (HAProxy, HTTPS)", 5005: "MLflow metrics listener"},
    "predictors": {5001: "predictor (gunicorn)"},
    "monitoring": {9090: "Prometheus", 3000: "Grafana"},
    "gateway": {443: "gateway (HAProxy, HTTPS)", 8404: "gateway stats and metrics"},
}
# Inventory group -> TCP ports its hosts listen on, on loopback only (and must).
LOOPBACK_TCP: dict[str, dict[int, str]] = {
    "mlflow": {5004: "MLflow tracking server, behind its TLS front"},
}
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def node_groups() -> dict[str, set[str]]:
    proc = subprocess.run(
        ["ansible-inventory", "--list"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    inventory = json.loads(proc.stdout)
    groups: dict[str, set[str]] = {node: {"all"} for node in NODES}

    def walk(group: str, inherited: set[str]) -> None:
        entry = inventory.get(group, {})
        names = inherited | {group}
        for host in entry.get("hosts", []):
            groups.setdefault(host, {"all"}).update(names)
        for child in entry.get("children", []):
            walk(child, names)

    walk("all", set())
    return groups


def sockets(node: str, table: str) -> list[tuple[str, int, str, str]]:
    """(local address hex, port, remote address hex, state) of /proc/net/<table>."""
    out = podman_exec(node, "cat", f"/proc/net/{table}", f"/proc/net/{table}6").stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[0] == "sl":
            continue
        local, remote, state = fields[1], fields[2], fields[3]
        address, port = local.rsplit(":", 1)
        found.append((address, int(port, 16), remote, state))
    return found


def is_loopback(address_hex: str) -> bool:
    if len(address_hex) == 8:  # IPv4, little-endian: 127.x.x.x ends in 7F
        return address_hex.endswith("7F")
    return address_hex == "0" * 24 + "01000000"


@pytest.fixture(scope="module")
def groups(local_stack: Stack) -> dict[str, set[str]]:
    return node_groups()


@pytest.mark.parametrize("node", NODES)
def test_tcp_listeners_are_the_designed_ones(groups: dict[str, set[str]], node: str):
    allowed: dict[int, str] = {}
    for group in groups[node]:
        allowed.update(ALLOWED_TCP.get(group, {}))
    listening = {
        port
        for address, port, _, state in sockets(node, "tcp")
        if state == LISTEN and not is_loopback(address)
    }
    unexpected = listening - set(allowed)
    assert not unexpected, f"{node} listens on ports the design does not allow: {unexpected}"
    # Grafana is only installed where its repository is reachable (not here).
    grafana_installed = podman_exec(node, "test", "-x", "/usr/sbin/grafana-server").returncode == 0
    expected = {p for p in allowed if p != 3000 or grafana_installed}
    missing = {allowed[p] for p in expected - listening}
    assert not missing, f"{node} should listen for {missing}; it listens on {listening}"


@pytest.mark.parametrize("node", NODES)
def test_loopback_listeners_stay_on_loopback(groups: dict[str, set[str]], node: str):
    """A service behind a front on its host (MLflow behind its TLS front) listens on
    loopback and nowhere else: no client reaches it around the front."""
    loopback_only: dict[int, str] = {}
    for group in groups[node]:
        loopback_only.update(LOOPBACK_TCP.get(group, {}))
    listening = [
        (address, port)
        for address, port, _, state in sockets(node, "tcp")
        if state == LISTEN and port in loopback_only
    ]
    exposed = {loopback_only[p] for address, p in listening if not is_loopback(address)}
    assert not exposed, f"{node} listens beyond loopback for {exposed}"
    missing = {loopback_only[p] for p in set(loopback_only) - {p for _, p in listening}}
    assert not missing, f"{node} should listen on loopback for {missing}"


@pytest.mark.parametrize("node", NODES)
def test_no_udp_service_listens(local_stack: Stack, node: str):
    # An unconnected UDP socket bound to a non-loopback address is a UDP
    # service; resolver sockets are connected to their server (remote set).
    unconnected_zero = {"00000000:0000", "0" * 32 + ":0000"}
    services = {
        port
        for address, port, remote, _ in sockets(node, "udp")
        if remote in unconnected_zero and not is_loopback(address)
    }
    assert not services, f"{node} has UDP services listening: {services}"
