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

On GCP the gateway is an instance of its own: it never takes CPU from a predictor.
The lab's nodes share this machine's cores, so for both runs predictor-1 (every
thread of its node) gets the first core to itself, and the gateway node and wrk
share the second: the predictor serves with the same CPU in both runs, and what the
gateway costs shows as what it costs (``--shared-cores`` leaves every process on
every core). The CPU sets are put back afterwards, also after a failure.

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
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from bench.serve_bench import LoadSettings, RunFailed, parse_wrk, wrk_problems

ROOT = Path(__file__).resolve().parents[1]
DIRECT = "http://127.0.0.1:5001/predict"
GATEWAY = "https://127.0.0.1:8443/predict"
DRAINED = "predictor-2"
SERVING = "predictor-1"
GATEWAY_NODE = "gateway-1"
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


def node_threads(node: str) -> list[int]:
    """This machine's ids of every thread of every process of a lab node."""
    top = subprocess.run(
        ["podman", "top", node, "hpid"], check=True, capture_output=True, text=True
    )
    threads = []
    for pid in top.stdout.split()[1:]:
        tasks = Path("/proc") / pid / "task"
        if tasks.is_dir():
            threads += [int(task.name) for task in tasks.iterdir()]
    return threads


def set_cpus(threads: list[int], cpus: set[int]) -> None:
    for thread in threads:
        with suppress(ProcessLookupError):  # the thread ended in the meantime
            os.sched_setaffinity(thread, cpus)


@contextmanager
def cores_apart(shared: bool) -> Iterator[str]:
    """predictor-1 on the first core; the gateway node and this process (wrk, its
    child) on the second. Yields the placement, as printed."""
    every = os.sched_getaffinity(0)
    if shared or len(every) < 2:
        yield f"every process on any of the {len(every)} cores"
        return
    first, second = sorted(every)[:2]
    try:
        set_cpus(node_threads(SERVING), {first})
        set_cpus(node_threads(GATEWAY_NODE), {second})
        os.sched_setaffinity(0, {second})
        yield f"{SERVING} on CPU {first}; {GATEWAY_NODE} and wrk on CPU {second}"
    finally:
        os.sched_setaffinity(0, every)
        set_cpus(node_threads(SERVING) + node_threads(GATEWAY_NODE), every)


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
    parser.add_argument(
        "--shared-cores",
        action="store_true",
        help="leave the predictor, the gateway and wrk on every core",
    )
    args = parser.parse_args(argv)
    settings = LoadSettings(args.duration, args.warmup, args.connections, args.threads)
    key = (ROOT / "credentials" / "gateway-client-key").read_text().strip()

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        scripts = {"direct": lua(Path(tmp) / "direct.lua", None)}
        scripts["gateway"] = lua(Path(tmp) / "gateway.lua", key)
        set_state(DRAINED, "drain")
        try:
            with cores_apart(args.shared_cores) as placement:
                for name, url in (("direct", DIRECT), ("gateway", GATEWAY)):
                    try:
                        results[name] = measure(settings, url, scripts[name])
                    except RunFailed as exc:
                        results[name] = {"failed": str(exc)}
        finally:
            set_state(DRAINED, "ready")

    failed = {name: r["failed"] for name, r in results.items() if "failed" in r}
    print(f"single-row /predict, wrk {args.connections} connections, {args.duration:.0f} s each")
    print(f"  cores: {placement}")
    for name, r in results.items():
        if "failed" in r:
            print(f"  {name:8} FAILED: {r['failed']}")
        else:
            print(
                f"  {name:8} {r['requests_per_s']:9.0f} req/s   "
                f"p50 {r['p50_ms']:6.2f} ms   p99 {r['p99_ms']:6.2f} ms"
            )
    report: dict[str, Any] = {
        "settings": vars(args) | {"out": str(args.out)},
        "cores": placement,
        **results,
    }
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
