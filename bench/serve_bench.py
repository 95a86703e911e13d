#!/usr/bin/env python3
"""Benchmark the predictor against ``mlflow models serve`` and a Flask hello-world ceiling.

One command from a clean clone (it installs wrk and the project venv first)::

    ./stack bench --duration 20 --out .work/bench.json

Everything runs on 127.0.0.1 and every process it starts is stopped again:

1. a real ``mlflow server`` (SQLite registry, proxied artifacts, job execution off);
2. the Iris forest (100 trees) trained and registered through
   ``mlops_model.ensure.ensure_model``, alias ``champion``;
3. one server at a time, each with two workers, driven by ``wrk`` (8 connections,
   2 threads, POST bodies from a Lua script) after a warm-up, with single-row
   requests and 1,000-row requests:

   * ``ours``: the predictor exactly as the ``predictor`` role runs it (its
     ``gunicorn`` command line and environment, rendered from the role's files);
   * ``mlflow``: ``mlflow models serve -m models:/iris@champion --env-manager local -w 2``
     (uvicorn), same registered version, ``{"dataframe_split": ...}`` bodies;
   * ``hello``: ``bench/hello_app.py``, a Flask app that reads the body and answers a
     constant, under the predictor's own gunicorn settings: the ceiling.

It prints requests/s, rows/s, p50, p99 and peak RSS per worker (``VmHWM`` of each
worker process) for each, the ratios ours/mlflow and ours/hello, PASS/FAIL against
the targets (informational), and writes all of it as JSON. It installs nothing:
``wrk`` must be on the PATH (``apt-get install wrk``). Exit status 0 unless
something crashed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
ROLE = ROOT / "collections/ansible_collections/mlops/stack/roles/predictor"
BIN = Path(sys.executable).parent  # the venv this script runs in: gunicorn, mlflow
MODEL_NAME = "iris"
ALIAS = "champion"
BATCH_ROWS = 1000
SEED = 20240601

# (name, description, compare, threshold): compare(ratio) is the PASS condition
TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("single_rps_vs_mlflow", "single-row requests/s, ours / mlflow", ">=", 40.0),
    ("single_rps_vs_hello", "single-row requests/s, ours / hello-world", ">=", 0.85),
    ("single_p99_mlflow_over_ours", "single-row p99, mlflow / ours", ">=", 25.0),
    ("batch_rows_vs_mlflow", "1,000-row rows/s, ours / mlflow", ">=", 10.0),
    ("rss_vs_mlflow", "peak RSS per worker, ours / mlflow", "<=", 0.60),
)


# ------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """A process in a session (process group) of its own; stop() ends the whole group."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if self.proc.poll() is not None and not _group_alive(self.proc.pid):
                    return
                time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"the benchmark only talks to 127.0.0.1, not {url}")
    req = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - checked above
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - checked above
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(check: Callable[[], bool], service: Service, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not service.alive():
            raise RuntimeError(
                f"{service.name} exited while waiting for {what}:\n{service.log_tail()}"
            )
        with contextlib.suppress(OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"timed out after {timeout} s waiting for {what}:\n{service.log_tail()}"
            )
        time.sleep(0.3)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


def descendants(pid: int) -> Iterator[int]:
    for child in children(pid):
        yield child
        yield from descendants(child)


def cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


def gunicorn_workers(master: int) -> list[int]:
    return children(master)


def uvicorn_workers(top: int) -> list[int]:
    """``mlflow models serve`` -> ``uvicorn --workers N`` -> N spawned worker processes."""
    for pid in [top, *descendants(top)]:
        line = cmdline(pid)
        if "uvicorn" in line and "mlflow.pyfunc.scoring_server" in line:
            return [c for c in children(pid) if "resource_tracker" not in cmdline(c)]
    return []


# ------------------------------------------------------------------ the stack


def venv_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREDICTOR_", "MLFLOW_", "PROMETHEUS_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def start_mlflow_server(workdir: Path) -> tuple[Service, str]:
    port = free_port()
    root = workdir / "mlflow"
    root.mkdir()
    server = Service(
        "mlflow-server",
        [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--serve-artifacts",
            "--workers",
            "1",
        ],
        # the job workers (huey) are not used here and cost a core
        venv_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
        workdir,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http("GET", f"{url}/health")[0] == 200, server, 120, "mlflow server")
    return server, url


def train_and_register(url: str) -> dict[str, Any]:
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    from mlops_model.ensure import ensure_model
    from mlops_model.train import TrainParams

    result = ensure_model(url, MODEL_NAME, ALIAS, TrainParams(n_estimators=100))
    if result.get("alias_after") is None:
        raise RuntimeError(f"the model did not get the alias: {result.get('reason')}")
    return result


def role_deployment(tracking_uri: str, port: int, home: Path) -> tuple[list[str], dict[str, str]]:
    """The predictor's command line and environment, rendered from the role's own files."""
    import jinja2
    import yaml  # type: ignore[import-untyped,unused-ignore]

    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    internal = yaml.safe_load((ROLE / "vars/main.yml").read_text())
    context = {
        **defaults,
        "predictor_venv": sys.prefix,
        "predictor_home": str(home),
        "predictor_listen_address": "127.0.0.1",
        "predictor_port": port,
        "predictor_tracking_uri": tracking_uri,
    }
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701

    def render(value: Any) -> str:
        return env.from_string(str(value)).render(context).strip()

    environment = {k: render(v) for k, v in internal["__predictor_environment"].items()}
    environment.update(
        {k: render(v) for k, v in (defaults.get("predictor_extra_environment") or {}).items()}
    )
    argv = shlex.split(render(internal["__predictor_exec_start"]))
    return argv, environment


def start_ours(
    tracking_uri: str, workdir: Path, overrides: dict[str, str]
) -> tuple[Service, str, dict[str, Any]]:
    port = free_port()
    home = workdir / "predictor"
    for sub in ("prometheus", "cache"):
        (home / sub).mkdir(parents=True)
    argv, environment = role_deployment(tracking_uri, port, home)
    environment.update(overrides)
    service = Service("ours", argv, venv_env(**environment), workdir)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http("GET", f"{url}/ready")[0] == 200, service, 180, "the predictor")
    workers = int(environment.get("PREDICTOR_WORKERS", "2"))

    def all_loaded() -> bool:
        status, raw = http("GET", f"{url}/metrics")
        found = re.search(r"^predictor_model_reloads_total (\S+)$", raw.decode(), re.M)
        return status == 200 and found is not None and float(found.group(1)) >= workers

    wait_until(all_loaded, service, 180, "every predictor worker to load the model")
    info = json.loads(http("GET", f"{url}/model")[1])
    return service, f"{url}/predict", info


