"""The grafana role's install, configure and run logic, checked against Grafana's own
packaging and docs without a node: ansible evaluates the role's real expressions on
localhost (its defaults and vars loaded), the rest reads the task files.

Sources the role follows (grafana/grafana): docs/sources/setup-grafana/installation/
debian/index.md (key URL, keyring, source file), packaging/deb/control/postinst (no start
on a first install, /var/lib/grafana chowned to grafana on every upgrade),
pkg/cmd/grafana-cli/commands/commands.go (reset-admin-password and its flags).
"""

from __future__ import annotations

import base64
import re

import pytest
import yaml

from tests.support.monitoring import GRAFANA_ROLE, evaluate_with_role_vars, role_task

DEFAULTS = yaml.safe_load((GRAFANA_ROLE / "defaults" / "main.yml").read_text())
VARS = yaml.safe_load((GRAFANA_ROLE / "vars" / "main.yml").read_text())


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def conditions(task: dict) -> str:
    """The task's `when` as one expression."""
    when = task["when"] if isinstance(task["when"], list) else [task["when"]]
    return "{{ " + " and ".join(f"({c})" for c in when) + " }}"


def task_names(task_file: str) -> list[str]:
    return [
        t.get("name", "") for t in yaml.safe_load((GRAFANA_ROLE / "tasks" / task_file).read_text())
    ]


# --- 8: the APT key ------------------------------------------------------------


def test_key_url_is_the_one_of_grafanas_install_docs():
    # gpg.key is the deprecated file: apt fails with NO_PUBKEY since Grafana's key change
    assert DEFAULTS["grafana_apt_key_url"] == "https://apt.grafana.com/gpg-full.key"
    assert VARS["__grafana_keyring"] == "/etc/apt/keyrings/grafana.asc"
    assert DEFAULTS["grafana_apt_key_checksum"] == ""
    download = role_task(GRAFANA_ROLE, "install_apt.yml", "Download the repository signing key")
    assert download["ansible.builtin.get_url"]["checksum"] == "{{ grafana_apt_key_checksum }}"


def test_a_new_key_url_replaces_the_key_file(tmp_path):
    """get_url keeps an existing file unless forced (If-Modified-Since against the
    file's own date): the key of an earlier URL would stay. The source file records
    the URL, and another one forces the download."""
    sources = evaluate_with_role_vars(
        tmp_path / "render",
        GRAFANA_ROLE,
        {"text": "{{ lookup('ansible.builtin.template', template) }}"},
        extra_vars={"template": str(GRAFANA_ROLE / "templates" / "grafana.sources.j2")},
    )["text"]
    assert "Signed-By: /etc/apt/keyrings/grafana.asc" in sources
    force = role_task(GRAFANA_ROLE, "install_apt.yml", "Download the repository signing key")[
        "ansible.builtin.get_url"
    ]["force"]
    earlier_role = sources.replace("# Key: https://apt.grafana.com/gpg-full.key\n", "")
    assert "gpg-full.key" not in earlier_role
    cases = {
        "fresh": {"failed": True, "msg": "file not found"},
        "same": {"content": b64(sources)},
        "earlier_role": {"content": b64(earlier_role)},
        "other_url": {"content": b64(sources.replace("gpg-full.key", "gpg.key"))},
    }
    forced = evaluate_with_role_vars(
        tmp_path / "evaluate",
        GRAFANA_ROLE,
        {"force": force},
        cases={case: {"__grafana_sources_before": value} for case, value in cases.items()},
    )
    forced = {case: values["force"] for case, values in forced.items()}
    assert forced == {"fresh": True, "same": False, "earlier_role": True, "other_url": True}


# --- 10f: other source entries for the repository ---------------------------------

LEFTOVER_LINES = [
    # Grafana's instructions over the years (grafana.list)
    "deb [signed-by=/etc/apt/keyrings/grafana.gpg] https://apt.grafana.com stable main",
    "deb [signed-by=/etc/apt/keyrings/grafana.asc] https://apt.grafana.com stable main",
    "deb https://packages.grafana.com/oss/deb stable main",
    "  deb [arch=amd64 signed-by=/usr/share/keyrings/grafana.key] https://apt.grafana.com/ beta",
    "deb-src https://apt.grafana.com stable main",
    "URIs: https://apt.grafana.com",
    "URIs: https://apt.grafana.com/",
]
OTHER_LINES = [
    "# deb https://apt.grafana.com stable main",
    "deb https://apt.grafana.com.example.net stable main",
    "deb http://mirror.example.org/debian bookworm main",
    "URIs: http://mirror.example.org/debian",
    "Signed-By: /etc/apt/keyrings/grafana.asc",
]


