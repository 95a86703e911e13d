"""Fixtures of the serving unit tests; those with a registry: tests/integration/serving."""

from __future__ import annotations

import pytest

from tests.support.serving import fast_registry_http


@pytest.fixture(autouse=True)
def _fast_registry_http(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_registry_http(monkeypatch)
