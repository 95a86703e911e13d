"""Fixtures of the monitoring tests."""

from __future__ import annotations

import pytest

from tests.support.tools import required_tool


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool; the tests fail (not skip) without it: it is part of the toolchain."""
    return required_tool(
        "promtool",
        "install the Debian package with "
        "`apt-get install -y --no-install-recommends prometheus` "
        "(scripts/bootstrap.sh does this)",
    )
