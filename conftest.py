"""Run order for the whole suite: fast tests first, then the molecule
scenarios, then the end-to-end tests on the local nodes, so a broken unit
shows in seconds rather than after the slow part."""

from __future__ import annotations

import pytest


def _weight(item: pytest.Item) -> int:
    if item.get_closest_marker("nodes"):
        return 2
    if item.get_closest_marker("molecule"):
        return 1
    return 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_weight)  # stable: keeps file order within each group
