#!/usr/bin/env bash
# Scale-out benchmark on Kafka (tansu): pipeline throughput of a tumbling-window aggregate
# (1-minute windows, count + sum, 1000 subjects, 60 events per window) with one and with two `helios run
# pipeline` processes sharing the 4 partitions of the events topic, and the raw rdkafka
# consume rate of the same topic (bench/scale_out_consume: a plain BaseConsumer, no
# decoding), all in the same run on the same loaded topic.
#
# The topic is loaded once through `helios run ingest` (`helios send`). Each pipeline run
# uses a fresh consumer group and checkpoint dir, so it reads the whole topic from the
# start (/metrics polled every 100 ms).
# The timing of a pipeline run starts once its group has settled (each process holds
# partitions, all four covered, from the processes' consumer-lag gauges) and ends when
# every partition is read to its end; the events counted are those left at the start.
# The raw consume rate is measured before and after the pipeline runs; the ratios use the
# faster of the two.
#
# Usage: bench/scale_out.sh [EVENTS]   (default 400000)
# Broker: HELIOS_TEST_KAFKA (host:port); without it a tansu is started with
# scripts/services/tansu.sh. Release builds; everything runs on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/helios-target}
events=${1:-400000}
mkdir -p "${BENCH_DIR:-$HOME/.cache/helios/bench}"
work=$(mktemp -d "${BENCH_DIR:-$HOME/.cache/helios/bench}/scale_out.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n ${started_tansu:-} ]]; then bash scripts/services/tansu.sh stop || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

if [[ -z ${HELIOS_TEST_KAFKA:-} ]]; then
    eval "$(bash scripts/services/tansu.sh start)"
    export HELIOS_TANSU_PID HELIOS_TANSU_DIR
    started_tansu=1
fi
kafka=$HELIOS_TEST_KAFKA

cargo build --release --bin helios >&2
bin=$CARGO_TARGET_DIR/release/helios
CARGO_TARGET_DIR=${CONSUME_TARGET_DIR:-$HOME/.cache/helios-bench-consume-target} \
    cargo build --release --manifest-path bench/scale_out_consume/Cargo.toml >&2
consume=${CONSUME_TARGET_DIR:-$HOME/.cache/helios-bench-consume-target}/release/scale-out-consume

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
prefix="bench_scale_out_$(date +%s)_$$."
topic="${prefix}helios.events"
cat > "$work/helios.toml" <<'EOF'
# `helios send` posts batches concurrently, so event times arrive a little out of order;
# the allowance keeps every event on time (no late-event writes in the figures).
[watermark]
max_out_of_orderness = "5m"
idle_timeout = "1h"

[[source]]
name = "events"
type = "http"

[[aggregate]]
name = "per_minute"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { n = "count(*)", total = "sum(value)" }
EOF
cat > "$work/backend.toml" <<EOF
[kafka]
bootstrap_servers = "$kafka"
[topics]
prefix = "$prefix"
partitions = 4
EOF

python3 - "$events" > "$work/events.ndjson" <<'PY'
import json, sys
from datetime import datetime, timedelta, timezone
base = datetime(2026, 1, 1, tzinfo=timezone.utc)
for i in range(int(sys.argv[1])):
    # One event per millisecond: each subject gets one a second, 60 per window.
    t = base + timedelta(milliseconds=i)
    print(json.dumps({"specversion": "1.0", "id": f"bench-{i}", "source": "bench/scale_out",
                      "type": "git.push", "subject": f"project-{i % 1000}",
                      "time": t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", "value": i % 97},
                     separators=(",", ":")))
PY

key=$("$bin" keys create --data-dir "$work/ingest" --scope admin --name bench 2>/dev/null)
port=$(free_port)
"$bin" run ingest --spec "$work/helios.toml" --config "$work/backend.toml" \
    --data-dir "$work/ingest" --listen "127.0.0.1:$port" --log warn &
pids+=($!)
for _ in $(seq 1 200); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
echo "loading $events events into $topic" >&2
"$bin" send "$work/events.ndjson" --url "http://127.0.0.1:$port" --batch 1000 \
    --concurrency 4 --quiet --api-key "$key"

raw() { "$consume" "$kafka" "$topic"; }
raw_before=$(raw)
echo "raw consume: $raw_before" >&2

# Runs N pipeline processes in a fresh group until together they have read every event;
# prints {"processes", "events" (timed), "seconds", "events_per_s"}.
pipelines() {
    local n=$1 group="${prefix}bench$1" ports=() ppids=()
    for i in $(seq 1 "$n"); do
        local p
        p=$(free_port)
        ports+=("$p")
        HELIOS_REGISTRY_URL="http://127.0.0.1:$port" HELIOS_REGISTRY_KEY="$key" \
            "$bin" run pipeline --spec "$work/helios.toml" --config "$work/backend.toml" \
            --data-dir "$work/p$n-$i" --checkpoints "$work/ck$n" --group "$group" \
            --metrics-listen "127.0.0.1:$p" --log warn &
        ppids+=($!)
        pids+=($!)
    done
    python3 - "$n" "${ports[@]}" <<'PY'
import json, re, sys, time, urllib.request
n, ports = int(sys.argv[1]), sys.argv[2:]
LAG = re.compile(r'^helios_consumer_lag_records\{(?=[^}]*stage="pipeline")[^}]*partition="(\d+)"[^}]*\} (\S+)$')
def lags():
    """Per process: {partition: records behind the log end} for the partitions it holds."""
    out = []
    for p in ports:
        held = {}
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=2).read().decode()
        except OSError:
            text = ""
        for line in text.splitlines():
            m = LAG.match(line)
            if m:
                held[int(m.group(1))] = int(float(m.group(2)))
        out.append(held)
    return out
# Timing starts once the group has settled: every process holds partitions, together all
# four, none twice (a rebalance in the first seconds replays from the start, which is not
# throughput). It ends when every partition is read to its end.
start = None
deadline = time.time() + 1200
while time.time() < deadline:
    held = lags()
    now = time.time()
    parts = [q for h in held for q in h]
    settled = all(held) and len(parts) == len(set(parts)) == 4
    if start is None and settled:
        start, behind = now, sum(v for h in held for v in h.values())
    if start is not None and settled and all(v == 0 for h in held for v in h.values()):
        secs = now - start
        print(json.dumps({"processes": n, "events": behind, "seconds": round(secs, 2),
                          "events_per_s": round(behind / secs)}))
        sys.exit(0)
    time.sleep(0.1)
sys.exit(f"the pipelines did not read the topic to its end in 20 minutes: {lags()}")
PY
    for p in "${ppids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}
one=$(pipelines 1)
echo "one process: $one" >&2
two=$(pipelines 2)
echo "two processes: $two" >&2
raw_after=$(raw)
echo "raw consume: $raw_after" >&2

python3 - "$raw_before" "$raw_after" "$one" "$two" "$events" <<'PY'
import json, sys
before, after, one, two = (json.loads(x) for x in sys.argv[1:5])
raw = max(before["records_per_s"], after["records_per_s"])
print(f"| events | raw rdkafka consume (before / after) | 1 pipeline | 2 pipelines | 2 vs 1 | 1 pipeline / raw | 2 pipelines / raw |")
print("|---|---|---|---|---|---|---|")
print(f"| {int(sys.argv[5]):,} | {before['records_per_s']:,} / {after['records_per_s']:,} records/s "
      f"| {one['events_per_s']:,} events/s ({one['seconds']} s) | {two['events_per_s']:,} events/s ({two['seconds']} s) "
      f"| ×{two['events_per_s'] / one['events_per_s']:.2f} | {100 * one['events_per_s'] / raw:.1f} % | {100 * two['events_per_s'] / raw:.1f} % |")
PY
