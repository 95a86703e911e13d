#!/usr/bin/env python3
"""How the predictor fleet scales on the local nodes: extra predictors, added two at a time.

Runs against the lab that ``./stack up`` left (it needs ``iris@champion`` and the
accounts in ``credentials/``)::

    .venv/bin/python -m bench.scale_predictors [--steps 2 4 6] [--idle 30] [--out .work/scale.json]

For each step N (extra predictor nodes on top of predictor-1 and predictor-2):

1. the missing extra nodes are created by ``playbooks/local_nodes.yml`` (the same
   role as the lab's, group ``predictors``), and ``playbooks/predictor.yml`` converges
   the fleet: its time is "add", the new nodes installed beside the serving ones;
2. ``predictor.yml`` again, nothing to change: its time is "converge", what every
   later run of the playbook costs for that fleet;
3. ``promote.yml`` moves the alias to a candidate version and back (promote: the
   new nodes fetch the candidate for the first time; rollback: every node has it).
   Alias to fleet is timed from outside, as the rollout suite does: from the moment
   the registry's alias points at the version to the moment every worker of every
   predictor serves it (``tests/support/fleet.py``, 0.25 s polls of each predictor's
   ``/metrics`` on its published loopback port). promote.yml's own "fleet serving
   X s" is printed beside it: it also counts Ansible checking each host over SSH,
   which grows with the fleet on a 2-core controller;
4. MLflow's own request counter (``mlflow_http_request_total``, read on the MLflow
   node) over ``--idle`` seconds with no traffic: the registry requests per second
   per predictor host at idle.

The candidate version is trained once (``train.yml`` with other parameters, no alias)
unless the registry already holds a version besides the champion that passed the gate.
At the end the extra nodes are removed and the alias points at the champion it found,
also after a failure. Exit status 1 when a playbook failed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from tests.support.fleet import CANDIDATE_PARAMS, FleetWatch, champion, model_versions

ROOT = Path(__file__).resolve().parents[1]
EXTRA_SSH_PORTS = 2210  # the lab's nodes use 2201-2205
EXTRA_HTTP_PORTS = 5010  # predictor-1 and predictor-2 answer on 5001 and 5002
LAB_PREDICTORS = ("http://127.0.0.1:5001", "http://127.0.0.1:5002")
# the callback may wrap the message: any whitespace between the words
FLEET_SERVING = re.compile(r"fleet\s+serving\s+([0-9.]+)\s+s\s+after\s+the\s+alias\s+moved")


@dataclass
class Step:
    extra: int
    predictors: int
    add_seconds: float
    converge_seconds: float
    promote_to_fleet_seconds: float
    rollback_to_fleet_seconds: float
    promote_yml_promote_seconds: float
    promote_yml_rollback_seconds: float
    idle_requests_per_second_per_host: float


class PlaybookFailed(RuntimeError):
    pass


def playbook(inventories: list[Path], *args: str) -> tuple[float, str]:
    """(seconds, output) of ansible-playbook on the lab plus the extra nodes."""
    command = [str(Path(sys.executable).with_name("ansible-playbook"))]
    for inventory in inventories:
        command += ["-i", str(inventory)]
    start = time.monotonic()
    proc = subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise PlaybookFailed(f"ansible-playbook {' '.join(args)} failed:\n{proc.stdout[-4000:]}")
    return seconds, proc.stdout


def extra_names(count: int) -> list[str]:
    return [f"predictor-scale-{i}" for i in range(1, count + 1)]


def write_extra_inventory(path: Path, count: int) -> None:
    hosts = {
        name: {
            "local_nodes_ssh_port": EXTRA_SSH_PORTS + i,
            "local_nodes_published_ports": [f"127.0.0.1:{EXTRA_HTTP_PORTS + i}:5001"],
        }
        for i, name in enumerate(extra_names(count), start=1)
    }
    predictors = {"predictors": {"hosts": hosts}}
    document = {"all": {"children": {"local_nodes": {"children": predictors}}}}
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def gated_candidate(current: str) -> str | None:
    passed = [
        int(str(v["version"]))
        for v in model_versions()
        if str(v["version"]) != current
        and {"key": "mlops.gate", "value": "passed"} in v.get("tags", [])
    ]
    return str(max(passed)) if passed else None


def extra_predictors(count: int) -> list[str]:
    return [f"http://127.0.0.1:{EXTRA_HTTP_PORTS + i}" for i in range(1, count + 1)]


def alias_to_fleet(inventories: list[Path], version: str, bases: list[str]) -> tuple[float, float]:
    """(seconds watched from outside, seconds promote.yml reports) for one promotion."""
    watch = FleetWatch(bases, version)
    watch.start()
    try:
        _, output = playbook(inventories, "playbooks/promote.yml", f"-epromote_version={version}")
    finally:
        watched = watch.stop()
    found = FLEET_SERVING.search(output)
    if found is None or watched is None:
        raise PlaybookFailed(f"promote.yml to {version}: the fleet was not seen serving it")
    return watched, float(found.group(1))


def registry_requests() -> float:
    """MLflow's request count so far, all workers, read on the MLflow node."""
    script = (
        "import re, urllib.request; text = urllib.request.urlopen("
        "'http://127.0.0.1:5005/metrics', timeout=10).read().decode(); "
        "print(sum(float(v) for v in re.findall("
        "r'(?m)^mlflow_http_request_total\\{[^}]*\\} ([0-9.e+]+)$', text)))"
    )
    proc = subprocess.run(
        ["podman", "exec", "mlflow-1", "python3", "-c", script],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return float(proc.stdout.strip())


def idle_rate(seconds: float, hosts: int) -> float:
    before = registry_requests()
    time.sleep(seconds)
    return (registry_requests() - before) / seconds / hosts


def remove_extra_nodes(count: int) -> None:
    names = extra_names(count)
    subprocess.run(["podman", "rm", "--force", "--time", "0", "--ignore", *names],
                   capture_output=True, timeout=300, check=False)  # fmt: skip


def measure(steps: list[int], idle: float, workdir: Path, original: str) -> list[Step]:
    extra_inventory = workdir / "extra_predictors.yml"
    inventories = [ROOT / "inventories" / "local", extra_inventory]
    candidate = gated_candidate(original)
    if candidate is None:
        playbook(
            [ROOT / "inventories" / "local"],
            "playbooks/train.yml",
            *CANDIDATE_PARAMS,
            "-etrain_alias=",
        )
        candidate = gated_candidate(original)
        if candidate is None:
            raise PlaybookFailed("train.yml registered no candidate version that passed the gate")
    results: list[Step] = []
    for extra in steps:
        write_extra_inventory(extra_inventory, extra)
        playbook(inventories, "playbooks/local_nodes.yml")
        add, _ = playbook(inventories, "playbooks/predictor.yml")
        converge, _ = playbook(inventories, "playbooks/predictor.yml")
        bases = [*LAB_PREDICTORS, *extra_predictors(extra)]
        promoted, promoted_yml = alias_to_fleet(inventories, candidate, bases)
        back, back_yml = alias_to_fleet(inventories, original, bases)
        step = Step(
            extra=extra,
            predictors=2 + extra,
            add_seconds=round(add, 1),
            converge_seconds=round(converge, 1),
            promote_to_fleet_seconds=promoted,
            rollback_to_fleet_seconds=back,
            promote_yml_promote_seconds=promoted_yml,
            promote_yml_rollback_seconds=back_yml,
            idle_requests_per_second_per_host=round(idle_rate(idle, 2 + extra), 3),
        )
        print_row(step)
        results.append(step)
    return results


def print_header() -> None:
    print(f"{'predictors':>10} {'add s':>7} {'converge s':>10} {'alias->fleet s':>18} "
          f"{'promote.yml says':>17} {'idle registry req/s/host':>25}", flush=True)  # fmt: skip
    print(f"{'':>10} {'':>7} {'':>10} {'promote/rollback':>18} {'promote/rollback':>17}",
          flush=True)  # fmt: skip


def print_row(step: Step) -> None:
    watched = f"{step.promote_to_fleet_seconds:.2f} / {step.rollback_to_fleet_seconds:.2f}"
    said = f"{step.promote_yml_promote_seconds:.1f} / {step.promote_yml_rollback_seconds:.1f}"
    print(f"{step.predictors:>10} {step.add_seconds:>7.1f} {step.converge_seconds:>10.1f} "
          f"{watched:>18} {said:>17} {step.idle_requests_per_second_per_host:>25.3f}",
          flush=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 4, 6],
                        help="extra predictor nodes at each step, increasing [2 4 6]")  # fmt: skip
    parser.add_argument("--idle", type=float, default=30, help="seconds of idle counting [30]")
    parser.add_argument("--out", type=Path, help="JSON report")
    args = parser.parse_args()
    if args.steps != sorted(set(args.steps)) or args.steps[0] < 1:
        parser.error("--steps: distinct positive counts, increasing (nodes are only added)")
    original = champion()
    if original is None:
        print("FAILED: no iris@champion in the lab's registry (./stack up)", file=sys.stderr)
        return 1
    print_header()
    # two levels below the checkout, as inventories/local: the lab's group_vars
    # find the node key and known_hosts relative to the inventory's folder
    workdir = ROOT / ".work" / "scale"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        results = measure(args.steps, args.idle, workdir, original)
    except PlaybookFailed as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    finally:
        remove_extra_nodes(max(args.steps))
        if champion() != original:
            playbook([ROOT / "inventories" / "local"], "playbooks/promote.yml",
                     "-e", f"promote_version={original}")  # fmt: skip
    first, last = results[0], results[-1]
    growth = (last.converge_seconds / first.converge_seconds - 1) * 100
    print(f"converge time from {first.predictors} to {last.predictors} predictors: {growth:+.0f}%")
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
