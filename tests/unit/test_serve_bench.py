"""bench/serve_bench.py without servers: reading wrk, checking answers, the FAIL rules.

The wrk outputs in tests/unit/wrk/ are real ones (wrk 4.1.0, Debian), taken against a small
local server that answered 200, answered 500, closed its keep-alive connections
(read errors) and answered after wrk's timeout; wrk prints the "Non-2xx" and
"Socket errors" lines only when their counts are not zero.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import pytest
import yaml

from bench import serve_bench as sb

WRK = Path(__file__).with_name("wrk")


def wrk_output(name: str) -> str:
    """A captured wrk output, verbatim, from tests/unit/wrk/."""
    return (WRK / f"{name}.txt").read_text()


WRK_CLEAN = wrk_output("clean")
WRK_NON_2XX = wrk_output("non_2xx")
WRK_READ_ERRORS = wrk_output("read_errors")
WRK_TIMEOUTS = wrk_output("timeouts")


# ------------------------------------------------------------------ wrk


def test_clean_run_is_read_and_measurable():
    stats = sb.parse_wrk(WRK_CLEAN)
    assert stats["requests_per_s"] == 45.45
    assert stats["requests"] == 50
    assert stats["p50_ms"] == pytest.approx(43.96)
    assert stats["p99_ms"] == pytest.approx(44.17)
    assert stats["non_2xx"] == 0
    assert stats["socket_errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    assert sb.wrk_problems(stats) == []


def test_non_2xx_answers_fail_the_run():
    stats = sb.parse_wrk(WRK_NON_2XX)
    assert stats["non_2xx"] == 46
    assert sb.wrk_problems(stats) == ["46 non-2xx answers of 46 requests"]


def test_read_errors_fail_the_run():
    stats = sb.parse_wrk(WRK_READ_ERRORS)
    assert stats["socket_errors"] == {"connect": 0, "read": 2156, "write": 0, "timeout": 0}
    assert sb.wrk_problems(stats) == [
        "no request completed",
        "socket errors: connect 0, read 2156, write 0, timeout 0",
    ]


def test_timeouts_fail_the_run():
    stats = sb.parse_wrk(WRK_TIMEOUTS)
    assert stats["socket_errors"]["timeout"] == 2
    assert sb.wrk_problems(stats) == ["socket errors: connect 0, read 0, write 0, timeout 2"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        WRK_CLEAN.replace("Requests/sec:", "Requests per second:"),
        # an error line in a form the parser does not know is never read as "no errors"
        WRK_CLEAN + "  Socket errors: connect=1 read=0\n",
        WRK_CLEAN + "  Non-2xx or 3xx responses: many\n",
    ],
    ids=["empty", "no-rate", "socket-errors-unknown-form", "non-2xx-unknown-form"],
)
def test_output_not_understood_fails_rather_than_passes(text):
    with pytest.raises(sb.RunFailed):
        sb.parse_wrk(text)


# ------------------------------------------------------------------ answers

ONE_SETOSA = sb.Expected((frozenset({"setosa"}),))
TWO_ROWS = sb.expected_answers([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8]])


def answer(predictions) -> bytes:
    return json.dumps({"predictions": predictions}).encode()


def test_expected_labels_are_the_models_and_a_tie_allows_both():
    assert TWO_ROWS.allowed == (frozenset({"setosa"}), frozenset({"virginica"}))
    tie = sb.expected_answers([[0.5, 0.5, 0.0]])
    assert tie.allowed == (frozenset({"setosa", "versicolor"}),)
    for label in ("setosa", "versicolor"):
        sb.check_answer("ours", 200, answer([label]), tie)
    with pytest.raises(sb.WrongAnswer):
        sb.check_answer("ours", 200, answer(["virginica"]), tie)


def test_right_answers_pass():
    sb.check_answer("ours", 200, answer(["setosa", "virginica"]), TWO_ROWS)
    sb.check_answer("mlflow", 200, answer([0, 2]), TWO_ROWS)
    # the ceiling answers its constant whatever the rows
    sb.check_answer("hello", 200, b'{"predictions":["setosa"]}', TWO_ROWS)


@pytest.mark.parametrize(
    ("target", "status", "raw", "reason"),
    [
        ("ours", 500, answer(["setosa", "virginica"]), "status 500"),
        ("ours", 200, b"<html>oops</html>", "not JSON"),
        ("ours", 200, b'{"error": "x"}', "no list of predictions"),
        ("ours", 200, b'["setosa", "virginica"]', "no list of predictions"),
        ("ours", 200, answer(["setosa"]), "1 predictions for 2 rows"),
        ("ours", 200, answer(["setosa", "setosa", "setosa"]), "3 predictions for 2 rows"),
        ("ours", 200, answer(["setosa", "setosa"]), "1 of 2 labels are not the model's"),
        ("ours", 200, answer([0, 2]), "0 is not a label ours answers"),
        ("ours", 200, answer(["Setosa", "virginica"]), "is not a label"),
        ("mlflow", 200, answer(["setosa", "virginica"]), "is not a label mlflow answers"),
        ("mlflow", 200, answer([True, 2]), "True is not a label"),
        ("mlflow", 200, answer([0, 3]), "3 is not a label"),
        ("mlflow", 200, answer([2, 0]), "2 of 2 labels are not the model's"),
        ("hello", 200, b'{"predictions":["virginica"]}', "constant"),
        ("hello", 404, b"not found", "status 404"),
    ],
)
def test_wrong_answers_are_caught(target, status, raw, reason):
    with pytest.raises(sb.WrongAnswer, match=reason):
        sb.check_answer(target, status, raw, TWO_ROWS)


# ------------------------------------------------------------------ ratios and FAIL


def result(target: str, rps: float, failures: tuple[str, ...] = ()) -> sb.Result:
    res = sb.Result(target, 2)
    res.cases = {
        "single": {"requests_per_s": rps, "rows_per_s": rps, "p50_ms": 1.0, "p99_ms": 1000 / rps,
                   "rows_per_request": 1},
        "batch": {"requests_per_s": rps / 10, "rows_per_s": rps * 100, "p50_ms": 10.0,
                  "p99_ms": 10_000 / rps, "rows_per_request": 1000},
    }  # fmt: skip
    res.workers = [{"pid": 1, "vm_hwm_kib": 100 * 1024}, {"pid": 2, "vm_hwm_kib": 90 * 1024}]
    res.failures = list(failures)
    return res


def test_ratios_and_targets_from_clean_runs():
    results = {t: result(t, rps) for t, rps in (("ours", 1000), ("mlflow", 20), ("hello", 1100))}
    r = sb.ratios(results)
    assert set(r) == {key for key, *_ in sb.RATIOS}
    assert r["single_rps_vs_mlflow"] == pytest.approx(50)
    assert r["single_p99_mlflow_over_ours"] == pytest.approx(50)
    assert r["rss_vs_mlflow"] == pytest.approx(1.0)
    met = {c["target"]: c["met"] for c in sb.verdicts(r)}
    assert met == {
        "single_rps_vs_mlflow": True,
        "single_rps_vs_hello": True,
        "single_p99_mlflow_over_ours": True,
        "batch_rows_vs_mlflow": True,
        "rss_vs_mlflow": False,  # same RSS: not <= 0.60
    }


def test_a_failed_target_gives_no_ratio_and_exit_1(tmp_path: Path, capsys):
    results = {
        "ours": result("ours", 1000),
        "mlflow": result("mlflow", 20, ("single run (wrk): 46 non-2xx answers of 46 requests",)),
        "hello": result("hello", 1100),
    }
    r = sb.ratios(results)
    assert set(r) == {"single_rps_vs_hello", "batch_rows_vs_hello", "rss_vs_hello"}
    assert [c["target"] for c in sb.verdicts(r)] == ["single_rps_vs_hello"]

    out = tmp_path / "bench.json"
    status = sb.conclude(results, 2, {}, {"loadavg": (0, 0, 0)}, out)
    printed = capsys.readouterr()
    assert status == 1
    assert "FAIL  mlflow: single run (wrk): 46 non-2xx answers of 46 requests" in printed.out
    assert "serve_bench: FAIL: mlflow" in printed.err
    lines = printed.out.splitlines()
    assert not [line for line in lines if line.startswith("mlflow ")], "a row of the failed run"
    numbers = [line for line in lines if re.fullmatch(r"\s+\w+\s+-?[\d.]+", line)]
    assert numbers, "no ratio printed at all"
    assert not [line for line in numbers if "mlflow" in line], "a ratio from the failed run"
    verdict_lines = [line for line in lines if line.lstrip().startswith(("met", "MISSED"))]
    assert not [line for line in verdict_lines if "mlflow" in line]
    assert "workers per server: ours 2, mlflow 2" in printed.out
    assert (
        "no ratio from a failed target: single_rps_vs_mlflow, single_p99_mlflow_over_ours, "
        "batch_rows_vs_mlflow, rss_vs_mlflow not computed"
    ) in printed.out
    report = json.loads(out.read_text())
    assert report["failed"] == {"mlflow": results["mlflow"].failures}
    assert not report["results"]["mlflow"]["ok"]
    assert "single_rps_vs_mlflow" not in report["ratios"]


def test_clean_results_exit_0(tmp_path: Path, capsys):
    results = {t: result(t, rps) for t, rps in (("ours", 1000), ("mlflow", 20), ("hello", 1100))}
    assert sb.conclude(results, 2, {}, {"loadavg": (0, 0, 0)}, tmp_path / "b.json") == 0
    assert "FAIL" not in capsys.readouterr().out


def test_a_target_without_workers_fails_and_reports_no_rss(tmp_path: Path):
    res = sb.Result("ours", 2)
    res.fail("did not start: boom")
    status = sb.conclude({"ours": res}, 2, {}, {"loadavg": (0, 0, 0)}, tmp_path / "b.json")
    assert status == 1
    # no NaN: strict JSON readers refuse it
    report = json.loads((tmp_path / "b.json").read_text(), parse_constant=pytest.fail)
    assert report["results"]["ours"]["peak_rss_per_worker_mib"] is None


# ------------------------------------------------------------------ workers


def test_worker_count_is_the_roles_unless_set():
    defaults = yaml.safe_load((sb.ROLE / "defaults/main.yml").read_text())
    assert sb.worker_count({}) == int(defaults["predictor_workers"])
    assert sb.worker_count({"PREDICTOR_WORKERS": "3"}) == 3


@pytest.mark.parametrize("value", ["0", "-1", "two", ""])
def test_a_worker_count_that_cannot_be_mirrored_is_refused(value, capsys, monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("the benchmark started instead of refusing the count")

    monkeypatch.setattr(sb, "MlflowServer", started)
    with pytest.raises(SystemExit) as exc:
        sb.main(["--set", f"PREDICTOR_WORKERS={value}"])
    assert exc.value.code == 2
    assert "PREDICTOR_WORKERS" in capsys.readouterr().err


def test_mlflow_serve_gets_our_worker_count(monkeypatch, tmp_path: Path):
    started: list[list[str]] = []

    class Recorded:
        pid = 0

        def __init__(self, name, argv, env, workdir):
            started.append(argv)

        def stopped_on_error(self):
            return contextlib.nullcontext()

    monkeypatch.setattr(sb, "Service", Recorded)
    monkeypatch.setattr(sb, "wait_until", lambda *args, **kwargs: None)
    sb.start_mlflow_serve("http://127.0.0.1:1", tmp_path, 3)
    argv = started[0]
    assert argv[argv.index("--workers") + 1] == "3"
    assert "-w" not in argv
