#!/usr/bin/env python3
"""Benchmark the predictor against ``mlflow models serve`` and a Flask hello-world ceiling.

One command from a clean clone (it installs wrk and the project venv first)::

    ./stack bench --duration 20 --out .work/bench.json

Everything runs on 127.0.0.1 and every process it starts is stopped again:

1. a real ``mlflow server`` (SQLite registry, proxied artifacts, job execution off);
2. the Iris forest (100 trees) trained and registered through
   ``mlops_model.ensure.ensure_model``, alias ``champion``;
3. one server at a time, each with the same workers, driven by ``wrk`` (8 connections,
   2 threads, POST bodies from a Lua script) after a warm-up, with single-row
   requests and 1,000-row requests:

   * ``ours``: the predictor exactly as the ``predictor`` role runs it (its
     ``gunicorn`` command line and environment, rendered from the role's files),
     in each protocol it speaks: ``/predict`` (single-row and 1,000-row bodies), and
     single-row bodies to MLflow's ``/invocations`` (``dataframe_split``) and to the
     Open Inference Protocol V2 ``/v2/models/iris/infer`` (one ``[1, 4]`` FP64
     tensor), all against the same started server, driven the same way;
   * ``mlflow``: ``mlflow models serve -m models:/iris@champion --env-manager local -w N``
     (uvicorn), same registered version, ``{"dataframe_split": ...}`` bodies;
   * ``hello``: ``bench/hello_app.py``, a Flask app that reads the body and answers a
     constant, under the predictor's own gunicorn settings: the ceiling.

Every server gets the same number of workers: ``PREDICTOR_WORKERS`` of the role
(2), changed for all three by ``--set PREDICTOR_WORKERS=N`` (``mlflow models serve
--workers N``); the table header says how many, and a server found with another
number of worker processes fails.

A run is only measured when every answer was right. A target FAILs, and the script
prints why, computes no ratio from it and exits 1, when wrk reports any non-2xx
answer or socket error (connect, read, write, timeout), or no request at all, in
the warm-up or the measured run; when a sampled answer is wrong: before each run,
``--samples`` times during it and ``--samples`` times after it, the same body is
sent through urllib and checked (status 200, JSON, one prediction per row, each
the registered model's own label; the hello-world its constant); when its worker
count is not the one asked for; or when it does not start or dies.

It prints requests/s, rows/s, p50, p99 and peak RSS per worker (``VmHWM`` of each
worker process) for each, the ratios ours/mlflow and ours/hello, each protocol's
single-row requests/s over ``/predict``'s (the target: at least 0.80), whether each
performance target is met (informational: a missed target does not change the exit
status), and writes all of it as JSON. A protocol row that FAILs fails ``ours``.
It installs nothing: ``wrk`` must be on the PATH (``apt-get install wrk``). Exit
status: 0 when every target ran clean, 1 when one FAILed (or something crashed), 2 for
a usage error or a missing wrk.
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
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as ``python bench/serve_bench.py`` only bench/ is on sys.path: the repository
# root makes the test suite's own helpers (tests/support) importable, so the
# benchmark starts MLflow exactly as the tests do rather than keeping a copy.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.hello_app import ANSWER as HELLO_ANSWER  # noqa: E402 - needs ROOT on sys.path
from tests.support.mlflow_server import MlflowServer  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.process import start_in_session, stop_group  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROLE = ROOT / "collections/ansible_collections/mlops/stack/roles/predictor"
BIN = Path(sys.executable).parent  # the venv this script runs in: gunicorn, mlflow
MODEL_NAME = "iris"
ALIAS = "champion"
BATCH_ROWS = 1000
SEED = 20240601
# "ours-nodrift" is ours with its drift metrics off: what they cost, in the same run.
TARGET_NAMES = ("ours", "ours-nodrift", "mlflow", "hello")
# What each target is measured with: (case, rows, protocol). A case is one kind of
# request; "single" and "batch" are the /predict-style rows every target has, the
# others are ours in its other protocols, against the same server in the same run.
PLAN: dict[str, tuple[tuple[str, str, str], ...]] = {
    "ours": (
        ("single", "single", "predict"),
        ("batch", "batch", "predict"),
        ("invocations", "single", "mlflow"),
        ("v2", "single", "v2"),
    ),
    "ours-nodrift": (("single", "single", "predict"),),
    "mlflow": (("single", "single", "mlflow"), ("batch", "batch", "mlflow")),
    "hello": (("single", "single", "hello"), ("batch", "batch", "hello")),
}
# protocol -> the path its requests go to (the hello-world answers /predict)
PATHS = {
    "predict": "/predict",
    "mlflow": "/invocations",
    "v2": f"/v2/models/{MODEL_NAME}/infer",
    "hello": "/predict",
}
# Two classes whose probabilities differ by less than this tie: float32 (ONNX) and
# float64 (scikit-learn) may break the tie either way, and both labels are right.
TIE = 1e-6

# (name, description, compare, threshold): compare(ratio) is the condition to meet
TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("single_rps_vs_mlflow", "single-row requests/s, ours / mlflow", ">=", 40.0),
    ("single_rps_vs_hello", "single-row requests/s, ours / hello-world", ">=", 0.85),
    ("single_p99_mlflow_over_ours", "single-row p99, mlflow / ours", ">=", 25.0),
    ("batch_rows_vs_mlflow", "1,000-row rows/s, ours / mlflow", ">=", 10.0),
    ("rss_vs_mlflow", "peak RSS per worker, ours / mlflow", "<=", 0.60),
    ("invocations_rps_vs_predict", "single-row requests/s, ours /invocations / /predict",
     ">=", 0.80),
    ("v2_rps_vs_predict", "single-row requests/s, ours V2 infer / /predict", ">=", 0.80),
    ("drift_single_rps_vs_off", "single-row requests/s, ours / ours without drift metrics",
     ">=", 0.95),
)  # fmt: skip


class RunFailed(Exception):
    """Something a target did that makes its numbers meaningless: it FAILs."""


class WrongAnswer(RunFailed):
    """An answer that is not the right one for its request."""


# ------------------------------------------------------------------ processes


class Service:
    """A process in a session (process group) of its own; stop() ends the whole group."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.proc = start_in_session(argv, env, workdir, self.log_path)

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

    @contextlib.contextmanager
    def stopped_on_error(self) -> Iterator[None]:
        """Stop the service when its start fails: the caller gets no service to stop."""
        try:
            yield
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        stop_group(self.proc, term_wait=30.0)


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
    # the predictor's master also runs the host's alias follower: not a worker
    follower = "mlops_model.serving.alias_state"
    return [pid for pid in children(master) if follower not in cmdline(pid)]


