#!/usr/bin/env bash
# tansu Kafka-protocol brokers on loopback for the Kafka tests: a plaintext one, and behind
# TLS a second and a third (tansu 0.6 cannot serve TLS itself: its `--cert` and `--key` flags
# exclude each other, so Debian's stunnel4 terminates TLS in front of it, and the broker
# advertises stunnel's port).
#
#   HELIOS_TEST_KAFKA        plaintext
#   HELIOS_TEST_KAFKA_TLS    TLS that requires a client certificate (security_protocol ssl)
#   HELIOS_TEST_KAFKA_SASL   TLS + SASL SCRAM (sasl_ssl), tansu with --authentication; users
#                            `helios-512` (SCRAM-SHA-512) and `helios-256` (SCRAM-SHA-256)
#   HELIOS_TEST_KAFKA_CERTS  a dir made at start: ca.pem (the test CA that signed the
#                            brokers' and the client's certificates), client.pem, client.key,
#                            other-ca.pem (a CA that signed nothing), sasl-password (both
#                            users' password, random per start)
#
# tansu 0.6 checks SCRAM passwords; its PLAIN compares none (tansu-auth's Callback::check)
# and closed librdkafka's PLAIN handshake when tried, so PLAIN is not tested here. Users are created before
# --authentication is on (tansu refuses `tansu user create` from an unauthenticated client).
#
# Run it:
#   eval "$(scripts/services/tansu.sh start)"   # exports the variables above, HELIOS_TANSU_PID, HELIOS_TANSU_DIR
#   scripts/services/tansu.sh stop              # stops every process started above (uses HELIOS_TANSU_DIR)
# or source it and call the functions:
#   source scripts/services/tansu.sh && tansu_start && ... && tansu_stop
#
# Settings (environment):
#   HELIOS_TOOLS               where tansu is installed/cached (default ~/.cache/helios/tools)
#   HELIOS_TEST_TMP            parent dir for the brokers' data and logs (default: a new temp dir)
#   HELIOS_TEST_KAFKA_PORT     port of the plaintext broker (default: a free loopback port)
#   HELIOS_TEST_KAFKA_SECURE   1 (default): also start the TLS and SASL brokers; 0: only the
#                              plaintext one. Without stunnel4 and openssl they are skipped
#                              with a warning, except under CI=true, where that fails.
#   HELIOS_TEST_KAFKA_STORAGE  sqlite (default: a file in the data dir) or a tansu storage URL the
#                              installed features support (only libsql is built). tansu's memory
#                              engine (feature dynostore) fails the log conformance suite: it reports
#                              the high watermark as the last batch's base offset + 1, answers
#                              timestamp lookups by append time, and does not serve fetches from
#                              inside a batch.
#   HELIOS_TANSU_WAIT          seconds to wait for a port to accept connections (default 60)

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
    # Below the kernel's ephemeral range: no outgoing connection or listener on port 0
    # takes the port between this choice and the bind.
    local low high port i
    low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    high=20000
    ((low - high >= 1000)) || high=10000
    for i in $(seq 1 50); do
        port=$((high + RANDOM % (low - high)))
        if ! port_open "$port"; then echo "$port"; return; fi
    done
    log "found no free loopback port"; exit 1
}

