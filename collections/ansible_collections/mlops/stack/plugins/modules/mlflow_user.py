#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mlops-stack developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlflow_user
short_description: Manage an account of MLflow's basic-auth app
version_added: "0.1.0"
description:
  - Ensures that the account O(name) of an MLflow server running C(--app-name basic-auth) exists
    with the password O(password) and the admin flag O(admin), or that it does not exist.
  - The module logs in as O(tracking_username), normally the admin. Whether an existing account
    has O(password) is found out by logging in as it; MLflow never returns password hashes.
  - "Rotation: when O(name) is O(tracking_username), the module manages the account it logs in as.
    With O(previous_passwords) it logs in with the first of O(tracking_password) and
    O(previous_passwords) that MLflow accepts, and then sets O(password), for example to rotate
    the admin after its password changed in a vault."
  - O(refused_logins) are checked last, for example that MLflow's old default admin password
    C(password1234) opens no account.
author:
  - mlops-stack developers (@mlops-stack)
extends_documentation_fragment:
  - mlops.stack.mlflow
  - mlops.stack.mlflow.rest
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads (logins included) run; nothing is written. The result says whether anything would
        change, RV(actions) what.
  diff_mode:
    support: full
    details:
      - The diff shows the account's state and admin flag, and whether its password is the given
        one; never a password.
  platform:
    platforms: posix
options:
  name:
    description:
      - Name of the account.
    type: str
    required: true
    aliases: [username]
  password:
    description:
      - Password of the account. MLflow refuses passwords shorter than 12 characters.
      - Required to create the account; without it an existing account's password is left alone.
    type: str
  update_password:
    description:
      - V(always) sets O(password) when the account has another one; V(on_create) sets it only
        when the module creates the account.
    type: str
    choices: [always, on_create]
    default: always
  admin:
    description:
      - Whether the account is an admin. Unset leaves the flag of an existing account alone; a new
        account is no admin unless this is V(true).
    type: bool
  state:
    description:
      - V(absent) deletes the account with its grants. MLflow does not let an account delete itself.
    type: str
    choices: [present, absent]
    default: present
  previous_passwords:
    description:
      - Earlier passwords of O(tracking_username), tried in order when MLflow refuses
        O(tracking_password). The first that MLflow accepts is used for the requests and to set
        O(password) (MLflow asks an account that changes its own password for the current one).
      - Only when O(name) is O(tracking_username), with O(password).
      - When none of them works either, the module fails with RV(login_refused=true).
    type: list
    elements: str
    default: []
  refused_logins:
    description:
      - Logins that MLflow must refuse once the account is converged; the module fails when one of
        them opens its account. In check mode a login of O(name) is not tried when the module would
        create the account or set its password.
    type: list
    elements: dict
    default: []
    suboptions:
      username:
        description: Account name.
        type: str
        required: true
      password:
        description: Password that must not open it.
        type: str
        required: true
seealso:
  - module: mlops.stack.mlflow_permission
  - name: MLflow authentication
    description: MLflow's basic-auth app and its REST API.
    link: https://mlflow.org/docs/latest/auth/index.html
"""

EXAMPLES = r"""
- name: Rotate the admin to the vault's password and make sure the old default does not log in
  mlops.stack.mlflow_user:
    tracking_uri: http://127.0.0.1:5004
    tracking_username: admin
    tracking_password: "{{ vault_mlflow_admin_password }}"
    name: admin
    password: "{{ vault_mlflow_admin_password }}"
    previous_passwords: "{{ mlflow_admin_earlier_passwords }}"
    refused_logins:
      - {username: admin, password: password1234}

- name: A training account that is no admin
  mlops.stack.mlflow_user:
    tracking_uri: http://127.0.0.1:5004
    tracking_username: admin
    tracking_password: "{{ vault_mlflow_admin_password }}"
    name: writer
    password: "{{ vault_mlflow_writer_password }}"
    admin: false

- name: The same, with the connection set once for the whole group
  module_defaults:
    group/mlops.stack.mlflow:
      tracking_uri: http://127.0.0.1:5004
      tracking_username: admin
      tracking_password: "{{ vault_mlflow_admin_password }}"
  block:
    - name: Remove an account nobody uses
      mlops.stack.mlflow_user:
        name: intern
        state: absent
