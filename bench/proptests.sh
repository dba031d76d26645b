#!/usr/bin/env bash
# Property tests of every decoder of outside input (issue 12, done-when 5), at a million
# generated inputs per decoder instead of the 256 of the normal test run.
#
# Decoders: CloudEvents JSON/NDJSON (helios-schemas), the Avro Event codec (fast path and
# apache-avro resolution), registry schema documents, webhook mappings (helios-connectors),
# the spec parser (helios-pipeline), the SQL guard (helios-query-api).
#
# Build: schemas, connectors and pipeline run optimised (`--profile bench`: the first build
# of their dependencies took 14 minutes on the shared 2-core machine). The SQL guard's crate
# links DataFusion, whose optimised build would take far longer, so its tests run in the
# debug build. Every property prints a `proptest-summary` line (inputs, slowest input,
# seconds, result); an input slower than HELIOS_PROPTEST_HANG_SECS fails as a hang.
#
# Usage: bench/proptests.sh [CASES]   (default 1000000 per property; the SQL guard's
#        generated property checks two texts per case, the generated one and a mutation,
#        so it runs CASES/2 cases)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/helios-target}
export HELIOS_PROPTEST_HANG_SECS=${HELIOS_PROPTEST_HANG_SECS:-10}
cases=${1:-1000000}
log=$(mktemp "${TMPDIR:-/tmp}/proptests.XXXXXX")
started=$(date +%s)

run() {
    # nextest: one process per test, so the properties run in parallel on the cores.
    PROPTEST_CASES=$1 cargo nextest run --no-fail-fast --no-capture "${@:2}" 2>&1 | tee -a "$log" |
        grep -E 'proptest-summary|SIGABRT|SIGSEGV|FAIL \[' || true
}

run "$cases" --cargo-profile bench -p helios-schemas -p helios-connectors -p helios-pipeline \
    -E 'test(/props::/)'
run "$cases" -p helios-query-api --test it guard_props::arbitrary_text
run $((cases / 2)) -p helios-query-api --test it guard_props::generated

echo
echo "inputs per property (summary lines above); full output in $log"
failed=$(grep -cE 'result=FAILED|SIGABRT|SIGSEGV' "$log" || true)
echo "failures: $failed; elapsed: $(( $(date +%s) - started ))s"
[[ $failed == 0 ]]
