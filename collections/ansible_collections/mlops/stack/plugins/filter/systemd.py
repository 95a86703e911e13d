# -*- coding: utf-8 -*-
# Copyright: mlops-stack developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The one sandbox every unit of the collection starts from.

systemd_sandbox: the base sandbox with a unit's own settings over it, as
[Service] directive lines. The packaged services' drop-in
(mlops.stack.systemd_hardening), the Python services' units
(mlops.stack.python_service) and MLflow's backup unit all render it, so a
hardening change reaches each of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# No capabilities, read-only OS, no devices, no kernel knobs, only IP and Unix
# sockets, only the system calls of an ordinary service. `systemd-analyze
# security` rates a unit with it and a non-root User= well under 4.0 (the
# end-to-end suite checks every unit).
BASE: dict[str, Any] = {
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "DevicePolicy": "closed",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "RemoveIPC": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallArchitectures": "native",
    "SystemCallFilter": ["@system-service", "~@privileged @resources"],
    "SystemCallErrorNumber": "EPERM",
    "UMask": "0027",
}


def systemd_sandbox(settings: Mapping[str, Any] | None = None) -> str:
    """The base sandbox with ``settings`` over it, one ``Key=value`` line each, by key.

    A setting replaces the base's value; None leaves the directive out; a list
    writes it once per item; an empty string writes ``Key=`` (which resets a
    packaged unit's value); a boolean writes yes or no.
    """
    merged = {**BASE, **(settings or {})}
    lines: list[str] = []
    for key in sorted(merged):
        value = merged[key]
        if value is None:
            continue
        if not isinstance(key, str) or not key.isalnum():
            raise ValueError(f"{key!r} is not a systemd directive name")
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            text = ("yes" if item else "no") if isinstance(item, bool) else str(item)
            if "\n" in text:
                raise ValueError(f"{key}: a value must be one line, got {text!r}")
            lines.append(f"{key}={text}")
    return "\n".join(lines)


class FilterModule:
    """systemd filters of mlops.stack."""

    def filters(self) -> dict[str, Any]:
        return {"systemd_sandbox": systemd_sandbox}