def uvicorn_workers(top: int) -> list[int]:
    """``mlflow models serve`` -> ``uvicorn --workers N`` -> N spawned worker processes.

    With ``--workers 1`` uvicorn spawns none and serves in its own process.
    """
    for pid in [top, *descendants(top)]:
        line = cmdline(pid)
        if "uvicorn" in line and "mlflow.pyfunc.scoring_server" in line:
            asked = re.search(r"--workers[ =](\d+)", line)
            if asked is None or int(asked.group(1)) == 1:
                return [pid]
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


def train_and_register(url: str) -> dict[str, Any]:
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    from mlops_model.ensure import ensure_model
    from mlops_model.train import TrainParams

    result = ensure_model(url, MODEL_NAME, ALIAS, TrainParams(n_estimators=100))
    if result.get("alias_after") is None:
        raise RuntimeError(f"the model did not get the alias: {result.get('reason')}")
    return result


def reference_probabilities(
    url: str, rows: dict[str, list[list[float]]]
) -> dict[str, list[list[float]]]:
    """The registered version's own probabilities (scikit-learn, float64): right answers."""
    import mlflow
    import mlflow.sklearn
    import pandas as pd
    from mlops_model.schema import FEATURE_NAMES

    mlflow.set_tracking_uri(url)
    model = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}@{ALIAS}")
    # the class index is the position in CLASS_NAMES: mlflow answers that index
    if [int(c) for c in model.classes_] != [0, 1, 2]:
        raise RuntimeError(f"unexpected classes {model.classes_!r}: labels cannot be checked")
    return {
        name: model.predict_proba(pd.DataFrame(r, columns=list(FEATURE_NAMES))).tolist()
        for name, r in rows.items()
    }


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
    from ansible.plugins.filter.core import FilterModule

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701
    # the role's templates are Ansible's: they may use its filters (``| bool``)
    env.filters.update(FilterModule().filters())

    def render(value: Any) -> str:
        return env.from_string(str(value)).render(context).strip()

    environment = {k: render(v) for k, v in internal["__predictor_environment"].items()}
    environment.update(
        {k: render(v) for k, v in (defaults.get("predictor_extra_environment") or {}).items()}
    )
    argv = shlex.split(render(internal["__predictor_exec_start"]))
    return argv, environment


