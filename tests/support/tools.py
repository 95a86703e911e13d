"""Command-line tools the tests need: found on the PATH, or the test fails saying how to
install it. Part of the toolchain, never a reason to skip."""

from __future__ import annotations

import shutil

import pytest


def required_tool(name: str, install: str) -> str:
    """Path of ``name`` on the PATH; without it the calling test fails with ``install``."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on the PATH: {install}")
    return path
