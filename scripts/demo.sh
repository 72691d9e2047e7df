#!/usr/bin/env bash
# Brings up a Skein node on this machine and runs the examples: the seed
# article's Kubernetes Deployment (examples/deployment.yaml, 3 replicas of
# the offline demo image) and a native job (examples/web.yaml), then curls
# every replica. The node keeps running; `scripts/demo.sh --down` stops it
# and removes the demo's containers.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=${SKEIN_DEMO_DIR:-/tmp/skein-demo}
API=${SKEIN_DEMO_API:-127.0.0.1:7420}
SKEIN="$ROOT/target/debug/skein"
export SKEIN_ADDR=$API

down() {
  if [[ -f "$RUN/agent.pid" ]] && kill -0 "$(cat "$RUN/agent.pid")" 2>/dev/null; then
    "$SKEIN" job stop my-nginx >/dev/null 2>&1 || true
    "$SKEIN" job stop hello >/dev/null 2>&1 || true
    kill "$(cat "$RUN/agent.pid")" || true
  fi
  ids=$(docker ps -aq --filter "label=skein.job" --filter "label=skein.node=$(cat "$RUN/data/node-id" 2>/dev/null || echo none)")
  [[ -z "$ids" ]] || docker rm -f $ids >/dev/null
  rm -rf "$RUN"
  echo "demo stopped"
}
if [[ "${1:-}" == "--down" ]]; then down; exit 0; fi

command -v docker >/dev/null && docker info >/dev/null 2>&1 \
  || { echo "error: Docker is not running (start the docker daemon first)" >&2; exit 1; }
echo "==> building skein"
cargo build --quiet -p skein-cli
echo "==> building the offline demo image skein-demo/web:latest"
scripts/build-demo-image.sh

if [[ -f "$RUN/agent.pid" ]] && kill -0 "$(cat "$RUN/agent.pid")" 2>/dev/null; then
  echo "==> a demo node is already running (pid $(cat "$RUN/agent.pid"))"
else
  mkdir -p "$RUN"
  echo "==> starting a node: skein agent --data-dir $RUN/data --api $API (log: $RUN/agent.log)"
  nohup "$SKEIN" agent --data-dir "$RUN/data" --api "$API" >"$RUN/agent.log" 2>&1 &
  echo $! >"$RUN/agent.pid"
  for _ in $(seq 1 100); do
    "$SKEIN" node ls >/dev/null 2>&1 && break
    kill -0 "$(cat "$RUN/agent.pid")" 2>/dev/null || { cat "$RUN/agent.log"; exit 1; }
    sleep 0.2
  done
fi

echo "==> skein apply -f examples/deployment.yaml --image my-nginx=skein-demo/web:latest"
"$SKEIN" apply -f examples/deployment.yaml --image my-nginx=skein-demo/web:latest
echo "==> skein apply -f examples/web.yaml"
"$SKEIN" apply -f examples/web.yaml
echo "==> skein node ls"; "$SKEIN" node ls
echo "==> skein job ls"; "$SKEIN" job ls
echo "==> skein alloc ls"; "$SKEIN" alloc ls
echo "==> curl every replica"
"$SKEIN" -o json alloc ls | python3 -c '
import json, sys
for a in json.load(sys.stdin):
    for p in a["ports"]:
        print(a["id"], p["host_port"])' | while read -r id port; do
  printf '%-24s 127.0.0.1:%-6s %s\n' "$id" "$port" "$(curl -fsS "http://127.0.0.1:$port/")"
done
echo
echo "The node keeps running. Try: $SKEIN scale my-nginx 5 | $SKEIN logs <alloc> | $SKEIN restart my-nginx"
echo "Stop it with: scripts/demo.sh --down"
