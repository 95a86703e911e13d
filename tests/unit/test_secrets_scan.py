"""No secret enters git: detect-secrets over every file git would commit.

The scan covers the tracked files and the untracked ones git does not ignore
(``git ls-files -co --exclude-standard``), so a secret is caught before its first
commit. Findings are reported by file, line and type, never by value. A false
positive is marked where it stands, with ``# pragma: allowlist secret`` on its line,
never by excluding a file or a detector.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from detect_secrets import SecretsCollection
from detect_secrets.settings import default_settings

ROOT = Path(__file__).resolve().parents[2]
CREDENTIALS = "credentials"  # generated secrets (ansible.builtin.password lookups)


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def committable_files() -> list[str]:
    out = git("ls-files", "-z", "-co", "--exclude-standard")
    assert out.returncode == 0, out.stderr
    # -c lists files deleted in the work tree too: only what is on disk can be scanned
    return sorted({name for name in out.stdout.split("\0") if name and (ROOT / name).is_file()})


def scan(root: Path, files: list[str]) -> list[tuple[str, int, str]]:
    """(file, line, type) of every finding; the secret values stay in the scanner."""
    secrets = SecretsCollection(root=str(root))
    with default_settings():
        secrets.scan_files(*files, num_processors=2)
    return sorted((name, secret.line_number, secret.type) for name, secret in secrets)


def test_scanner_finds_a_planted_secret(tmp_path: Path) -> None:
    """The scan of the repository below means something: the same call, on a file
    holding a private key header and an AWS key id, reports both with their lines."""
    key_header = "-----BEGIN " + "RSA PRIVATE KEY-----"  # split: this file must stay clean
    aws_key_id = "AKIA" + "QYLPMN5HHHFPZAM2"[::-1]
    (tmp_path / "leak.py").write_text(
        f'"""A leak."""\nkey = """{key_header}\nMIIE"""\n\naws_id = "{aws_key_id}"\n'
    )
    found = scan(tmp_path, ["leak.py"])
    assert ("leak.py", 2, "Private Key") in found, found
    assert ("leak.py", 5, "AWS Access Key") in found, found


def test_no_secret_in_committable_files() -> None:
    files = committable_files()
    assert len(files) > 100, f"only {len(files)} files to scan: is this the repository?"
    assert not [f for f in files if f.split("/", 1)[0] == CREDENTIALS], "credentials/ listed"
    findings = scan(ROOT, files)
    print(f"\nsecret scan: {len(files)} files, {len(findings)} findings")
    report = "\n".join(f"  {name}:{line}: {kind}" for name, line, kind in findings)
    assert not findings, (
        f"detect-secrets found {len(findings)} possible secret(s) in files git would "
        f"commit (file:line: type):\n{report}\n"
        "Remove the secret (and rotate it), or, for a false positive, end that line "
        "with a '# pragma: allowlist secret' comment."
    )


@pytest.mark.parametrize(
    "path", [f"{CREDENTIALS}/", f"{CREDENTIALS}/grafana_admin_password", f"{CREDENTIALS}/new"]
)
def test_credentials_folder_is_ignored_by_git(path: str) -> None:
    # check-ignore does not report tracked files as ignored, so this also fails when
    # a file of the folder was ever added (git add -f)
    proc = git("check-ignore", "-v", path)
    assert proc.returncode == 0, f"git does not ignore {path}: {proc.stdout}{proc.stderr}"
    assert git("ls-files", "--", CREDENTIALS).stdout == "", "files of credentials/ are tracked"
