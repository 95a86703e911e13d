#!/usr/bin/env bash
# Download the wheels the roles install on the nodes, once, into a folder
# named by the hash of requirements-nodes.txt. Nodes mount it read-only and
# pip installs from it with --no-index, so converges do not depend on PyPI.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

hash="$(sha256sum "$ROOT/requirements-nodes.txt" | cut -c1-12)"
dir="$WORK/wheelhouse/$hash"
if [[ ! -f "$dir/.complete" ]]; then
  log "downloading the node wheelhouse (about 200 MB, once)"
  rm -rf "$dir"; mkdir -p "$dir"
  quiet_pip download -q --only-binary=:all: --python-version 3.11 \
    -d "$dir" -r "$ROOT/requirements-nodes.txt" pip setuptools wheel
  touch "$dir/.complete"
fi
# keep only the current wheelhouse
find "$WORK/wheelhouse" -mindepth 1 -maxdepth 1 ! -name "$hash" -exec rm -rf {} +
ln -sfn "$hash" "$WORK/wheelhouse/current"
