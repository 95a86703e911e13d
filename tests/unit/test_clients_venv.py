"""tests/support/clients_venv.py without pip: when the clients venv is reused, when rebuilt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import clients_venv as cv


@pytest.fixture
def requirements(tmp_path: Path) -> Path:
    path = tmp_path / "requirements-clients.txt"
    path.write_text("kserve==0.21.0\n")
    return path


def fake_build(calls: list[list[str]]):
    def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        if argv[1:3] == ["-m", "venv"]:
            (Path(argv[3]) / "bin").mkdir(parents=True)
        return subprocess.CompletedProcess(argv, 0)

    return run


def test_built_once_then_reused_until_the_requirements_change(
    tmp_path: Path, requirements: Path, monkeypatch: pytest.MonkeyPatch
):
    calls: list[list[str]] = []
    monkeypatch.setattr(cv.subprocess, "run", fake_build(calls))
    cache = tmp_path / "cache"

    first = cv.ensure(cache, requirements)
    venv = first.python.parents[1]
    assert venv.parent == cache
    assert first.built_in is not None
    # the venv's own pip installs the pinned file, nothing else
    assert calls[-1][0] == str(venv / "bin" / "python")
    assert calls[-1][-2:] == ["-r", str(requirements)]
    built = len(calls)

    assert cv.ensure(cache, requirements).built_in is None
    assert len(calls) == built, "a venv with the right stamp was built again"

    requirements.write_text("kserve==0.21.0\ntritonclient[http]==2.73.0\n")
    second = cv.ensure(cache, requirements)
    assert second.built_in is not None
    assert len(calls) == 2 * built
    # one venv per requirements file: the old one is gone once the new one is built
    assert [p for p in cache.iterdir() if p.is_dir()] == [second.python.parents[1]]


def test_a_build_that_stopped_half_way_is_redone(
    tmp_path: Path, requirements: Path, monkeypatch: pytest.MonkeyPatch
):
    calls: list[list[str]] = []
    monkeypatch.setattr(cv.subprocess, "run", fake_build(calls))
    cache = tmp_path / "cache"
    stamp = cv.wanted_stamp(requirements, sys.executable)
    venv = cache / f"{cv.PREFIX}{stamp[:16]}"
    (venv / "bin").mkdir(parents=True)  # a venv without a stamp: pip never finished
    (venv / "leftover").write_text("x")
    assert cv.ensure(cache, requirements).built_in is not None
    assert not (venv / "leftover").exists(), "the half-built venv was not removed first"
    assert (venv / cv.STAMP_NAME).read_text().strip() == cv.wanted_stamp(
        requirements, sys.executable
    )
