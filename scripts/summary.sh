#!/usr/bin/env bash
# Closing summary of `./stack up`: what runs where, read from the services
# themselves rather than from what the playbooks meant to do.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null; }

# MLflow runs with accounts, over HTTPS only: read the registry as the
# predictors do, its certificate verified against the lab CA.
reader="reader:$(cat "$ROOT/credentials/mlflow_reader_password" 2>/dev/null)"
champion="$(curl -fsS --cacert "$ROOT/credentials/ca.crt" -u "$reader" \
  "https://127.0.0.1:5000/api/2.0/mlflow/registered-models/alias?name=iris&alias=champion" \
  | json_field '"version " + d["model_version"]["version"]')" || champion="not found"
# Predictors in rotation, as the gateway's own metrics say, and the scrape
# targets, both as Prometheus sees them. Right after a converge its last scrape
# may predate the health checks that put the predictors in rotation: wait (up
# to 40 s) until every predictor is in and every target up, then say what is.
read_rotation() {
  curl -fsS http://127.0.0.1:9090/api/v1/query \
    --data-urlencode 'query=haproxy_backend_active_servers{job="gateway",proxy="predictors"}' \
    | json_field 'int(float(d["data"]["result"][0]["value"][1]))'
}
read_targets() {
  curl -fsS http://127.0.0.1:9090/api/v1/targets \
    | json_field 'str(sum(t["health"] == "up" for t in d["data"]["activeTargets"])) + "/"
                  + str(len(d["data"]["activeTargets"]))'
}
predictors="$(cd "$ROOT"; ansible-inventory --graph predictors 2>/dev/null | grep -c -- '|--')" || predictors=0
for _ in $(seq 20); do
  in_rotation="$(read_rotation)" || in_rotation=""
  up="$(read_targets)" || up=""
  [[ "$in_rotation" == "$predictors" && -n "$up" && "${up%/*}" == "${up#*/}" ]] && break
  sleep 2
done
# Then the gateway, once its predictors are in rotation (right after a
# converge its health checks may not have passed yet): HTTPS verified against
# the lab CA, with the lab's client key, exactly as the printed curl does (run
# from the project folder).
prediction="$(cd "$ROOT" && curl -fsS https://127.0.0.1:8443/predict --cacert credentials/ca.crt \
  -H "X-API-Key: $(cat credentials/gateway-client-key)" -H 'Content-Type: application/json' \
  -d '{"instances": [[5.1, 3.5, 1.4, 0.2]]}')" || prediction="no answer"
rotation="${in_rotation:+$in_rotation of $predictors predictors in rotation}"
rotation="${rotation:-rotation not scraped yet}"
if [[ "$prediction" == "no answer" ]]; then
  gateway="NOT ANSWERING"
else
  gateway="$rotation"
fi
targets="${up:+$up targets up}"
targets="${targets:-not answering}"
if curl -fsS --cacert "$ROOT/credentials/ca.crt" https://127.0.0.1:3000/api/health >/dev/null 2>&1; then
  grafana="https://127.0.0.1:3000 (CA credentials/ca.crt; admin password in credentials/grafana_admin_password)"
else
  grafana="NOT INSTALLED: its APT repository was unreachable (see the warning above);
                           datasource and dashboards are provisioned on monitor-1 for when it is"
fi

cat <<SUMMARY

mlops-stack is up on the local podman nodes
  MLflow tracking server   https://127.0.0.1:5000  model iris@champion: $champion
                           accounts admin, writer, reader: credentials/mlflow_<account>_password,
                           CA: credentials/ca.crt (MLflow clients: MLFLOW_TRACKING_SERVER_CERT_PATH)
  gateway (HAProxy)        https://127.0.0.1:8443  $gateway
                           client key: credentials/gateway-client-key, CA: credentials/ca.crt
  predictors               http://127.0.0.1:5001 and http://127.0.0.1:5002
  Prometheus               http://127.0.0.1:9090   $targets
  Grafana                  $grafana

  curl https://127.0.0.1:8443/predict --cacert credentials/ca.crt \\
       -H "X-API-Key: \$(cat credentials/gateway-client-key)" \\
       -H 'Content-Type: application/json' -d '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
  $prediction
SUMMARY
