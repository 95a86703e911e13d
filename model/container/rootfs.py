"""Assemble the predictor image's root file system from a Debian base image.

Usage: ``python3 rootfs.py ROOTFS UID`` after the venv was copied to
``ROOTFS/opt/predictor/venv``. Copies in only what that venv needs to run:
the Python interpreter and standard library, the shared libraries the venv's
extension modules link against (found with ldd) and, from dpkg's records, the
packages those come from with their run-time dependencies. Packages that only
matter to a package manager or a shell (dpkg, debconf, perl, bash, coreutils
...) are left out: the image has no shell. Then the accounts, the CA bundle and
the writable directories. Runs in a build stage; the final stage is
``FROM scratch`` plus this tree.
"""

from __future__ import annotations

import compileall
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

STATUS = Path("/var/lib/dpkg/status")
INFO = Path("/var/lib/dpkg/info")
# Run-time roots beyond what ldd finds: the interpreter and its standard library.
ROOTS = {"python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "netbase", "tzdata"}
# Needed by maintainer scripts and shells only, never by a running Python.
SKIP = {
    "dpkg",
    "debconf",
    "perl-base",
    "bash",
    "dash",
    "coreutils",
    "tar",
    "gzip",
    "sed",
    "grep",
    "findutils",
    "diffutils",
    "debianutils",
    "init-system-helpers",
    "base-passwd",
    "base-files",
    "ca-certificates",
    "openssl",
    "libc-bin",
    "readline-common",
    "usrmerge",
    "usr-is-merged",
    "install-info",
    "python3-minimal",
    "python3",
    "python3.11",
    "media-types",
    "mime-support",
}
# Not wanted in the image even when a package ships them.
DROP_PREFIXES = (
    "/usr/share/doc/",
    "/usr/share/man/",
    "/usr/share/info/",
    "/usr/share/lintian/",
    "/usr/share/locale/",
    "/usr/share/bug/",
    "/usr/share/python3/",
    "/usr/lib/python3.11/ensurepip/",
    "/usr/lib/python3.11/idlelib/",
    "/usr/lib/python3.11/turtledemo/",
    "/usr/lib/python3.11/lib2to3/",
    "/usr/lib/python3.11/pydoc_data/",
    "/etc/",
    "/usr/bin/",
    "/usr/sbin/",
    "/bin/",
    "/sbin/",
)
VENV = "/opt/predictor/venv"


def installed_packages() -> dict[str, dict[str, str]]:
    """dpkg's status file: installed package name -> its fields."""
    packages: dict[str, dict[str, str]] = {}
    for stanza in STATUS.read_text().split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            packages[fields["Package"]] = fields
    return packages


def dependencies(fields: dict[str, str], installed: dict[str, dict[str, str]]) -> set[str]:
    """Depends + Pre-Depends, each alternative group resolved to an installed package."""
    provides: dict[str, str] = {}
    for name, other in installed.items():
        for provided in other.get("Provides", "").split(","):
            if provided.strip():
                provides.setdefault(re.split(r"[ (:]", provided.strip())[0], name)
    found: set[str] = set()
    for field in ("Pre-Depends", "Depends"):
        for group in filter(None, (g.strip() for g in fields.get(field, "").split(","))):
            for alternative in group.split("|"):
                name = re.split(r"[ (:]", alternative.strip())[0]
                name = name if name in installed else provides.get(name, "")
                if name:
                    found.add(name)
                    break
    return found


def ldd_libraries(root: Path) -> set[str]:
    """Absolute paths of the system libraries the venv's ELF files load."""
    libraries: set[str] = set()
    for path in root.joinpath(VENV.lstrip("/")).rglob("*.so*"):
        if not path.is_file() or path.is_symlink():
            continue
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout
        for match in re.finditer(r"=> (/\S+)|^\s*(/\S+) \(", out, re.M):
            library = match.group(1) or match.group(2)
            if not library.startswith(str(root)):
                libraries.add(library)
    return libraries


def owner(path: str) -> str | None:
    """The package that ships a file (the path as dpkg recorded it, before or after usrmerge)."""
    candidates = {path, os.path.realpath(path)}
    candidates |= {c.replace("/usr/lib/", "/lib/", 1) for c in set(candidates)}
    for candidate in candidates:
        out = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True).stdout
        if out:
            return out.split(":", 1)[0].strip()
    return None