@pytest.fixture(scope="module")
def cleanup_patterns(tmp_path_factory) -> dict:
    cleanup = role_task(
        GRAFANA_ROLE,
        "sources_cleanup.yml",
        "Find the APT source files that name the Grafana repository",
    )
    lines = role_task(
        GRAFANA_ROLE,
        "sources_cleanup.yml",
        "Remove the Grafana repository from other one-line source files",
    )
    expressions = {
        "find": cleanup["ansible.builtin.find"]["contains"],
        "lineinfile": lines["ansible.builtin.lineinfile"]["regexp"],
        "former": "{{ __grafana_former_sources_file }}",
        "own": "{{ __grafana_sources_file }}",
    }
    default = evaluate_with_role_vars(tmp_path_factory.mktemp("default"), GRAFANA_ROLE, expressions)
    mirror = evaluate_with_role_vars(
        tmp_path_factory.mktemp("mirror"),
        GRAFANA_ROLE,
        expressions,
        extra_vars={"grafana_apt_repository": "https://mirror.example.org/grafana/"},
    )
    return {"default": default, "mirror": mirror}


def test_leftover_grafana_sources_are_found_and_removed(cleanup_patterns):
    patterns = cleanup_patterns["default"]
    assert patterns["former"] == "/etc/apt/sources.list.d/grafana.list"
    assert patterns["own"] == "/etc/apt/sources.list.d/grafana.sources"
    for line in LEFTOVER_LINES:
        # find matches each line from its start, lineinfile searches it
        assert re.match(patterns["find"], line), line
        if not line.strip().startswith("URIs:"):
            assert re.search(patterns["lineinfile"], line), line
    for line in OTHER_LINES:
        assert not re.match(patterns["find"], line), line
        assert not re.search(patterns["lineinfile"], line), line


def test_a_mirror_is_the_repository_to_clean_up(cleanup_patterns):
    patterns = cleanup_patterns["mirror"]
    for line in (
        "deb [signed-by=/etc/apt/keyrings/old.gpg] https://mirror.example.org/grafana stable main",
        "URIs: https://mirror.example.org/grafana/",
    ):
        assert re.match(patterns["find"], line), line
    assert not re.match(patterns["find"], "deb https://mirror.example.org/grafana-old stable main")


def test_leftovers_go_before_the_lists_are_refreshed():
    names = task_names("install_apt.yml")
    cleanup = names.index("Remove other source entries for the Grafana repository")
    assert cleanup < names.index("Add the Grafana APT repository")
    assert cleanup < names.index("Install the Grafana package")
    include = role_task(
        GRAFANA_ROLE, "install_apt.yml", "Remove other source entries for the Grafana repository"
    )
    assert include["ansible.builtin.include_tasks"] == "sources_cleanup.yml"
    install = role_task(GRAFANA_ROLE, "install_apt.yml", "Install the Grafana package")
    assert "__grafana_sources_cleaned" in install["ansible.builtin.apt"]["update_cache"]


# --- 10a: the .deb path and the requested version ----------------------------------

DEB = "https://dl.grafana.com/oss/release/grafana_12.1.0_amd64.deb"


def test_the_deb_is_installed_when_its_version_is_not(tmp_path):
    task = role_task(GRAFANA_ROLE, "install.yml", "Install the .deb file")
    apt = task["ansible.builtin.apt"]
    assert apt["update_cache"] is True, "dpkg finds the .deb's dependencies only in fresh lists"
    cases = {"first-install": (False, ""), "upgrade": (True, "12.0.2"), "same": (True, "12.1.0")}
    evaluated = evaluate_with_role_vars(
        tmp_path,
        GRAFANA_ROLE,
        {"runs": conditions(task), "cache_valid_time": apt["cache_valid_time"]},
        extra_vars={"grafana_deb_url": DEB, "__grafana_source_reachable": True},
        cases={
            case: {"__grafana_installed_before": before, "__grafana_installed_version": version}
            for case, (before, version) in cases.items()
        },
    )
    assert {case: values["runs"] for case, values in evaluated.items()} == {
        "first-install": True,
        "upgrade": True,
        "same": False,
    }
    # a first install always refreshes the lists, whatever their age
    assert int(evaluated["first-install"]["cache_valid_time"]) == 0
    assert int(evaluated["upgrade"]["cache_valid_time"]) == 3600


