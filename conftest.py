"""Run order and phase times for the whole suite.

Fast tests run first, so a broken unit shows in seconds rather than after
the slow part, then the end-to-end tests on the local nodes, then the
molecule scenarios' results: the scenarios start with the test loop and run
in the background beside the end-to-end tests (tests/molecule/conftest.py),
so their phase is only what is left of them when the end-to-end tests end.

At the end the summary shows how long each phase took; `./stack test` passes
the times of its own steps before pytest (bootstrap, lint) in
MLOPS_PHASE_TIMES as `name=seconds,...`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

PHASES = ("fast tests", "end to end", "molecule")
_spent: dict[str, float] = {}


def _phase(item: pytest.Item) -> str:
    if item.get_closest_marker("nodes"):
        return PHASES[1]
    if item.get_closest_marker("molecule"):
        return PHASES[2]
    return PHASES[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: PHASES.index(_phase(item)))  # stable within a phase


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    # setup, call and teardown: a session fixture (the converged nodes) counts
    # in the phase of the first test that needs it
    start = time.monotonic()
    try:
        return (yield)
    finally:
        phase = _phase(item)
        _spent[phase] = _spent.get(phase, 0.0) + time.monotonic() - start


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    before = [
        (name, float(seconds))
        for name, _, seconds in (
            part.partition("=") for part in os.environ.get("MLOPS_PHASE_TIMES", "").split(",")
        )
        if name and seconds
    ]
    rows = before + [(phase, _spent[phase]) for phase in PHASES if phase in _spent]
    if not rows:
        return
    terminalreporter.section("time per phase")
    for name, seconds in rows:
        terminalreporter.write_line(f"{name:<12} {_minutes(seconds):>14}")
    terminalreporter.write_line(f"{'total':<12} {_minutes(sum(s for _, s in rows)):>14}")
