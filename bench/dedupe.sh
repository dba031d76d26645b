#!/usr/bin/env bash
# De-duplication cost (issue 13, done-when 3): the processor benchmark's tumbling
# scenario (bench/processor.sh; 1-minute count+sum over 1000 subjects, 4 partitions, one
# core) with `[dedupe]` at its default (a 24 h horizon: every event's identity is
# remembered) and with it off, three interleaved rounds each; and the memory and
# checkpoint bytes of one partition remembering a million identities.
#
# Usage: bench/dedupe.sh [EVENTS]   (default 5 000 000)
# Prints the medians and the ratio; paste them into bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/helios-target}
events=${1:-5000000}
dir=${BENCH_DIR:-$HOME/.cache/helios/bench}
mkdir -p "$dir"

cargo bench -p helios-pipeline --bench processor --no-run >&2
results=""
for round in 1 2 3; do
    for dedupe in off on; do
        line=$(BENCH_DEDUPE=$dedupe taskset -c 0 cargo bench -q -p helios-pipeline --bench processor -- tumbling "$events" "$dir" 2>/dev/null)
        echo "round $round, dedupe $dedupe: $line" >&2
        results+=$line$'\n'
    done
done
ids=$(cargo bench -q -p helios-pipeline --bench processor -- identities 1000000 2>/dev/null)
echo "identities: $ids" >&2

python3 - "$results" "$ids" <<'PY'
import json, statistics, sys
runs = {"off": [], "on": []}
for line in filter(None, sys.argv[1].splitlines()):
    r = json.loads(line)
    runs["on" if r["dedupe"] else "off"].append(r)
med = {k: statistics.median(r["events_per_s"] for r in v) for k, v in runs.items()}
ids = json.loads(sys.argv[2])
print("| dedupe | throughput (median of 3) | runs | peak RSS (VmHWM, median) | identities remembered at the end |")
print("|---|---|---|---|---|")
for k in ("off", "on"):
    rs = runs[k]
    each = ", ".join(format(r["events_per_s"], ",.0f") for r in rs)
    print(f"| {k} | {med[k]:,.0f} events/s | {each} | "
          f"{statistics.median(r['hwm_mib'] for r in rs):.0f} MiB | {rs[0]['identities']:,} |")
print()
print(f"With de-duplication: {med['on'] / med['off'] * 100:.1f} % of the throughput without "
      f"(bar: within 10 %, i.e. at least 90 %).")
print(f"One partition remembering {ids['identities']:,} identities: {ids['rss_mib_per_million']:.1f} MiB of RSS "
      f"per million, checkpoint {ids['checkpoint_mib_per_million']:.2f} MiB per million.")
PY
