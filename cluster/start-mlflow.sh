#!/usr/bin/env bash
# The head's MLflow tracking server, as every cluster config starts it:
#   start-mlflow.sh BACKEND_STORE_URI ARTIFACTS_DESTINATION
# - MLflow's basic-auth app: every request needs a user; the admin's password is read from
#   ~/.searcher/mlflow-admin-password (mode 600, put there from your secret store) and never
#   appears in a URL, a config file or a log.
# - Bound to the head's loopback: the laptop reaches it through `ray dashboard CONFIG --port 5000
#   --remote-port 5000`, an SSH forward; the driver, which does all of a search's logging, runs
#   on the head. Workers never talk to it.
# - The driver on the head authenticates from ~/.mlflow/credentials (mode 600), which MLflow's
#   client reads by itself.
# - No GenAI job runner (8 processes a search never uses).
set -euo pipefail
backend=${1:?usage: start-mlflow.sh BACKEND_STORE_URI ARTIFACTS_DESTINATION}
artifacts=${2:?usage: start-mlflow.sh BACKEND_STORE_URI ARTIFACTS_DESTINATION}
source "${SEARCHER_ENV:-$HOME/searcher-env}/bin/activate"
state=$HOME/.searcher
port=5000
mkdir -p "$state" "$HOME/.mlflow" && chmod 700 "$state" "$HOME/.mlflow"
password_file=$state/mlflow-admin-password
test -s "$password_file" || { echo "start-mlflow: put the MLflow admin password in $password_file on the head (chmod 600)" >&2; exit 1; }
umask 077
# CSRF key of the auth app: any random value, the same for every worker of this server.
test -s "$state/mlflow-secret-key" || python -c 'import secrets; print(secrets.token_hex(32))' > "$state/mlflow-secret-key"
# Users live beside the runs (MLflow's auth tables keep their own schema version). A checked
# password is remembered for 60 s by each server worker: checking it costs a scrypt hash, 0.1 s
# of CPU on every request otherwise, and a search's driver sends several per epoch. The price: a
# password changed or a user deleted stops working on the other workers within 60 s, not at once.
# MLflow reads both files with ConfigParser, where % starts an interpolation: a % in the
# password or the URL is written %%, or MLflow fails on it and prints part of the value.
percents() { sed 's/%/%%/g'; }
printf '[mlflow]\ndefault_permission = READ\ndatabase_uri = %s\nadmin_username = admin\nauth_cache_ttl_seconds = 60\n' "$(printf '%s' "$backend" | percents)" > "$state/mlflow-auth.ini"
printf '[mlflow]\nmlflow_tracking_username = admin\nmlflow_tracking_password = %s\n' "$(percents < "$password_file")" > "$HOME/.mlflow/credentials"

line="export MLFLOW_TRACKING_URI=http://127.0.0.1:$port"
grep -qxF "$line" "$HOME/.bashrc" || echo "$line" >> "$HOME/.bashrc"
if pgrep -f "mlflow server .*--port $port" >/dev/null; then
  echo "start-mlflow: already running"; exit 0
fi
case "$artifacts" in /*) mkdir -p "$artifacts" && chmod 700 "$artifacts" ;; esac  # the head's alone
export MLFLOW_AUTH_CONFIG_PATH=$state/mlflow-auth.ini
export MLFLOW_AUTH_ADMIN_PASSWORD=$(cat "$password_file")
export MLFLOW_FLASK_SERVER_SECRET_KEY=$(cat "$state/mlflow-secret-key")
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
# The server lives as long as the head's Ray: once Ray's GCS has run here and then been gone
# for 30 s (`ray down`, `ray stop`; a restart by `ray up` takes less), the server's process
# group is stopped, so `ray down` leaves nothing of the cluster running.
nohup setsid bash -c '
  setsid mlflow server --app-name basic-auth --backend-store-uri "$0" --artifacts-destination "$1" \
    --serve-artifacts --host 127.0.0.1 --port "$2" &
  server=$! seen= gone=0
  while kill -0 $server 2>/dev/null; do
    if pgrep -x gcs_server >/dev/null; then seen=1 gone=0
    elif [ -n "$seen" ]; then gone=$((gone + 2)); [ $gone -ge 30 ] && break
    fi
    sleep 2
  done
  kill -TERM -- -$server 2>/dev/null' "$backend" "$artifacts" "$port" \
  > "$state/mlflow-server.log" 2>&1 < /dev/null &
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && { echo "start-mlflow: up on 127.0.0.1:$port"; exit 0; }
  sleep 1
done
echo "start-mlflow: the server did not answer in 120 s; the end of $state/mlflow-server.log:" >&2
tail -n 20 "$state/mlflow-server.log" >&2
exit 1
