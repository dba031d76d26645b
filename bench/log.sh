#!/usr/bin/env bash
# Embedded log benchmark: append with fsync per batch and with fsync off, as a ratio to
# `dd` sequential writes of the same volume (conv=fdatasync) on the same disk, and read
# throughput on one core (the read process is pinned with taskset -c 0).
#
# Usage: bench/log.sh [MIB]        (default 1024 MiB of 200-byte records, batches of 1000)
# Three interleaved rounds; prints the medians as Markdown table rows for bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/helios-target}
mib=${1:-1024}
dir=${BENCH_DIR:-$HOME/.cache/helios/bench}
mkdir -p "$dir"

cargo bench -p helios-log --bench embedded_log --no-run >&2
# Three rounds, interleaved, so both sides see the same disk weather; the median counts.
dd_out=""
results=""
for round in 1 2 3; do
    dd_out+=$(dd if=/dev/zero of="$dir/dd.bin" bs=200K count=$(( mib * 1024 * 1024 / 204800 )) conv=fdatasync 2>&1 | tail -n 1)$'\n'
    rm -f "$dir/dd.bin"
    results+=$(cargo bench -p helios-log --bench embedded_log -- "$dir" "$mib" append 2>/dev/null)$'\n'
    results+=$(taskset -c 0 cargo bench -p helios-log --bench embedded_log -- "$dir" "$mib" read 2>/dev/null)$'\n'
done

python3 - "$dd_out" "$results" <<'PY'
import json, re, statistics, sys
dd, results = sys.argv[1], sys.argv[2]
dd_runs = [int(m.group(1)) / float(m.group(2)) / 2**20
           for m in re.finditer(r"(\d+) bytes .* copied, ([\d.]+) s", dd)]
dd_mib_s = statistics.median(dd_runs)
print(f"| dd bs=200K conv=fdatasync | {dd_mib_s:.1f} MiB/s (runs: {', '.join(f'{r:.0f}' for r in dd_runs)}) | 1.00 |")
runs = {}
for line in filter(None, results.splitlines()):
    r = json.loads(line)
    runs.setdefault(r["scenario"], []).append(r)
for name, rs in runs.items():
    r = sorted(rs, key=lambda r: r["mib_per_s"])[len(rs) // 2]
    if name.startswith("append"):
        print(f"| {r['scenario']} | {r['mib_per_s']:.1f} MiB/s ({r['records_per_s']:,.0f} records/s) | {r['mib_per_s']/dd_mib_s:.2f} |")
    else:
        print(f"| {r['scenario']} (one core) | {r['records_per_s']:,.0f} records/s ({r['mib_per_s']:.1f} MiB/s) | — |")
PY
