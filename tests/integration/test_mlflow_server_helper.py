"""tests/support/mlflow_server.py: a server that cannot start says why, at once."""

from __future__ import annotations

import time

import pytest

from tests.support.mlflow_server import MlflowServer


def test_a_server_that_dies_at_start_fails_fast_with_its_log(tmp_path):
    server = MlflowServer(tmp_path / "mlflow", extra_args=("--no-such-option",))
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="No such option"):
        server.start(timeout=60)
    # its exit ends the wait: not the 60 s timeout
    assert time.monotonic() - began < 30
    assert server.proc is None
