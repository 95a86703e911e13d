"""The molecule scenarios start with the test loop and run in the background,
beside the end-to-end tests; at the end, the time each scenario took (pytest's
own durations cannot tell them apart) and how long they ran in all."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from .test_molecule import RUNS, SECONDS_PROPERTY, start_scenarios


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Iterator[object]:
    runs = start_scenarios(session)
    try:
        return (yield)
    finally:
        if runs is not None:
            runs.shutdown()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows = [
        (report.nodeid.rpartition("[")[2].rstrip("]"), value)
        for reports in terminalreporter.stats.values()
        for report in reports
        if isinstance(report, pytest.TestReport) and report.when == "call"
        for name, value in report.user_properties
        if name == SECONDS_PROPERTY and isinstance(value, float)
    ]
    if not rows:
        return
    terminalreporter.section("molecule scenarios")
    for scenario, seconds in sorted(rows, key=lambda row: -row[1]):
        terminalreporter.write_line(f"{scenario:<28} {minutes(seconds)}")
    runs = terminalreporter.config.stash.get(RUNS, None)
    if runs is not None:
        end = runs.finished or time.monotonic()
        beside = ", beside the end-to-end tests" if runs.beside_nodes else ""
        terminalreporter.write_line(
            f"{'in all':<28} {minutes(end - runs.started)}"
            f" ({runs.jobs} at a time from the start of the test loop{beside})"
        )


def minutes(seconds: float) -> str:
    whole, rest = divmod(int(seconds), 60)
    return f"{whole} min {rest:02d} s"
