#!/usr/bin/env bash
# De-duplication cost (issue 13, done-when 3): the processor benchmark's tumbling
# scenario (bench/processor.sh; 1-minute count+sum over 1000 subjects, 4 partitions, one
# core) with `[dedupe]` at its default (a 24 h horizon: every event's identity is
# remembered) and with it off; and, in the same interleaved rounds, the limit this
# machine's memory sets inside the processor: the bench built with the `memory-floor`
# feature (pipeline/src/dedupe/floor.rs), where per event the set only reads and writes
# one random line of a table the size the `on` run's grows to, keyed by the event's
# identity (`identity`: peeked and hashed as always) or by its position (`line`: the
# memory alone); and `durable`: `identity`, with each identity also kept in its bucket and
# written to the checkpoint parts as the set does (what surviving a restart costs). Also
# the memory and checkpoint bytes of one partition remembering a million identities, and
# the `lines` floor outside the processor (a tight loop), and what a page of fresh memory
# costs this machine (`pages`), against the pages each run touched first (`minor_faults`).
#
# Usage: bench/dedupe.sh [EVENTS]   (default 5 000 000; BENCH_BIN=<processor bench binary>
# and FLOOR_BIN=<the same built with --features memory-floor> skip the builds;
# ROUNDS=<n> rounds, default 7; SLICE_MS=<ms> the turn each variant of a round gets on
# core 0 while the others wait, default 500, 0 to run them one after another)
# Prints the medians and the ratios; paste them into bench/RESULTS.md. The ratio is taken
# from CPU-seconds (user + system of the process over its processing), which a stopped
# or waiting process does not accrue. On a shared VM the machine's speed drifts by 10-30 %
# over minutes (bench/RESULTS.md), so the variants of a round take turns
# (bench/timeslice.py) and meet the same drift; the per-round ratios are printed beside
# the ratio of the medians and of the least-disturbed runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/helios-target}
events=${1:-5000000}
dir=${BENCH_DIR:-$HOME/.cache/helios/bench}
mkdir -p "$dir"

# Built once, then run directly: each run measures only itself (and another cargo on the
# machine holding the target dir's lock cannot stall a round).
bench_bin() {
    cargo bench -p helios-pipeline --bench processor --no-run --message-format=json "$@" 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "processor" and m.get("executable"):
        print(m["executable"])'
}
bin=${BENCH_BIN:-}
[[ -n $bin ]] || bin=$(bench_bin)
[[ -x $bin ]] || { echo "dedupe.sh: building the processor bench failed" >&2; exit 1; }
floor_bin=${FLOOR_BIN:-}
if [[ -z $floor_bin ]]; then
    # A copy: the next plain build replaces the executable at that path.
    floor_bin=$dir/processor-memory-floor
    cp "$(bench_bin --features memory-floor)" "$floor_bin"
fi
[[ -x $floor_bin ]] || { echo "dedupe.sh: building the memory-floor bench failed" >&2; exit 1; }
results=""
rounds=${ROUNDS:-7}
# By default the five variants of a round run at once on core 0, taking turns of
# SLICE_MS (bench/timeslice.py), so the machine's drift over a round weighs on each alike;
# SLICE_MS=0 runs them one after another, as before the eleventh session.
slice_ms=${SLICE_MS:-500}
variants=(off on identity durable line)
for round in $(seq 1 "$rounds"); do
    if ((slice_ms > 0)); then
        args=()
        for variant in "${variants[@]}"; do
            case $variant in
                off | on) args+=("$variant" "{\"BENCH_DEDUPE\":\"$variant\"}" "[\"$bin\",\"tumbling\",\"$events\",\"$dir\"]") ;;
                *) args+=("$variant" "{\"HELIOS_BENCH_FLOOR\":\"$variant\"}" "[\"$floor_bin\",\"tumbling\",\"$events\",\"$dir\"]") ;;
            esac
        done
        lines=$(python3 bench/timeslice.py --slice-ms "$slice_ms" "${args[@]}")
        while read -r variant line; do
            echo "round $round, $variant: $line" >&2
            results+="$variant $line"$'\n'
        done <<<"$lines"
        continue
    fi
    for variant in "${variants[@]}"; do
        case $variant in
            off | on) line=$(BENCH_DEDUPE=$variant taskset -c 0 "$bin" tumbling "$events" "$dir" 2>/dev/null) ;;
            *) line=$(HELIOS_BENCH_FLOOR=$variant taskset -c 0 "$floor_bin" tumbling "$events" "$dir" 2>/dev/null) ;;
        esac
        echo "round $round, $variant: $line" >&2
        results+="$variant $line"$'\n'
    done
