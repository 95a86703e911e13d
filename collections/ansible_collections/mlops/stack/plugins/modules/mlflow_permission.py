#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mlops-stack developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlflow_permission
short_description: Manage an MLflow account's permissions on experiments and registered models
version_added: "0.1.0"
description:
  - Ensures that the account O(user) of an MLflow server running C(--app-name basic-auth) holds
    exactly the permission of each of O(grants) on an experiment or registered model named there,
    or none with O(grants[].state=absent).
  - The grants are those of the account's own role (C(__user_<id>__)), which MLflow's
    C(/api/3.0/mlflow/users/permissions/grant) and C(revoke) write. A grant with another
    permission is revoked and granted again. Grants on resources that O(grants) does not name
    are left alone.
  - Resources are named, not numbered; the module looks up the experiment's ID. With
    O(create_missing=true) it creates a missing experiment or registered model as
    O(tracking_username), so that no other account holds C(MANAGE) on it (MLflow gives the creator
    C(MANAGE)).
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
      - Nothing is written; the result says whether anything would change, RV(actions) what.
      - An O(user) that does not exist yet (an earlier task would create it) is reported as holding
        no grant.
  diff_mode:
    support: full
    details:
      - The diff maps each resource of O(grants) to the permission the account holds on it.
  platform:
    platforms: posix
options:
  user:
    description: Account whose permissions the module manages.
    type: str
    required: true
    aliases: [username]
  grants:
    description: The account's permissions on named resources.
    type: list
    elements: dict
    required: true
    suboptions:
      resource_type:
        description: Kind of resource.
        type: str
        required: true
        choices: [experiment, registered_model]
      name:
        description: Name of the experiment or registered model.
        type: str
        required: true
      permission:
        description:
          - Permission the account gets on it (exactly this one).
          - Required with O(grants[].state=present).
          - V(DENY) refuses the account the resource even where another grant or MLflow's
            default permission would allow it. (MLflow 3.17 grants no V(NO_PERMISSIONS) on a
            single resource.)
        type: str
        choices: [READ, USE, EDIT, MANAGE, DENY]
      state:
        description: V(absent) revokes whatever the account holds on the resource.
        type: str
        choices: [present, absent]
        default: present
  create_missing:
    description:
      - Create an experiment or registered model that O(grants) names and that does not exist.
      - Otherwise a missing resource fails the module, unless its grant is to be absent.
    type: bool
    default: false
seealso:
  - module: mlops.stack.mlflow_user
  - name: MLflow authentication
    description: MLflow's basic-auth app and its permissions.
    link: https://mlflow.org/docs/latest/auth/index.html
"""

EXAMPLES = r"""
- name: The writer edits the iris experiment and registered model, created by the admin when missing
  mlops.stack.mlflow_permission:
    tracking_uri: http://127.0.0.1:5004
    tracking_username: admin
    tracking_password: "{{ vault_mlflow_admin_password }}"
    user: writer
    create_missing: true
    grants:
      - {resource_type: experiment, name: iris, permission: EDIT}
      - {resource_type: registered_model, name: iris, permission: EDIT}

- name: Take the writer's grant on an old model away
  mlops.stack.mlflow_permission:
    tracking_uri: http://127.0.0.1:5004
    tracking_username: admin
    tracking_password: "{{ vault_mlflow_admin_password }}"
    user: writer
    grants:
      - {resource_type: registered_model, name: iris-v0, state: absent}
"""

RETURN = r"""
user:
  description: The account.
  returned: always
  type: str
  sample: writer
grants:
  description: Each of O(grants), in order, with the permission before and after the module ran.
  returned: success
  type: list
  elements: dict
  contains:
    resource_type:
      description: Kind of resource.
      type: str
      sample: experiment
    name:
      description: Name of the resource.
      type: str
      sample: iris
    resource_id:
      description:
        - ID that MLflow's permissions name the resource by (the experiment ID, the registered
          model's name); V(null) for a resource that check mode did not create or that is missing.
      type: str
      sample: "1"
    before:
      description: Permission the account held, V(null) for none.
      type: str
      sample: READ
    after:
      description: Permission the account holds now (in check mode, would hold), V(null) for none.
      type: str
      sample: EDIT
actions:
  description: What the module changed (in check mode, would change), in order.
  returned: always
  type: list
  elements: str
  sample: ["create experiment iris", "grant EDIT on experiment iris to writer"]
url:
  description: URL of the request that failed.
  returned: failure
  type: str
  sample: http://127.0.0.1:5004/api/3.0/mlflow/users/permissions/list?username=writer
status:
  description: HTTP status of the request that failed, V(-1) when MLflow did not answer.
  returned: failure
  type: int
  sample: 403
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

# the account's own role, which grant/revoke write (MLflow 3.17: __user_<id>__)
OWN_ROLE_PREFIX = "__user_"


