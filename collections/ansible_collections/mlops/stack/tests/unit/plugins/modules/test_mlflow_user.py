"""mlops.stack.mlflow_user against a real MLflow server with basic auth.

Every outcome is checked through MLflow's REST API (``mlflow_auth``), not only through
what the module reports.
"""

from __future__ import annotations

import pytest

PASSWORD = "first-password-0123"  # pragma: allowlist secret
OTHER = "other-password-0123"  # pragma: allowlist secret
WRONG = "wrong-password-0123"  # pragma: allowlist secret
UNREACHABLE = "http://127.0.0.1:9"


def failed(result: dict) -> bool:
    return result.get("failed") is True


def test_create_then_nothing_to_do(mlflow_auth, unique_name, run_module, python_without_mlflow):
    """Runs with an interpreter that has no mlflow: the module needs none."""
    args = {**mlflow_auth.connection(), "name": unique_name, "password": PASSWORD, "admin": False}
    first = run_module("mlflow_user", args, "--diff", python=python_without_mlflow)
    assert not failed(first), first
    assert first["changed"] is True
    assert first["actions"] == ["create the account"]
    assert first["diff"] == {
        "before": {"name": unique_name, "state": "absent"},
        "after": {
            "name": unique_name,
            "state": "present",
            "admin": False,
            "password": "the given one",  # pragma: allowlist secret
        },
    }
    assert mlflow_auth.user(unique_name)["is_admin"] is False
    assert mlflow_auth.logs_in(unique_name, PASSWORD)

    second = run_module("mlflow_user", args, "--diff", python=python_without_mlflow)
    assert not failed(second), second
    assert second["changed"] is False
    assert second["actions"] == []
    same = {"name": unique_name, "state": "present", "admin": False}
    same["password"] = "the given one"  # pragma: allowlist secret
    assert second["diff"] == {"before": same, "after": same}


def test_check_mode_creates_nothing(mlflow_auth, unique_name, run_module):
    args = {**mlflow_auth.connection(), "name": unique_name, "password": PASSWORD, "admin": True}
    # through ansible: its --check and --diff reach the module
    planned = run_module("mlflow_user", args, "--check", "--diff", via_ansible=True)
    assert not failed(planned), planned
    assert planned["changed"] is True
    assert planned["actions"] == ["create the account", "make it an admin"]
    assert planned["diff"]["after"]["admin"] is True
    assert mlflow_auth.user(unique_name) is None

    done = run_module("mlflow_user", args)
    assert done["changed"] is True, done
    assert mlflow_auth.user(unique_name)["is_admin"] is True


def test_sets_another_password(mlflow_auth, unique_name, run_module):
    mlflow_auth.create_user(unique_name, OTHER)
    args = {**mlflow_auth.connection(), "name": unique_name, "password": PASSWORD}

    planned = run_module("mlflow_user", args, "--check", "--diff")
    assert not failed(planned), planned
    assert planned["changed"] is True
    assert planned["actions"] == ["set the password"]
    assert planned["diff"]["before"]["password"] == "another one"  # pragma: allowlist secret
    assert planned["diff"]["after"]["password"] == "the given one"  # pragma: allowlist secret
    assert mlflow_auth.logs_in(unique_name, OTHER)
    assert not mlflow_auth.logs_in(unique_name, PASSWORD)

    done = run_module("mlflow_user", args)
    assert not failed(done), done
    assert done["changed"] is True
    assert mlflow_auth.logs_in(unique_name, PASSWORD)
    assert not mlflow_auth.logs_in(unique_name, OTHER)

    # on_create: an existing account keeps whatever password it has
    kept = run_module("mlflow_user", {**args, "password": OTHER, "update_password": "on_create"})
    assert kept["changed"] is False, kept
    assert mlflow_auth.logs_in(unique_name, PASSWORD)


def test_takes_and_gives_the_admin_flag(mlflow_auth, unique_name, run_module):
    mlflow_auth.create_user(unique_name, PASSWORD, admin=True)
    args = {**mlflow_auth.connection(), "name": unique_name, "password": PASSWORD, "admin": False}

    planned = run_module("mlflow_user", args, "--check", "--diff")
    assert planned["changed"] is True, planned
    assert planned["actions"] == ["take the admin flag"]
    assert planned["diff"]["before"]["admin"] is True
    assert planned["diff"]["after"]["admin"] is False
    assert mlflow_auth.user(unique_name)["is_admin"] is True

    done = run_module("mlflow_user", args)
    assert done["changed"] is True, done
    assert mlflow_auth.user(unique_name)["is_admin"] is False

    # unset: the flag is left as it is
    left = run_module("mlflow_user", {**args, "admin": None})
    assert left["changed"] is False, left
    assert left["admin"] is False

    made = run_module("mlflow_user", {**args, "admin": True})
    assert made["actions"] == ["make it an admin"], made
    assert mlflow_auth.user(unique_name)["is_admin"] is True


def test_state_absent_deletes(mlflow_auth, unique_name, run_module):
    mlflow_auth.create_user(unique_name, PASSWORD)
    args = {**mlflow_auth.connection(), "name": unique_name, "state": "absent"}

    planned = run_module("mlflow_user", args, "--check", "--diff")
    assert planned["changed"] is True, planned
    assert planned["diff"]["after"] == {"name": unique_name, "state": "absent"}
    assert mlflow_auth.user(unique_name) is not None

    done = run_module("mlflow_user", args)
    assert done["changed"] is True, done
    assert done["exists"] is False
    assert mlflow_auth.user(unique_name) is None

    again = run_module("mlflow_user", args)
    assert again["changed"] is False, again


