"""mlops.stack.mlflow_permission against a real MLflow server with basic auth.

Every outcome is checked through MLflow's REST API (``mlflow_auth``).
"""

from __future__ import annotations

import pytest

PASSWORD = "account-password-0123"  # pragma: allowlist secret


@pytest.fixture
def account(mlflow_auth, unique_name):
    """An account of its own, with no grant."""
    mlflow_auth.create_user(unique_name, PASSWORD)
    return unique_name


def edit_both(name: str, permission: str = "EDIT") -> list[dict]:
    return [
        {"resource_type": "experiment", "name": name, "permission": permission},
        {"resource_type": "registered_model", "name": name, "permission": permission},
    ]


def failed(result: dict) -> bool:
    return result.get("failed") is True


def test_check_mode_creates_and_grants_nothing(mlflow_auth, account, run_module):
    args = {
        **mlflow_auth.connection(),
        "user": account,
        "create_missing": True,
        "grants": edit_both(account),
    }
    # through ansible: its --check and --diff reach the module
    planned = run_module("mlflow_permission", args, "--check", "--diff", via_ansible=True)
    assert not failed(planned), planned
    assert planned["changed"] is True
    assert planned["actions"] == [
        f"create experiment {account}",
        f"grant EDIT on experiment {account} to {account}",
        f"create registered model {account}",
        f"grant EDIT on registered model {account} to {account}",
    ]
    assert planned["diff"] == {
        "before": {
            "user": account,
            "grants": {f"experiment {account}": None, f"registered_model {account}": None},
        },
        "after": {
            "user": account,
            "grants": {f"experiment {account}": "EDIT", f"registered_model {account}": "EDIT"},
        },
    }
    assert mlflow_auth.experiment_id(account) is None
    assert not mlflow_auth.model_exists(account)
    assert mlflow_auth.grants(account) == {}

    # the resources exist: only the grants are pending, and still nothing is granted
    for path in ("experiments/create", "registered-models/create"):
        assert mlflow_auth.call("POST", f"/api/2.0/mlflow/{path}", {"name": account})[0] == 200
    planned = run_module("mlflow_permission", args, "--check")
    assert not failed(planned), planned
    assert planned["actions"] == [
        f"grant EDIT on experiment {account} to {account}",
        f"grant EDIT on registered model {account} to {account}",
    ]
    assert [g["resource_id"] for g in planned["grants"]] == [
        mlflow_auth.experiment_id(account),
        account,
    ]
    assert mlflow_auth.grants(account) == {}


def test_creates_grants_then_nothing_to_do(mlflow_auth, account, run_module):
    args = {
        **mlflow_auth.connection(),
        "user": account,
        "create_missing": True,
        "grants": edit_both(account),
    }
    first = run_module("mlflow_permission", args)
    assert not failed(first), first
    assert first["changed"] is True
    experiment_id = mlflow_auth.experiment_id(account)
    assert experiment_id is not None
    assert mlflow_auth.model_exists(account)
    assert mlflow_auth.grants(account) == {
        ("experiment", experiment_id): "EDIT",
        ("registered_model", account): "EDIT",
    }
    assert [g["resource_id"] for g in first["grants"]] == [experiment_id, account]

    second = run_module("mlflow_permission", args, "--diff")
    assert not failed(second), second
    assert second["changed"] is False
    assert second["actions"] == []
    assert second["diff"]["before"] == second["diff"]["after"]


def test_changes_another_permission_and_leaves_other_grants_alone(mlflow_auth, account, run_module):
    connection = {**mlflow_auth.connection(), "user": account, "create_missing": True}
    elsewhere = [
        {"resource_type": "registered_model", "name": account + "-x", "permission": "MANAGE"}
    ]
    assert not failed(run_module("mlflow_permission", {**connection, "grants": elsewhere}))
    assert not failed(
        run_module("mlflow_permission", {**connection, "grants": edit_both(account, "READ")})
    )
    experiment_id = mlflow_auth.experiment_id(account)

    args = {**connection, "grants": edit_both(account, "EDIT")}
    planned = run_module("mlflow_permission", args, "--check")
    assert planned["changed"] is True, planned
    assert planned["actions"] == [
        f"revoke READ on experiment {account} from {account}",
        f"grant EDIT on experiment {account} to {account}",
        f"revoke READ on registered model {account} from {account}",
        f"grant EDIT on registered model {account} to {account}",
    ]
    assert mlflow_auth.grants(account)[("experiment", experiment_id)] == "READ"

    done = run_module("mlflow_permission", args)
    assert done["changed"] is True, done
    assert [(g["before"], g["after"]) for g in done["grants"]] == [("READ", "EDIT")] * 2
    assert mlflow_auth.grants(account) == {
        ("experiment", experiment_id): "EDIT",
        ("registered_model", account): "EDIT",
        ("registered_model", account + "-x"): "MANAGE",
    }


