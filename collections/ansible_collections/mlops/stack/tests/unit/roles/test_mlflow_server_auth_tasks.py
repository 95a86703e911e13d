"""The mlflow_server role's tasks/auth.yml, run by ``ansible-playbook`` against a real
MLflow server with basic auth (a server of this module's own: the admin is rotated).

What the molecule scenario ``mlflow_server/auth`` checks on a node, here on localhost
and in seconds: the role's default accounts (writer: EDIT on the iris experiment and
registered model; reader), check mode, a second run without change, repairs of drift,
and the admin's rotation. The modules run with an interpreter that has no mlflow, as on
the MLflow host.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PLAYBOOK = """\
- name: The account tasks of the mlflow_server role
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Set up the admin, the accounts and their permissions
      ansible.builtin.include_role:
        name: mlops.stack.mlflow_server
        tasks_from: auth
"""
ELSEWHERE = "elsewhere-password-0123"  # pragma: allowlist secret


class Role:
    """Runs auth.yml with the given role variables; reads the generated passwords."""

    def __init__(self, root: Path, server, run_playbook, python: str) -> None:
        self.root = root
        self.server = server
        self.run_playbook = run_playbook
        self.python = python
        self.credentials = root / "credentials"
        self.playbook = root / "auth.yml"
        self.playbook.write_text(PLAYBOOK)

    def run(self, *flags: str, port: int | None = None, **role_vars) -> dict:
        variables = {
            "ansible_python_interpreter": self.python,
            # the role's own requests go to MLflow itself, on loopback behind
            # its TLS front: the test's plain server stands in for it there
            "mlflow_server_internal_port": port or self.server.server.port,
            "mlflow_server_credentials_dir": str(self.credentials),
            "mlflow_server_admin_password": self.server.admin_password,
            **role_vars,
        }
        extra = self.root / "vars.json"
        extra.write_text(json.dumps(variables))
        return self.run_playbook(self.playbook, "-e", f"@{extra}", *flags)

    def password(self, account: str) -> str:
        return (self.credentials / f"mlflow_{account}_password").read_text().strip()


def stats(report: dict) -> dict:
    return report["stats"]["localhost"]


def results(report: dict) -> list[tuple[str, dict]]:
    """(name without the role's prefix, result) of each task."""
    return [
        (task["task"]["name"].split(" : ", 1)[-1], task["hosts"].get("localhost", {}))
        for task in report["plays"][0]["tasks"]
    ]


def changed_tasks(report: dict) -> dict[str, dict]:
    """Name -> result of each task that changed something (or would)."""
    return {name: result for name, result in results(report) if result.get("changed")}


def failed_task(report: dict) -> tuple[str, dict]:
    failed = [(name, result) for name, result in results(report) if result.get("failed")]
    assert failed, [name for name, _result in results(report)]
    return failed[0]


@pytest.fixture(scope="module")
def role(tmp_path_factory, own_mlflow_auth, run_playbook, python_without_mlflow):
    return Role(
        tmp_path_factory.mktemp("auth-role"), own_mlflow_auth, run_playbook, python_without_mlflow
    )


@pytest.fixture(scope="module")
def converged(role):
    """The first run of the role: check mode, then for real."""
    server = role.server
    planned = role.run("--check")
    assert stats(planned)["failures"] == 0, role.run_playbook.output
    assert server.user("writer") is None
    assert server.user("reader") is None
    assert server.experiment_id("iris") is None
    assert not server.model_exists("iris")

    done = role.run()
    assert stats(done)["failures"] == 0, role.run_playbook.output
    return planned, done


def test_first_run_creates_the_accounts_and_grants(role, converged):
    planned, done = converged
    would = changed_tasks(planned)
    accounts = would[
        "Create the accounts, set the passwords of those that have another one, take any admin flag"
    ]
    assert [r["actions"] for r in accounts["results"]] == [["create the account"]] * 2
    grants = would["Grant the accounts their permissions"]
    assert grants["results"][0]["actions"] == [
        "create experiment iris",
        "grant EDIT on experiment iris to writer",
        "create registered model iris",
        "grant EDIT on registered model iris to writer",
    ]

    server = role.server
    assert set(changed_tasks(done)) == set(would)
    for account in ("writer", "reader"):
        assert server.logs_in(account, role.password(account))
        assert server.user(account)["is_admin"] is False
    experiment = server.experiment_id("iris")
    assert server.grants("writer") == {
        ("experiment", experiment): "EDIT",
        ("registered_model", "iris"): "EDIT",
    }
    assert server.grants("reader") == {}
    assert server.logs_in(server.admin, server.admin_password)


def test_second_run_changes_nothing(role, converged):
    assert stats(role.run())["changed"] == 0, role.run_playbook.output
    assert stats(role.run("--check"))["changed"] == 0, role.run_playbook.output


def test_drift_is_reported_in_check_mode_then_repaired(role, converged):
    server = role.server
    experiment = server.experiment_id("iris")
    writer = role.password("writer")
    for method, path, body in [
        ("PATCH", "users/update-admin", {"username": "reader", "is_admin": True}),
        ("PATCH", "users/update-password", {"username": "writer", "password": ELSEWHERE}),
    ]:
        assert server.call(method, f"/api/2.0/mlflow/{path}", body)[0] == 200
    change = {"username": "writer", "resource_type": "experiment", "resource_id": experiment}
    assert server.call("POST", "/api/3.0/mlflow/users/permissions/revoke", change)[0] == 200
    assert (
        server.call(
            "POST", "/api/3.0/mlflow/users/permissions/grant", {**change, "permission": "READ"}
        )[0]
        == 200
    )

    planned = role.run("--check", "--diff")
    planned_output = role.run_playbook.output
    assert stats(planned)["failures"] == 0, planned_output
    would = changed_tasks(planned)
    accounts = would[
        "Create the accounts, set the passwords of those that have another one, take any admin flag"
    ]
    assert [r["actions"] for r in accounts["results"]] == [
        ["set the password"],
        ["take the admin flag"],
    ]
    assert would["Grant the accounts their permissions"]["results"][0]["actions"] == [
        "revoke READ on experiment iris from writer",
        "grant EDIT on experiment iris to writer",
    ]
    assert server.user("reader")["is_admin"] is True
    assert server.logs_in("writer", ELSEWHERE)
    assert server.grants("writer")[("experiment", experiment)] == "READ"

    done = role.run("--diff")
    assert stats(done)["failures"] == 0, role.run_playbook.output
    secrets = (writer, role.password("reader"), ELSEWHERE, server.admin_password)
    assert [s for s in secrets if s in planned_output + role.run_playbook.output] == []
    assert server.user("reader")["is_admin"] is False
    assert server.logs_in("writer", writer)
    assert not server.logs_in("writer", ELSEWHERE)
    assert server.grants("writer")[("experiment", experiment)] == "EDIT"
    assert stats(role.run())["changed"] == 0


def test_admin_rotation(role, converged):
    """As molecule's verify: the admin gets a password behind the role's back."""
    server = role.server
    body = {
        "username": server.admin,
        "password": ELSEWHERE,
        "current_password": server.admin_password,
    }
    assert server.call("PATCH", "/api/2.0/mlflow/users/update-password", body)[0] == 200
    try:
        refused = role.run()
        name, result = failed_task(refused)
        assert name == "Fail when no known password opens the admin account"
        assert "mlflow_server_admin_previous_passwords" in result["msg"]
        assert stats(refused)["changed"] == 0

        planned = role.run("--check", mlflow_server_admin_previous_passwords=[ELSEWHERE])
        assert stats(planned)["failures"] == 0, role.run_playbook.output
        admin = changed_tasks(planned)[
            "Log in as the MLflow admin, rotating its password to the configured one when needed"
        ]
        assert admin["actions"] == ["set the password"]
        assert admin["previous_password_index"] == 0
        assert (
            stats(planned)["changed"] == 1
        )  # the accounts and grants, read with ELSEWHERE, are fine
        assert server.logs_in(server.admin, ELSEWHERE)

        done = role.run(mlflow_server_admin_previous_passwords=[ELSEWHERE])
        assert stats(done)["failures"] == 0, role.run_playbook.output
        assert stats(done)["changed"] == 1
        assert ELSEWHERE not in role.run_playbook.output
        assert server.admin_password not in role.run_playbook.output
    finally:
        if not server.logs_in(server.admin, server.admin_password):
            body = {
                "username": server.admin,
                "password": server.admin_password,
                "current_password": ELSEWHERE,
            }
            server.call(
                "PATCH",
                "/api/2.0/mlflow/users/update-password",
                body,
                login=(server.admin, ELSEWHERE),
            )
    assert server.logs_in(server.admin, server.admin_password)
    assert not server.logs_in(server.admin, ELSEWHERE)


def test_no_server(role, tmp_path):
    """Check mode on a host where MLflow does not run yet asks nothing; a real run fails."""
    unused = 9  # discard: nothing listens
    planned = role.run("--check", port=unused)
    assert stats(planned)["failures"] == 0, role.run_playbook.output
    assert stats(planned)["changed"] == 0

    done = role.run(port=unused)
    name, result = failed_task(done)
    assert name.startswith("Log in as the MLflow admin")
    assert result["status"] == -1
    assert "http://127.0.0.1:9/api/2.0/mlflow/users/get" in result["msg"]