def worker_count(overrides: dict[str, str]) -> int:
    """PREDICTOR_WORKERS as ours and the hello-world get it: the role's, or the --set one."""
    _, environment = role_deployment("http://127.0.0.1:1", 1, ROOT / ".work")
    raw = overrides.get("PREDICTOR_WORKERS", environment.get("PREDICTOR_WORKERS", ""))
    try:
        workers = int(raw)
    except ValueError:
        raise ValueError(f"PREDICTOR_WORKERS={raw!r} is not a number of workers") from None
    if workers < 1:
        raise ValueError(f"PREDICTOR_WORKERS={raw!r}: at least one worker is needed")
    return workers


def start_ours(
    tracking_uri: str, workdir: Path, overrides: dict[str, str], workers: int
) -> tuple[Service, str, dict[str, Any]]:
    port = free_port()
    home = workdir / "predictor"
    for sub in ("prometheus", "cache"):
        (home / sub).mkdir(parents=True)
    argv, environment = role_deployment(tracking_uri, port, home)
    environment.update(overrides)
    service = Service("ours", argv, venv_env(**environment), workdir)
    url = f"http://127.0.0.1:{port}"

    def all_loaded() -> bool:
        status, raw = http("GET", f"{url}/metrics")
        found = re.search(r"^predictor_model_reloads_total (\S+)$", raw.decode(), re.M)
        return status == 200 and found is not None and float(found.group(1)) >= workers

    with service.stopped_on_error():
        wait_until(lambda: http("GET", f"{url}/ready")[0] == 200, service, 180, "the predictor")
        wait_until(all_loaded, service, 180, "every predictor worker to load the model")
        info = json.loads(http("GET", f"{url}/model")[1])
    return service, url, info


def start_mlflow_serve(tracking_uri: str, workdir: Path, workers: int) -> tuple[Service, str]:
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
            "--workers",
            str(workers),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        venv_env(MLFLOW_TRACKING_URI=tracking_uri),
        workdir,
    )
    url = f"http://127.0.0.1:{port}"
    with service.stopped_on_error():
        wait_until(
            lambda: http("GET", f"{url}/ping")[0] == 200, service, 300, "mlflow models serve"
        )
        wait_until(
            lambda: len(uvicorn_workers(service.pid)) >= workers,
            service,
            60,
            f"{workers} uvicorn workers",
        )
    return service, url


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
    with service.stopped_on_error():
        wait_until(lambda: http("GET", f"{url}/ready")[0] == 200, service, 60, "the hello-world")
    return service, url


# ------------------------------------------------------------------ answers


def request_rows(n: int) -> list[list[float]]:
    """Deterministic rows inside each feature's observed range, rounded like real input."""
    import numpy as np
    from mlops_model.serving.checks import check_rows

    rows: list[list[float]] = np.round(check_rows(n, SEED), 1).tolist()
    return rows


def bodies(rows: list[list[float]]) -> dict[str, bytes]:
    """The same rows as each protocol's body, keyed by protocol."""
    from mlops_model.schema import FEATURE_NAMES

    ours = json.dumps({"instances": rows}).encode()
    split = {"dataframe_split": {"columns": list(FEATURE_NAMES), "data": rows}}
    flat = [value for row in rows for value in row]
    tensor = {"name": "input", "datatype": "FP64", "shape": [len(rows), len(FEATURE_NAMES)]}
    v2 = {"inputs": [{**tensor, "data": flat}]}
    return {
        "predict": ours,
        "hello": ours,
        "mlflow": json.dumps(split).encode(),
        "v2": json.dumps(v2).encode(),
    }


@dataclass(frozen=True)
class Expected:
    """The right answer to one body: for each row, the labels that are right (one, or a tie)."""

    allowed: tuple[frozenset[str], ...]


def expected_answers(proba: Sequence[Sequence[float]]) -> Expected:
    """The right labels of each row, from the reference model's class probabilities."""
    from mlops_model.schema import CLASS_NAMES

    allowed = []
    for row in proba:
        best = max(row)
        allowed.append(frozenset(CLASS_NAMES[i] for i, p in enumerate(row) if best - p <= TIE))
    return Expected(tuple(allowed))


