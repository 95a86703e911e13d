#!/usr/bin/env bash
# Build the predictor's OCI image (model/Containerfile) with podman, offline:
# the packages come from the node wheelhouse (scripts/wheelhouse.sh) and the
# mlops_model wheel (roles/model_wheel), the base image is the project's own
# node image (.work/node-image), so the build runs with --network=none.
#
# The tag is a hash of the inputs (Containerfile, rootfs helper, package list,
# every wheel, the base image's ID, the version): when that tag exists the
# build is skipped. Whatever is missing (wheelhouse, model wheel, node image)
# is built first. Prints the image reference on stdout.
#
#   scripts/build_image.sh                  build (or reuse) localhost/mlops-predictor:<hash>
#   scripts/build_image.sh --context DIR    only prepare the build context in DIR (for docker
#                                           build / CI: docker build -f model/Containerfile DIR)
#
# Environment: MLOPS_IMAGE_BASE (another base image; the build then gets the
# network, for apt), MLOPS_IMAGE_NAME (default localhost/mlops-predictor),
# MLOPS_IMAGE_REVISION (default: git HEAD), MLOPS_IMAGE_LAYERS (true: keep the
# stages' layers, for quick rebuilds while the Containerfile changes). The revision label is not part
# of the hash: a cached image keeps the revision it was built at.
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

CONTAINERFILE="$ROOT/model/Containerfile"
IMAGE_NAME="${MLOPS_IMAGE_NAME:-localhost/mlops-predictor}"

# The predictor role's package list, rendered from its defaults: the image
# installs exactly what the role installs.
predictor_requirements() {
  "$VENV/bin/python" - "$ROOT/collections/ansible_collections/mlops/stack/roles/predictor/defaults/main.yml" <<'PY'
import sys

import jinja2
import yaml

defaults = yaml.safe_load(open(sys.argv[1]))
for package in defaults["predictor_packages"]:
    print(jinja2.Template(package).render(defaults))
PY
}

prepare_context() {
  local context="$1" wheel
  "$ROOT/scripts/wheelhouse.sh"
  wheel="$("$VENV/bin/python" "$ROOT/roles/model_wheel/files/build_wheel.py" "$ROOT/model" "$WORK/dist" \
    | "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["path"])')"
  rm -rf "$context"
  mkdir -p "$context/wheels"
  # hard links where the wheelhouse is on the same file system, copies elsewhere
  cp -l "$WORK"/wheelhouse/current/*.whl "$context/wheels/" 2>/dev/null \
    || cp "$WORK"/wheelhouse/current/*.whl "$context/wheels/"
  cp "$wheel" "$context/wheels/"
  predictor_requirements > "$context/requirements.txt"
  cp "$ROOT/model/container/rootfs.py" "$context/rootfs.py"
}

collection_version() {
  "$VENV/bin/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["version"])' \
    "$ROOT/collections/ansible_collections/mlops/stack/galaxy.yml"
}

if [[ "${1:-}" == "--context" ]]; then
  [[ -n "${2:-}" ]] || die "usage: $0 --context DIR"
  prepare_context "$2"
  echo "$2"
  exit 0
fi

context="$WORK/image/context"
prepare_context "$context"

if [[ -n "${MLOPS_IMAGE_BASE:-}" ]]; then
  base="$MLOPS_IMAGE_BASE"
  network=()
else
  if ! { [[ -s "$MLOPS_NODE_IMAGE_FILE" ]] && podman image exists "$(cat "$MLOPS_NODE_IMAGE_FILE")"; }; then
    "$ROOT/scripts/build-node-image.sh" >&2
  fi
  base="$(cat "$MLOPS_NODE_IMAGE_FILE")"
  network=(--network=none)
fi
base_id="$(podman image inspect --format '{{.Id}}' "$base" 2>/dev/null || echo "$base")"
version="$(collection_version)"
revision="${MLOPS_IMAGE_REVISION:-$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)}"

hash="$(
  {
    echo "base=$base_id version=$version"
    sha256sum "$CONTAINERFILE" "$context/rootfs.py" "$context/requirements.txt" | cut -d' ' -f1
    (cd "$context/wheels" && sha256sum -- *.whl)
  } | sha256sum | cut -c1-12
)"
tag="$IMAGE_NAME:$hash"

if podman image exists "$tag"; then
  log "predictor image $tag is up to date"
else
  log "building the predictor image $tag from $base"
  started=$SECONDS
  # docker format: the OCI image config has no HEALTHCHECK
  podman build --format docker --pull=never "${network[@]}" --layers="${MLOPS_IMAGE_LAYERS:-false}" \
    --build-arg "BASE_IMAGE=$base" --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
    -f "$CONTAINERFILE" -t "$tag" "$context" >&2
  log "built $tag in $((SECONDS - started)) s"
  # older builds of this image go; the current one stays
  podman images --format '{{.Repository}}:{{.Tag}}' --filter "reference=$IMAGE_NAME" \
    | { grep -vxF "$tag" || true; } | xargs -r podman rmi >/dev/null 2>&1 || true
fi
podman tag "$tag" "$IMAGE_NAME:latest"
echo "$tag"
