#!/usr/bin/env bash
# HTTP ingest benchmark: `POST /v1/events` into the embedded log with fsync per batch,
# load client (`helios send`, NDJSON batches of 1000, 8 in flight) on the same machine.
#
# Usage: bench/ingest.sh [EVENTS]   (default 500000 CloudEvents of ~250 bytes)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/helios-target}
events=${1:-500000}
work=$(mktemp -d "${BENCH_DIR:-$HOME/.cache/helios/bench}/ingest.XXXXXX")
trap 'kill "${pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --bin helios >&2
bin=$CARGO_TARGET_DIR/release/helios

python3 - "$events" > "$work/events.ndjson" <<'PY'
import json, sys
kinds = ["git.push", "ci.run", "deploy.finished", "probe.http"]
for i in range(int(sys.argv[1])):
    print(json.dumps({"specversion": "1.0", "id": f"bench-{i}", "source": "bench/ingest",
                      "type": kinds[i % 4], "subject": f"project-{i % 50}",
                      "time": "2026-11-23T10:00:00Z", "value": i % 97,
                      "conclusion": "success" if i % 5 else "failure", "branch": "main"},
                     separators=(",", ":")))
PY
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# An ingest key for the load client, created before the first start (so `up` makes none).
key=$("$bin" keys create --data-dir "$work/data" --scope ingest --name bench 2>/dev/null)
"$bin" up --listen "127.0.0.1:$port" --data-dir "$work/data" --log warn &
pid=$!
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
bytes=$(stat -c %s "$work/events.ndjson")
echo "events: $events, $(( bytes / events )) bytes each on average" >&2
"$bin" send "$work/events.ndjson" --url "http://127.0.0.1:$port" --batch 1000 --concurrency 8 --quiet --api-key "$key"
# What actually landed in the log, read back from the data dir.
"$bin" topics --data-dir "$work/data"