done
ids=$("$bin" identities 1000000 2>/dev/null)
echo "identities: $ids" >&2
# The floor this machine's memory sets: one random line read and written per new identity
# in four 16 MiB tables, nothing else (the `lines` scenario), run three times; its
# wall-clock figure (pinned, one thread), as a run of 70 ms is too short for CPU ticks.
floor=""
for round in 1 2 3; do
    line=$(taskset -c 0 "$bin" lines 2000000 2>/dev/null)
    echo "floor, round $round: $line" >&2
    floor+=$line$'\n'
done
# What a page of fresh memory costs this machine (the first touch against a second): the
# runs report the pages they touched first, so their product is what fresh memory took.
pages=$(taskset -c 0 "$bin" pages 256 2>/dev/null)
echo "fresh pages: $pages" >&2
# The cost of the question alone (four partitions' sets, every identity new), with and
# without the runtime's prefetch of a run's lines.
for prefetch in off on; do
    echo "admit alone, prefetch $prefetch: $(BENCH_PREFETCH=$prefetch taskset -c 0 "$bin" admit 5000000 2>/dev/null)" >&2
done

python3 - "$results" "$ids" "$floor" "$pages" "$slice_ms" <<'PY'
import json, statistics, sys
# Taking turns, a run's wall clock holds the other variants' turns too: not a figure.
sliced = int(sys.argv[5]) > 0
runs = {"off": [], "on": [], "identity": [], "durable": [], "line": []}
for line in filter(None, sys.argv[1].splitlines()):
    variant, r = line.split(" ", 1)
    runs[variant].append(json.loads(r))
med = {k: statistics.median(r["events_per_s"] for r in v) for k, v in runs.items()}
cpu = {k: statistics.median(r["events_per_cpu_s"] for r in v) for k, v in runs.items()}
best = {k: max(r["events_per_cpu_s"] for r in v) for k, v in runs.items()}
ids = json.loads(sys.argv[2])
wall = "events/s by the wall clock (median)" if not sliced else "wall clock (all variants took turns)"
print(f"| dedupe | events per CPU-second (median of {len(runs['on'])}) | runs | {wall} | checkpoint at the end | peak RSS (VmHWM, median) | identities remembered at the end |")
print("|---|---|---|---|---|---|---|")
names = {"off": "off", "on": "on", "identity": "floor: identity + one line",
         "durable": "floor: identity + one line, checkpointed", "line": "floor: one line"}
for k in ("off", "on", "identity", "durable", "line"):
    rs = runs[k]
    each = ", ".join(format(r["events_per_cpu_s"], ",.0f") for r in rs)
    wall_k = f"{med[k]:,.0f}" if not sliced else "–"
    print(f"| {names[k]} | {cpu[k]:,.0f} | {each} | {wall_k} | "
          f"{statistics.median(r['checkpoint_ms'] for r in rs):.0f} ms | "
          f"{statistics.median(r['hwm_mib'] for r in rs):.0f} MiB | {rs[0]['identities']:,} |")
print()
print(f"With de-duplication: {cpu['on'] / cpu['off'] * 100:.1f} % of the events per CPU-second "
      f"without ("
      + (f"{med['on'] / med['off'] * 100:.1f} % by the wall clock; " if not sliced else "")
      + f"{best['on'] / best['off'] * 100:.1f} % between the least-disturbed runs) "
      f"(bar: within 10 %, i.e. at least 90 %).")