def start_mlflow_serve(tracking_uri: str, workdir: Path) -> tuple[Service, str]:
    port = free_port()
    service = Service(
        "mlflow",
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{MODEL_NAME}@{ALIAS}",
            "--env-manager",
            "local",
            "-w",
            "2",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        venv_env(MLFLOW_TRACKING_URI=tracking_uri),
        workdir,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http("GET", f"{url}/ping")[0] == 200, service, 300, "mlflow models serve")
    wait_until(lambda: len(uvicorn_workers(service.pid)) >= 2, service, 60, "2 uvicorn workers")
    return service, f"{url}/invocations"


def start_hello(workdir: Path, overrides: dict[str, str]) -> tuple[Service, str]:
    port = free_port()
    _, environment = role_deployment("http://127.0.0.1:1", port, workdir / "hello")
    environment.update(overrides)
    service = Service(
        "hello",
        [
            str(BIN / "gunicorn"),
            "--config",
            str(BENCH / "hello_gunicorn_conf.py"),
            "--pythonpath",
            str(BENCH),
            "hello_app:app",
        ],
        venv_env(**environment),
        workdir,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http("GET", f"{url}/ready")[0] == 200, service, 60, "the hello-world")
    return service, f"{url}/predict"


# ------------------------------------------------------------------ load