def test_rotates_its_own_password_from_a_previous_one(mlflow_auth, unique_name, run_module):
    """The role's admin rotation, on an admin of its own (the session's admin stays as it is)."""
    mlflow_auth.create_user(unique_name, OTHER, admin=True)
    args = {
        **mlflow_auth.connection(tracking_username=unique_name, tracking_password=PASSWORD),
        "name": unique_name,
        "password": PASSWORD,
        "previous_passwords": [WRONG, OTHER],
        "refused_logins": [{"username": unique_name, "password": OTHER}],
    }

    planned = run_module("mlflow_user", args, "--check", "--diff")
    assert not failed(planned), planned
    assert planned["changed"] is True
    assert planned["actions"] == ["set the password"]
    assert planned["previous_password_index"] == 1
    assert mlflow_auth.logs_in(unique_name, OTHER)
    assert not mlflow_auth.logs_in(unique_name, PASSWORD)

    done = run_module("mlflow_user", args)
    assert not failed(done), done
    assert done["changed"] is True
    assert done["previous_password_index"] == 1
    assert mlflow_auth.logs_in(unique_name, PASSWORD)
    assert not mlflow_auth.logs_in(unique_name, OTHER)
    assert mlflow_auth.user(unique_name)["is_admin"] is True

    again = run_module("mlflow_user", args)
    assert again["changed"] is False, again
    assert again["previous_password_index"] is None


def test_no_known_password_fails_clearly(mlflow_auth, unique_name, run_module):
    mlflow_auth.create_user(unique_name, OTHER, admin=True)
    args = {
        **mlflow_auth.connection(tracking_username=unique_name, tracking_password=PASSWORD),
        "name": unique_name,
        "password": PASSWORD,
        "previous_passwords": [WRONG],
    }
    result = run_module("mlflow_user", args, "--check")
    assert failed(result), result
    assert result["login_refused"] is True
    assert result["changed"] is False
    assert "tracking_password" in result["msg"]
    assert "previous_passwords" in result["msg"]
    assert mlflow_auth.logs_in(unique_name, OTHER)


def test_wrong_admin_password_fails_clearly(mlflow_auth, unique_name, run_module):
    args = {
        **mlflow_auth.connection(tracking_password=WRONG),
        "name": unique_name,
        "password": PASSWORD,
    }
    # the censoring is Ansible's, and only its own output shows it
    result = run_module("mlflow_user", args, "-vvv", via_ansible=True)
    assert failed(result), result
    assert result["status"] == 401
    assert result["login_refused"] is True
    assert mlflow_auth.url in result["msg"]
    assert "HTTP 401" in result["msg"]
    assert "tracking_password" in result["msg"]
    assert mlflow_auth.user(unique_name) is None
    for secret in (WRONG, PASSWORD):
        assert secret not in run_module.output


def test_no_password_in_the_output(mlflow_auth, unique_name, run_module):
    mlflow_auth.create_user(unique_name, OTHER, admin=True)
    args = {
        **mlflow_auth.connection(),
        "name": unique_name,
        "password": PASSWORD,
        "refused_logins": [{"username": unique_name, "password": WRONG}],
    }
    result = run_module("mlflow_user", args, "-vvv", "--diff", via_ansible=True)
    assert result["changed"] is True, result
    for secret in (PASSWORD, OTHER, WRONG, mlflow_auth.admin_password):
        assert secret not in run_module.output


def test_a_refused_login_that_works_fails(mlflow_auth, unique_name, run_module):
    """MLflow's old default: 3.17 refuses it for admins, so a plain account holds it here."""
    legacy = unique_name + "-old"
    mlflow_auth.create_user(legacy, "password1234")  # pragma: allowlist secret
    args = {
        **mlflow_auth.connection(),
        "name": unique_name,
        "password": PASSWORD,
        "refused_logins": [
            {"username": legacy, "password": "password1234"}  # pragma: allowlist secret
        ],
    }
    result = run_module("mlflow_user", args)
    assert failed(result), result
    assert f"lets {legacy} log in with refused_logins[0].password" in result["msg"]
    assert result["actions"] == ["create the account"]
    assert result["changed"] is True


def test_unreachable_server_fails_clearly(run_module):
    args = {"tracking_uri": UNREACHABLE, "tracking_username": "admin", "name": "x"}
    result = run_module("mlflow_user", args)
    assert failed(result), result
    assert result["status"] == -1
    assert "no answer from MLflow" in result["msg"]
    assert UNREACHABLE in result["msg"]


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"password": ""}, "password"),
        ({"name": " "}, "name"),
        ({"update_password": "sometimes"}, "update_password"),  # pragma: allowlist secret
        ({"request_timeout": 0}, "request_timeout"),
        ({"tracking_uri": "ftp://127.0.0.1"}, "tracking_uri"),
        ({"tracking_username": None}, "tracking_username"),
        ({"name": "admin", "state": "absent"}, "name"),
        ({"previous_passwords": [OTHER]}, "previous_passwords"),
        ({"refused_logins": [{"username": "{name}", "password": PASSWORD}]}, "refused_logins"),
        ({"password": None}, "password"),  # required to create the account
    ],
)
def test_bad_input_names_the_parameter(mlflow_auth, unique_name, run_module, options, parameter):
    args = {**mlflow_auth.connection(), "name": unique_name, "password": PASSWORD}
    args.update(options)
    for login in args.get("refused_logins", []):
        login["username"] = login["username"].format(name=unique_name)
    args = {key: value for key, value in args.items() if value is not None}
    result = run_module("mlflow_user", args)
    assert failed(result), result
    assert parameter in result["msg"], result["msg"]
    assert mlflow_auth.user(unique_name) is None
