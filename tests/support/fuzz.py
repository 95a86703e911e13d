"""One schemathesis run against a predictor's own /openapi.json, and what it saw.

Shared by the fuzz test of a bare predictor (tests/integration/serving) and the
one through the lab gateway, over HTTPS with a client key
(tests/integration/test_gateway_fuzz.py). The run: every phase (the document's
examples, the coverage phase's edge cases, wrong methods and content types,
then generated positive and negative bodies), every check, a fixed seed.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Statuses with which a request that violates the document may be refused: every 4xx
# the document declares for /predict, and 404/405 for wrong paths and methods.
REJECTION_STATUSES = ["400", "404", "405", "413", "415"]
# Operations whose schema is a subset of what they accept: MLflow's wrappers take
# reordered and extra columns, V2 any N. Any answer but a 5xx is right for them.
LENIENT_OPERATIONS = r"^/(invocations|v2/models/\{name\}(/versions/\{version\})?/infer)$"


def short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


@dataclass
class FuzzRun:
    """Requests sent, a count per 'METHOD /path status', each 5xx in detail, and
    schemathesis' own account (failures, errors, operations tested, its output)."""

    requests: int
    by_status: collections.Counter[str]
    server_errors: list[str]
    failures: list[dict[str, Any]]
    errors: list[Any]
    tested: int
    returncode: int
    seconds: float
    output: str = field(repr=False)
    stderr: str = field(repr=False)

    def summary(self, seed: int) -> str:
        return (
            f"fuzzed {self.requests} requests over {self.tested} operations "
            f"in {self.seconds:.0f} s: {len(self.server_errors)} 5xx, "
            f"{len(self.failures)} failure kinds (seed {seed})"
        )

    def figures(self, seed: int, max_examples: int) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "server_errors": len(self.server_errors),
            "failures": self.failures,
            "errors": self.errors,
            "operations_tested": self.tested,
            "by_status": dict(sorted(self.by_status.items())),
            "seed": seed,
            "max_examples": max_examples,
            "exit_code": self.returncode,
            "seconds": round(self.seconds, 1),
        }


def har_summary(har: dict[str, Any]) -> tuple[int, collections.Counter[str], list[str]]:
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


def run_schemathesis(
    base_url: str,
    work: Path,
    *,
    max_examples: int,
    seed: int,
    timeout: int,
    headers: dict[str, str] | None = None,
    ca_file: Path | None = None,
) -> FuzzRun:
    config = work / "schemathesis.toml"
    config.write_text(
        f"[checks.negative_data_rejection]\nexpected-statuses = {json.dumps(REJECTION_STATUSES)}\n"
        f"\n[[operations]]\ninclude-path-regex = {json.dumps(LENIENT_OPERATIONS)}\n"
        # ("enabled = false" would lose to --checks all): any answer but a 5xx is right
        "checks.negative_data_rejection.expected-statuses = "
        f"{json.dumps(['200', *REJECTION_STATUSES])}\n"
    )
    reports = work / "reports"
    st = str(Path(sys.executable).with_name("schemathesis"))
    command = [
        st, "--config-file", str(config), "--no-color",
        "run", f"{base_url}/openapi.json",
        "--checks", "all",
        "--max-examples", str(max_examples),
        "--seed", str(seed),
        "--workers", "1",
        "--request-timeout", "10",
        "--max-response-time", "5",
        "--generation-database", "none",
        "--report", "har,json",
        "--report-dir", str(reports),
        "--report-har-path", str(reports / "run.har"),
        "--report-json-path", str(reports / "run.json"),
    ]  # fmt: skip
    for name, value in (headers or {}).items():
        command += ["--header", f"{name}: {value}"]
    if ca_file is not None:
        command += ["--tls-verify", str(ca_file)]
    started = time.monotonic()
    proc = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - started
    assert (reports / "run.har").is_file(), f"no HAR report:\n{proc.stdout}\n{proc.stderr}"
    requests, by_status, server_errors = har_summary(json.loads((reports / "run.har").read_text()))
    run = json.loads((reports / "run.json").read_text())
    # no operations: the document itself could not be loaded (refused, unreachable)
    assert run.get("operations"), f"schemathesis tested nothing:\n{proc.stdout[-3000:]}"
    failures = [
        {"code": f["code"], "title": f["title"], "operations": f["operations"]}
        for f in run["failures"]
    ]
    output = "\n".join(short(line, 600) for line in proc.stdout.splitlines())
    return FuzzRun(
        requests=requests,
        by_status=by_status,
        server_errors=server_errors,
        failures=failures,
        errors=run["errors"],
        tested=run["operations"]["tested"],
        returncode=proc.returncode,
        seconds=seconds,
        output=output,
        stderr=proc.stderr,
    )


def assert_clean_and_meaningful(fuzz: FuzzRun, summary: str, documented: int, minimum: int) -> None:
    """No 5xx, no failed check, no error; every operation tested (but the document's
    own, which schemathesis leaves out as the schema location); valid rows served
    on each protocol and invalid ones refused."""
    assert not fuzz.server_errors, (
        f"{summary}\n" + "\n".join(fuzz.server_errors[:20]) + (f"\n{fuzz.output}")
    )
    assert not fuzz.failures, f"{summary}\n{fuzz.output}"
    assert not fuzz.errors, f"{summary}\n{fuzz.output}"
    assert fuzz.returncode == 0, f"{summary}\n{fuzz.output}\n{fuzz.stderr}"
    assert fuzz.tested >= documented - 1, (documented, fuzz.tested)
    assert fuzz.requests >= minimum, summary
    by_status = fuzz.by_status
    assert by_status["POST /predict 200"] > 0, dict(by_status)
    assert by_status["POST /invocations 200"] > 0, dict(by_status)
    assert any(k.startswith("POST /v2/models/") and k.endswith(" 200") for k in by_status), dict(
        by_status
    )
    assert any(key.startswith("POST /predict 4") for key in by_status), dict(by_status)
