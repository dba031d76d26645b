#!/usr/bin/env bash
# Helios against Apache Flink (issue 15, done-when 5), in one run:
#   1. installs Apache Flink 2.3 (PyPI apache-flink==2.3.0) into a cached venv,
#      ~/.cache/helios/tools/flink-venv (skipped when present; needs Java 17 on PATH);
#   2. generates N events (default 20 million; 1000 keys, about 1 ms apart, a quarter of
#      them up to 3 s late, an integer value 0..999; seeded) as one CSV file that both
#      sides read: `helios backtest --events FILE.csv` reads it as it is, Flink's CSV
#      format with the header line dropped by the query (bench/flink.py);
#   3. runs Flink SQL (PyFlink TableEnvironment, STREAMING mode, event time with a
#      watermark 3 s behind: a tumbling 1-minute COUNT(*), SUM(value) per subject into
#      a blackhole sink) and `helios backtest` of the same aggregate (`[watermark]
#      max_out_of_orderness = "3s"`, de-duplication and insights off, as Flink's query
#      has neither), once as it runs by default (the file's events fed to the processor
#      as they are parsed) and once with --via-log (copied into a scratch log and
#      replayed: the processor's decode + window + emit figure), each under a timer that
#      is a child subreaper: the wall time and the CPU-seconds of every process the
#      command started (PyFlink's JVM included);
#   4. prints the Markdown for bench/RESULTS.md on stdout (progress on stderr).
# The data are deleted at the end unless KEEP_DATA=1 (a kept file is reused next time).
#
# Usage: bench/flink.sh [EVENTS]   (default 20000000)
# Environment:
#   HELIOS_BIN         a helios binary to measure instead of building one (release)
#   FLINK_PARALLELISM  Flink's parallelism.default (default 2: the machine's cores)
#   BENCH_DIR          where the data and the scratch log go (default ~/.cache/helios/bench/flink)
#   BENCH_SEED         the generator's seed (default 15)
#   KEEP_DATA=1        keep the CSV file
# Not part of scripts/test: the test suite never installs Flink.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/helios-target}
events=${1:-20000000}
keys=1000
seed=${BENCH_SEED:-15}
parallelism=${FLINK_PARALLELISM:-2}
venv=$HOME/.cache/helios/tools/flink-venv
dir=${BENCH_DIR:-$HOME/.cache/helios/bench/flink}
mkdir -p "$dir"
csv=$dir/events-$events-$seed.csv
work=$(mktemp -d "$dir/run.XXXXXX")
cleanup() {
    rm -rf "$work"
    if [[ ${KEEP_DATA:-0} != 1 ]]; then rm -f "$csv"; fi
}
trap cleanup EXIT
say() { echo "flink.sh: $*" >&2; }

# 1. Flink, once.
if ! "$venv/bin/python" -c 'import importlib.metadata as m; assert m.version("apache-flink") == "2.3.0"' 2>/dev/null; then
    command -v java >/dev/null || { say "PyFlink needs Java 17 on PATH (apt-get install openjdk-17-jre-headless)"; exit 2; }
    say "installing apache-flink==2.3.0 into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip >&2
    "$venv/bin/pip" install -q apache-flink==2.3.0 >&2
fi

# Disk: the CSV (~34 bytes an event) and Helios's scratch log (Avro records plus the
# output topics, ~60 bytes an event), with a margin.
need=$((events * 34 + events * 80))
avail=$(df --output=avail -B1 "$dir" | tail -1)
if [[ ! -f $csv ]] && ((avail < need)); then
    say "$events events need about $((need >> 20)) MiB in $dir, $((avail >> 20)) MiB free; give fewer events"
    exit 2
fi

if [[ -n ${HELIOS_BIN:-} ]]; then
    bin=$HELIOS_BIN
else
    cargo build --release --bin helios >&2
    bin=$CARGO_TARGET_DIR/release/helios
fi

# 2. The events.
if [[ ! -f $csv ]]; then
    say "generating $events events into $csv"
    python3 bench/flink.py gen "$csv.part" "$events" --keys "$keys" --seed "$seed"
    mv "$csv.part" "$csv"
fi
say "$(du -h "$csv" | cut -f1) of CSV"
# Both sides read it from the page cache.
cat "$csv" >/dev/null

cat >"$work/spec.toml" <<'SPEC'
[watermark]
max_out_of_orderness = "3s"

# Flink's query does not drop repeated events; neither does this run.
[dedupe]
horizon = "0s"

[[aggregate]]
name = "per_minute"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { n = "count(*)", total = "sum(value)" }
insights = false
SPEC

# 3. The runs, one after the other: Helios as a user runs it (the file's events fed to
# the processor as they are read), Helios through a scratch log (--via-log: the events
# encoded, appended, read back and decoded, for the processor's decode figure), Flink.
say "helios backtest ($("$bin" --version))"
python3 bench/flink.py time "$work/helios-time.json" -- \
    "$bin" backtest --spec "$work/spec.toml" --events "$csv" --format json --quiet \
    --scratch-dir "$work" >"$work/helios-report.json"
say "helios backtest --via-log"
python3 bench/flink.py time "$work/helios-log-time.json" -- \
    "$bin" backtest --spec "$work/spec.toml" --events "$csv" --via-log --format json --quiet \
    --scratch-dir "$work" >"$work/helios-log-report.json"
say "flink (parallelism $parallelism)"
python3 bench/flink.py time "$work/flink-time.json" -- \
    "$venv/bin/python" bench/flink.py flink "$csv" --parallelism "$parallelism" \
    >"$work/flink.log" 2>&1 || { tail -30 "$work/flink.log" >&2; exit 1; }

# 4. The figures.
commit=$(git rev-parse --short HEAD)
echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) at commit $commit, $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(java -version 2>&1 | head -1)."
echo
python3 bench/flink.py report --events "$events" --parallelism "$parallelism" \
    --flink-time "$work/flink-time.json" --helios-time "$work/helios-time.json" \
    --helios-report "$work/helios-report.json" \
    --helios-log-time "$work/helios-log-time.json" --helios-log-report "$work/helios-log-report.json"
