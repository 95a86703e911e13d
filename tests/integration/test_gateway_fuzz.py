"""Hostile input through the public endpoint: schemathesis fuzzes the lab's
predictors through the gateway, over HTTPS verified against the lab CA, with the
lab's client key, against the predictors' own /openapi.json.

The same run and checks as the fuzz test of a bare predictor
(tests/integration/serving/test_fuzz_openapi.py), fewer examples per operation:
what this one adds is the gateway between the client and the predictors. Every
answer must still be a documented status with a JSON body that conforms: an
error of the gateway's own (a request it refuses, a timeout, a predictor that
fell over) would show as an undocumented status, a non-JSON body or a 5xx.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from tests.support.fuzz import assert_clean_and_meaningful, run_schemathesis
from tests.support.lab_http import CREDENTIALS, GATEWAY, gateway_headers, lab_tls

from .conftest import Stack, podman_exec

pytestmark = pytest.mark.nodes

MAX_EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_MAX_EXAMPLES", "40"))
SEED = int(os.environ.get("PREDICTOR_FUZZ_SEED", "20261126"))


def predictor_journal(node: str, since: str) -> str:
    return podman_exec(
        node, "journalctl", "--no-pager", "-o", "cat", "-u", "predictor", "--since", since
    ).stdout


def test_fuzz_the_predictors_through_the_gateway_with_a_key(
    local_stack: Stack, tmp_path: Path
) -> None:
    since = podman_exec("predictor-1", "date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    fuzz = run_schemathesis(
        GATEWAY, tmp_path, max_examples=MAX_EXAMPLES, seed=SEED, timeout=900,
        headers=gateway_headers(), ca_file=CREDENTIALS / "ca.crt",
    )  # fmt: skip
    summary = fuzz.summary(SEED)
    print(f"\n{summary}")

    request = urllib.request.Request(f"{GATEWAY}/openapi.json", headers=gateway_headers())
    with urllib.request.urlopen(request, timeout=10, context=lab_tls()) as resp:
        documented = sum(len(methods) for methods in json.load(resp)["paths"].values())
    assert_clean_and_meaningful(fuzz, summary, documented, MAX_EXAMPLES)
    # no request was refused for want of a key or over the limit: every one was fuzzed
    refused = {k: n for k, n in fuzz.by_status.items() if k.endswith((" 401", " 429"))}
    assert refused == {}, refused
    # a fault answered as JSON still leaves its traceback in a predictor's journal
    for node in ("predictor-1", "predictor-2"):
        journal = predictor_journal(node, since)
        assert "Traceback" not in journal, journal[-4000:]
