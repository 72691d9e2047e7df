#!/usr/bin/env bash
# Brings up a 3-node Skein cluster on this machine (three agents on
# 127.0.0.1 with their own ports; node1 and node2 join node0 with its
# cluster key) and runs the examples through node1: the seed article's
# Kubernetes Deployment (examples/deployment.yaml, 3 replicas of the offline
# demo image, spread over the nodes) and a native job (examples/web.yaml),
# then curls every replica. The cluster keeps running;
# `scripts/demo.sh --down` stops it and removes the demo's containers.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=${SKEIN_DEMO_DIR:-/tmp/skein-demo}
SKEIN="$ROOT/target/debug/skein"
NODES=3
api() { echo "127.0.0.1:$((7420 + 10 * $1))"; }
# Each node gets its own loopback address for DNS and the routing mesh.
lo() { echo "127.0.0.$(($1 + 1))"; }
mesh() { echo "127.0.0.1:$((7421 + 10 * $1))"; }

down() {
  for i in $(seq 0 $((NODES - 1))); do
    pidf="$RUN/node$i/agent.pid"
    if [[ -f "$pidf" ]] && kill -0 "$(cat "$pidf")" 2>/dev/null; then kill "$(cat "$pidf")" || true; fi
    if [[ -f "$RUN/node$i/data/node-id" ]]; then
      ids=$(docker ps -aq --filter "label=skein.node=$(cat "$RUN/node$i/data/node-id")")
      [[ -z "$ids" ]] || docker rm -f $ids >/dev/null
    fi
  done
  rm -rf "$RUN"
  echo "demo cluster stopped"
}
if [[ "${1:-}" == "--down" ]]; then down; exit 0; fi

command -v docker >/dev/null && docker info >/dev/null 2>&1 \
  || { echo "error: Docker is not running (start the docker daemon first)" >&2; exit 1; }
echo "==> building skein"
cargo build --quiet -p skein-cli
echo "==> building the offline demo image skein-demo/web:latest"
scripts/build-demo-image.sh

start() {
  local i=$1; shift
  local dir="$RUN/node$i"
  if [[ -f "$dir/agent.pid" ]] && kill -0 "$(cat "$dir/agent.pid")" 2>/dev/null; then
    echo "==> node$i already running"; return
  fi
  mkdir -p "$dir"
  echo "==> node$i: skein agent --api $(api "$i") --mesh $(mesh "$i") $*"
  nohup "$SKEIN" agent --data-dir "$dir/data" --name "node$i" --api "$(api "$i")" --mesh "$(mesh "$i")" \
    --port-range "$((20000 + 1000 * i))-$((20999 + 1000 * i))" --label "zone=zone-$i" \
    --dns "$(lo "$i"):5354" --routing-ip "$(lo "$i")" "$@" \
    >"$dir/agent.log" 2>&1 &
  echo $! >"$dir/agent.pid"
  for _ in $(seq 1 100); do
    "$SKEIN" --api "$(api "$i")" node ls >/dev/null 2>&1 && return
    kill -0 "$(cat "$dir/agent.pid")" 2>/dev/null || { cat "$dir/agent.log"; exit 1; }
    sleep 0.2
  done
  echo "node$i did not start; see $dir/agent.log" >&2; exit 1
}
start 0
for i in $(seq 1 $((NODES - 1))); do
  start "$i" --join "$(mesh 0)" --cluster-key "$RUN/node0/data/cluster.key"
done
export SKEIN_ADDR; SKEIN_ADDR=$(api 1)
echo "==> waiting for $NODES ready nodes and 3 raft voters"
for _ in $(seq 1 150); do
  n=$("$SKEIN" -o json node ls | python3 -c 'import json,sys; a=json.load(sys.stdin); print(sum(x["health"]=="ready" for x in a), sum(x["role"] in ("leader","voter") for x in a))')
  [[ "$n" == "$NODES 3" ]] && break
  sleep 0.2
done
echo "==> skein --api $(api 1) node ls"; "$SKEIN" node ls

echo "==> skein apply -f examples/deployment.yaml --image my-nginx=skein-demo/web:latest   (through node1)"
"$SKEIN" apply -f examples/deployment.yaml --image my-nginx=skein-demo/web:latest
echo "==> skein apply -f examples/web.yaml"
"$SKEIN" apply -f examples/web.yaml
echo "==> skein job ls"; "$SKEIN" job ls
echo "==> skein alloc ls"; "$SKEIN" alloc ls
echo "==> curl every replica"
"$SKEIN" -o json alloc ls | python3 -c '
import json, sys
for a in json.load(sys.stdin):
    for p in a["ports"]:
        print(a["id"], a["node_name"], p["host_port"])' | while read -r id node port; do
  printf '%-22s %-6s 127.0.0.1:%-6s %s\n' "$id" "$node" "$port" "$(curl -fsS "http://127.0.0.1:$port/")"
done
for _ in $(seq 1 50); do
  n=$("$SKEIN" -o json service status hello 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["endpoints"]))' 2>/dev/null || echo 0)
  [[ "$n" == 2 ]] && break
  sleep 0.2
done
echo "==> skein service ls"; "$SKEIN" service ls
echo "==> the service through the routing mesh of every node (port 30088)"
for i in $(seq 0 $((NODES - 1))); do
  for _ in $(seq 1 50); do curl -fsS "http://$(lo "$i"):30088/" >/dev/null 2>&1 && break; sleep 0.2; done
  printf 'node%s %s:30088  %s\n' "$i" "$(lo "$i")" "$(curl -fsS "http://$(lo "$i"):30088/")"
done
if command -v dig >/dev/null; then
  echo "==> dig @$(lo 0) -p 5354 hello.service.skein SRV +short"
  dig @"$(lo 0)" -p 5354 hello.service.skein SRV +short
fi
echo "==> skein events --tail 8   (placements, starts, node and leader changes)"; "$SKEIN" events --tail 8
echo "==> skein top --once"; "$SKEIN" top --once
echo
echo "The cluster keeps running (SKEIN_ADDR=$(api 0), $(api 1) or $(api 2)). Try:"
echo "  $SKEIN --api $(api 2) scale my-nginx 6      # from any node"
echo "  $SKEIN events -f                            # in another terminal: watch it happen"
echo "  kill \$(cat $RUN/node2/agent.pid)           # its replicas move within seconds"
echo "  open http://$(api 0)/                       # dashboard: nodes, jobs, usage, events, logs"
echo "Stop it with: scripts/demo.sh --down"