def _validate(module: AnsibleModule) -> None:
    """fail_json naming the option, before any request."""
    params = module.params
    if not params["tracking_username"]:
        module.fail_json(msg="tracking_username is required: MLflow's auth API needs an account")
    if not params["user"] or not params["user"].strip():
        module.fail_json(msg="user must not be empty")
    seen: dict[tuple[str, str], int] = {}
    for index, grant in enumerate(params["grants"]):
        if not grant["name"] or not grant["name"].strip():
            module.fail_json(msg="grants[%d].name must not be empty" % index)
        if grant["state"] == "present" and grant["permission"] is None:
            module.fail_json(msg="grants[%d].permission is required with state=present" % index)
        key = (grant["resource_type"], grant["name"])
        if key in seen:
            module.fail_json(
                msg="grants[%d] and grants[%d] both name %s %s" % (seen[key], index, key[0], key[1])
            )
        seen[key] = index


class _Resources(object):
    """IDs of the named resources, looked up (and created) once each."""

    def __init__(self, module: AnsibleModule, client: MlflowRest, actions: list[str]) -> None:
        self.module = module
        self.client = client
        self.actions = actions

    def resource_id(self, index: int, grant: dict[str, Any]) -> Optional[str]:
        """The ID, None when the resource is missing (or check mode would create it)."""
        kind, name = grant["resource_type"], grant["name"]
        if kind == "experiment":
            found = self.client.experiment_id(name)
        else:
            found = name if self.client.registered_model_exists(name) else None
        if found is not None or grant["state"] == "absent":
            return found
        if not self.module.params["create_missing"]:
            self.module.fail_json(
                msg="grants[%d]: %s %s does not exist; create it first or set create_missing=true"
                % (index, kind.replace("_", " "), name),
                user=self.module.params["user"],
                actions=self.actions,
                changed=bool(self.actions) and not self.module.check_mode,
            )
        self.actions.append("create %s %s" % (kind.replace("_", " "), name))
        if self.module.check_mode:
            return None
        if kind == "experiment":
            return self.client.create_experiment(name)
        self.client.create_registered_model(name)
        return name


def _held(
    permissions: list[dict[str, Any]], kind: str, resource_id: Optional[str]
) -> Optional[str]:
    if resource_id is None:
        return None
    for row in permissions:
        if (
            row.get("role_name", "").startswith(OWN_ROLE_PREFIX)
            and row.get("resource_type") == kind
            and str(row.get("resource_pattern")) == resource_id
        ):
            return row.get("permission")
    return None


def _converge(
    module: AnsibleModule, client: MlflowRest, actions: list[str]
) -> list[dict[str, Any]]:
    params = module.params
    user = params["user"]
    permissions = client.list_permissions(user)
    if permissions is None:
        if not module.check_mode:
            module.fail_json(msg="user: MLflow has no account %s" % user, user=user, actions=[])
        permissions = []  # check mode: an earlier task would create the account
    resources = _Resources(module, client, actions)
    results = []
    for index, grant in enumerate(params["grants"]):
        kind, name = grant["resource_type"], grant["name"]
        label = "%s %s" % (kind.replace("_", " "), name)
        resource_id = resources.resource_id(index, grant)
        before = _held(permissions, kind, resource_id)
        after = grant["permission"] if grant["state"] == "present" else None
        if before is not None and before != after:
            actions.append("revoke %s on %s from %s" % (before, label, user))
            if not module.check_mode:
                client.revoke(user, kind, resource_id)
        if after is not None and before != after:
            actions.append("grant %s on %s to %s" % (after, label, user))
            if not module.check_mode:
                client.grant(user, kind, resource_id, after)
        results.append(
            dict(resource_type=kind, name=name, resource_id=resource_id, before=before, after=after)
        )
    return results


def main() -> None:
    argument_spec = mlflow_argument_spec()
    argument_spec.update(
        user=dict(type="str", required=True, aliases=["username"]),
        grants=dict(
            type="list",
            elements="dict",
            required=True,
            options=dict(
                resource_type=dict(
                    type="str", required=True, choices=["experiment", "registered_model"]
                ),
                name=dict(type="str", required=True),
                permission=dict(type="str", choices=["READ", "USE", "EDIT", "MANAGE", "DENY"]),
                state=dict(type="str", default="present", choices=["present", "absent"]),
            ),
        ),
        create_missing=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    _validate(module)
    client = client_from_module(module)
    user = module.params["user"]
    actions: list[str] = []
    failure = None
    grants: list[dict[str, Any]] = []
    try:
        grants = _converge(module, client, actions)
    except MlflowApiError as error:
        failure = error  # failed outside the handler: no traceback in the result
    if failure is not None:
        fail_api(
            module,
            failure,
            user=user,
            actions=actions,
            changed=bool(actions) and not module.check_mode,
        )

    result: dict[str, Any] = dict(changed=bool(actions), user=user, grants=grants, actions=actions)
    if actions:
        result["msg"] = "%s: %s" % ("would" if module.check_mode else "done", "; ".join(actions))
    if module._diff:
        result["diff"] = dict(
            before=dict(
                user=user,
                grants={"%s %s" % (g["resource_type"], g["name"]): g["before"] for g in grants},
            ),
            after=dict(
                user=user,
                grants={"%s %s" % (g["resource_type"], g["name"]): g["after"] for g in grants},
            ),
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