def test_a_requested_version_refreshes_the_lists(tmp_path):
    install = role_task(GRAFANA_ROLE, "install_apt.yml", "Install the Grafana package")
    cases = {
        "newest": ("", "12.0.2"),
        "upgrade": ("12.1.0", "12.0.2"),
        "same": ("12.1.0", "12.1.0"),
    }
    evaluated = evaluate_with_role_vars(
        tmp_path,
        GRAFANA_ROLE,
        {
            "refresh": install["ansible.builtin.apt"]["update_cache"],
            "spec": "{{ __grafana_package_spec }}",
        },
        extra_vars={
            "__grafana_installed_before": True,
            "__grafana_sources": {"changed": False},
            "__grafana_key": {"changed": False},
            "__grafana_sources_cleaned": False,
        },
        cases={
            case: {"grafana_version": wanted, "__grafana_installed_version": installed}
            for case, (wanted, installed) in cases.items()
        },
    )
    assert {case: values["refresh"] for case, values in evaluated.items()} == {
        "newest": False,
        "upgrade": True,
        "same": False,
    }
    assert evaluated["upgrade"]["spec"] == "grafana=12.1.0"
    assert evaluated["newest"]["spec"] == "grafana"


# --- 10b: dashboards outside /var/lib/grafana --------------------------------------


def test_dashboards_live_in_a_root_owned_folder_under_etc():
    assert DEFAULTS["grafana_dashboards_dir"] == "/etc/grafana/dashboards"
    folder = role_task(GRAFANA_ROLE, "configure.yml", "Create the dashboards directory")[
        "ansible.builtin.file"
    ]
    # what the package's postinst sets under /etc/grafana on every upgrade
    assert (folder["owner"], folder["group"], folder["mode"]) == (
        "root",
        "{{ __grafana_group }}",
        "0755",
    )
    board = role_task(GRAFANA_ROLE, "configure.yml", "Install the dashboards of the role")
    assert board["ansible.builtin.copy"]["owner"] == "root"
    assert board["ansible.builtin.copy"]["mode"] == "0640"
    verify = (GRAFANA_ROLE / "molecule" / "default" / "verify.yml").read_text()
    assert "/var/lib/grafana/dashboards" not in verify
    assert "/etc/grafana/dashboards/predictor.json" in verify


# --- 10e: no restart in the middle of the first start --------------------------------


def test_the_first_start_is_not_interrupted_by_a_restart():
    # Grafana migrates its database at its first start: the shared run phase
    # notes a unit that it started (or restarted into its sandbox) as fresh
    # before it flushes the handlers, and the restart handler skips a fresh unit.
    run = role_task(GRAFANA_ROLE, "run.yml", "Sandbox, start and probe Grafana")
    assert run["ansible.builtin.import_role"] == {
        "name": "mlops.stack.packaged_service",
        "tasks_from": "run",
    }
    assert run["vars"]["packaged_service_name"] == "grafana"  # handler "Restart grafana"
    assert run["vars"]["packaged_service_optional"] is True  # grafana_required: false
    shared = GRAFANA_ROLE.parent / "packaged_service"
    steps = yaml.safe_load((shared / "tasks" / "run.yml").read_text())
    names = [step["name"] for step in steps]
    start = names.index("Enable and start {{ packaged_service_name }}")
    fresh = next(i for i, n in enumerate(names) if n.startswith("Note that this start read"))
    flush = names.index("Apply pending restarts and reloads")
    assert start < fresh < flush
    assert "__packaged_service_started is changed" in conditions(steps[fresh])
    handlers = yaml.safe_load((shared / "handlers" / "main.yml").read_text())
    restart = next(h for h in handlers if h["name"] == "Restart {{ packaged_service_name }}")
    assert any("__packaged_service_fresh" in c for c in restart["when"])
    notified = {
        task.get("notify")
        for file in ("install.yml", "install_apt.yml", "configure.yml")
        for task in yaml.safe_load((GRAFANA_ROLE / "tasks" / file).read_text())
        if task.get("notify")
    }
    assert notified == {"Restart grafana"}


# --- 9: the admin password and the secret key --------------------------------------


