#!/usr/bin/env python3
"""What the public endpoint costs: single-row ``/predict`` through the gateway (HTTPS,
a client key) against the same load straight on one predictor, in one run.

Runs against the lab that ``./stack up`` left::

    .venv/bin/python -m bench.gateway_overhead [--duration 20] [--out .work/gateway.json]

1. predictor-2 is drained on the gateway (its runtime API), so the gateway fronts
   exactly one predictor, predictor-1: the comparison is per predictor behind it;
2. ``direct``: wrk (keep-alive connections, single-row bodies) on predictor-1's own
   port, ``http://127.0.0.1:5001/predict``;
3. ``gateway``: the same wrk load on ``https://127.0.0.1:8443/predict`` with the lab's
   client key (``X-API-Key``): TLS ends at HAProxy, the key is hashed and looked up,
   the rate limit counted, the request sent on to predictor-1;
4. predictor-2 is put back into rotation, also after a failure.

Each target gets a warm-up, then the measured run. It prints requests/s, p50 and p99
of both, the gateway's share of the direct throughput (goal: at least 0.80) and the
p99 it adds (goal: at most 2 ms), and writes them as JSON. A run with any non-2xx
answer or socket error, or no request at all, FAILs: no ratio is computed from it
and the exit status is 1. wrk does not check the certificate (its handshake is made
once per connection); every other client of the suite does.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.serve_bench import LoadSettings, RunFailed, parse_wrk, wrk_problems

ROOT = Path(__file__).resolve().parents[1]
DIRECT = "http://127.0.0.1:5001/predict"
GATEWAY = "https://127.0.0.1:8443/predict"
DRAINED = "predictor-2"
BODY = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
GOAL_SHARE = 0.80
GOAL_P99_MS = 2.0


def lua(path: Path, key: str | None) -> Path:
    """wrk's script: POST the single-row body, with the client key when given."""
    header = f'wrk.headers["X-API-Key"] = "{key}"\n' if key else ""
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"{header}"
        f"wrk.body = [==[{BODY}]==]\n"
    )
    return path


def set_state(server: str, state: str) -> None:
    """Drain or ready a predictor on the lab gateway, through its runtime API."""
    command = (
        f"echo 'set server predictors/{server} state {state}' | socat stdio /run/haproxy/admin.sock"
    )
    subprocess.run(
        ["podman", "exec", "gateway-1", "sh", "-c", command], check=True, capture_output=True
    )


def measure(settings: LoadSettings, url: str, script: Path) -> dict[str, Any]:
    """Warm-up, then the measured run; RunFailed on any error in either."""
    for seconds in (settings.warmup, settings.duration):
        if seconds <= 0:
            continue
        stats = parse_wrk(settings.wrk(url, script, seconds))
        problems = wrk_problems(stats)
        if problems:
            raise RunFailed(f"{url}: " + "; ".join(problems))
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / ".work" / "gateway-overhead.json")
    args = parser.parse_args(argv)
    settings = LoadSettings(args.duration, args.warmup, args.connections, args.threads)
    key = (ROOT / "credentials" / "gateway-client-key").read_text().strip()

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        scripts = {"direct": lua(Path(tmp) / "direct.lua", None)}
        scripts["gateway"] = lua(Path(tmp) / "gateway.lua", key)
        set_state(DRAINED, "drain")
        try:
            for name, url in (("direct", DIRECT), ("gateway", GATEWAY)):
                try:
                    results[name] = measure(settings, url, scripts[name])
                except RunFailed as exc:
                    results[name] = {"failed": str(exc)}
        finally:
            set_state(DRAINED, "ready")

    failed = {name: r["failed"] for name, r in results.items() if "failed" in r}
    print(f"single-row /predict, wrk {args.connections} connections, {args.duration:.0f} s each")
    for name, r in results.items():
        if "failed" in r:
            print(f"  {name:8} FAILED: {r['failed']}")
        else:
            print(
                f"  {name:8} {r['requests_per_s']:9.0f} req/s   "
                f"p50 {r['p50_ms']:6.2f} ms   p99 {r['p99_ms']:6.2f} ms"
            )
    report: dict[str, Any] = {"settings": vars(args) | {"out": str(args.out)}, **results}
    if not failed:
        share = results["gateway"]["requests_per_s"] / results["direct"]["requests_per_s"]
        added = results["gateway"]["p99_ms"] - results["direct"]["p99_ms"]
        report["gateway_share_of_direct"] = round(share, 3)
        report["p99_added_ms"] = round(added, 2)
        print(
            f"  gateway / direct throughput {share:.2f} (goal >= {GOAL_SHARE:.2f}: "
            f"{'met' if share >= GOAL_SHARE else 'missed'}), "
            f"p99 added {added:+.2f} ms (goal <= {GOAL_P99_MS:.0f} ms: "
            f"{'met' if added <= GOAL_P99_MS else 'missed'})"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
