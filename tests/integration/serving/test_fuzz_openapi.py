"""Hostile input: schemathesis fuzzes the real predictor against its own /openapi.json.

What runs is what users hit: gunicorn with the production config and two workers,
serving a model version from a real MLflow registry (``serving_models``), over HTTP.
schemathesis (its ``run`` command, every phase: the document's examples, the
coverage phase's edge cases and wrong methods/content types, then generated
positive and negative bodies) sends requests with every check on. The run is bounded
by ``--max-examples`` per operation and a hard timeout. The test asserts:

* no response is a 5xx;
* every response conforms to the document: a documented status code, the declared
  content type, a body that validates against the response schema (and invalid
  bodies are refused with a documented 4xx, valid ones served).

Every operation is fuzzed, the MLflow scoring and Open Inference V2 ones included.
Their request schemas describe forms that are always served (a subset of what the
protocols accept: MLflow's wrappers take reordered and extra columns, V2 any N),
so the check that schema-invalid bodies are refused also takes a 200 for
``/invocations`` and V2 infer only; what those accept and refuse is held to the real ``mlflow models
serve`` by tests/integration/test_scoring_contract.py and to /predict by
test_protocols.py.

Figures (requests fuzzed, 5xx seen, failures) are printed (``-s``) and written to
``.work/fuzz-report.json``. The seed is fixed, so a failure reproduces; set
``PREDICTOR_FUZZ_SEED`` and ``PREDICTOR_FUZZ_MAX_EXAMPLES`` to explore further.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gunicorn_predictor import running_predictor

ROOT = Path(__file__).resolve().parents[3]
REPORT = ROOT / ".work" / "fuzz-report.json"
# per operation, in the fuzzing phase; more (and other seeds) to explore by hand
MAX_EXAMPLES = int(os.environ.get("PREDICTOR_FUZZ_MAX_EXAMPLES", "100"))
SEED = int(os.environ.get("PREDICTOR_FUZZ_SEED", "20261126"))
RUN_TIMEOUT = int(os.environ.get("PREDICTOR_FUZZ_TIMEOUT", "900"))  # s, the whole run
# Statuses with which a request that violates the document may be refused: every 4xx
# the document declares for /predict, and 404/405 for wrong paths and methods.
REJECTION_STATUSES = ["400", "404", "405", "413", "415"]
# Operations whose schema is a subset of what they accept (see the module docstring).
LENIENT_OPERATIONS = r"^/(invocations|v2/models/\{name\}(/versions/\{version\})?/infer)$"


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


@pytest.fixture
def predictor(serving_models: Any, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real gunicorn (production config, two workers) serving the strong version."""
    with running_predictor(serving_models, tmp_path) as server:
        yield server.url, server.log


def short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def har_summary(har: dict[str, Any]) -> tuple[int, collections.Counter[str], list[str]]:
    """Requests sent, a count per 'METHOD /path status', and each 5xx in detail."""
    entries = har["log"]["entries"]
    by_status: collections.Counter[str] = collections.Counter()
    server_errors: list[str] = []
    for entry in entries:
        request, response = entry["request"], entry["response"]
        path = "/" + request["url"].split("/", 3)[-1].split("?", 1)[0]
        status = int(response["status"])
        by_status[f"{request['method']} {path} {status}"] += 1
        if status >= 500:
            body = (request.get("postData") or {}).get("text", "")
            server_errors.append(
                f"{request['method']} {request['url']} body={short(body)!r} -> {status} "
                f"{short(response.get('content', {}).get('text', ''))!r}"
            )
    return len(entries), by_status, server_errors


def test_fuzz_the_predictor_against_its_openapi_document(
    predictor: tuple[str, Path], tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    predictor_url, log = predictor
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f"[checks.negative_data_rejection]\nexpected-statuses = {json.dumps(REJECTION_STATUSES)}\n"
        f"\n[[operations]]\ninclude-path-regex = {json.dumps(LENIENT_OPERATIONS)}\n"
        # ("enabled = false" would lose to --checks all): any answer but a 5xx is right
        "checks.negative_data_rejection.expected-statuses = "
        f"{json.dumps(['200', *REJECTION_STATUSES])}\n"
    )
    reports = tmp_path / "reports"
    st = str(Path(sys.executable).with_name("schemathesis"))
    command = [
        st, "--config-file", str(config), "--no-color",
        "run", f"{predictor_url}/openapi.json",
        "--checks", "all",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--workers", "1",
        "--request-timeout", "10",
        "--max-response-time", "5",
        "--generation-database", "none",
        "--report", "har,json",
        "--report-dir", str(reports),
        "--report-har-path", str(reports / "run.har"),
        "--report-json-path", str(reports / "run.json"),
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    elapsed = time.monotonic() - started
    assert (reports / "run.har").is_file(), f"no HAR report:\n{proc.stdout}\n{proc.stderr}"
    requests, by_status, server_errors = har_summary(json.loads((reports / "run.har").read_text()))
    run = json.loads((reports / "run.json").read_text())
    failures = [
        {"code": f["code"], "title": f["title"], "operations": f["operations"]}
        for f in run["failures"]
    ]
    figures = {
        "requests": requests,
        "server_errors": len(server_errors),
        "failures": failures,
        "errors": run["errors"],
        "operations_tested": run["operations"]["tested"],
        "by_status": dict(sorted(by_status.items())),
        "seed": SEED,
        "max_examples": MAX_EXAMPLES,
        "exit_code": proc.returncode,
        "seconds": round(elapsed, 1),
    }
    record_property("fuzz_requests", requests)
    record_property("fuzz_server_errors", len(server_errors))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(figures, indent=2) + "\n")
    summary = (
        f"fuzzed {requests} requests over {run['operations']['tested']} operations "
        f"in {elapsed:.0f} s: {len(server_errors)} 5xx, {len(failures)} failure kinds "
        f"(seed {SEED}; {REPORT.relative_to(ROOT)})"
    )
    print(f"\n{summary}")
    # schemathesis' own account of each failure: request (as curl), response, check
    cli = "\n".join(short(line, 600) for line in proc.stdout.splitlines())

    assert not server_errors, f"{summary}\n" + "\n".join(server_errors[:20]) + f"\n{cli}"
    assert not failures, f"{summary}\n{cli}"
    assert not run["errors"], f"{summary}\n{cli}"
    assert proc.returncode == 0, f"{summary}\n{cli}\n{proc.stderr}"
    # the run meant something: every operation tested (but the document's own, which
    # schemathesis leaves out as the schema location), the model answered valid rows
    status, body = get(f"{predictor_url}/openapi.json")
    assert status == 200, body
    documented = sum(len(methods) for methods in json.loads(body)["paths"].values())
    assert run["operations"]["tested"] >= documented - 1, (documented, run["operations"])
    assert requests >= MAX_EXAMPLES, summary
    assert by_status["POST /predict 200"] > 0, dict(by_status)
    assert by_status["POST /invocations 200"] > 0, dict(by_status)
    assert any(k.startswith("POST /v2/models/") and k.endswith(" 200") for k in by_status), dict(
        by_status
    )
    assert any(key.startswith("POST /predict 4") for key in by_status), dict(by_status)
    # a fault answered as JSON still leaves its traceback in the predictor's log; a
    # request that hangs or kills a worker makes gunicorn boot a third one
    text = log.read_text()
    for sign in ("Traceback", "WORKER TIMEOUT"):
        assert sign not in text, text[-4000:]
    assert text.count("Booting worker") == 2, text[-4000:]
