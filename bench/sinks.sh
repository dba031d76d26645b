#!/usr/bin/env bash
# Sink throughput (issue 5, done-when 6): the ClickHouse sink for `events` against
# clickhouse-client inserting the same rows in one run, and the Parquet sink; three rounds
# on fresh tables, medians printed (sinks/benches/sink_throughput.rs).
# Usage: bench/sinks.sh [rows] [batch_rows]   (defaults 1000000 100000)
#   batch_rows is the sink's batch, as `--sink-batch-rows` sets it for `helios up` and
#   `helios run sink` (their default, 5000, is for latency; 100000 is the bulk setting).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/helios-target}
eval "$(bash scripts/services/clickhouse.sh start)"
trap 'kill "$HELIOS_CLICKHOUSE_PID" 2>/dev/null || true' EXIT
HELIOS_BENCH_CH_NATIVE_PORT=$(cat "$HELIOS_CLICKHOUSE_DIR/native.port")
export HELIOS_BENCH_CH_NATIVE_PORT HELIOS_BENCH_ROWS=${1:-1000000} HELIOS_BENCH_BATCH_ROWS=${2:-100000}
# --workspace: the feature set every bench script builds with, so they share one build.
cargo bench --workspace --bench sink_throughput
