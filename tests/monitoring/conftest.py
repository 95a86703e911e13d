"""Fixtures of the monitoring tests."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool; the tests fail (not skip) without it: it is part of the toolchain."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install the Debian package with "
            "`apt-get install -y --no-install-recommends prometheus` "
            "(scripts/bootstrap.sh does this)"
        )
    return path