def request_rows(n: int) -> list[list[float]]:
    """Deterministic rows inside each feature's observed range, rounded like real input."""
    import numpy as np
    from mlops_model.serving.checks import check_rows

    rows: list[list[float]] = np.round(check_rows(n, SEED), 1).tolist()
    return rows


def bodies(rows: list[list[float]]) -> dict[str, bytes]:
    from mlops_model.schema import FEATURE_NAMES

    ours = json.dumps({"instances": rows}).encode()
    split = {"dataframe_split": {"columns": list(FEATURE_NAMES), "data": rows}}
    return {"ours": ours, "hello": ours, "mlflow": json.dumps(split).encode()}


def check_answer(target: str, status: int, raw: bytes, n_rows: int) -> None:
    if status != 200:
        raise RuntimeError(f"{target} answered {status}: {raw[:300]!r}")
    if target == "hello":
        return
    predictions = json.loads(raw)["predictions"]
    if len(predictions) != n_rows:
        raise RuntimeError(f"{target} returned {len(predictions)} predictions for {n_rows} rows")


def lua_script(path: Path, body_file: Path) -> Path:
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'local f = assert(io.open([==[{body_file}]==], "rb"))\n'
        'wrk.body = f:read("*a")\n'
        "f:close()\n"
    )
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unparsable latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(text: str) -> dict[str, Any]:
    def grab(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, text, re.M)

    rps = grab(r"^Requests/sec:\s+([\d.]+)")
    total = grab(r"^\s*(\d+) requests in ([\d.]+)(\w+),")
    p50 = grab(r"^\s+50%\s+(\S+)")
    p99 = grab(r"^\s+99%\s+(\S+)")
    if not (rps and total and p50 and p99):
        raise RuntimeError(f"could not parse wrk's output:\n{text}")
    non2xx = grab(r"Non-2xx or 3xx responses:\s+(\d+)")
    sock = grab(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    return {
        "requests_per_s": float(rps.group(1)),
        "requests": int(total.group(1)),
        "p50_ms": _ms(p50.group(1)),
        "p99_ms": _ms(p99.group(1)),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": dict(
            zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True)
        )
        if sock
        else {},
    }


@dataclass
class LoadSettings:
    duration: float
    warmup: float
    connections: int
    threads: int

    def wrk(self, url: str, lua: Path, seconds: float, latency: bool) -> str:
        argv = [
            "wrk",
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout", "10s",
            "-s", str(lua),
        ]  # fmt: skip
        if latency:
            argv.append("--latency")
        argv.append(url)
        out = subprocess.run(
            argv, capture_output=True, text=True, check=False, timeout=seconds + 60
        )
        if out.returncode != 0:
            raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
        return out.stdout