off_ns = 1e9 / cpu["off"]
on_ns = 1e9 / cpu["on"]
floor = statistics.median(json.loads(l)["ns_per_key"] for l in sys.argv[3].splitlines() if l)
budget = off_ns / 0.9 - off_ns
print(f"Per event: {off_ns:.0f} CPU-ns without, {on_ns:.0f} with: de-duplication adds {on_ns - off_ns:.0f} ns "
      f"against a budget of {budget:.0f} ns (the 90 % bar). The memory floor alone, one random line "
      f"read and written per new identity (`lines`, median of 3): {floor:.0f} ns = {floor / budget * 100:.0f} % of the budget; "
      f"de-duplication costs {(on_ns - off_ns) / floor:.1f}x that floor.")
print()
print("The limit inside the processor, same rounds (events per CPU-second against off; medians, then the least-disturbed runs):")
for k in ("identity", "durable", "line"):
    ns = 1e9 / cpu[k] - off_ns
    print(f"- {names[k]}: {cpu[k] / cpu['off'] * 100:.1f} % ({best[k] / best['off'] * 100:.1f} %), "
          f"{ns:.0f} ns per event = {ns / budget * 100:.0f} % of the budget.")
print(f"- de-duplication against the floor `identity + one line`: {cpu['on'] / cpu['identity'] * 100:.1f} % of its events "
      f"per CPU-second ({best['on'] / best['identity'] * 100:.1f} %); it adds {on_ns - 1e9 / cpu['identity']:.0f} ns per event to it.")
print(f"- de-duplication against the floor `identity + one line, checkpointed`: {cpu['on'] / cpu['durable'] * 100:.1f} % "
      f"({best['on'] / best['durable'] * 100:.1f} %); it adds {on_ns - 1e9 / cpu['durable']:.0f} ns per event to it.")
# Each run against the runs of its own round: slow drifts of the machine cancel out.
def per_round(a, b):
    return statistics.median(x["cpu_seconds"] / y["cpu_seconds"] for x, y in zip(runs[a], runs[b])) * 100
print(f"Per-round ratios (medians): on/off {per_round('off', 'on'):.1f} %, `identity`/off "
      f"{per_round('off', 'identity'):.1f} %, `durable`/off {per_round('off', 'durable'):.1f} %, "
      f"on/`identity` {per_round('identity', 'on'):.1f} %, on/`durable` {per_round('durable', 'on'):.1f} %.")
pages = json.loads(sys.argv[4])
faults = {k: statistics.median(r.get("minor_faults", 0) for r in v) for k, v in runs.items()}
events = runs["on"][0]["events"]
fresh_ns = (faults["on"] - faults["off"]) * pages["us_per_fresh_page"] * 1e3 / events
print(f"Fresh memory: the on run touched {faults['on'] - faults['off']:,.0f} more pages for the first time "
      f"than off ({(faults['on'] - faults['off']) * 4 / 1024:.0f} MiB: the set, its buckets, the checkpoint parts; "
      f"medians {faults['off']:,.0f} and {faults['on']:,.0f}); a fresh page costs {pages['us_per_fresh_page']:.2f} "
      f"CPU-µs here (a mapped one {pages['us_per_mapped_page']:.3f}), so {fresh_ns:.0f} ns per event "
      f"({fresh_ns / (on_ns - off_ns) * 100:.0f} % of what de-duplication adds). Floors: "
      + ", ".join(f"{k} {faults[k] - faults['off']:,.0f} pages" for k in ("identity", "durable", "line")) + ".")
print(f"One partition remembering {ids['identities']:,} identities: {ids['rss_mib_per_million']:.1f} MiB of RSS "
      f"per million, checkpoint {ids['checkpoint_mib_per_million']:.2f} MiB per million.")
PY