def _label(protocol: str, prediction: Any) -> str:
    """A prediction as a class name: MLflow's protocol answers the forest's class index,
    /predict and V2 the class name."""
    from mlops_model.schema import CLASS_NAMES

    if protocol == "mlflow":
        # type() and not isinstance(): JSON true is no class index, though bool is an int
        if type(prediction) is int and 0 <= prediction < len(CLASS_NAMES):
            return CLASS_NAMES[prediction]
    elif isinstance(prediction, str) and prediction in CLASS_NAMES:
        return prediction
    raise WrongAnswer(f"{prediction!r} is not a label the {protocol} protocol answers")


def _v2_predictions(answer: Any) -> Any:
    """The data of a V2 answer's ``predictions`` output (None when there is none)."""
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    if not isinstance(outputs, list):
        return None
    found = [o for o in outputs if isinstance(o, dict) and o.get("name") == "predictions"]
    return found[0].get("data") if len(found) == 1 else None


def check_answer(protocol: str, status: int, raw: bytes, expected: Expected) -> None:
    """Raise WrongAnswer unless ``raw`` is the right answer to the body ``expected`` is for,
    in ``protocol`` (``predict``, ``mlflow``, ``v2`` or ``hello``)."""
    if status != 200:
        raise WrongAnswer(f"status {status}: {raw[:200]!r}")
    if protocol == "hello":
        # the ceiling does no model work: its answer is its constant, whatever the rows
        if raw != HELLO_ANSWER:
            raise WrongAnswer(f"not the hello-world's constant answer: {raw[:200]!r}")
        return
    try:
        answer = json.loads(raw)
    except ValueError as exc:
        raise WrongAnswer(f"not JSON ({exc}): {raw[:200]!r}") from None
    if protocol == "v2":
        predictions = _v2_predictions(answer)
    else:
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list):
        raise WrongAnswer(f"no list of predictions: {raw[:200]!r}")
    n_rows = len(expected.allowed)
    if len(predictions) != n_rows:
        raise WrongAnswer(f"{len(predictions)} predictions for {n_rows} rows")
    labels = [_label(protocol, p) for p in predictions]
    wrong = [i for i, label in enumerate(labels) if label not in expected.allowed[i]]
    if wrong:
        first = wrong[0]
        raise WrongAnswer(
            f"{len(wrong)} of {n_rows} labels are not the model's: row {first} got "
            f"{labels[first]!r}, the model says {' or '.join(sorted(expected.allowed[first]))}"
        )


def sample(
    protocol: str, url: str, body: bytes, expected: Expected, count: int, pause: float
) -> list[str]:
    """Send ``body`` ``count`` times, ``pause`` seconds apart, and check each answer.

    Returns what was wrong with each wrong answer (empty: all were right). wrk counts
    statuses only; this is what looks inside the answers while wrk drives the server.
    """
    problems = []
    for _ in range(count):
        time.sleep(pause)
        try:
            check_answer(protocol, *http("POST", url, body), expected)
        except WrongAnswer as exc:
            problems.append(str(exc))
        except (OSError, HTTPException) as exc:
            problems.append(f"no answer: {exc!r}")
    return problems


def lua_script(path: Path, body_file: Path) -> Path:
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'local f = assert(io.open([==[{body_file}]==], "rb"))\n'
        'wrk.body = f:read("*a")\n'
        "f:close()\n"
    )
    return path


