#!/usr/bin/env bash
# GitHub webhook benchmark: signed `push` deliveries (GitHub's documented example shape,
# compact JSON of about 7 KB) into `POST /v1/webhooks/github/github`, `helios up` with
# fsync per batch, load client (connectors/benches/webhook_load.rs, raw keep-alive
# HTTP/1.1) on the same machine. Reports deliveries/s acknowledged (202 = durable in the
# log), the client's CPU share, and what the log holds afterwards.
#
# Usage: bench/webhooks.sh [SECONDS] [CONNECTIONS]   (default 15 s, 256 connections)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/helios-target}
seconds=${1:-15}
connections=${2:-256}
mkdir -p "${BENCH_DIR:-$HOME/.cache/helios/bench}"
work=$(mktemp -d "${BENCH_DIR:-$HOME/.cache/helios/bench}/webhooks.XXXXXX")
trap 'kill "${pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --bin helios >&2
cargo bench -p helios-connectors --bench webhook_load --no-run >&2
bin=$CARGO_TARGET_DIR/release/helios
client=$(ls -t "$CARGO_TARGET_DIR"/release/deps/webhook_load-* | grep -v '\.d$' | head -1)

# The documented push example, compacted as GitHub sends it.
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":")), end="")' \
    connectors/tests/fixtures/github/push.json > "$work/push.json"

secret=bench-secret-$$
# One GitHub source that admits every connection of the client (the default admits 256
# deliveries in flight and answers 503 beyond).
cat > "$work/helios.toml" <<TOML
[[source]]
type = "github"
name = "github"
secret_env = "HELIOS_GITHUB_SECRET"
max_in_flight = $(( connections + 64 ))
TOML
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HELIOS_GITHUB_SECRET=$secret "$bin" up --listen "127.0.0.1:$port" --data-dir "$work/data" --spec "$work/helios.toml" --fsync batch --log warn &
pid=$!
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
echo "payload: $(stat -c %s "$work/push.json") bytes; ${connections} connections for ${seconds}s" >&2
server_cpu_before=$(awk '{print $14+$15}' "/proc/$pid/stat")
"$client" --addr "127.0.0.1:$port" --source github --secret "$secret" --payload "$work/push.json" \
    --connections "$connections" --seconds "$seconds"
server_cpu_after=$(awk '{print $14+$15}' "/proc/$pid/stat")
echo "server_cpu_s=$(( (server_cpu_after - server_cpu_before) / 100 ))"
# What actually landed in the log, read back from the data dir.
"$bin" topics --data-dir "$work/data"
