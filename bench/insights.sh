#!/usr/bin/env bash
# Insights latency (issue 6, done-when 7): GET /v1/insights/timeseries and /v1/insights/top
# over 10M raw events and their hourly aggregate, on the embedded store and on ClickHouse,
# through the real router. Prints p50/p99 per query and store.
# Usage: bench/insights.sh [events] [requests]   (defaults 10000000 200)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/helios-target}
export HELIOS_TEST_TMP=${HELIOS_TEST_TMP:-$(mktemp -d)}
eval "$(bash scripts/services/clickhouse.sh start)"
trap 'kill "$HELIOS_CLICKHOUSE_PID" 2>/dev/null || true' EXIT
export HELIOS_BENCH_CLICKHOUSE=$HELIOS_TEST_CLICKHOUSE
export HELIOS_BENCH_EVENTS=${1:-10000000} HELIOS_BENCH_REQUESTS=${2:-200}
# --workspace: the feature set every bench script builds with, so they share one build.
cargo bench --workspace --bench insights