def test_the_admin_password_is_checked_and_reset_with_grafanas_cli(tmp_path):
    names = task_names("run.yml")
    assert names.index("Make Grafana accept the configured admin password") > names.index(
        "Sandbox, start and probe Grafana"
    )
    login = role_task(GRAFANA_ROLE, "admin_password.yml", "Log in as the Grafana admin")
    uri = login["ansible.builtin.uri"]
    assert uri["url"] == "{{ __grafana_url }}/api/user"
    assert uri["force_basic_auth"] is True
    assert uri["url_password"] == "{{ __grafana_admin_password }}"
    assert login["no_log"] is True
    assert login["check_mode"] is False  # a read: check mode asks too
    reset = role_task(
        GRAFANA_ROLE, "admin_password.yml", "Reset the admin password with Grafana's CLI"
    )
    assert reset["no_log"] is True
    command = reset["ansible.builtin.command"]
    assert command["stdin"] == "{{ __grafana_admin_password }}"
    argv = evaluate_with_role_vars(
        tmp_path,
        GRAFANA_ROLE,
        {"argv": command["argv"]},
        extra_vars={"__grafana_binary": {"stat": {"exists": True}}},
    )["argv"]
    assert argv == [
        "runuser", "-u", "grafana", "--",
        "/usr/share/grafana/bin/grafana", "cli",
        "--homepath", "/usr/share/grafana", "--config", "/etc/grafana/grafana.ini",
        "admin", "reset-admin-password", "--password-from-stdin",
    ]  # fmt: skip
    block = next(
        t
        for t in yaml.safe_load((GRAFANA_ROLE / "tasks" / "admin_password.yml").read_text())
        if t.get("name") == "Reset the admin password"
    )
    assert "__grafana_admin_login.status == 401" in block["when"]
    relogin = role_task(
        GRAFANA_ROLE, "admin_password.yml", "Log in again with the configured password"
    )
    assert relogin["no_log"] is True
    role_task(
        GRAFANA_ROLE,
        "admin_password.yml",
        "Check that Grafana accepts the configured admin password now",
    )


SECRET_KEY_INI = '[security]\nadmin_user = admin\nsecret_key = """NodeKey0123456789"""\n'
SECRET_KEY_CASES = {
    # name: (the node's grafana.ini or None, grafana_secret_key, the key written)
    "node-key": (SECRET_KEY_INI, "", "NodeKey0123456789"),
    "node-key-wins": (SECRET_KEY_INI, "VaultKey0123456789", "NodeKey0123456789"),
    "unquoted": ("[security]\nsecret_key = plainNodeKey\n", "", "plainNodeKey"),
    "commented-out": (
        "[security]\n;secret_key = SW2Ycw\n",
        "VaultKey0123456789",
        "VaultKey0123456789",
    ),
    "no-ini": (None, "VaultKey0123456789", "VaultKey0123456789"),
}


def test_the_nodes_secret_key_is_kept(tmp_path):
    keep = role_task(GRAFANA_ROLE, "configure.yml", "Keep the node's secret key")
    node_key = keep["ansible.builtin.set_fact"]["__grafana_node_secret_key"]
    credentials = tmp_path / "credentials"
    evaluated = evaluate_with_role_vars(
        tmp_path,
        GRAFANA_ROLE,
        {"key": "{{ __grafana_secret_key }}"},
        extra_vars={"grafana_credentials_dir": str(credentials)},
        cases={
            case: {
                "__grafana_ini_before": {"content": b64(ini)} if ini else {"failed": True},
                "__grafana_node_secret_key": node_key,
                "grafana_secret_key": given,
            }
            for case, (ini, given, _) in SECRET_KEY_CASES.items()
        },
    )
    assert {case: values["key"] for case, values in evaluated.items()} == {
        case: expected for case, (_, _, expected) in SECRET_KEY_CASES.items()
    }
    assert not (credentials / "grafana_secret_key").exists(), "a key was generated needlessly"


def test_a_node_without_a_key_gets_a_generated_one(tmp_path):
    keep = role_task(GRAFANA_ROLE, "configure.yml", "Keep the node's secret key")
    credentials = tmp_path / "credentials"
    key = evaluate_with_role_vars(
        tmp_path,
        GRAFANA_ROLE,
        {"key": "{{ __grafana_secret_key }}"},
        extra_vars={
            "__grafana_ini_before": {"failed": True},
            "__grafana_node_secret_key": keep["ansible.builtin.set_fact"][
                "__grafana_node_secret_key"
            ],
            "grafana_credentials_dir": str(credentials),
        },
    )["key"]
    assert len(key) == 40
    assert key == (credentials / "grafana_secret_key").read_text().split()[0]
