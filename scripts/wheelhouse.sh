#!/usr/bin/env bash
# Download the wheels the roles install on the nodes, once per machine, into
# a folder of the machine cache named by the hash of requirements-nodes.txt;
# .work/wheelhouse/current points at it. Nodes mount it read-only and pip
# installs from it with --no-index, so converges do not depend on PyPI.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

hash="$(sha256sum "$ROOT/requirements-nodes.txt" | cut -c1-12)"
cache="$MLOPS_CACHE/wheelhouse"
dir="$cache/$hash"
if [[ ! -f "$dir/.complete" ]]; then
  log "downloading the node wheelhouse (about 200 MB, once per machine)"
  rm -rf "$dir"; mkdir -p "$dir"
  quiet_pip download -q --only-binary=:all: --python-version 3.11 \
    -d "$dir" -r "$ROOT/requirements-nodes.txt" pip setuptools wheel
  touch "$dir/.complete"
fi
# The older MLflow of the upgrade test, beside the wheels it shares with the
# current one (hard links: the same files).
from="$dir/upgrade-from"
from_hash="$(sha256sum "$ROOT/requirements-upgrade-from.txt" | cut -c1-12)"
if [[ ! -f "$from/.complete-$from_hash" ]]; then
  log "downloading the older MLflow release of the upgrade test"
  rm -rf "$from"; mkdir -p "$from"
  quiet_pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
    -d "$from" -r "$ROOT/requirements-upgrade-from.txt"
  for wheel in "$dir"/*.whl; do
    case "$(basename "$wheel")" in mlflow-*|mlflow_skinny-*|mlflow_tracing-*) continue ;; esac
    ln -f "$wheel" "$from/"
  done
  touch "$from/.complete-$from_hash"
fi
# keep only the current wheelhouse (a day-old other one may still serve
# another checkout's running nodes)
find "$cache" -mindepth 1 -maxdepth 1 ! -name "$hash" -mtime +1 -exec rm -rf {} +
mkdir -p "$WORK/wheelhouse"
ln -sfn "$dir" "$WORK/wheelhouse/current"
