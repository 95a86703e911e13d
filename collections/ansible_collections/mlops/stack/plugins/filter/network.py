# -*- coding: utf-8 -*-
# Copyright: mlops-stack developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Addresses the roles derive from the inventory and from listen settings.

node_address: where the other hosts reach an inventory host.
probe_host: where a service that listens on a given address answers from its own host,
ready to put in a URL (IPv6 in brackets).
listen_host / listen_port: the two halves of a HOST:PORT listen address.
subject_alt_names: a certificate's names as subjectAltName entries (IP: or DNS:).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

# Listen hosts that mean "every address": the service answers on loopback.
WILDCARDS = {"", "0.0.0.0", "*", "::", "[::]"}  # noqa: S104 (names, not a bind)
_LISTEN = re.compile(r"^(?P<host>\[[^\]]*\]|[^:]*|.*(?=:[0-9]+$)):(?P<port>[0-9]+)$")


def node_address(hostvars: Any, inventory_name: str) -> str:
    """mlops_node_address, else ansible_host, else the inventory name."""
    for key in ("mlops_node_address", "ansible_host"):
        value = hostvars.get(key) if hasattr(hostvars, "get") else None
        if value:
            return str(value)
    return str(inventory_name)


def _split(address: str) -> tuple[str, str]:
    match = _LISTEN.match(str(address))
    if match is None:
        raise ValueError(f"{address!r} is not a HOST:PORT listen address")
    return match.group("host").strip("[]"), match.group("port")


def listen_host(address: str) -> str:
    """Host part of HOST:PORT, without IPv6 brackets."""
    return _split(address)[0]


def listen_port(address: str) -> int:
    """Port part of HOST:PORT."""
    return int(_split(address)[1])


def probe_host(host: str) -> str:
    """Where a service listening on ``host`` answers from its own host, for a URL."""
    host = str(host).strip()
    if host in WILDCARDS:
        return "127.0.0.1"
    host = host.strip("[]")
    return f"[{host}]" if ":" in host else host


def subject_alt_names(names: list[str]) -> list[str]:
    """``DNS:name`` entries, then ``IP:addr`` ones, each sorted, duplicates dropped.

    The order is canonical because a certificate is issued again when its
    names differ from the request's, in order too: two inventories that list
    the same names in another order must not issue a new certificate."""
    dns: set[str] = set()
    ips: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for name in names:
        text = str(name).strip().strip("[]")
        try:
            ips.add(ipaddress.ip_address(text))
        except ValueError:
            dns.add(text)
    by_family = sorted(ips, key=lambda ip: (ip.version, ip))
    return [f"DNS:{name}" for name in sorted(dns)] + [f"IP:{ip}" for ip in by_family]


class FilterModule:
    """Network address filters of mlops.stack."""

    def filters(self) -> dict[str, Any]:
        return {
            "node_address": node_address,
            "listen_host": listen_host,
            "listen_port": listen_port,
            "probe_host": probe_host,
            "subject_alt_names": subject_alt_names,
        }
