#!/usr/bin/env bash
# Alert latency on a quiet stream (issue 17, done-when 4): the release `helios up` with one
# threshold rule (`ci_failing`, 3 failures within 10 minutes) and a `[[webhook]]`
# receiver; each round posts three failures of a new subject and nothing else, and the
# figure is the time from that POST to the notification (bench/quiet_alerts.py). With no
# later event, the partition moves only by watermark marks (ADR-012), so the floor is
# max(idle_timeout, max_out_of_orderness) plus a poll; the bound the issue sets is
# idle_timeout + max_out_of_orderness + 2 s.
#
# Usage: bench/quiet_alerts.sh [ROUNDS]   (default 100)
# Environment:
#   QUIET_IDLE      the spec's idle_timeout (default 2s)
#   QUIET_DISORDER  the spec's max_out_of_orderness (default 2s)
#   BENCH_PROFILE   release (default) or dev (debug build, to try the script out)
#   BENCH_DIR       where the run's data dir goes (default ~/.cache/helios/bench)
#   HELIOS_BIN      a helios binary to measure instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/helios-target}
rounds=${1:-100}
idle=${QUIET_IDLE:-2s}
disorder=${QUIET_DISORDER:-2s}
case ${BENCH_PROFILE:-release} in
    release) profile=(--release); out=release ;;
    dev) profile=(); out=debug ;;
    *) echo "BENCH_PROFILE is release or dev, not ${BENCH_PROFILE}" >&2; exit 2 ;;
esac
mkdir -p "${BENCH_DIR:-$HOME/.cache/helios/bench}"
work=$(mktemp -d "${BENCH_DIR:-$HOME/.cache/helios/bench}/quiet.XXXXXX")
helios_pid=""
cleanup() {
    if [[ -n $helios_pid ]]; then kill "$helios_pid" 2>/dev/null || true; wait "$helios_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# The shipped binary: the figure is mostly the spec's timeouts, not CPU.
if [[ -n ${HELIOS_BIN:-} ]]; then
    bin=$HELIOS_BIN
else
    cargo build "${profile[@]}" --bin helios >&2
    bin=$CARGO_TARGET_DIR/$out/helios
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
port=$(free_port)
receiver=$(free_port)
cat >"$work/helios.toml" <<SPEC
[[source]]
name = "ci"
type = "http"

[watermark]
idle_timeout = "$idle"
max_out_of_orderness = "$disorder"

[[rule]]
name = "ci_failing"
type = "threshold"
where = "kind = 'ci.run' AND attrs['conclusion'] = 'failure'"
per = ["subject"]
count = 3
within = "10m"

[[webhook]]
name = "bench"
url = "http://127.0.0.1:$receiver/hook"
SPEC
key=$("$bin" keys create --data-dir "$work/data" --scope ingest --name bench 2>/dev/null)
"$bin" up --spec "$work/helios.toml" --data-dir "$work/data" --listen "127.0.0.1:$port" \
    >"$work/helios.log" 2>&1 &
helios_pid=$!
for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.2
done
echo "quiet_alerts: idle_timeout $idle, max_out_of_orderness $disorder, $rounds rounds, $("$bin" --version)" >&2
python3 bench/quiet_alerts.py --port "$port" --key "$key" --receiver-port "$receiver" --rounds "$rounds"
