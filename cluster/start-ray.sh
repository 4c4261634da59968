#!/usr/bin/env bash
# Start Ray on a node, as every cluster config does: `start-ray.sh head` or
# `start-ray.sh worker HEAD_IP`. Token authentication on; the dashboard (and so the job server)
# listens on the head's loopback only, reached from a laptop through `ray dashboard CONFIG`.
# The head takes no trials (CPU 0): it runs the driver, the autoscaler and MLflow.
set -euo pipefail
source "${SEARCHER_ENV:-$HOME/searcher-env}/bin/activate"
export RAY_AUTH_MODE=token
test -s "$HOME/.ray/auth_token" || { echo "start-ray: no ~/.ray/auth_token on this node: run 'ray get-auth-token --generate' on your machine, then 'ray up' again" >&2; exit 1; }
# The token is control of the cluster: readable by this user only, whatever mode it arrived with.
chmod 700 "$HOME/.ray" && chmod 600 "$HOME/.ray/auth_token"
ip=$(hostname -I | awk '{print $1}')
ray stop >/dev/null
case "${1:-}" in
  head)
    ray start --head --node-ip-address="$ip" --port=6379 --num-cpus=0 \
      --dashboard-host=127.0.0.1 --autoscaling-config="$HOME/ray_bootstrap_config.yaml" ;;
  worker)
    head=${2:?start-ray.sh worker HEAD_IP}
    ray start --address="$head:6379" --node-ip-address="$ip"
    # A worker's raylet outlives its head (Ray's local provider tears down the head alone, and
    # the raylet keeps retrying the GCS): once the head's GCS port has refused three probes in a row
    # (15 s), stop Ray here too, so `ray down` leaves no process of the cluster on any machine.
    pkill -f "searcher-worker-watch" || true
    nohup setsid bash -c '
      gone=0
      while sleep 5; do
        if timeout 3 bash -c "</dev/tcp/$0/6379" 2>/dev/null; then gone=0
        else gone=$((gone + 5)); [ $gone -ge 15 ] && break
        fi
      done
      ray stop >/dev/null 2>&1' "$head" searcher-worker-watch > /dev/null 2>&1 < /dev/null & ;;
  *) echo "usage: start-ray.sh head | worker HEAD_IP" >&2; exit 2 ;;
esac
