#!/usr/bin/env bash
# A tansu Kafka-protocol broker on loopback for the Kafka tests.
#
# Run it:
#   eval "$(scripts/services/tansu.sh start)"   # exports HELIOS_TEST_KAFKA, HELIOS_TANSU_PID, HELIOS_TANSU_DIR
#   scripts/services/tansu.sh stop              # stops the broker started above (uses HELIOS_TANSU_PID/DIR)
# or source it and call the functions:
#   source scripts/services/tansu.sh && tansu_start && ... && tansu_stop
#
# Settings (environment):
#   HELIOS_TOOLS               where tansu is installed/cached (default ~/.cache/helios/tools)
#   HELIOS_TEST_TMP            parent dir for the broker's data and log (default: a new temp dir)
#   HELIOS_TEST_KAFKA_PORT     port to listen on (default: a free loopback port)
#   HELIOS_TEST_KAFKA_STORAGE  sqlite (default: a file in the data dir) or a tansu storage URL the
#                              installed features support (only libsql is built). tansu's memory
#                              engine (feature dynostore) fails the log conformance suite: it reports
#                              the high watermark as the last batch's base offset + 1, answers
#                              timestamp lookups by append time, and does not serve fetches from
#                              inside a batch.
#   HELIOS_TANSU_WAIT          seconds to wait for the port to accept connections (default 60)

TANSU_VERSION=0.6.0

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: thin wrappers that run this file in a child shell and import its exports.
    _tansu_script=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
    tansu_start() {
        local out
        out=$(bash "$_tansu_script" start) || return 1
        eval "$out"
        echo "HELIOS_TEST_KAFKA=$HELIOS_TEST_KAFKA" >&2
    }
    tansu_stop() { bash "$_tansu_script" stop; }
    return 0
fi

set -euo pipefail

tools=${HELIOS_TOOLS:-$HOME/.cache/helios/tools}
tansu=$tools/bin/tansu

log() { echo "tansu.sh: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install() {
    if [[ -x $tansu ]]; then return; fi
    log "installing tansu $TANSU_VERSION into $tools (cached afterwards; takes minutes the first time)"
    # Only the SQLite storage the tests use, optimised lightly and without debug info: the
    # default features and full optimisation cost 24 minutes on a 2-core machine, and a
    # test broker needs neither (issue 16). Its own target dir, removed afterwards.
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=false \
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=64 CARGO_PROFILE_RELEASE_LTO=false \
        cargo install tansu --locked --version "$TANSU_VERSION" \
        --no-default-features --features libsql --root "$tools" >&2
}

free_port() {
    local port i
    for i in $(seq 1 50); do
        port=$((20000 + RANDOM % 40000))
        if ! port_open "$port"; then echo "$port"; return; fi
    done
    log "found no free loopback port"; exit 1
}

start() {
    install
    local dir port storage pid waited wait_max
    if [[ -n ${HELIOS_TEST_TMP:-} ]]; then
        mkdir -p "$HELIOS_TEST_TMP"
        dir=$(mktemp -d "$HELIOS_TEST_TMP/tansu.XXXXXX")
    else
        dir=$(mktemp -d "${TMPDIR:-/tmp}/helios-tansu.XXXXXX")
    fi
    dir=$(cd "$dir" && pwd)
    port=${HELIOS_TEST_KAFKA_PORT:-$(free_port)}
    if port_open "$port"; then
        log "port $port is already in use; unset HELIOS_TEST_KAFKA_PORT or pick another"; exit 1
    fi
    case ${HELIOS_TEST_KAFKA_STORAGE:-sqlite} in
        sqlite) storage=sqlite://tansu.db ;; # relative to the data dir (the broker runs there)
        *) storage=$HELIOS_TEST_KAFKA_STORAGE ;;
    esac

    # setsid + redirections: the broker outlives this shell and holds none of its pipes.
    cd "$dir"
    setsid "$tansu" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "$storage" \
        </dev/null >"$dir/tansu.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/tansu.pid"

    wait_max=${HELIOS_TANSU_WAIT:-60}
    waited=0
    until port_open "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "tansu exited before accepting connections on 127.0.0.1:$port; last lines of $dir/tansu.log:"
            tail -n 40 "$dir/tansu.log" >&2 || true
            exit 1
        fi
        if ((waited >= wait_max * 10)); then
            log "tansu did not accept connections on 127.0.0.1:$port within ${wait_max}s; last lines of $dir/tansu.log:"
            tail -n 40 "$dir/tansu.log" >&2 || true
            kill "$pid" 2>/dev/null || true
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    log "tansu $TANSU_VERSION (pid $pid, storage $storage) listening on 127.0.0.1:$port; log in $dir/tansu.log"
    echo "export HELIOS_TEST_KAFKA=127.0.0.1:$port"
    echo "export HELIOS_TANSU_PID=$pid"
    echo "export HELIOS_TANSU_DIR=$dir"
}

stop() {
    local pid=${HELIOS_TANSU_PID:-}
    if [[ -z $pid && -n ${HELIOS_TANSU_DIR:-} && -f $HELIOS_TANSU_DIR/tansu.pid ]]; then
        pid=$(cat "$HELIOS_TANSU_DIR/tansu.pid")
    fi
    if [[ -z $pid ]]; then
        log "nothing to stop: HELIOS_TANSU_PID and HELIOS_TANSU_DIR are unset"; return 0
    fi
    # Only the broker we started: the pid must still be a tansu process.
    if ! kill -0 "$pid" 2>/dev/null || ! grep -q tansu "/proc/$pid/cmdline" 2>/dev/null; then
        log "tansu (pid $pid) is not running"; return 0
    fi
    kill "$pid"
    local i
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { log "stopped tansu (pid $pid)"; return 0; }
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    log "killed tansu (pid $pid) after 10s"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