def package_files(name: str) -> list[str]:
    for list_file in (INFO / f"{name}.list", *INFO.glob(f"{name}:*.list")):
        if list_file.is_file():
            return list_file.read_text().splitlines()
    raise SystemExit(f"no file list for installed package {name}")


def copy(path: str, root: Path) -> None:
    source = Path(path)
    target = root / path.lstrip("/")
    if source.is_dir() and not source.is_symlink():
        target.mkdir(parents=True, exist_ok=True)
        return
    if not source.exists() and not source.is_symlink():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        return
    if source.is_symlink():
        target.symlink_to(os.readlink(source))
    else:
        shutil.copy2(source, target)


def main(root_arg: str, uid_arg: str) -> int:
    root, uid = Path(root_arg), int(uid_arg)
    # the merged-/usr links (/lib -> usr/lib ...) first, so paths dpkg lists
    # under /lib land in usr/lib
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        if Path("/", top).is_symlink():
            target = os.readlink(Path("/", top))
            root.joinpath(top).symlink_to(target)
            root.joinpath(top).parent.joinpath(target).mkdir(parents=True, exist_ok=True)
    installed = installed_packages()
    wanted = {r for r in ROOTS if r in installed}
    for library in ldd_libraries(root):
        name = owner(library)
        if name is None:
            raise SystemExit(f"no package ships {library}")
        wanted.add(name)
    todo = list(wanted)
    while todo:
        for dep in dependencies(installed[todo.pop()], installed):
            if dep not in wanted and dep not in SKIP:
                wanted.add(dep)
                todo.append(dep)
    for name in sorted(wanted):
        for path in package_files(name):
            if not path.startswith(DROP_PREFIXES) and path not in ("/", "/."):
                copy(path, root)
    # the venv's interpreter: venv/bin/python3 -> /usr/bin/python3 -> python3.11
    link = root / VENV.lstrip("/") / "bin" / "python3"
    hop = Path(os.readlink(link)) if link.is_symlink() else None
    while hop is not None and hop.is_absolute():
        copy(str(hop), root)
        nxt = Path(os.readlink(hop)) if hop.is_symlink() else None
        hop = (hop.parent / nxt) if nxt is not None else None
    # Debian ships the standard library uncompiled (postinst compiles it): compile
    # it here, as a read-only root cannot cache bytecode at run time.
    compileall.compile_dir(str(root / "usr/lib/python3.11"), quiet=1, workers=0)
    etc = root / "etc"
    (etc / "ssl/certs").mkdir(parents=True, exist_ok=True)
    # Debian's Mozilla bundle only: not the build machine's local additions
    # (/usr/local/share/ca-certificates, e.g. a proxy's CA in the node image).
    # A private CA (the lab's ca.crt) is mounted at run time (REQUESTS_CA_BUNDLE).
    mozilla = sorted(Path("/usr/share/ca-certificates/mozilla").glob("*.crt"))
    bundle = etc / "ssl/certs/ca-certificates.crt"
    if mozilla:
        bundle.write_text("".join(c.read_text().rstrip("\n") + "\n" for c in mozilla))
    else:
        shutil.copy2("/etc/ssl/certs/ca-certificates.crt", bundle)
    # where OpenSSL looks (Debian's openssl package, left out, holds these links)
    ssl_dir = root / "usr/lib/ssl"
    ssl_dir.mkdir(parents=True, exist_ok=True)
    for name, target in (
        ("cert.pem", "/etc/ssl/certs/ca-certificates.crt"),
        ("certs", "/etc/ssl/certs"),
    ):
        if not (ssl_dir / name).is_symlink():
            (ssl_dir / name).symlink_to(target)
    for name in ("nsswitch.conf", "host.conf", "os-release"):
        if Path("/etc", name).exists():
            shutil.copy2(Path("/etc", name), etc / name, follow_symlinks=True)
    etc.joinpath("passwd").write_text(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"predictor:x:{uid}:{uid}:predictor:/var/lib/predictor:/usr/sbin/nologin\n"
    )
    etc.joinpath("group").write_text(f"root:x:0:\npredictor:x:{uid}:\n")
    for path, mode, owned in (
        ("tmp", 0o1777, False),
        ("var/tmp", 0o1777, False),
        ("var/lib/predictor", 0o755, False),
        ("var/lib/predictor/cache", 0o700, True),
    ):
        directory = root / path
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(mode)
        if owned:
            os.chown(directory, uid, uid)
    print("packages:", " ".join(sorted(wanted)))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
