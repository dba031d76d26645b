#!/usr/bin/env bash
# Embedded log benchmark: append with fsync per batch and with fsync off, as a ratio to
# `dd` sequential writes of the same volume (conv=fdatasync) on the same disk, and read
# throughput on one core (the read process is pinned with taskset -c 0).
#
# Usage: bench/log.sh [MIB]        (default 256 MiB of 200-byte records, batches of 1000)
# Prints a Markdown table row set for bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/helios-target}
mib=${1:-256}
dir=${BENCH_DIR:-$HOME/.cache/helios/bench}
mkdir -p "$dir"

cargo bench -p helios-log --bench embedded_log --no-run >&2
dd_out=$(dd if=/dev/zero of="$dir/dd.bin" bs=200K count=$(( mib * 1024 * 1024 / 204800 )) conv=fdatasync 2>&1 | tail -n 1)
rm -f "$dir/dd.bin"
results=$(cargo bench -p helios-log --bench embedded_log -- "$dir" "$mib" append 2>/dev/null
          taskset -c 0 cargo bench -p helios-log --bench embedded_log -- "$dir" "$mib" read 2>/dev/null)

python3 - "$dd_out" "$results" <<'PY'
import json, re, sys
dd, results = sys.argv[1], sys.argv[2]
m = re.search(r"(\d+) bytes .* copied, ([\d.]+) s", dd)
dd_mib_s = int(m.group(1)) / float(m.group(2)) / 2**20
print(f"| dd bs=200K conv=fdatasync | {dd_mib_s:.1f} MiB/s | 1.00 |")
for line in results.splitlines():
    r = json.loads(line)
    if r["scenario"].startswith("append"):
        print(f"| {r['scenario']} | {r['mib_per_s']:.1f} MiB/s ({r['records_per_s']:,.0f} records/s) | {r['mib_per_s']/dd_mib_s:.2f} |")
    else:
        print(f"| {r['scenario']} (one core) | {r['records_per_s']:,.0f} records/s ({r['mib_per_s']:.1f} MiB/s) | — |")
PY