"""

RETURN = r"""
name:
  description: Name of the account.
  returned: always
  type: str
  sample: writer
exists:
  description: Whether the account exists after the module ran (in check mode, would exist).
  returned: success
  type: bool
  sample: true
admin:
  description: The account's admin flag after the module ran, V(null) when it does not exist.
  returned: success
  type: bool
  sample: false
actions:
  description: What the module changed (in check mode, would change), in order.
  returned: always
  type: list
  elements: str
  sample: ["create the account", "set the password"]
previous_password_index:
  description:
    - Index in O(previous_passwords) of the password the module logged in with, V(null) when it
      was O(tracking_password).
  returned: success
  type: int
  sample: 0
login_refused:
  description: MLflow refused every password the module had for O(tracking_username).
  returned: failure
  type: bool
  sample: true
url:
  description: URL of the request that failed.
  returned: failure
  type: str
  sample: http://127.0.0.1:5004/api/2.0/mlflow/users/get?username=admin
status:
  description: HTTP status of the request that failed, V(-1) when MLflow did not answer.
  returned: failure
  type: int
  sample: 401
"""

from typing import Any, Optional

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mlops.stack.plugins.module_utils.mlflow_connection import (
    mlflow_argument_spec,
)
from ansible_collections.mlops.stack.plugins.module_utils.mlflow_rest import (
    MlflowApiError,
    MlflowRest,
    client_from_module,
    fail_api,
)

GIVEN = "the given one"
OTHER = "another one"
CREATE = "create the account"
RESET = "set the password"
DELETE = "delete the account"
ALWAYS = "always"  # update_password


def _validate(module: AnsibleModule) -> None:
    """fail_json naming the option, before any request."""
    params = module.params
    name = params["name"]
    if not params["tracking_username"]:
        module.fail_json(msg="tracking_username is required: MLflow's auth API needs an account")
    if not name or not name.strip():
        module.fail_json(msg="name must not be empty")
    if params["password"] is not None and not params["password"]:
        module.fail_json(msg="password must not be empty; leave it unset to keep the password")
    if params["previous_passwords"]:
        if name != params["tracking_username"]:
            module.fail_json(
                msg="previous_passwords needs name to be tracking_username (%r): they are "
                "earlier passwords of the account the module logs in as"
                % params["tracking_username"]
            )
        if params["password"] is None or params["state"] != "present":
            module.fail_json(msg="previous_passwords needs password and state=present")
    if params["state"] == "absent" and name == params["tracking_username"]:
        module.fail_json(msg="name: MLflow does not let an account (%s) delete itself" % name)
    for index, login in enumerate(params["refused_logins"]):
        if login["username"] == name and login["password"] == params["password"]:
            module.fail_json(
                msg="refused_logins[%d] is %s with password: the module cannot set a password "
                "and refuse it" % (index, name)
            )


def _log_in(module: AnsibleModule, client: MlflowRest) -> tuple[Optional[int], dict[str, Any]]:
    """Rotation: the first working password of tracking_username becomes the client's."""
    params = module.params
    username = params["tracking_username"]
    candidates = [params["tracking_password"]] + params["previous_passwords"]
    for index, candidate in enumerate(candidates):
        if candidate is None:
            continue
        user = client.login(username, candidate)
        if user is not None:
            client.password = candidate
            return (None if index == 0 else index - 1), user
    module.fail_json(
        msg="MLflow at %s refuses tracking_username %r with tracking_password and with each of the "
        "%d previous_passwords" % (client.base, username, len(params["previous_passwords"])),
        name=params["name"],
        actions=[],
        changed=False,
        login_refused=True,
    )
    raise AssertionError("unreachable")  # fail_json exits


