"""HTTP basic authentication, the way an MLflow tracking server with basic auth reads it."""

from __future__ import annotations

import base64


def basic_auth_header(username: str, password: str) -> dict[str, str]:
    """The ``Authorization`` header for ``username`` and ``password`` (UTF-8, RFC 7617)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
