"""The Open Inference Protocol V2 through the gateway, with the clients users run.

``tritonclient[http]`` and kserve's ``InferenceRESTClient`` (the real packages, pinned in
requirements-clients.txt) ask the lab's gateway for liveness, readiness, the model's
readiness and metadata, and infer one row and many rows. Their labels, probabilities
and model version must equal what ``/predict`` answers through the same gateway for
the same rows.

The clients live in a venv of their own (tests/support/clients_venv.py: kserve's pins
would move the project venv's), built here the first time (about a minute, ~460 MiB)
and reused after; tests/support/v2_clients.py runs in it and prints what the clients
read. tritonclient asks for binary outputs by default: that default is kept, so the
test also proves the predictor's plain JSON answer is one the client parses.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlops_model.serving.checks import check_rows

from tests.support.clients_venv import ClientsVenv, ensure
from tests.support.lab_http import CREDENTIALS, GATEWAY, IRIS_ROWS, gateway_headers, post_gateway

from .conftest import ROOT, Stack

pytestmark = pytest.mark.nodes

DRIVER = ROOT / "tests" / "support" / "v2_clients.py"
CLIENTS = ("tritonclient", "kserve")
# the Iris rows of the other lab tests, then random in-range rows rounded like real input
CASES: dict[str, list[list[float]]] = {
    "one": [IRIS_ROWS[0]],
    "many": np.round(check_rows(97, 16, base=IRIS_ROWS), 1).tolist(),
}


def say(config: pytest.Config, text: str) -> None:
    """A line on the terminal even under output capture: the venv build is worth seeing."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if reporter is None:
        print(text)
        return
    quiet = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    with quiet:
        reporter.write_line(text)


@pytest.fixture(scope="module")
def clients_venv(request: pytest.FixtureRequest) -> ClientsVenv:
    found = ensure()
    how = "reused" if found.built_in is None else f"built in {found.built_in:.0f} s"
    venv = found.python.parent.parent
    say(request.config, f"\nclients venv {venv} {how}, {found.size_mib:.0f} MiB")
    return found


@pytest.fixture(scope="module")
def predicted(local_stack: Stack) -> dict[str, dict[str, Any]]:
    """``/predict``'s answer through the gateway for each case's rows."""
    answers = {}
    for name, rows in CASES.items():
        status, body = post_gateway("/predict", {"instances": rows})
        assert status == 200, body
        answers[name] = body
    return answers


@pytest.fixture(scope="module")
def driven(
    local_stack: Stack, clients_venv: ClientsVenv, predicted: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """What each client read from the gateway (one run of the driver for all tests)."""
    model = predicted["one"]["model"]["name"]
    job = {
        "url": GATEWAY,
        "model": model,
        "headers": gateway_headers(),
        "ca": str(CREDENTIALS / "ca.crt"),
        "cases": CASES,
    }
    proc = subprocess.run(
        [str(clients_venv.python), str(DRIVER)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path("/"),  # nothing of the repository is importable from the clients venv
    )
    assert proc.returncode == 0, f"the client driver failed:\n{proc.stderr[-6000:]}"
    found: dict[str, Any] = json.loads(proc.stdout)
    return found


@pytest.mark.parametrize("client", CLIENTS)
def test_health_and_metadata_through_the_client(
    driven: dict[str, Any], predicted: dict[str, dict[str, Any]], client: str
):
    report = driven[client]
    assert (report["live"], report["ready"], report["model_ready"]) == (True, True, True)
    meta = report["metadata"]
    model = predicted["one"]["model"]
    assert meta["name"] == model["name"]
    assert str(model["version"]) in [str(v) for v in meta["versions"]]
    assert [(t["name"], t["datatype"], list(t["shape"])) for t in meta["inputs"]] == [
        ("input", "FP64", [-1, 4])
    ]
    assert [(t["name"], t["datatype"], list(t["shape"])) for t in meta["outputs"]] == [
        ("predictions", "BYTES", [-1]),
        ("probabilities", "FP64", [-1, 3]),
    ]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("client", CLIENTS)
def test_client_answers_equal_predict(
    driven: dict[str, Any], predicted: dict[str, dict[str, Any]], client: str, case: str
):
    got = driven[client]["infer"][case]
    want = predicted[case]
    n = len(CASES[case])
    assert got["id"] == f"{client.removesuffix('client')}-{case}", "the request id not echoed"
    assert str(got["model_version"]) == str(want["model"]["version"])
    assert len(got["labels"]) == n
    assert got["labels"] == want["predictions"]
    # the same model and backend on every predictor: the very same numbers, not close ones
    assert got["probabilities"] == want["probabilities"]