def _present(
    module: AnsibleModule, client: MlflowRest, user: Optional[dict[str, Any]], actions: list[str]
) -> tuple[Optional[str], Optional[str], bool]:
    """Create or update the account; (password before, after, admin after) for the diff."""
    params = module.params
    name, password, admin = params["name"], params["password"], params["admin"]
    own_account = name == params["tracking_username"]
    if user is None:
        if password is None:
            module.fail_json(msg="password is required to create the account %s" % name)
        actions.append(CREATE)
        if not module.check_mode:
            client.create_user(name, password)
        if admin:
            actions.append("make it an admin")
            if not module.check_mode:
                client.update_admin(name, True)
        return None, GIVEN, bool(admin)

    before = after = None
    if password is not None and params["update_password"] == ALWAYS:
        if own_account:
            matches = password == client.password
        else:
            matches = client.login(name, password) is not None
        before, after = (GIVEN if matches else OTHER), GIVEN
        if not matches:
            actions.append(RESET)
            if not module.check_mode:
                current = client.password if own_account else None
                client.update_password(name, password, current_password=current)
                if own_account:
                    client.password = password
                if client.login(name, password) is None:
                    module.fail_json(
                        msg="MLflow took the new password of %s but refuses it at login" % name,
                        name=name,
                        actions=actions,
                        changed=True,
                    )
    is_admin = bool(user["is_admin"])
    if admin is not None and is_admin != admin:
        actions.append("make it an admin" if admin else "take the admin flag")
        if not module.check_mode:
            client.update_admin(name, admin)
        is_admin = admin
    return before, after, is_admin


def _check_refused(module: AnsibleModule, client: MlflowRest, actions: list[str]) -> None:
    params = module.params
    replaced = {CREATE, RESET, DELETE} & set(actions)
    for index, login in enumerate(params["refused_logins"]):
        if module.check_mode and login["username"] == params["name"] and replaced:
            continue  # its password is not yet the one it would get
        if client.login(login["username"], login["password"]) is not None:
            module.fail_json(
                msg="MLflow lets %s log in with refused_logins[%d].password"
                % (login["username"], index),
                name=params["name"],
                actions=actions,
                changed=bool(actions) and not module.check_mode,
            )


def _converge(module: AnsibleModule, client: MlflowRest, actions: list[str]) -> dict[str, Any]:
    """The module's result; ``actions`` grows with each change, so a failure can report them."""
    params = module.params
    name = params["name"]
    previous_index = None
    if params["previous_passwords"]:
        previous_index, user = _log_in(module, client)
    else:
        user = client.get_user(name)
    before: dict[str, Any] = dict(name=name, state="present" if user else "absent")
    if user:
        before["admin"] = bool(user["is_admin"])
    after: dict[str, Any] = dict(name=name, state=params["state"])
    is_admin = None
    if params["state"] == "present":
        password_before, password_after, is_admin = _present(module, client, user, actions)
        after["admin"] = is_admin
        if password_before is not None:
            before["password"] = password_before
        if password_after is not None:
            after["password"] = password_after
    elif user is not None:
        actions.append(DELETE)
        if not module.check_mode:
            client.delete_user(name)
    _check_refused(module, client, actions)
    return dict(
        changed=bool(actions),
        name=name,
        exists=params["state"] == "present",
        admin=is_admin,
        actions=actions,
        previous_password_index=previous_index,
        diff=dict(before=before, after=after),
    )


def main() -> None:
    argument_spec = mlflow_argument_spec()
    argument_spec.update(
        name=dict(type="str", required=True, aliases=["username"]),
        password=dict(type="str", no_log=True),
        update_password=dict(
            type="str", default=ALWAYS, choices=[ALWAYS, "on_create"], no_log=False
        ),
        admin=dict(type="bool"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        previous_passwords=dict(type="list", elements="str", default=[], no_log=True),
        refused_logins=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                username=dict(type="str", required=True),
                password=dict(type="str", required=True, no_log=True),
            ),
        ),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    _validate(module)
    params = module.params
    name = params["name"]
    client = client_from_module(module)
    actions: list[str] = []
    failure = None
    try:
        result = _converge(module, client, actions)
    except MlflowApiError as error:
        failure = error  # failed outside the handler: no traceback in the result
    if failure is not None:
        fail_api(
            module,
            failure,
            name=name,
            actions=actions,
            changed=bool(actions) and not module.check_mode,
            login_refused=failure.status == 401,
        )
    if actions:
        result["msg"] = "%s %s: %s" % (
            "would change" if module.check_mode else "changed",
            name,
            "; ".join(actions),
        )
    if not module._diff:
        del result["diff"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
