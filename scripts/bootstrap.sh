#!/usr/bin/env bash
# Prepare a Debian/Ubuntu controller: system packages, the project venv, the
# node image and the node wheelhouse. Each step is skipped when its result is
# already there and up to date, so a second run changes nothing.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# the dnsname CNI plugin lets nodes on a project network resolve each other by name
SYSTEM_PACKAGES=(podman runc debootstrap golang-github-containernetworking-plugin-dnsname python3-venv git curl)

as_root() {
  if [[ $EUID -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else die "need root (or passwordless sudo) to run: $*"
  fi
}

install_system_packages() {
  local missing=()
  for pkg in "${SYSTEM_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
  log "installing system packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

create_venv() {
  local stamp="$VENV/.requirements.sha256" want
  want="$(cat "$ROOT"/requirements*.txt "$ROOT/model/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return 0; fi
  log "creating the project venv in .venv"
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  quiet_pip install -q --upgrade pip
  (cd "$ROOT" && quiet_pip install -q -r requirements-dev.txt)
  echo "$want" > "$stamp"
}

# promtool for the rule tests, taken out of Debian's prometheus package
# without installing it: installing would start a Prometheus server on this
# machine, in the way of the nodes' published port 9090.
extract_promtool() {
  local tools="$WORK/tools" deb
  [[ -x "$tools/bin/promtool" ]] && return 0
  log "extracting promtool from Debian's prometheus package"
  deb="$(mktemp -d)"
  (cd "$deb" && apt-get download prometheus >/dev/null 2>&1) \
    || { as_root apt-get update -qq && (cd "$deb" && apt-get download prometheus >/dev/null); } \
    || die "could not download Debian's prometheus package for promtool"
  dpkg-deb -x "$deb"/prometheus_*.deb "$deb/root"
  mkdir -p "$tools/bin"
  cp "$deb/root/usr/bin/promtool" "$tools/bin/promtool"
  rm -rf "$deb"
}

# --test: also what the test suite needs beyond the main job (wrk: the
# benchmark's smoke test, tests/integration/test_bench_smoke.py; testssl.sh:
# the gateway's TLS scan, tests/integration/test_tls_scan.py).
# --bench: the venv and wrk only (the benchmark runs on this machine, no nodes).
case "${1:-}" in
  --test)
    shift
    install_system_packages shellcheck wrk testssl.sh "$@"
    extract_promtool
    ;;
  --bench)
    shift
    SYSTEM_PACKAGES=(python3-venv wrk)
    install_system_packages
    create_venv
    exit 0
    ;;
  *) install_system_packages "$@" ;;
esac
create_venv
"$ROOT/scripts/build-node-image.sh"
"$ROOT/scripts/wheelhouse.sh"
