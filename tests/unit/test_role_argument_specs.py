"""Every role refuses a wrong variable before it touches anything.

For each entry point of each role's ``meta/argument_specs.yml`` (the collection's and
the site roles under ``roles/``), a real ``ansible-playbook`` runs the role on
localhost with ONE wrong value generated from the spec (a bogus choice, or a
value of the wrong type), and the play must stop at the role's argument
validation, naming the variable, with no other task run and nothing changed.

Safety net: the playbook runs with ``--check`` and ``--tags`` set to a tag no task
carries, so only ``always``-tagged tasks can run (the validation task is one). Should
a validation ever wrongly pass, the test fails (ok=1, no failure) without the
role's real tasks running as root on this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COLLECTION_ROLES = ROOT / "collections/ansible_collections/mlops/stack/roles"
SITE_ROLES = ROOT / "roles"
NO_SUCH_TAG = "argspec_validation_only"
# groups the roles' defaults look up (e.g. the predictor's tracking URI: groups['mlflow'])
INVENTORY_GROUPS = ("mlflow", "predictors", "monitoring", "gateway")

# A wrong value per type: each one fails ansible's conversion to that type.
WRONG_BY_TYPE: dict[str, Any] = {
    "int": "not-a-number",
    "float": "not-a-float",
    "bool": "not-a-bool",
    "dict": "not-a-dict",
    "list": {"not": "a list"},
}
# A valid value per type, for required options without a default.
VALID_BY_TYPE: dict[str, Any] = {
    "str": "argspec-test",
    "path": "/nonexistent/argspec-test",
    "int": 1,
    "float": 1.0,
    "bool": True,
    "dict": {},
    "list": [],
}


@dataclass(frozen=True)
class Case:
    role: str  # the name a playbook uses: FQCN for collection roles
    entry_point: str
    option: str  # the variable given a wrong value (or, see below, a misspelt one)
    value: Any
    why: str
    required: dict[str, Any]  # valid values of required options without a default
    unknown_option: bool = False

    @property
    def id(self) -> str:
        return f"{self.role}:{self.entry_point}:{self.option}"


def spec_files() -> list[tuple[str, Path]]:
    files = [(f"mlops.stack.{p.parent.name}", p) for p in COLLECTION_ROLES.glob("*/meta")]
    files += [(p.parent.name, p) for p in SITE_ROLES.glob("*/meta")]
    return sorted(
        (name, meta / "argument_specs.yml")
        for name, meta in files
        if (meta / "argument_specs.yml").is_file()
    )


def wrong_value(options: dict[str, Any]) -> tuple[str, Any, str] | None:
    """The option to break and how: a bogus choice first, else the first option of a
    type that can hold a wrong value, in the order int, float, bool, dict, list."""
    for name, spec in options.items():
        if spec.get("choices"):
            return name, f"bogus-{name}", f"not one of {spec['choices']}"
    for wanted in WRONG_BY_TYPE:
        for name, spec in options.items():
            if spec.get("type", "str") == wanted:
                return name, WRONG_BY_TYPE[wanted], f"not a {wanted}"
    return None


def cases() -> list[Case]:
    found: list[Case] = []
    for role, path in spec_files():
        specs = yaml.safe_load(path.read_text())["argument_specs"]
        for entry_point, spec in specs.items():
            options: dict[str, Any] = spec.get("options") or {}
            required = {
                name: VALID_BY_TYPE.get(opt.get("type", "str"), "argspec-test")
                for name, opt in options.items()
                if opt.get("required") and "default" not in opt
            }
            picked = wrong_value(options)
            if picked is not None:
                option, value, why = picked
                found.append(Case(role, entry_point, option, value, why, required))
            else:
                # Only str/path options (they take any value): the wrong input a user
                # can still make is a misspelt variable, passed as a role parameter.
                first = next(iter(options))
                found.append(
                    Case(
                        role, entry_point, first + "_typo", "x",
                        f"misspelling of {first}", required, unknown_option=True,
                    )
                )  # fmt: skip
    return found


CASES = cases()


def test_every_role_has_a_spec_and_a_case() -> None:
    roles = {p.parent.name for root in (COLLECTION_ROLES, SITE_ROLES) for p in root.glob("*/tasks")}
    assert roles, "no role found"
    specified = {name.rsplit(".", 1)[-1] for name, _ in spec_files()}
    without = sorted(roles - specified)
    assert not without, f"roles without meta/argument_specs.yml: {without}"
    assert {case.role.rsplit(".", 1)[-1] for case in CASES} == roles


def playbook(case: Case) -> list[dict[str, Any]]:
    play: dict[str, Any] = {
        "name": f"Wrong {case.option} for {case.role}",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
    }
    if case.unknown_option:
        # role parameters are what validation checks for unsupported names
        play["roles"] = [{"role": case.role, **case.required, case.option: case.value}]
    else:
        play["tasks"] = [
            {
                "name": f"Import {case.role}",
                "ansible.builtin.import_role": {
                    "name": case.role,
                    "tasks_from": case.entry_point,
                },
                "vars": {**case.required, case.option: case.value},
            }
        ]
    return [play]


def run_playbook(case: Case, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Any]:
    # The roles' defaults are templated by the validation task, and they assume the
    # project's layout: playbooks one level below the root (credentials/, .work/
    # node-image) and an inventory with the stack's groups. Give them both, in tmp.
    play = tmp_path / "playbooks" / "play.yml"
    play.parent.mkdir()
    play.write_text(yaml.safe_dump(playbook(case), sort_keys=False))
    if "." not in case.role:
        # a site role reads the site's shared variables (group_vars/all), as
        # beside site.yml and playbooks/
        (play.parent / "group_vars").symlink_to(ROOT / "group_vars")
    (tmp_path / ".work").mkdir()
    (tmp_path / ".work" / "node-image").write_text("localhost/mlops-node:argspec-test\n")
    groups = "".join(f"[{group}]\nlocalhost\n" for group in INVENTORY_GROUPS)
    (tmp_path / "hosts.ini").write_text(
        f"localhost ansible_python_interpreter={sys.executable}\n{groups}"
    )
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_NOCOLOR": "1",
    }
    # From the repository root, so ansible.cfg sets collections and roles paths and home.
    proc = subprocess.run(
        [
            str(bin_dir / "ansible-playbook"),
            "-i", str(tmp_path / "hosts.ini"),
            "--check",
            "--tags", NO_SUCH_TAG,
            str(play),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON report (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc, report


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_role_refuses_a_wrong_value_before_any_task(case: Case, tmp_path: Path) -> None:
    proc, report = run_playbook(case, tmp_path)
    context = f"{case.option}={case.value!r} ({case.why})\nstderr:\n{proc.stderr}"
    assert proc.returncode == 2, f"the play did not fail: rc={proc.returncode}\n{context}"

    tasks = [task for play in report["plays"] for task in play["tasks"]]
    names = [task["task"]["name"] for task in tasks]
    # the validation task is the one and only task that ran, and it failed
    assert len(tasks) == 1, f"tasks ran besides the validation: {names}\n{context}"
    result = tasks[0]["hosts"]["localhost"]
    assert result["action"] == "ansible.builtin.validate_argument_spec", names
    prefix = f"{case.role} : Validating arguments against arg spec '{case.entry_point}'"
    assert names[0].startswith(prefix), names
    assert result.get("failed") is True, result
    msg = result["msg"]
    assert msg.startswith("Validation of arguments failed"), msg
    assert case.option in msg, f"the message does not name {case.option}: {msg}"
    if not case.unknown_option:
        # exactly the one wrong value, nothing else (defaults and required ones pass)
        errors = result["argument_errors"]
        assert len(errors) == 1, errors
        assert case.option in errors[0], errors
    else:
        assert "Supported parameters include" in msg, msg

    assert report["stats"]["localhost"] == {
        "changed": 0, "failures": 1, "ignored": 0, "ok": 0,
        "rescued": 0, "skipped": 0, "unreachable": 0,
    }, report["stats"]  # fmt: skip


# Limits an argument spec cannot state (it has types and choices, not ranges) are
# checked by the role's preflight, the first always-tagged tasks after the validation:
# the play must still stop before any other task, naming the variable.
GRAFANA_PREFLIGHT_REFUSALS = [
    # the sandbox grants no CAP_NET_BIND_SERVICE: Grafana could not bind the port
    ("grafana_http_port", 80, "Refuse a port Grafana cannot bind"),
    ("grafana_http_port", 1023, "Refuse a port Grafana cannot bind"),
    ("grafana_http_port", 65536, "Refuse a port Grafana cannot bind"),
    # the package chowns /var/lib/grafana to grafana on every upgrade
    (
        "grafana_dashboards_dir",
        "/var/lib/grafana/dashboards",
        "Refuse a dashboards folder under Grafana's data folder",
    ),
]


@pytest.mark.parametrize(
    ("option", "value", "task"),
    GRAFANA_PREFLIGHT_REFUSALS,
    ids=[f"{option}={value}" for option, value, _ in GRAFANA_PREFLIGHT_REFUSALS],
)
def test_grafana_preflight_refuses_before_any_change(
    option: str, value: Any, task: str, tmp_path: Path
) -> None:
    case = Case("mlops.stack.grafana", "main", option, value, "preflight", {})
    proc, report = run_playbook(case, tmp_path)
    assert proc.returncode == 2, f"the play did not fail: rc={proc.returncode}\n{proc.stderr}"
    tasks = [t for play in report["plays"] for t in play["tasks"]]
    names = [t["task"]["name"] for t in tasks]
    # the validation passed, then only preflight checks ran, the last one refused
    assert tasks[0]["hosts"]["localhost"]["action"] == "ansible.builtin.validate_argument_spec"
    assert not tasks[0]["hosts"]["localhost"].get("failed"), tasks[0]["hosts"]["localhost"]
    files = {t["task"]["path"].rsplit(":", 1)[0] for t in tasks[1:]}
    assert files == {str(COLLECTION_ROLES / "grafana" / "tasks" / "preflight.yml")}, names
    actions = {t["hosts"]["localhost"]["action"] for t in tasks[1:]}
    assert actions == {"ansible.builtin.assert"}, names
    assert names[-1] == f"mlops.stack.grafana : {task}", names
    refused = tasks[-1]["hosts"]["localhost"]
    assert refused.get("failed") is True, refused
    assert option in refused["msg"], refused["msg"]
    assert report["stats"]["localhost"]["changed"] == 0, report["stats"]
    assert report["stats"]["localhost"]["failures"] == 1, report["stats"]


def test_grafana_preflight_accepts_port_1024(tmp_path: Path) -> None:
    case = Case("mlops.stack.grafana", "main", "grafana_http_port", 1024, "lowest port", {})
    proc, report = run_playbook(case, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [t["task"]["name"] for play in report["plays"] for t in play["tasks"]]
    assert "mlops.stack.grafana : Refuse a port Grafana cannot bind" in names, names
    assert report["stats"]["localhost"]["changed"] == 0, report["stats"]
    assert report["stats"]["localhost"]["failures"] == 0, report["stats"]
