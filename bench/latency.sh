#!/usr/bin/env bash
# End-to-end latency (issue 5, done-when 6): `POST /v1/events` at a steady rate against a
# release `helios up`, and per sampled event (1 in 100) the time from its POST until
# `POST /v1/sql` (`SELECT id FROM events WHERE id IN (...)`) returns its row; p50 and p99,
# once with the embedded Parquet store and once with `--clickhouse` against a private
# clickhouse-server (Debian's 18.16, started and stopped here through
# scripts/services/clickhouse.sh). Bars: p99 < 2 s embedded, < 3 s with ClickHouse.
#
# `helios up` runs with a spec of one HTTP source and one aggregate (tumbling 1 min count
# and sum per subject), so the processor works alongside ingest and sink as it would in
# use; the load generator (bench/latency.rs, a bench target of the root package) runs on
# the same machine. Everything is built by one `cargo bench --workspace` invocation, whose
# feature set every bench script shares, so no benchmark rebuilds another's dependencies.
#
# Usage: bench/latency.sh [RATE] [SECONDS]   (defaults: 20000 events/s for 60 s)
# Environment:
#   LATENCY_STORES  which runs, in order (default "embedded clickhouse")
#   BENCH_PROFILE   release (default) or dev: debug builds, only to try the script out at
#                   a low rate (e.g. `BENCH_PROFILE=dev bench/latency.sh 500 15`)
#   BENCH_DIR       where the runs' data dirs go (default ~/.cache/helios/bench)
# Prints each run's figures (JSON) on stderr and a Markdown table for bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/helios-target}
rate=${1:-20000}
seconds=${2:-60}
stores=${LATENCY_STORES:-embedded clickhouse}
case ${BENCH_PROFILE:-release} in
    release) cargo_cmd=bench; out=release ;;
    dev) cargo_cmd=test; out=debug ;;
    *) echo "BENCH_PROFILE is release or dev, not ${BENCH_PROFILE}" >&2; exit 2 ;;
esac
mkdir -p "${BENCH_DIR:-$HOME/.cache/helios/bench}"
work=$(mktemp -d "${BENCH_DIR:-$HOME/.cache/helios/bench}/latency.XXXXXX")
helios_pid=""
clickhouse_pid=""
cleanup() {
    if [[ -n $helios_pid ]]; then kill "$helios_pid" 2>/dev/null || true; wait "$helios_pid" 2>/dev/null || true; fi
    if [[ -n $clickhouse_pid ]]; then
        HELIOS_CLICKHOUSE_PID=$clickhouse_pid bash scripts/services/clickhouse.sh stop || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

cargo "$cargo_cmd" --workspace --bench latency --no-run >&2
bin=$CARGO_TARGET_DIR/$out/helios
load() { cargo "$cargo_cmd" -q --workspace --bench latency -- "$@"; }

cat >"$work/helios.toml" <<'EOF'
[[source]]
name = "events"
type = "http"

[[aggregate]]
name = "per_minute"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { n = "count(*)", total = "sum(value)" }
EOF

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

run() {
    local store=$1 data=$work/$1 extra=() port
    if [[ $store == clickhouse ]]; then
        local exports
        exports=$(HELIOS_TEST_TMP=$work env -u HELIOS_TEST_CLICKHOUSE_PORT bash scripts/services/clickhouse.sh start)
        clickhouse_pid=$(sed -n 's/^export HELIOS_CLICKHOUSE_PID=//p' <<<"$exports")
        extra=(--clickhouse "$(sed -n 's/^export HELIOS_TEST_CLICKHOUSE=//p' <<<"$exports")")
    elif [[ $store != embedded ]]; then
        echo "unknown store '$store' in LATENCY_STORES (embedded, clickhouse)" >&2; exit 2
    fi
    # Keys made before the first start (so `up` prints none): one to send, one to ask.
    local ingest_key read_key
    ingest_key=$("$bin" keys create --data-dir "$data" --scope ingest --name bench-ingest 2>/dev/null)
    read_key=$("$bin" keys create --data-dir "$data" --scope read --name bench-read 2>/dev/null)
    port=$(free_port)
    "$bin" up --listen "127.0.0.1:$port" --data-dir "$data" --spec "$work/helios.toml" \
        --log warn "${extra[@]}" 2>"$work/$store.log" &
    helios_pid=$!
    local i
    for i in $(seq 1 600); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        if ! kill -0 "$helios_pid" 2>/dev/null; then
            echo "helios up ($store) exited before answering; its log:" >&2; cat "$work/$store.log" >&2; exit 1
        fi
        sleep 0.1
    done
    echo "$store: $rate events/s for $seconds s" >&2
    load --url "http://127.0.0.1:$port" --ingest-key "$ingest_key" --read-key "$read_key" \
        --rate "$rate" --seconds "$seconds" --label "$store" | tee -a "$work/results.jsonl" >&2
    kill -TERM "$helios_pid"
    wait "$helios_pid" || { echo "helios up ($store) did not stop cleanly; its log:" >&2; tail -n 40 "$work/$store.log" >&2; }
    helios_pid=""
    if [[ -n $clickhouse_pid ]]; then
        HELIOS_CLICKHOUSE_PID=$clickhouse_pid bash scripts/services/clickhouse.sh stop
        clickhouse_pid=""
    fi
}

for store in $stores; do
    run "$store"
done

python3 - "$work/results.jsonl" <<'PY'
import json, sys
bars = {"embedded": 2000, "clickhouse": 3000}
print("| store | events/s (target → achieved) | samples | POST → queryable p50 | p99 | max | POST ack p99 | SQL poll p50 | bar (p99) |")
print("|---|---|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    r = json.loads(line)
    bar = bars.get(r["label"])
    complete = r["samples_missing"] == 0 and r["failed_requests"] == 0
    if bar is None:
        verdict = "—"
    elif not complete:
        verdict = f"< {bar/1000:g} s: **not met** ({r['samples_missing']} samples never found, {r['failed_requests']} failed POSTs)"
    else:
        verdict = f"< {bar/1000:g} s: {'met' if r['p99_ms'] < bar else '**not met**'}"
    print(f"| {r['label']} | {r['rate_target']:,} → {r['rate_achieved']:,.0f} | {r['samples_measured']:,} "
          f"| {r['p50_ms']:,.0f} ms | {r['p99_ms']:,.0f} ms | {r['max_ms']:,.0f} ms | {r['ack_p99_ms']:,.1f} ms "
          f"| {r['query_p50_ms']:,.0f} ms | {verdict} |")
PY