@dataclass
class Result:
    target: str
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    workers: list[dict[str, int]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def peak_rss_mib(self) -> float:
        return max(w["vm_hwm_kib"] for w in self.workers) / 1024 if self.workers else float("nan")


def drive(
    target: str,
    url: str,
    worker_pids: Callable[[], list[int]],
    body_files: dict[str, Path],
    n_rows: dict[str, int],
    load: LoadSettings,
    workdir: Path,
) -> Result:
    result = Result(target)
    for case, body_file in body_files.items():
        check_answer(target, *http("POST", url, body_file.read_bytes()), n_rows[case])
        lua = lua_script(workdir / f"{target}-{case}.lua", body_file)
        if load.warmup > 0:
            load.wrk(url, lua, load.warmup, latency=False)
        text = load.wrk(url, lua, load.duration, latency=True)
        stats = parse_wrk(text)
        stats["rows_per_s"] = stats["requests_per_s"] * n_rows[case]
        stats["rows_per_request"] = n_rows[case]
        result.cases[case] = stats
        print(
            f"  {target:6s} {case:6s} {stats['requests_per_s']:10.1f} req/s  "
            f"p50 {stats['p50_ms']:.2f} ms  p99 {stats['p99_ms']:.2f} ms"
            + (f"  non-2xx {stats['non_2xx']}" if stats["non_2xx"] else ""),
            flush=True,
        )
    result.workers = [{"pid": pid, "vm_hwm_kib": vm_hwm_kib(pid)} for pid in worker_pids()]
    return result


# ------------------------------------------------------------------ report


def ratios(results: dict[str, Result]) -> dict[str, float]:
    ours, peer, hello = results["ours"], results["mlflow"], results["hello"]
    s, b = "single", "batch"
    return {
        "single_rps_vs_mlflow": ours.cases[s]["requests_per_s"] / peer.cases[s]["requests_per_s"],
        "single_rps_vs_hello": ours.cases[s]["requests_per_s"] / hello.cases[s]["requests_per_s"],
        "single_p99_mlflow_over_ours": peer.cases[s]["p99_ms"] / ours.cases[s]["p99_ms"],
        "batch_rows_vs_mlflow": ours.cases[b]["rows_per_s"] / peer.cases[b]["rows_per_s"],
        "batch_rows_vs_hello": ours.cases[b]["rows_per_s"] / hello.cases[b]["rows_per_s"],
        "rss_vs_mlflow": ours.peak_rss_mib / peer.peak_rss_mib,
        "rss_vs_hello": ours.peak_rss_mib / hello.peak_rss_mib,
    }


def verdicts(r: dict[str, float]) -> list[dict[str, Any]]:
    out = []
    for key, text, op, threshold in TARGETS:
        value = r[key]
        ok = value >= threshold if op == ">=" else value <= threshold
        out.append({"target": key, "description": text, "value": value,
                    "condition": f"{op} {threshold:g}", "pass": ok})  # fmt: skip
    return out


def print_table(
    results: dict[str, Result], r: dict[str, float], checks: list[dict[str, Any]]
) -> None:
    print()
    header = (
        f"{'server':8s} {'request':>9s} {'req/s':>10s} {'rows/s':>11s} "
        f"{'p50 ms':>8s} {'p99 ms':>8s} {'peak RSS/worker':>16s}"
    )
    print(header)
    print("-" * len(header))
    for name, res in results.items():
        for stats in res.cases.values():
            n = stats["rows_per_request"]
            label = "1 row" if n == 1 else f"{n} rows"
            print(
                f"{name:8s} {label:>9s} {stats['requests_per_s']:10.1f} "
                f"{stats['rows_per_s']:11.0f} {stats['p50_ms']:8.2f} {stats['p99_ms']:8.2f} "
                f"{res.peak_rss_mib:12.1f} MiB"
            )
    print()
    for key, value in r.items():
        print(f"  {key:30s} {value:8.2f}")
    print()
    for c in checks:
        verdict = "PASS" if c["pass"] else "FAIL"
        print(f"  {verdict}  {c['description']}: {c['value']:.2f} (target {c['condition']})")


def machine() -> dict[str, Any]:
    versions: dict[str, str] = {}
    from importlib import metadata

    for dist in (
        "mlflow",
        "gunicorn",
        "flask",
        "onnxruntime",
        "skl2onnx",
        "scikit-learn",
        "uvicorn",
        "orjson",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    versions["wrk"] = (
        (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "?"
    )
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "versions": versions,
    }


# ------------------------------------------------------------------ main

TARGET_NAMES = ("ours", "mlflow", "hello")
Started = tuple[Service, str, Callable[[], list[int]], dict[str, Any]]


def start_target(target: str, url: str, workdir: Path, overrides: dict[str, str]) -> Started:
    """Start one server; returns it, its endpoint, how to find its workers, extra facts."""
    if target == "ours":
        svc, endpoint, info = start_ours(url, workdir, overrides)
        return svc, endpoint, lambda: gunicorn_workers(svc.pid), {"model": info}
    if target == "mlflow":
        svc, endpoint = start_mlflow_serve(url, workdir)
        return svc, endpoint, lambda: uvicorn_workers(svc.pid), {}
    svc, endpoint = start_hello(workdir, overrides)
    return svc, endpoint, lambda: gunicorn_workers(svc.pid), {}


def _override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.startswith("PREDICTOR_"):
        raise argparse.ArgumentTypeError(f"expected PREDICTOR_NAME=VALUE, got {text!r}")
    return key, value


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=20, help="measured seconds per run [20]")
    p.add_argument("--warmup", type=float, default=5, help="warm-up seconds per run [5]")
    p.add_argument("--connections", type=int, default=8, help="wrk connections [8]")
    p.add_argument("--threads", type=int, default=2, help="wrk threads [2]")
    p.add_argument("--out", type=Path, default=ROOT / ".work/bench.json", help="JSON report")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    p.add_argument(
        "--set",
        dest="overrides",
        type=_override,
        action="append",
        default=[],
        metavar="PREDICTOR_NAME=VALUE",
        help="change a setting of the role's deployment, for ours and the hello-world alike "
        "(e.g. PREDICTOR_THREADS=2); repeatable",
    )
    args = p.parse_args(argv)
    args.overrides = dict(args.overrides)

    if shutil.which("wrk") is None:
        print("serve_bench: wrk is missing: run ./stack bench (installs it)", file=sys.stderr)
        return 2
    load = LoadSettings(args.duration, args.warmup, args.connections, args.threads)
    start = machine()
    if start["loadavg"][0] >= 1.0:
        busy = start["loadavg"][0]
        print(f"note: load average {busy:.2f}: the machine is busy, numbers are indicative")

    # SIGTERM ends the run like Ctrl-C: through the finally blocks below.
    signal.signal(signal.SIGTERM, _interrupted)
    (ROOT / ".work").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="serve-bench-", dir=ROOT / ".work"))
    services: list[Service] = []
    results: dict[str, Result] = {}
    try:
        registry, url = start_mlflow_server(workdir)
        services.append(registry)
        print(f"mlflow server at {url}; training the Iris forest (100 trees)", flush=True)
        trained = train_and_register(url)
        print(f"registered {MODEL_NAME} version {trained['version']} as @{ALIAS}", flush=True)

        rows = {"single": request_rows(1), "batch": request_rows(BATCH_ROWS)}
        n_rows = {case: len(r) for case, r in rows.items()}
        files: dict[str, dict[str, Path]] = {"ours": {}, "mlflow": {}, "hello": {}}
        for case, case_rows in rows.items():
            for target, body in bodies(case_rows).items():
                path = workdir / f"body-{target}-{case}.json"
                path.write_bytes(body)
                files[target][case] = path

        for target in TARGET_NAMES:
            print(f"starting {target}", flush=True)
            svc, endpoint, workers, info = start_target(target, url, workdir, args.overrides)
            services.append(svc)
            try:
                result = drive(target, endpoint, workers, files[target], n_rows, load, workdir)
                result.info = info
                results[target] = result
            finally:
                svc.stop()
                services.remove(svc)
    finally:
        for svc in reversed(services):
            svc.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}")

    r = ratios(results)
    checks = verdicts(r)
    print_table(results, r, checks)
    report = {
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "batch_rows": BATCH_ROWS,
            "overrides": args.overrides,
        },
        "machine": {**start, "loadavg_end": os.getloadavg()},
        "results": {
            name: {
                "cases": res.cases,
                "workers": res.workers,
                "peak_rss_per_worker_mib": res.peak_rss_mib,
                **res.info,
            }
            for name, res in results.items()
        },
        "ratios": r,
        "targets": checks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