# Waits until 127.0.0.1:$1 accepts connections while process $2 lives; $3 names it, $4 is its log.
wait_port() {
    local port=$1 pid=$2 what=$3 logfile=$4 waited=0 wait_max=${HELIOS_TANSU_WAIT:-60}
    until port_open "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$what exited before accepting connections on 127.0.0.1:$port; last lines of $logfile:"
            tail -n 40 "$logfile" >&2 || true
            return 1
        fi
        if ((waited >= wait_max * 10)); then
            log "$what did not accept connections on 127.0.0.1:$port within ${wait_max}s; last lines of $logfile:"
            tail -n 40 "$logfile" >&2 || true
            kill "$pid" 2>/dev/null || true
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

# launch_tansu <dir> <listen port> <advertised port> [extra broker flags]: starts a broker
# whose data and log live in <dir>; sets $launched to its pid (also in <dir>/tansu.pid).
launch_tansu() {
    local dir=$1 port=$2 advertised=$3 storage
    shift 3
    case ${HELIOS_TEST_KAFKA_STORAGE:-sqlite} in
        sqlite) storage=sqlite://tansu.db ;; # relative to the data dir (the broker runs there)
        *) storage=$HELIOS_TEST_KAFKA_STORAGE ;;
    esac
    # setsid + redirections: the broker outlives this shell and holds none of its pipes.
    (cd "$dir" && exec setsid "$tansu" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$advertised" \
        --storage-engine "$storage" "$@" \
        </dev/null >>"$dir/tansu.log" 2>&1) &
    launched=$!
    echo "$launched" >"$dir/tansu.pid"
    wait_port "$port" "$launched" "tansu ($dir)" "$dir/tansu.log"
}

# launch_stunnel <dir> <accept port> <connect port> <require client cert: yes|no>
launch_stunnel() {
    local dir=$1 accept=$2 connect=$3 client_cert=$4 certs=$5 pid
    {
        echo "foreground = yes"
        echo "pid ="
        echo "[kafka]"
        echo "accept = 127.0.0.1:$accept"
        echo "connect = 127.0.0.1:$connect"
        echo "cert = $certs/server.pem"
        echo "key = $certs/server.key"
        if [[ $client_cert == yes ]]; then
            echo "CAfile = $certs/ca.pem"
            echo "verifyChain = yes"
            echo "requireCert = yes"
        fi
    } >"$dir/stunnel.conf"
    (exec setsid "$stunnel" "$dir/stunnel.conf" </dev/null >>"$dir/stunnel.log" 2>&1) &
    pid=$!
    echo "$pid" >"$dir/stunnel.pid"
    wait_port "$accept" "$pid" "stunnel ($dir)" "$dir/stunnel.log"
}

