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

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fuzz import assert_clean_and_meaningful, run_schemathesis
from tests.support.gunicorn_predictor import running_predictor

ROOT = Path(__file__).resolve().parents[3]
REPORT = ROOT / ".work" / "fuzz-report.json"
# per operation, in the fuzzing phase; more (and other seeds) to explore by hand
MAX_EXAMPLES = int(os.environ.get("PREDICTOR_FUZZ_MAX_EXAMPLES", "100"))
SEED = int(os.environ.get("PREDICTOR_FUZZ_SEED", "20261126"))
RUN_TIMEOUT = int(os.environ.get("PREDICTOR_FUZZ_TIMEOUT", "900"))  # s, the whole run


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


def test_fuzz_the_predictor_against_its_openapi_document(
    predictor: tuple[str, Path], tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    predictor_url, log = predictor
    fuzz = run_schemathesis(
        predictor_url, tmp_path, max_examples=MAX_EXAMPLES, seed=SEED, timeout=RUN_TIMEOUT
    )
    record_property("fuzz_requests", fuzz.requests)
    record_property("fuzz_server_errors", len(fuzz.server_errors))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(fuzz.figures(SEED, MAX_EXAMPLES), indent=2) + "\n")
    summary = f"{fuzz.summary(SEED)}; {REPORT.relative_to(ROOT)}"
    print(f"\n{summary}")

    status, body = get(f"{predictor_url}/openapi.json")
    assert status == 200, body
    documented = sum(len(methods) for methods in json.loads(body)["paths"].values())
    assert_clean_and_meaningful(fuzz, summary, documented, MAX_EXAMPLES)
    # a fault answered as JSON still leaves its traceback in the predictor's log; a
    # request that hangs or kills a worker makes gunicorn boot a third one
    text = log.read_text()
    for sign in ("Traceback", "WORKER TIMEOUT"):
        assert sign not in text, text[-4000:]
    assert text.count("Booting worker") == 2, text[-4000:]
