"""Fixtures for the module tests: real MLflow servers and a way to run modules like Ansible does.

``run_module`` runs a module in the test process by default: its ``main()`` gets the
arguments the way Ansible hands them over and its JSON result is read back. Starting
the ``ansible`` command (and a fresh Python importing mlflow) costs seconds per run,
so ``run_module(..., via_ansible=True)`` is kept for what only the real command shows:
the ``no_log`` censoring of its output, another interpreter (``python=``), and the
``--check``/``--diff`` plumbing (one test per module). There the module runs with the
``ansible`` ad-hoc command (JSON stdout callback) against localhost, with the project
venv's Python as ``ansible_python_interpreter``. MLflow is a real ``mlflow server``
started by the project's ``tests/support/mlflow_server.py``, once plain and once with
its basic-auth app.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import io
import json
import locale
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

COLLECTIONS = Path(__file__).resolve().parents[5]  # .../collections
PROJECT = COLLECTIONS.parent
PROJECT_HELPER = PROJECT / "tests" / "support" / "mlflow_server.py"
ANSIBLE = Path(sys.executable).with_name("ansible")


def _load_project_helper():
    """The project's MlflowServer module, or None when the collection is tested on its own."""
    if not PROJECT_HELPER.is_file():
        return None
    # The project's pytest runs have its root on sys.path (its conftest.py sits
    # there), so the helper is imported by name like the project's own tests do.
    return importlib.import_module("tests.support.mlflow_server")


_project = _load_project_helper()


@pytest.fixture(scope="session")
def mlflow_url(tmp_path_factory):
    """URL of a real MLflow server (the project's MlflowServer helper)."""
    if _project is None:
        pytest.skip(f"needs the project's real-MLflow helper {PROJECT_HELPER}")
    server = _project.MlflowServer(tmp_path_factory.mktemp("mlflow-modules"))
    server.start()
    yield server.url
    server.stop()


class AuthServer:
    """A real ``mlflow server --app-name basic-auth`` and its REST API, to check on the modules."""

    admin = "admin"
    admin_password = "admin-password-0123"  # pragma: allowlist secret

    def __init__(self, root: Path) -> None:
        config = root / "basic_auth.ini"
        config.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
            f"admin_username = {self.admin}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # one worker, which forgets a changed account at once: the cache only saves
            # the scrypt hash of each repeated login
            "auth_cache_ttl_seconds = 600\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
        env.update(
            MLFLOW_AUTH_CONFIG_PATH=str(config),
            MLFLOW_AUTH_ADMIN_PASSWORD=self.admin_password,
            MLFLOW_FLASK_SERVER_SECRET_KEY="unit-test-key",  # pragma: allowlist secret
        )
        self.server = _project.MlflowServer(root, extra_args=("--app-name", "basic-auth"), env=env)
        self.url = self.server.url

    def connection(self, **overrides: str) -> dict[str, str]:
        """Module connection options as the admin."""
        options = {
            "tracking_uri": self.url,
            "tracking_username": self.admin,
            "tracking_password": self.admin_password,
        }
        options.update(overrides)
        return options

    def call(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        login: tuple[str, str] | None = None,
        **query: str,
    ) -> tuple[int, dict]:
        """(status, JSON answer) of a request, as the admin unless ``login`` says otherwise."""
        user, password = login or (self.admin, self.admin_password)
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": "Basic "
                + base64.b64encode(f"{user}:{password}".encode()).decode(),
                "Content-Type": "application/json",
            },
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                return error.code, json.loads(raw)
            except ValueError:
                return error.code, {"text": raw.decode(errors="replace")}

    def logs_in(self, user: str, password: str) -> bool:
        status = self.call(
            "GET", "/api/2.0/mlflow/users/get", login=(user, password), username=user
        )[0]
        assert status in (200, 401), status
        return status == 200

    def user(self, name: str) -> dict | None:
        status, answer = self.call("GET", "/api/2.0/mlflow/users/get", username=name)
        assert status in (200, 404), answer
        return answer["user"] if status == 200 else None

    def create_user(self, name: str, password: str, admin: bool = False) -> None:
        body = {"username": name, "password": password}
        status, answer = self.call("POST", "/api/2.0/mlflow/users/create", body)
        assert status == 200, answer
        if admin:
            status, answer = self.call(
                "PATCH", "/api/2.0/mlflow/users/update-admin", {"username": name, "is_admin": True}
            )
            assert status == 200, answer

    def grants(self, user: str) -> dict[tuple[str, str], str]:
        """The account's own grants: {(resource_type, resource_pattern): permission}."""
        status, answer = self.call("GET", "/api/3.0/mlflow/users/permissions/list", username=user)
        assert status == 200, answer
        return {
            (row["resource_type"], row["resource_pattern"]): row["permission"]
            for row in answer["permissions"]
            if row["role_name"].startswith("__user_")
        }

    def experiment_id(self, name: str) -> str | None:
        status, answer = self.call(
            "GET", "/api/2.0/mlflow/experiments/get-by-name", experiment_name=name
        )
        assert status in (200, 404), answer
        return answer["experiment"]["experiment_id"] if status == 200 else None

    def model_exists(self, name: str) -> bool:
        status, answer = self.call("GET", "/api/2.0/mlflow/registered-models/get", name=name)
        assert status in (200, 404), answer
        return status == 200


