#!/usr/bin/env bash
# Processor benchmark: the processor runtime reading Avro events from the embedded log
# (4 partitions), decoding them and running windowed aggregates, pinned to one core
# (taskset -c 0). Scenarios: tumbling 1-minute count+sum over 1000 subjects; hopping
# 10 min / 1 min count_distinct+quantile over 1000 subjects; 1M distinct subjects in open
# windows (peak RSS). Each reports the final checkpoint's size and time.
#
# Usage: bench/processor.sh [TUMBLING_EVENTS] [HOPPING_EVENTS]
#        (defaults 5 000 000 and 1 000 000; the memory scenario always uses 1M subjects)
# Three interleaved rounds; prints the medians as Markdown table rows for bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/helios-target}
tumbling=${1:-5000000}
hopping=${2:-1000000}
dir=${BENCH_DIR:-$HOME/.cache/helios/bench}
mkdir -p "$dir"

cargo bench -p helios-pipeline --bench processor --no-run >&2
results=""
for round in 1 2 3; do
    for run in "tumbling $tumbling" "hopping $hopping" "memory 1000000"; do
        # shellcheck disable=SC2086
        line=$(taskset -c 0 cargo bench -q -p helios-pipeline --bench processor -- $run "$dir" 2>/dev/null)
        echo "round $round: $line" >&2
        results+=$line$'\n'
    done
done

python3 - "$results" <<'PY'
import json, statistics, sys
runs = {}
for line in filter(None, sys.argv[1].splitlines()):
    r = json.loads(line)
    runs.setdefault(r["scenario"], []).append(r)
bars = {"tumbling": ("events/s", 1_000_000), "hopping": ("events/s", 300_000), "memory": ("MiB", 400)}
print("| scenario | events | throughput (median of 3) | peak RSS (VmHWM) | RSS before → after | final checkpoint | bar |")
print("|---|---|---|---|---|---|---|")
for name, rs in runs.items():
    med = lambda k: statistics.median(r[k] for r in rs)
    r = sorted(rs, key=lambda r: r["events_per_s"])[len(rs) // 2]
    unit, bar = bars[name]
    if name == "memory":
        ok = med("hwm_mib") <= bar
        bar_text = f"≤ {bar} MiB: {'met' if ok else 'NOT met'}"
    else:
        ok = med("events_per_s") >= bar
        bar_text = f"≥ {bar:,} events/s: {'met' if ok else 'NOT met'}"
    runs_text = ", ".join(f"{x['events_per_s']:,.0f}" for x in rs)
    print(f"| {name} ({r['subjects']:,} subjects) | {r['events']:,} | {med('events_per_s'):,.0f} events/s (runs: {runs_text}) "
          f"| {med('hwm_mib'):.0f} MiB | {med('rss_before_mib'):.0f} → {med('rss_after_mib'):.0f} MiB "
          f"| {med('checkpoint_bytes')/2**20:.2f} MiB in {med('checkpoint_ms'):.0f} ms | {bar_text} |")
PY
