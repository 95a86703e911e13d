"""Repository hygiene a new user relies on: what git ignores, what the
collection tarball ships, that no package mirror is hard-coded, and that the
collection passes ansible-test sanity."""

from __future__ import annotations

import configparser
import re
import subprocess
import tarfile
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = ROOT / "collections/ansible_collections/mlops/stack"


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".work/ansible/x",
        "credentials/grafana_admin_password",
        "terraform/terraform.tfstate",
        "terraform/terraform.tfstate.backup",
        "terraform/.terraform/x",
        "terraform/terraform.tfvars",
        "terraform/backend.hcl",
    ],
)
def test_gitignore_covers_local_state_and_secrets(path: str):
    proc = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
    assert proc.returncode == 0, f"{path} is not ignored by git"


def machine_mirror_hosts() -> set[str]:
    """Host names of this machine's own apt and pip configuration."""
    hosts: set[str] = set()
    sources = [*Path("/etc/apt/sources.list.d").glob("*"), Path("/etc/apt/sources.list")]
    for source in sources:
        if source.is_file():
            for url in re.findall(r"[a-z+]+://[^\s\]]+", source.read_text(errors="ignore")):
                hosts.add(urlparse(url).hostname or "")
    for conf in [
        Path("/etc/pip.conf"),
        Path("/etc/xdg/pip/pip.conf"),
        Path.home() / ".config/pip/pip.conf",
    ]:
        if conf.is_file():
            parser = configparser.ConfigParser()
            parser.read(conf)
            for section in parser.sections():
                for value in parser[section].values():
                    for url in re.findall(r"https?://\S+", value):
                        hosts.add(urlparse(url).hostname or "")
    return {h for h in hosts if h and h not in {"localhost"}}


def test_no_package_mirror_host_is_written_into_the_project():
    hosts = machine_mirror_hosts()
    offenders = []
    for path in tracked_files():
        if path.suffix in {".whl", ".png", ".gz"}:
            continue
        text = path.read_text(errors="ignore")
        offenders += [f"{path.relative_to(ROOT)}: {h}" for h in hosts if h in text]
    assert offenders == []


def test_collection_builds_without_tests_or_molecule(tmp_path: Path):
    subprocess.run(
        ["ansible-galaxy", "collection", "build", "--output-path", str(tmp_path), str(COLLECTION)],
        check=True,
        capture_output=True,
        text=True,
    )
    (tarball,) = tmp_path.glob("mlops-stack-*.tar.gz")
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "plugins/modules/mlflow_model.py" in names
    assert "roles/mlflow_server/tasks/main.yml" in names
    assert not [
        n for n in names if n.startswith("tests/") or "/molecule/" in n or n.endswith(".tar.gz")
    ]


def test_collection_passes_ansible_test_sanity():
    proc = subprocess.run(
        [str(ROOT / "scripts/sanity.sh")], cwd=ROOT, capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]


# a module called as a task key, or an inventory plugin named in an inventory
FQCN_USE = re.compile(
    r"^\s*(?:-?\s*([a-z_]+\.[a-z_]+)\.[a-z_]+:|plugin:\s*([a-z_]+\.[a-z_]+)\.[a-z_]+)\s*$", re.M
)


def collections_used(paths: list[Path]) -> set[str]:
    """namespace.name of every module (FQCN task key) or inventory plugin in ``paths``."""
    used: set[str] = set()
    for path in paths:
        used |= {task or plugin for task, plugin in FQCN_USE.findall(path.read_text())}
    return used - {"ansible.builtin", "mlops.stack"}


def collections_used_by_the_collection() -> set[str]:
    """namespace.name of every module the shipped roles call."""
    return collections_used(
        [
            path
            for path in COLLECTION.rglob("*.yml")
            if path.relative_to(COLLECTION).parts[0] in {"roles", "plugins"}
            and "molecule" not in path.parts
        ]
    )


def test_galaxy_depends_on_exactly_the_collections_the_roles_use():
    galaxy = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
    declared = set(galaxy.get("dependencies") or {})
    used = collections_used_by_the_collection()
    assert used, "no FQCN found: is the pattern still right?"
    assert declared == used, f"galaxy.yml declares {sorted(declared)}, the roles use {sorted(used)}"
    assert (COLLECTION / galaxy["readme"]).is_file(), f"galaxy.yml names {galaxy['readme']}"


def test_requirements_yml_installs_what_the_repository_uses():
    """requirements.yml (ansible-galaxy collection install -r) names this repository's
    collection and every collection its playbooks, site roles and inventories use, with
    galaxy.yml's version constraints for the collection's own dependencies."""
    wanted = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    local = [entry for entry in wanted if entry.get("type") == "dir"]
    assert [(ROOT / entry["name"]).resolve() for entry in local] == [COLLECTION.resolve()]
    listed = {entry["name"]: entry.get("version") for entry in wanted if entry not in local}
    own = [ROOT / "site.yml", *(ROOT / "playbooks").glob("*.yml"), *(ROOT / "roles").rglob("*.yml")]
    own += list((ROOT / "inventories").rglob("*.yml"))
    used = collections_used(own) | collections_used_by_the_collection()
    assert "google.cloud" in used, "the gcp_compute inventory plugin was not found"
    assert set(listed) == used, (
        f"requirements.yml lists {sorted(listed)}, the repository uses {sorted(used)}"
    )
    galaxy = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
    for name, version in galaxy["dependencies"].items():
        assert listed[name] == version, f"{name}: {listed[name]} here, {version} in galaxy.yml"


def test_the_bundled_collections_satisfy_requirements_yml():
    """./stack up uses the collections the pinned `ansible` package bundles: each one
    that requirements.yml names must be in it, at a version inside the range."""
    import json

    import ansible_collections
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    bundled = [Path(p) for p in ansible_collections.__path__]
    wanted = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    for entry in wanted:
        if entry.get("type") == "dir":
            continue
        namespace, name = entry["name"].split(".")
        manifests = [
            root / namespace / name / "MANIFEST.json"
            for root in bundled
            if (root / namespace / name / "MANIFEST.json").is_file()
        ]
        assert manifests, f"{entry['name']} is not bundled with the pinned ansible package"
        version = json.loads(manifests[0].read_text())["collection_info"]["version"]
        assert Version(version) in SpecifierSet(entry["version"]), (
            f"{entry['name']} {version} is bundled, requirements.yml asks for {entry['version']}"
        )


def test_readme_tells_how_to_install_the_collections():
    readme = (ROOT / "README.md").read_text()
    assert "ansible-galaxy collection install -r requirements.yml" in readme