@pytest.fixture(scope="session")
def mlflow_auth(tmp_path_factory):
    """A real MLflow server with basic auth (admin/admin-password-0123), shared by the session:
    tests use names of their own (``unique_name``) and never change the admin."""
    if _project is None:
        pytest.skip(f"needs the project's real-MLflow helper {PROJECT_HELPER}")
    server = AuthServer(tmp_path_factory.mktemp("mlflow-auth"))
    server.server.start()
    yield server
    server.server.stop()


@pytest.fixture(scope="module")
def own_mlflow_auth(tmp_path_factory):
    """A basic-auth MLflow server for one test module alone, which may change its admin."""
    if _project is None:
        pytest.skip(f"needs the project's real-MLflow helper {PROJECT_HELPER}")
    server = AuthServer(tmp_path_factory.mktemp("mlflow-auth-own"))
    server.server.start()
    yield server
    server.server.stop()


@pytest.fixture
def unique_name(request):
    """An account, experiment or model name no other test uses."""
    return "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name)[:50]


@pytest.fixture
def model_name(request):
    """A registered-model name no other test uses."""
    return "mod-" + "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]


@pytest.fixture(scope="session")
def ansible_env(tmp_path_factory):
    if not ANSIBLE.exists():
        pytest.skip(f"ansible is not installed next to {sys.executable}")
    home = tmp_path_factory.mktemp("ansible-home")
    env = dict(os.environ)
    config = PROJECT / "ansible.cfg"
    if config.is_file():
        env["ANSIBLE_CONFIG"] = str(config)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_NOCOLOR="1",
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