def test_revokes_with_state_absent(mlflow_auth, account, run_module):
    connection = {**mlflow_auth.connection(), "user": account}
    grants = edit_both(account, "USE")
    assert not failed(
        run_module("mlflow_permission", {**connection, "grants": grants, "create_missing": True})
    )
    absent = [{**grant, "state": "absent", "permission": None} for grant in grants]
    absent.append({"resource_type": "experiment", "name": account + "-missing", "state": "absent"})
    args = {**connection, "grants": [{k: v for k, v in g.items() if v is not None} for g in absent]}

    planned = run_module("mlflow_permission", args, "--check", "--diff")
    assert planned["changed"] is True, planned
    assert planned["diff"]["after"]["grants"] == {
        f"experiment {account}": None,
        f"registered_model {account}": None,
        f"experiment {account}-missing": None,
    }
    assert len(mlflow_auth.grants(account)) == 2

    done = run_module("mlflow_permission", args)
    assert done["changed"] is True, done
    assert mlflow_auth.grants(account) == {}
    assert mlflow_auth.experiment_id(account + "-missing") is None

    again = run_module("mlflow_permission", args)
    assert again["changed"] is False, again


def test_deny(mlflow_auth, account, run_module):
    args = {
        **mlflow_auth.connection(),
        "user": account,
        "create_missing": True,
        "grants": [{"resource_type": "registered_model", "name": account, "permission": "DENY"}],
    }
    assert run_module("mlflow_permission", args)["changed"] is True
    assert mlflow_auth.grants(account) == {("registered_model", account): "DENY"}
    status = mlflow_auth.call(
        "GET", "/api/2.0/mlflow/registered-models/get", login=(account, PASSWORD), name=account
    )[0]
    assert status == 403
    assert run_module("mlflow_permission", args)["changed"] is False


def test_missing_resource_without_create_missing_fails(mlflow_auth, account, run_module):
    args = {**mlflow_auth.connection(), "user": account, "grants": edit_both(account)}
    result = run_module("mlflow_permission", args)
    assert failed(result), result
    assert "grants[0]" in result["msg"]
    assert "create_missing" in result["msg"]
    assert mlflow_auth.experiment_id(account) is None


def test_unknown_user(mlflow_auth, unique_name, run_module):
    """Fails, except in check mode, where an earlier task would have created the account."""
    args = {
        **mlflow_auth.connection(),
        "user": unique_name,
        "create_missing": True,
        "grants": edit_both(unique_name),
    }
    planned = run_module("mlflow_permission", args, "--check")
    assert not failed(planned), planned
    assert planned["changed"] is True
    assert len(planned["actions"]) == 4

    result = run_module("mlflow_permission", args)
    assert failed(result), result
    assert result["msg"].startswith("user:")
    assert mlflow_auth.experiment_id(unique_name) is None


def test_an_account_that_may_not_grant_fails_clearly(mlflow_auth, account, run_module):
    args = {
        **mlflow_auth.connection(tracking_username=account, tracking_password=PASSWORD),
        "user": account,
        "create_missing": True,
        "grants": [
            {"resource_type": "registered_model", "name": "iris-admin-only", "permission": "EDIT"}
        ],
    }
    mlflow_auth.call(
        "POST", "/api/2.0/mlflow/registered-models/create", {"name": "iris-admin-only"}
    )
    result = run_module("mlflow_permission", args)
    assert failed(result), result
    assert result["status"] == 403
    assert "/api/3.0/mlflow/users/permissions/grant" in result["msg"]
    assert "tracking_username may not do this" in result["msg"]


@pytest.mark.parametrize(
    ("grants", "parameter"),
    [
        ([{"resource_type": "experiment", "name": "x", "permission": "WRITE"}], "permission"),
        ([{"resource_type": "run", "name": "x", "permission": "READ"}], "resource_type"),
        ([{"resource_type": "experiment", "name": "x"}], "grants[0].permission"),
        ([{"resource_type": "experiment", "name": "", "permission": "READ"}], "grants[0].name"),
        (edit_both("x")[:1] * 2, "grants[0] and grants[1]"),
    ],
)
def test_bad_input_names_the_parameter(mlflow_auth, account, run_module, grants, parameter):
    args = {**mlflow_auth.connection(), "user": account, "create_missing": True, "grants": grants}
    result = run_module("mlflow_permission", args)
    assert failed(result), result
    assert parameter in result["msg"], result["msg"]
    assert mlflow_auth.grants(account) == {}
