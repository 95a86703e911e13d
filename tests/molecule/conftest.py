"""The time each molecule scenario took, at the end of the run: they run in the
background two at a time, so pytest's own durations cannot tell them apart."""

from __future__ import annotations

import pytest

from .test_molecule import SECONDS_PROPERTY


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
        minutes, rest = divmod(int(seconds), 60)
        terminalreporter.write_line(f"{scenario:<28} {minutes} min {rest:02d} s")