class ModuleRunner:
    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env = env
        self.tmp = tmp
        self._output: str | None = ""

    @property
    def output(self) -> str:
        """stdout and stderr of the last run, which must have gone through ``ansible``."""
        if self._output is None:
            # the no_log censoring is Ansible's: an in-process run would prove nothing
            raise AssertionError("run_module.output needs the last run to be via_ansible=True")
        return self._output

    def __call__(
        self,
        module: str,
        args: dict,
        *flags: str,
        python: str | None = None,
        via_ansible: bool = False,
    ) -> dict:
        """Run ``module`` on localhost and return its task result."""
        if via_ansible or python is not None:
            return self._ansible(module, args, flags, python or sys.executable)
        return self._in_process(module, args, flags)

    def _ansible(self, module: str, args: dict, flags: tuple[str, ...], python: str) -> dict:
        command = [
            str(ANSIBLE),
            "localhost",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-m",
            f"mlops.stack.{module}",
            "-a",
            json.dumps(args),
            "-e",
            f"ansible_python_interpreter={python}",
            *flags,
        ]
        done = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=300, check=False
        )
        self._output = done.stdout + done.stderr
        # with -v..., verbose lines come before the callback's JSON document
        start = done.stdout.find("{") if done.stdout.startswith("{") else done.stdout.find("\n{\n")
        try:
            report = json.loads(done.stdout[max(start, 0) :])
            return report["plays"][0]["tasks"][0]["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError):
            raise AssertionError(
                f"ansible gave no JSON result (rc {done.returncode})\n"
                f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            ) from None

    def _in_process(self, module: str, args: dict, flags: tuple[str, ...]) -> dict:
        self._output = None
        internals = {
            "_ansible_check_mode": False,
            "_ansible_diff": False,
            "_ansible_verbosity": 0,
            "_ansible_no_log": False,
            "_ansible_debug": False,
            "_ansible_module_name": f"mlops.stack.{module}",
            "_ansible_tmpdir": str(self.tmp),
            "_ansible_remote_tmp": str(self.tmp),
            "_ansible_tracebacks_for": [],
        }
        for flag in flags:
            if flag == "--check":
                internals["_ansible_check_mode"] = True
            elif flag == "--diff":
                internals["_ansible_diff"] = True
            elif flag.startswith("-v") and set(flag[1:]) == {"v"}:
                internals["_ansible_verbosity"] = len(flag) - 1
            else:
                raise ValueError(f"{flag} needs via_ansible=True")
        from ansible.module_utils.testing import patch_module_args

        # imported before the state is saved: what importing mlflow sets up (KMP_* and
        # telemetry variables, ...) stays for the process, as the test files import it too
        main = importlib.import_module(f"ansible_collections.mlops.stack.plugins.modules.{module}")
        stdout = io.StringIO()
        with _module_process_state(), patch_module_args({**args, **internals}):
            try:
                with contextlib.redirect_stdout(stdout):
                    main.main()
            except SystemExit:
                pass
            else:
                raise AssertionError(f"{module}.main() returned without exit_json or fail_json")
        printed = stdout.getvalue()
        try:
            result = json.loads(printed[printed.index("{") :])
        except ValueError:
            raise AssertionError(f"{module} printed no JSON result:\n{printed}") from None
        # what the controller adds before the JSON callback reports the task, so that a
        # result reads the same however it was run
        result.setdefault("changed", False)
        if result.get("failed"):
            result.setdefault("exception", "(traceback unavailable)")
        result.update(action=f"mlops.stack.{module}", _ansible_no_log=False)
        return result


@contextlib.contextmanager
def _module_process_state():
    """Undo what a module run changes in this process, even when it raises.

    The real ``ansible`` runs each module in a process of its own; here the next run and
    the tests' own MLflow clients share ours.
    """
    from ansible.module_utils import basic
    from ansible.module_utils._internal import _traceback
    from ansible.module_utils.common import warnings

    # Registry.__enter__ calls mlflow.set_tracking_uri, which also exports MLFLOW_TRACKING_URI
    mlflow_uri = sys.modules.get("mlflow.tracking._tracking_service.utils")
    saved_uri = getattr(mlflow_uri, "_tracking_uri", None)
    mlflow = sys.modules.get("mlflow")
    saved_run = mlflow.active_run() if mlflow is not None else None
    saved = {
        "environ": dict(os.environ),
        "argv": list(sys.argv),
        "cwd": os.getcwd(),
        "locale": locale.setlocale(locale.LC_ALL),  # AnsibleModule calls setlocale
        "parsed": basic._PARSED_MODULE_ARGS,
        "tracebacks": _traceback._module_tracebacks_enabled_events,
    }
    # warnings and deprecations are per run: a module process starts without any
    gathered = (dict(warnings._global_warnings), dict(warnings._global_deprecations))
    warnings._global_warnings.clear()
    warnings._global_deprecations.clear()
    try:
        yield
    finally:
        try:
            # a run left open by a failed module would become the parent of the next one
            mlflow = sys.modules.get("mlflow")
            while (
                mlflow is not None
                and (run := mlflow.active_run()) is not None
                and (saved_run is None or run.info.run_id != saved_run.info.run_id)
            ):
                mlflow.end_run(status="KILLED")
        finally:
            _restore(saved, saved_uri, gathered)


def _restore(saved: dict, saved_uri: str | None, gathered: tuple[dict, dict]) -> None:
    from ansible.module_utils import basic
    from ansible.module_utils._internal import _traceback
    from ansible.module_utils.common import warnings

    warnings._global_warnings.clear()
    warnings._global_warnings.update(gathered[0])
    warnings._global_deprecations.clear()
    warnings._global_deprecations.update(gathered[1])
    basic._PARSED_MODULE_ARGS = saved["parsed"]
    _traceback._module_tracebacks_enabled_events = saved["tracebacks"]
    locale.setlocale(locale.LC_ALL, saved["locale"])
    os.chdir(saved["cwd"])
    sys.argv[:] = saved["argv"]
    mlflow_uri = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if mlflow_uri is not None:
        mlflow_uri._tracking_uri = saved_uri
    for key in set(os.environ) - set(saved["environ"]):
        del os.environ[key]
    for key, value in saved["environ"].items():
        if os.environ.get(key) != value:
            os.environ[key] = value


@pytest.fixture(scope="session")
def run_module(ansible_env, tmp_path_factory):
    # the modules import each other as ansible_collections.mlops.stack...
    if str(COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS))
    return ModuleRunner(ansible_env, tmp_path_factory.mktemp("module-tmp"))


class PlaybookRunner:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.output = ""  # stdout and stderr of the last run

    def __call__(self, playbook: Path, *flags: str) -> dict:
        """Run ``playbook`` (its plays on localhost) and return the JSON callback's report."""
        done = subprocess.run(
            [str(ANSIBLE.with_name("ansible-playbook")), "-i", "localhost,", str(playbook), *flags],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        self.output = done.stdout + done.stderr
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise AssertionError(
                f"ansible-playbook gave no JSON report (rc {done.returncode})\n"
                f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            ) from None


@pytest.fixture(scope="session")
def run_playbook(ansible_env):
    return PlaybookRunner(ansible_env)


@pytest.fixture(scope="session")
def python_without_mlflow(tmp_path_factory):
    """An interpreter lacking mlflow: /usr/bin/python3 if so, else a bare venv."""
    probe = "import importlib.util as u, sys; sys.exit(u.find_spec('mlflow') is not None)"
    system = shutil.which("python3", path="/usr/bin")
    if system and subprocess.run([system, "-c", probe], check=False).returncode == 0:
        return system
    venv = tmp_path_factory.mktemp("no-mlflow") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return str(venv / "bin" / "python")
