#!/usr/bin/env bash
# Closing summary of `./stack up`: what runs where, read from the services.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

champion="$(curl -fsS "http://127.0.0.1:5000/api/2.0/mlflow/registered-models/alias?name=iris&alias=champion" 2>/dev/null \
  | python3 -c 'import json,sys; v=json.load(sys.stdin)["model_version"]; print("version", v["version"])' 2>/dev/null \
  || echo "not found")"
cat <<SUMMARY

mlops-stack is up on the local podman nodes
  MLflow tracking server   http://127.0.0.1:5000
  model iris@champion      $champion
SUMMARY
