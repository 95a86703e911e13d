# -*- coding: utf-8 -*-
# Copyright: mlops-stack developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Client keys of the gateway.

client_key_hash: the SHA-256 (lowercase hex) of a gateway_client_keys entry,
from its ``sha256`` as given or from its ``key``: all the gateway ever holds.
"""

from __future__ import annotations

import hashlib
from typing import Any


def client_key_hash(client: Any) -> str:
    """Lowercase hex SHA-256 of a client entry's key (``sha256``, else ``key``)."""
    if not hasattr(client, "get"):
        raise TypeError("a client key entry is a mapping with name and key or sha256")
    given = client.get("sha256")
    if given:
        return str(given).lower()
    key = client.get("key")
    if not key:
        raise ValueError(f"client {client.get('name')!r} has neither key nor sha256")
    return hashlib.sha256(str(key).encode()).hexdigest()


class FilterModule:
    """Client key filters of mlops.stack."""

    def filters(self) -> dict[str, Any]:
        return {"client_key_hash": client_key_hash}