# ------------------------------------------------------------------ load


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise RunFailed(f"unparsable latency {text!r} in wrk's output")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(text: str) -> dict[str, Any]:
    """The numbers of one ``wrk --latency`` run; RunFailed when its output is not wrk's."""

    def grab(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, text, re.M)

    rps = grab(r"^Requests/sec:\s+([\d.]+)")
    total = grab(r"^\s*(\d+) requests in ([\d.]+)(\w+),")
    p50 = grab(r"^\s+50%\s+(\S+)")
    p99 = grab(r"^\s+99%\s+(\S+)")
    if not (rps and total and p50 and p99):
        raise RunFailed(f"could not parse wrk's output:\n{text}")
    non2xx = grab(r"^\s*Non-2xx or 3xx responses:\s+(\d+)")
    sock = grab(r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    # wrk prints these lines only when their counts are not zero: anything else
    # that mentions them means a format this parser does not know
    for word, found in (("Non-2xx", non2xx), ("Socket errors", sock)):
        if word in text and found is None:
            raise RunFailed(f"wrk reported {word} in a form not understood:\n{text}")
    errors = dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    if sock:
        errors = dict(zip(errors, map(int, sock.groups()), strict=True))
    return {
        "requests_per_s": float(rps.group(1)),
        "requests": int(total.group(1)),
        "p50_ms": _ms(p50.group(1)),
        "p99_ms": _ms(p99.group(1)),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors,
    }


def wrk_problems(stats: dict[str, Any]) -> list[str]:
    """Why a parsed wrk run cannot be measured (empty: it can)."""
    problems = []
    if stats["requests"] == 0:
        problems.append("no request completed")
    if stats["non_2xx"]:
        problems.append(f"{stats['non_2xx']} non-2xx answers of {stats['requests']} requests")
    if any(stats["socket_errors"].values()):
        counts = ", ".join(f"{k} {v}" for k, v in stats["socket_errors"].items())
        problems.append(f"socket errors: {counts}")
    return problems


@dataclass
class LoadSettings:
    duration: float
    warmup: float
    connections: int
    threads: int

    def wrk(self, url: str, lua: Path, seconds: float) -> str:
        argv = [
            "wrk",
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout", "10s",
            "--latency",
            "-s", str(lua),
            url,
        ]  # fmt: skip
        try:
            out = subprocess.run(
                argv, capture_output=True, text=True, check=False, timeout=seconds + 60
            )
        except subprocess.TimeoutExpired:
            raise RunFailed(f"wrk did not finish within {seconds + 60:.0f} s") from None
        if out.returncode != 0:
            raise RunFailed(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}".strip())
        return out.stdout


@dataclass
class Case:
    """One kind of request: its body (a file, for wrk's Lua script), its right answer, the
    path it goes to and the protocol its answer is read in."""

    body_file: Path
    expected: Expected
    path: str = "/predict"
    protocol: str = "predict"

    @property
    def rows(self) -> int:
        return len(self.expected.allowed)


@dataclass
class Result:
    target: str
    workers_expected: int
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    workers: list[dict[str, int]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def peak_rss_mib(self) -> float:
        return max(w["vm_hwm_kib"] for w in self.workers) / 1024 if self.workers else float("nan")

    def fail(self, reason: str) -> None:
        self.failures.append(reason)
        print(f"  FAIL  {self.target}: {reason}", flush=True)


def _summary(problems: list[str], asked: int) -> str:
    return f"{len(problems)} of {asked} sampled answers wrong, first: {problems[0]}"


def drive_case(
    result: Result, name: str, base: str, case: Case, load: LoadSettings, samples: int, lua: Path
) -> None:
    """Warm-up and measured run of one case; every problem becomes a failure of ``result``."""
    target, protocol, url = result.target, case.protocol, f"{base}{case.path}"
    body = case.body_file.read_bytes()
    before = sample(protocol, url, body, case.expected, 1, 0.0)
    if before:
        result.fail(f"{name}: wrong answer before the load: {before[0]}")
        return
    try:
        if load.warmup > 0:
            for problem in wrk_problems(parse_wrk(load.wrk(url, lua, load.warmup))):
                result.fail(f"{name} warm-up (wrk): {problem}")
        # spread over the measured run, so answers under load are checked too
        pause = load.duration / (samples + 1)
        with ThreadPoolExecutor(max_workers=1) as pool:
            during = pool.submit(sample, protocol, url, body, case.expected, samples, pause)
            text = load.wrk(url, lua, load.duration)
            wrong_during = during.result()
        stats = parse_wrk(text)
    except RunFailed as exc:
        result.fail(f"{name}: {exc}")
        return
    for problem in wrk_problems(stats):
        result.fail(f"{name} run (wrk): {problem}")
    if wrong_during:
        result.fail(f"{name} during the run: {_summary(wrong_during, samples)}")
    wrong_after = sample(protocol, url, body, case.expected, samples, 0.0)
    if wrong_after:
        result.fail(f"{name} after the run: {_summary(wrong_after, samples)}")
    stats["rows_per_s"] = stats["requests_per_s"] * case.rows
    stats["rows_per_request"] = case.rows
    stats["answers_checked"] = 1 + 2 * samples
    stats["endpoint"] = case.path
    stats["protocol"] = protocol
    result.cases[name] = stats
    print(
        f"  {target:6s} {name:11s} {stats['requests_per_s']:10.1f} req/s  "
        f"p50 {stats['p50_ms']:.2f} ms  p99 {stats['p99_ms']:.2f} ms  "
        f"{stats['answers_checked']} answers checked",
        flush=True,
    )


def drive(
    target: str,
    base: str,
    worker_pids: Callable[[], list[int]],
    workers: int,
    cases: dict[str, Case],
    load: LoadSettings,
    samples: int,
    workdir: Path,
) -> Result:
    result = Result(target, workers)
    for name, case in cases.items():
        lua = lua_script(workdir / f"{target}-{name}.lua", case.body_file)
        drive_case(result, name, base, case, load, samples, lua)
    pids = worker_pids()
    if len(pids) != workers:
        # the RSS per worker and the comparison assume the same worker count
        result.fail(f"{len(pids)} worker processes, {workers} asked for")
    try:
        result.workers = [{"pid": pid, "vm_hwm_kib": vm_hwm_kib(pid)} for pid in pids]
    except OSError as exc:
        result.fail(f"a worker vanished while its memory was read: {exc}")
    return result


# ------------------------------------------------------------------ report


def _per_case(case: str, what: str) -> Callable[[Result], float]:
    return lambda res: float(res.cases[case][what])


def _rss(res: Result) -> float:
    return res.peak_rss_mib


@dataclass(frozen=True)
class Ratio:
    """``metric(top) / (bottom_metric or metric)(bottom)``: two targets, or two cases of one."""

    key: str
    top: str
    bottom: str
    metric: Callable[[Result], float]
    bottom_metric: Callable[[Result], float] | None = None

    def of(self, top: Result, bottom: Result) -> float:
        return self.metric(top) / (self.bottom_metric or self.metric)(bottom)


_SINGLE_RPS = _per_case("single", "requests_per_s")
RATIOS: tuple[Ratio, ...] = (
    Ratio("single_rps_vs_mlflow", "ours", "mlflow", _SINGLE_RPS),
    Ratio("single_rps_vs_hello", "ours", "hello", _SINGLE_RPS),
    Ratio("single_p99_mlflow_over_ours", "mlflow", "ours", _per_case("single", "p99_ms")),
    Ratio("batch_rows_vs_mlflow", "ours", "mlflow", _per_case("batch", "rows_per_s")),
    Ratio("batch_rows_vs_hello", "ours", "hello", _per_case("batch", "rows_per_s")),
    Ratio("rss_vs_mlflow", "ours", "mlflow", _rss),
    Ratio("rss_vs_hello", "ours", "hello", _rss),
    # each protocol against /predict: the same server, in the same run
    Ratio(
        "invocations_rps_vs_predict",
        "ours",
        "ours",
        _per_case("invocations", "requests_per_s"),
        _SINGLE_RPS,
    ),
    Ratio("v2_rps_vs_predict", "ours", "ours", _per_case("v2", "requests_per_s"), _SINGLE_RPS),
    Ratio("drift_single_rps_vs_off", "ours", "ours-nodrift", _SINGLE_RPS),
)


def ratios(results: dict[str, Result]) -> dict[str, float]:
    """Every ratio whose two targets both ran clean; none from a target that FAILed."""
    clean = {name: res for name, res in results.items() if res.ok}
    return {
        ratio.key: ratio.of(clean[ratio.top], clean[ratio.bottom])
        for ratio in RATIOS
        if ratio.top in clean and ratio.bottom in clean
    }


def verdicts(r: dict[str, float]) -> list[dict[str, Any]]:
    """The performance targets whose ratio was computed, met or not."""
    out = []
    for key, text, op, threshold in TARGETS:
        if key not in r:
            continue
        value = r[key]
        met = value >= threshold if op == ">=" else value <= threshold
        out.append({"target": key, "description": text, "value": value,
                    "condition": f"{op} {threshold:g}", "met": met})  # fmt: skip
    return out


def print_table(
    results: dict[str, Result], r: dict[str, float], checks: list[dict[str, Any]], workers: int
) -> None:
    print()
    print(
        f"workers per server: ours {workers}, mlflow {workers} (mlflow models serve "
        f"--workers {workers}), hello {workers}  (PREDICTOR_WORKERS={workers})"
    )
    header = (
        f"{'server':12s} {'endpoint':22s} {'request':>9s} {'req/s':>10s} {'vs /predict':>11s} "
        f"{'rows/s':>11s} {'p50 ms':>8s} {'p99 ms':>8s} {'peak RSS/worker':>16s}"
    )
    print(header)
    print("-" * len(header))
    for name, res in results.items():
        if not res.ok:  # a failed run's numbers measure the failure: not shown
            continue
        for stats in res.cases.values():
            n = stats["rows_per_request"]
            label = "1 row" if n == 1 else f"{n} rows"
            print(
                f"{name:12s} {stats['endpoint']:22s} {label:>9s} {stats['requests_per_s']:10.1f} "
                f"{_vs_predict(name, res, stats):>11s} {stats['rows_per_s']:11.0f} "
                f"{stats['p50_ms']:8.2f} {stats['p99_ms']:8.2f} {res.peak_rss_mib:12.1f} MiB"
            )
    print()
    for key, value in r.items():
        print(f"  {key:30s} {value:8.2f}")
    print()
    for c in checks:
        verdict = "met   " if c["met"] else "MISSED"
        print(f"  {verdict}  {c['description']}: {c['value']:.2f} (target {c['condition']})")
    failed = [res for res in results.values() if not res.ok]
    if failed:
        print()
    for res in failed:
        for reason in res.failures:
            print(f"FAIL  {res.target}: {reason}")
    skipped = [
        ratio.key
        for ratio in RATIOS
        if any(t in results and not results[t].ok for t in (ratio.top, ratio.bottom))
    ]
    if skipped:
        print(f"no ratio from a failed target: {', '.join(skipped)} not computed")


def _vs_predict(target: str, res: Result, stats: dict[str, Any]) -> str:
    """A single-row row of ours in any protocol over ours' /predict single-row req/s."""
    predict = res.cases.get("single")
    if target != "ours" or stats["rows_per_request"] != 1 or not predict:
        return "-"
    return f"{stats['requests_per_s'] / predict['requests_per_s']:.2f}"


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


def conclude(
    results: dict[str, Result],
    workers: int,
    settings: dict[str, Any],
    start: dict[str, Any],
    out: Path,
) -> int:
    """Print the table and every FAIL, write the JSON report; the exit status."""
    r = ratios(results)
    checks = verdicts(r)
    print_table(results, r, checks, workers)
    failed = {name: res.failures for name, res in results.items() if not res.ok}
    report = {
        "settings": settings,
        "machine": {**start, "loadavg_end": os.getloadavg()},
        "results": {
            name: {
                "ok": res.ok,
                "failures": res.failures,
                "cases": res.cases,
                "workers": res.workers,
                # None, not NaN (which is no JSON), when no worker was found
                "peak_rss_per_worker_mib": res.peak_rss_mib if res.workers else None,
                **res.info,
            }
            for name, res in results.items()
        },
        "ratios": r,
        "targets": checks,
        "failed": failed,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {out}")
    if failed:
        print(f"serve_bench: FAIL: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------ main

Started = tuple[Service, str, Callable[[], list[int]], dict[str, Any]]


def start_target(
    target: str, url: str, workdir: Path, overrides: dict[str, str], workers: int
) -> Started:
    """Start one server; returns it, its base URL, how to find its workers, extra facts."""
    if target in ("ours", "ours-nodrift"):
        if target == "ours-nodrift":
            overrides = {**overrides, "PREDICTOR_DRIFT_METRICS": "false"}
        svc, endpoint, info = start_ours(url, workdir / target, overrides, workers)
        return svc, endpoint, lambda: gunicorn_workers(svc.pid), {"model": info}
    if target == "mlflow":
        svc, endpoint = start_mlflow_serve(url, workdir, workers)
        return svc, endpoint, lambda: uvicorn_workers(svc.pid), {}
    svc, endpoint = start_hello(workdir, overrides)
    return svc, endpoint, lambda: gunicorn_workers(svc.pid), {}


def _override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.startswith("PREDICTOR_"):
        raise argparse.ArgumentTypeError(f"expected PREDICTOR_NAME=VALUE, got {text!r}")
    return key, value


def _targets(text: str) -> tuple[str, ...]:
    names = {t.strip() for t in text.split(",") if t.strip()}
    unknown = names - set(TARGET_NAMES)
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected some of {','.join(TARGET_NAMES)}, got {text!r}")
    return tuple(t for t in TARGET_NAMES if t in names)


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=20, help="measured seconds per run [20]")
    p.add_argument("--warmup", type=float, default=5, help="warm-up seconds per run [5]")
    p.add_argument("--connections", type=int, default=8, help="wrk connections [8]")
    p.add_argument("--threads", type=int, default=2, help="wrk threads [2]")
    p.add_argument(
        "--samples",
        type=int,
        default=5,
        help="answers checked per body during each run, and again after it [5]",
    )
    p.add_argument(
        "--targets",
        type=_targets,
        default=TARGET_NAMES,
        help=f"comma-separated servers to run [{','.join(TARGET_NAMES)}]",
    )
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
        "(e.g. PREDICTOR_THREADS=2); PREDICTOR_WORKERS is mirrored to mlflow's --workers; "
        "repeatable",
    )
    args = p.parse_args(argv)
    args.overrides = dict(args.overrides)
    if args.samples < 1:
        p.error("--samples must be at least 1: unchecked answers are not measured")
    try:
        workers = worker_count(args.overrides)
    except ValueError as exc:
        p.error(str(exc))

    if shutil.which("wrk") is None:
        print("serve_bench: wrk is missing: run ./stack bench (installs it)", file=sys.stderr)
        return 2
    load = LoadSettings(args.duration, args.warmup, args.connections, args.threads)
    start = machine()
    if start["loadavg"][0] >= 1.0:
        busy = start["loadavg"][0]
        print(f"note: load average {busy:.2f}: the machine is busy, numbers are indicative")
    print(f"workers per server: {workers} (mlflow models serve --workers {workers})", flush=True)

    # SIGTERM ends the run like Ctrl-C: through the finally blocks below.
    signal.signal(signal.SIGTERM, _interrupted)
    (ROOT / ".work").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="serve-bench-", dir=ROOT / ".work"))
    registry: MlflowServer | None = None
    results: dict[str, Result] = {}
    try:
        registry = MlflowServer(workdir / "mlflow", env=venv_env())
        registry.start(timeout=120)
        url = registry.url
        print(f"mlflow server at {url}; training the Iris forest (100 trees)", flush=True)
        trained = train_and_register(url)
        print(f"registered {MODEL_NAME} version {trained['version']} as @{ALIAS}", flush=True)

        rows = {"single": request_rows(1), "batch": request_rows(BATCH_ROWS)}
        reference = reference_probabilities(url, rows)
        expected = {name: expected_answers(proba) for name, proba in reference.items()}
        body_files: dict[tuple[str, str], Path] = {}
        for rows_name, case_rows in rows.items():
            for protocol, body in bodies(case_rows).items():
                body_file = workdir / f"body-{protocol}-{rows_name}.json"
                body_file.write_bytes(body)
                body_files[protocol, rows_name] = body_file
        cases = {
            target: {
                name: Case(
                    body_files[protocol, rows_name], expected[rows_name], PATHS[protocol], protocol
                )
                for name, rows_name, protocol in plan
            }
            for target, plan in PLAN.items()
        }

        for target in args.targets:
            print(f"starting {target}", flush=True)
            try:
                svc, endpoint, pids, info = start_target(
                    target, url, workdir, args.overrides, workers
                )
            except RuntimeError as exc:
                results[target] = Result(target, workers)
                results[target].fail(f"did not start: {exc}")
                continue
            try:
                result = drive(
                    target, endpoint, pids, workers, cases[target], load, args.samples, workdir
                )
                if not svc.alive():
                    result.fail(f"exited during the run:\n{svc.log_tail()}")
                result.info = info
                results[target] = result
            finally:
                svc.stop()
    finally:
        if registry is not None:
            registry.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}")

    settings = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "wrk_threads": args.threads,
        "batch_rows": BATCH_ROWS,
        "samples": args.samples,
        "targets": list(args.targets),
        "workers": workers,
        "overrides": args.overrides,
    }
    return conclude(results, workers, settings, start, args.out)


if __name__ == "__main__":
    sys.exit(main())
