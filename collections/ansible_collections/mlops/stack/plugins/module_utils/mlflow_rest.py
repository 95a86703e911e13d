# -*- coding: utf-8 -*-
# Copyright: mlops-stack developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""A small client of MLflow's REST API on Ansible's own HTTP client (open_url).

It imports nothing but Ansible and the standard library: the modules that use it
run with the MLflow host's system Python, which has no mlflow. Paths are those of
MLflow 3.17: accounts under /api/2.0/mlflow/users/..., per-user grants under
/api/3.0/mlflow/users/permissions/...
"""

from __future__ import annotations

import json
from typing import Any, NoReturn, Optional
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.urls import open_url
from ansible_collections.mlops.stack.plugins.module_utils.mlflow_connection import request_timeout

# MLflow's error code for a missing user, experiment, model or grant
NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"
NO_ANSWER = -1


class MlflowApiError(Exception):
    """A request MLflow did not answer (status -1) or answered with an HTTP error."""

    def __init__(
        self,
        method: str,
        url: str,
        status: int,
        message: str,
        error_code: Optional[str] = None,
        hint: str = "",
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.message = message
        self.error_code = error_code
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.status == NO_ANSWER:
            text = "%s %s: no answer from MLflow (%s)" % (
                self.method,
                self.url,
                self.message.rstrip("."),
            )
        else:
            code = " %s" % self.error_code if self.error_code else ""
            text = "%s %s answered HTTP %d%s: %s" % (
                self.method,
                self.url,
                self.status,
                code,
                self.message.rstrip("."),
            )
        return "%s. %s" % (text, self.hint) if self.hint else text


def _hint(status: int, path: str, error_code: Optional[str], as_tracking_user: bool) -> str:
    if status == 401 and as_tracking_user:
        return "MLflow refused the login of tracking_username with tracking_password."
    if status == 403 and as_tracking_user:
        return "tracking_username may not do this (MLflow's auth API needs an admin)."
    if status == 404 and error_code is None and "/users/" in path:
        return "Is the server running with --app-name basic-auth?"
    return ""


class MlflowRest:
    """MLflow's REST API as the account ``username`` (basic auth), one request per call."""

    def __init__(
        self,
        tracking_uri: str,
        username: Optional[str],
        password: Optional[str],
        timeout: int,
    ) -> None:
        self.base = tracking_uri.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout

    # --- transport -------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        query: Optional[dict[str, str]] = None,
        body: Optional[dict[str, Any]] = None,
        login: Optional[tuple[str, str]] = None,
    ) -> dict[str, Any]:
        """JSON answer of ``method path``; ``login`` (user, password) stands in for the account."""
        url = self.base + path + ("?" + urlencode(query) if query else "")
        username, password = login if login is not None else (self.username, self.password)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            response = open_url(
                url,
                data=data,
                headers=headers,
                method=method,
                timeout=self.timeout,
                url_username=username,
                url_password=password,
                force_basic_auth=username is not None,
                use_netrc=False,
            )
            raw = response.read()
        except HTTPError as error:
            message, error_code = _error_text(error)
            hint = _hint(error.code, path, error_code, login is None and username is not None)
            raise MlflowApiError(method, url, error.code, message, error_code, hint) from None
        except (URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise MlflowApiError(method, url, NO_ANSWER, to_text(reason)) from None
        if not raw.strip():
            return {}
        try:
            answer = json.loads(to_text(raw))
        except ValueError:
            raise MlflowApiError(
                method, url, response.getcode(), "the answer is not JSON: %r" % raw[:200]
            ) from None
        return answer if isinstance(answer, dict) else {"value": answer}

    def find(self, path: str, query: dict[str, str]) -> Optional[dict[str, Any]]:
        """Like ``GET path`` but None when MLflow says the object does not exist."""
        try:
            return self.request("GET", path, query)
        except MlflowApiError as error:
            if error.status == 404 and error.error_code == NOT_FOUND:
                return None
            raise

    # --- accounts ----------------------------------------------------------------

    def login(self, username: str, password: str) -> Optional[dict[str, Any]]:
        """The account when ``username`` logs in with ``password`` (it reads itself), else None."""
        try:
            found = self.request(
                "GET",
                "/api/2.0/mlflow/users/get",
                {"username": username},
                login=(username, password),
            )
        except MlflowApiError as error:
            if error.status == 401:
                return None
            raise
        return found["user"]

    def get_user(self, username: str) -> Optional[dict[str, Any]]:
        """The account (id, username, is_admin), None when there is none."""
        found = self.find("/api/2.0/mlflow/users/get", {"username": username})
        return None if found is None else found["user"]

    def create_user(self, username: str, password: str) -> dict[str, Any]:
        body = {"username": username, "password": password}
        return self.request("POST", "/api/2.0/mlflow/users/create", body=body)["user"]

    def update_password(
        self, username: str, password: str, current_password: Optional[str] = None
    ) -> None:
        """Set the password; MLflow asks for ``current_password`` when an account sets its own."""
        body = {"username": username, "password": password}
        if current_password is not None:
            body["current_password"] = current_password
        self.request("PATCH", "/api/2.0/mlflow/users/update-password", body=body)

    def update_admin(self, username: str, is_admin: bool) -> None:
        body = {"username": username, "is_admin": is_admin}
        self.request("PATCH", "/api/2.0/mlflow/users/update-admin", body=body)

    def delete_user(self, username: str) -> None:
        self.request("DELETE", "/api/2.0/mlflow/users/delete", body={"username": username})

    # --- per-user grants -----------------------------------------------------------

    def list_permissions(self, username: str) -> Optional[list[dict[str, Any]]]:
        """Every grant of the account's roles; None when the account does not exist."""
        found = self.find("/api/3.0/mlflow/users/permissions/list", {"username": username})
        return None if found is None else found.get("permissions", [])

    def grant(self, username: str, resource_type: str, resource_id: str, permission: str) -> None:
        body = {
            "username": username,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "permission": permission,
        }
        self.request("POST", "/api/3.0/mlflow/users/permissions/grant", body=body)

    def revoke(self, username: str, resource_type: str, resource_id: str) -> None:
        body = {"username": username, "resource_type": resource_type, "resource_id": resource_id}
        self.request("POST", "/api/3.0/mlflow/users/permissions/revoke", body=body)

    # --- experiments and registered models --------------------------------------------

    def experiment_id(self, name: str) -> Optional[str]:
        found = self.find("/api/2.0/mlflow/experiments/get-by-name", {"experiment_name": name})
        return None if found is None else str(found["experiment"]["experiment_id"])

    def create_experiment(self, name: str) -> str:
        created = self.request("POST", "/api/2.0/mlflow/experiments/create", body={"name": name})
        return str(created["experiment_id"])

    def registered_model_exists(self, name: str) -> bool:
        return self.find("/api/2.0/mlflow/registered-models/get", {"name": name}) is not None

    def create_registered_model(self, name: str) -> None:
        self.request("POST", "/api/2.0/mlflow/registered-models/create", body={"name": name})


def _error_text(error: HTTPError) -> tuple[str, Optional[str]]:
    """MLflow's message and error code of an HTTP error, or the start of its body."""
    try:
        raw = error.read()
    except Exception:  # pylint: disable=broad-exception-caught
        raw = b""
    text = to_text(raw, errors="surrogate_or_replace").strip()
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and "message" in answer:
        return to_text(answer["message"]), answer.get("error_code")
    if error.code == 401:
        return "not authenticated", None  # MLflow's 401 page is a link to its docs
    return (text[:200] or to_text(error.reason)), None


def client_from_module(module: AnsibleModule) -> MlflowRest:
    """The client for the connection options (doc fragment mlops.stack.mlflow)."""
    params = module.params
    if not params["tracking_uri"].startswith(("http://", "https://")):
        module.fail_json(
            msg="tracking_uri must be an http:// or https:// URL, got %r" % params["tracking_uri"]
        )
    return MlflowRest(
        params["tracking_uri"],
        params["tracking_username"],
        params["tracking_password"],
        request_timeout(module),
    )


def fail_api(module: AnsibleModule, error: MlflowApiError, **result: Any) -> NoReturn:
    """fail_json with the error's message, URL and status (-1: no answer)."""
    module.fail_json(msg=str(error), url=error.url, status=error.status, **result)