# The test CA, the brokers' certificate (127.0.0.1 and localhost), a client certificate, a
# second CA that signed nothing, and the SASL password.
make_certs() {
    local c=$1 ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    mkdir -p "$c"
    for ca in ca other-ca; do
        openssl req -x509 "${ec[@]}" -keyout "$c/$ca.key" -out "$c/$ca.pem" -days 2 \
            -subj "/CN=Helios test $ca" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    done
    sign() { # <name> <CN> <extensions>
        openssl req -new "${ec[@]}" -keyout "$c/$1.key" -out "$c/$1.csr" -subj "/CN=$2" 2>/dev/null
        printf '%b' "$3" >"$c/$1.ext"
        openssl x509 -req -in "$c/$1.csr" -CA "$c/ca.pem" -CAkey "$c/ca.key" -CAcreateserial \
            -days 2 -out "$c/$1.pem" -extfile "$c/$1.ext" 2>/dev/null
    }
    sign server 127.0.0.1 "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    sign client helios-test-client "extendedKeyUsage=clientAuth\n"
    openssl rand -hex 16 >"$c/sasl-password"
    chmod 600 "$c"/*.key "$c/sasl-password"
}

start_secure() {
    local dir=$1 certs=$1/certs tls_in tls_out sasl_in sasl_out password
    make_certs "$certs"
    password=$(cat "$certs/sasl-password")

    mkdir -p "$dir/tls" "$dir/sasl"
    tls_in=$(free_port); tls_out=$(free_port)
    launch_tansu "$dir/tls" "$tls_in" "$tls_out" || return 1
    launch_stunnel "$dir/tls" "$tls_out" "$tls_in" yes "$certs" || return 1

    # SCRAM users first, on a broker without --authentication; then the same storage with it.
    sasl_in=$(free_port); sasl_out=$(free_port)
    launch_tansu "$dir/sasl" "$sasl_in" "$sasl_out" || return 1
    local user
    for user in 512 256; do
        if ! "$tansu" user create --broker "tcp://127.0.0.1:$sasl_in" --mechanism "scram$user" \
            "helios-$user" "$password" >>"$dir/sasl/tansu.log" 2>&1; then
            log "tansu user create helios-$user failed; see $dir/sasl/tansu.log"
            return 1
        fi
    done
    kill "$launched"
    while kill -0 "$launched" 2>/dev/null; do sleep 0.05; done
    launch_tansu "$dir/sasl" "$sasl_in" "$sasl_out" --authentication || return 1
    launch_stunnel "$dir/sasl" "$sasl_out" "$sasl_in" no "$certs" || return 1

    log "TLS (client certificate) on 127.0.0.1:$tls_out, SASL_SSL (SCRAM) on 127.0.0.1:$sasl_out; test CA $certs/ca.pem"
    echo "export HELIOS_TEST_KAFKA_TLS=127.0.0.1:$tls_out"
    echo "export HELIOS_TEST_KAFKA_SASL=127.0.0.1:$sasl_out"
    echo "export HELIOS_TEST_KAFKA_CERTS=$certs"
}

start() {
    install
    local dir port launched
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
    launch_tansu "$dir" "$port" "$port" || exit 1
    log "tansu $TANSU_VERSION (pid $launched) listening on 127.0.0.1:$port; log in $dir/tansu.log"
    echo "export HELIOS_TEST_KAFKA=127.0.0.1:$port"
    echo "export HELIOS_TANSU_PID=$launched"
    echo "export HELIOS_TANSU_DIR=$dir"

    if [[ ${HELIOS_TEST_KAFKA_SECURE:-1} == 0 ]]; then return 0; fi
    stunnel=$(command -v stunnel4 || command -v stunnel || true)
    if [[ -z $stunnel ]] || ! command -v openssl >/dev/null; then
        if [[ ${CI:-} == true ]]; then
            log "stunnel4 or openssl is missing (apt-get install stunnel4 openssl); failing under CI=true"
            HELIOS_TANSU_DIR=$dir stop
            exit 1
        fi
        log "stunnel4 or openssl is missing: no TLS or SASL broker, so those Kafka tests fail;" \
            "apt-get install stunnel4 openssl (scripts/test does)"
        return 0
    fi
    if ! start_secure "$dir"; then
        log "the TLS/SASL brokers did not start (logs under $dir/tls and $dir/sasl)"
        HELIOS_TANSU_DIR=$dir stop
        exit 1
    fi
}

# stop_pid <pid file> <process name>: stops it if it is still that process.
stop_pid() {
    local file=$1 name=$2 pid i
    [[ -f $file ]] || return 0
    pid=$(cat "$file")
    # Only what we started: the pid must still be that program.
    if ! kill -0 "$pid" 2>/dev/null || ! grep -q "$name" "/proc/$pid/cmdline" 2>/dev/null; then
        return 0
    fi
    kill "$pid"
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { log "stopped $name (pid $pid)"; return 0; }
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    log "killed $name (pid $pid) after 10s"
}

stop() {
    local dir=${HELIOS_TANSU_DIR:-}
    if [[ -z $dir ]]; then
        if [[ -n ${HELIOS_TANSU_PID:-} ]] && grep -q tansu "/proc/$HELIOS_TANSU_PID/cmdline" 2>/dev/null; then
            kill "$HELIOS_TANSU_PID"; log "stopped tansu (pid $HELIOS_TANSU_PID)"; return 0
        fi
        log "nothing to stop: HELIOS_TANSU_DIR is unset"; return 0
    fi
    local sub
    for sub in sasl tls; do
        stop_pid "$dir/$sub/stunnel.pid" stunnel
        stop_pid "$dir/$sub/tansu.pid" tansu
    done
    stop_pid "$dir/tansu.pid" tansu
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
