#!/usr/bin/env bash
# A clickhouse-server on loopback for the sink tests.
#
# Run it:
#   eval "$(scripts/services/clickhouse.sh start)"  # exports HELIOS_TEST_CLICKHOUSE, HELIOS_CLICKHOUSE_PID, HELIOS_CLICKHOUSE_DIR,
#                                                   # HELIOS_TEST_CLICKHOUSE_READ_USER, HELIOS_TEST_CLICKHOUSE_READ_PASSWORD,
#                                                   # HELIOS_TEST_CLICKHOUSE_HTTPS, HELIOS_TEST_CLICKHOUSE_CA,
#                                                   # HELIOS_TEST_CLICKHOUSE_USER, HELIOS_TEST_CLICKHOUSE_PASSWORD
#   scripts/services/clickhouse.sh stop             # stops the server started above (uses HELIOS_CLICKHOUSE_PID/DIR)
#   scripts/services/clickhouse.sh restart DIR      # starts the server of DIR again, same ports and data
# or source it and call the functions:
#   source scripts/services/clickhouse.sh && clickhouse_start && ... && clickhouse_stop
#
# Installs Debian's clickhouse-server and clickhouse-client (18.16 on bookworm) when they are
# missing, writes its own config into a temp dir (data, logs, users; nothing under /etc or
# /var/lib is used) and listens on free loopback ports (HTTP, HTTPS and native).
#
# HTTPS: a test CA and a server certificate for 127.0.0.1 and localhost are made at start
# with the openssl CLI (scripts/services/test-ca.sh, in the server's dir);
# HELIOS_TEST_CLICKHOUSE_HTTPS is https://127.0.0.1:<port> and HELIOS_TEST_CLICKHOUSE_CA
# the CA file a client must be given to trust it (it is in no system trust store). The HTTPS
# port requires mutual TLS: a client presents a certificate the test CA signed
# (HELIOS_TEST_CLICKHOUSE_CLIENT_CERT and _KEY); one signed by the other CA
# (HELIOS_TEST_CLICKHOUSE_OTHER_CLIENT_CERT and _KEY), or none, is refused.
#
# Besides `default` (no password, what most sink tests use), users.xml has `helios_writer`
# (a random password per server, HELIOS_TEST_CLICKHOUSE_PASSWORD; full access: the sink's
# user of the HTTPS tests) and `helios_reader`: the least-privilege
# user the read API connects as (readonly = 1, so no settings changes and no table
# functions; only the `helios` database; memory, time and result limits in its profile).
# Its password is random per server (HELIOS_TEST_CLICKHOUSE_READ_PASSWORD). ClickHouse 18.16
# cannot hide the `system` database from any user; the SQL guard refuses it.
#
# Settings (environment):
#   HELIOS_TEST_TMP               parent dir for the server's data and log (default: a new temp dir)
#   HELIOS_TEST_CLICKHOUSE_PORT   HTTP port (default: a free loopback port); HTTPS and native ports: free ones
#   HELIOS_CLICKHOUSE_WAIT        seconds to wait for `SELECT 1` to answer (default 60)

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: thin wrappers that run this file in a child shell and import its exports.
    _clickhouse_script=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
    clickhouse_start() {
        local out
        out=$(bash "$_clickhouse_script" start) || return 1
        eval "$out"
        echo "HELIOS_TEST_CLICKHOUSE=$HELIOS_TEST_CLICKHOUSE" >&2
    }
    clickhouse_stop() { bash "$_clickhouse_script" stop; }
    return 0
fi

set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { echo "clickhouse.sh: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install() {
    if command -v clickhouse-server >/dev/null && command -v clickhouse-client >/dev/null; then
        return
    fi
    log "installing Debian's clickhouse-server and clickhouse-client"
    if [[ $(id -u) -ne 0 ]]; then
        log "need root for apt-get; install clickhouse-server and clickhouse-client by hand"; exit 1
    fi
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server clickhouse-client >&2
}

free_port() { # [ports already taken ...]
    # Below the kernel's ephemeral range, so that no outgoing connection and no listener
    # on port 0 takes one of the server's ports while it is down (`restart` reuses them).
    local low high port i taken
    low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    high=20000
    ((low - high >= 1000)) || high=10000
    for i in $(seq 1 50); do
        port=$((high + RANDOM % (low - high)))
        taken=0
        for t in "$@"; do [[ $port == "$t" ]] && taken=1; done
        if ((taken == 0)) && ! port_open "$port"; then echo "$port"; return; fi
    done
    log "found no free loopback port"; exit 1
}

write_config() {
    local dir=$1 http=$2 native=$3 https=$4
    mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log"
    bash "$here/test-ca.sh" "$dir/tls"
    cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>$dir/log/clickhouse-server.log</log>
        <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <http_port>$http</http_port>
    <https_port>$https</https_port>
    <tcp_port>$native</tcp_port>
    <openSSL>
        <server>
            <certificateFile>$dir/tls/server.pem</certificateFile>
            <privateKeyFile>$dir/tls/server.key</privateKeyFile>
            <!-- Mutual TLS: a client must present a certificate the test CA signed. -->
            <verificationMode>strict</verificationMode>
            <caConfig>$dir/tls/ca.pem</caConfig>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <!-- TLS 1.2 only: a server refuses a client certificate during a TLS 1.2
                 handshake, so a refusal always reaches the client as one; under TLS 1.3 it
                 comes after the handshake and may arrive as a closed connection instead,
                 depending on timing (docs/SECURITY.md). -->
            <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1,tlsv1_3</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>64</max_concurrent_queries>
    <uncompressed_cache_size>134217728</uncompressed_cache_size>
    <mark_cache_size>134217728</mark_cache_size>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
EOF
    local read_password write_password
    read_password=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    echo "$read_password" >"$dir/read.password"
    write_password=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    echo "$write_password" >"$dir/write.password"
    cat >"$dir/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
        </default>
        <helios_reader>
            <readonly>1</readonly>
            <allow_ddl>0</allow_ddl>
            <max_memory_usage>268435456</max_memory_usage>
            <max_execution_time>10</max_execution_time>
            <max_result_rows>1000000</max_result_rows>
            <max_result_bytes>1073741824</max_result_bytes>
            <result_overflow_mode>throw</result_overflow_mode>
            <output_format_json_quote_64bit_integers>0</output_format_json_quote_64bit_integers>
            <output_format_json_quote_denormals>0</output_format_json_quote_denormals>
        </helios_reader>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <helios_writer>
            <password>$write_password</password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </helios_writer>
        <helios_reader>
            <password>$read_password</password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>helios_reader</profile>
            <quota>default</quota>
            <allow_databases><database>helios</database></allow_databases>
        </helios_reader>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
    echo "$http" >"$dir/http.port"
    echo "$https" >"$dir/https.port"
    echo "$native" >"$dir/native.port"
}

# Starts the server of an already configured dir and waits until it answers `SELECT 1`.
launch() {
    local dir=$1 http https pid waited wait_max
    http=$(cat "$dir/http.port")
    https=$(cat "$dir/https.port")
    if port_open "$http"; then
        log "port $http is already in use; unset HELIOS_TEST_CLICKHOUSE_PORT or pick another"; exit 1
    fi
    # setsid + redirections: the server outlives this shell and holds none of its pipes.
    cd "$dir"
    setsid clickhouse-server --config-file="$dir/config.xml" \
        </dev/null >"$dir/log/stdout.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/clickhouse.pid"

    wait_max=${HELIOS_CLICKHOUSE_WAIT:-60}
    waited=0
    until [[ $(curl -fsS --max-time 2 "http://127.0.0.1:$http/?query=SELECT%201" 2>/dev/null) == 1 ]]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "clickhouse-server exited before answering on 127.0.0.1:$http; last lines of its logs:"
            tail -n 40 "$dir/log/clickhouse-server.err.log" "$dir/log/stdout.log" >&2 2>/dev/null || true
            exit 1
        fi
        if ((waited >= wait_max * 10)); then
            log "clickhouse-server did not answer SELECT 1 on 127.0.0.1:$http within ${wait_max}s; last lines of its logs:"
            tail -n 40 "$dir/log/clickhouse-server.err.log" "$dir/log/stdout.log" >&2 2>/dev/null || true
            kill "$pid" 2>/dev/null || true
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    # The HTTPS port opens with the HTTP one; check it answers through the test CA, as the
    # password user (a certificate or key the server did not take fails here, not in a test).
    if [[ $(curl -fsS --max-time 5 --cacert "$dir/tls/ca.pem" -u "helios_writer:$(cat "$dir/write.password")" \
            --cert "$dir/tls/client.pem" --key "$dir/tls/client.key" \
            "https://127.0.0.1:$https/?query=SELECT%201" 2>&1) != 1 ]]; then
        log "clickhouse-server answers on http://127.0.0.1:$http but not on https://127.0.0.1:$https; last lines of its logs:"
        tail -n 40 "$dir/log/clickhouse-server.err.log" >&2 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
        exit 1
    fi
    log "clickhouse-server (pid $pid) answering on http://127.0.0.1:$http and https://127.0.0.1:$https; logs in $dir/log"
    echo "export HELIOS_TEST_CLICKHOUSE=http://127.0.0.1:$http"
    echo "export HELIOS_CLICKHOUSE_PID=$pid"
    echo "export HELIOS_CLICKHOUSE_DIR=$dir"
    echo "export HELIOS_TEST_CLICKHOUSE_READ_USER=helios_reader"
    echo "export HELIOS_TEST_CLICKHOUSE_READ_PASSWORD=$(cat "$dir/read.password")"
    echo "export HELIOS_TEST_CLICKHOUSE_HTTPS=https://127.0.0.1:$https"
    echo "export HELIOS_TEST_CLICKHOUSE_CA=$dir/tls/ca.pem"
    echo "export HELIOS_TEST_CLICKHOUSE_UNTRUSTED_CA=$dir/tls/other-ca.pem"
    echo "export HELIOS_TEST_CLICKHOUSE_CLIENT_CERT=$dir/tls/client.pem"
    echo "export HELIOS_TEST_CLICKHOUSE_CLIENT_KEY=$dir/tls/client.key"
    echo "export HELIOS_TEST_CLICKHOUSE_OTHER_CLIENT_CERT=$dir/tls/other-client.pem"
    echo "export HELIOS_TEST_CLICKHOUSE_OTHER_CLIENT_KEY=$dir/tls/other-client.key"
    echo "export HELIOS_TEST_CLICKHOUSE_USER=helios_writer"
    echo "export HELIOS_TEST_CLICKHOUSE_PASSWORD=$(cat "$dir/write.password")"
}

start() {
    install
    if ! command -v curl >/dev/null; then
        log "curl is needed to probe the server; apt-get install -y curl"; exit 1
    fi
    local dir http native https
    if [[ -n ${HELIOS_TEST_TMP:-} ]]; then
        mkdir -p "$HELIOS_TEST_TMP"
        dir=$(mktemp -d "$HELIOS_TEST_TMP/clickhouse.XXXXXX")
    else
        dir=$(mktemp -d "${TMPDIR:-/tmp}/helios-clickhouse.XXXXXX")
    fi
    dir=$(cd "$dir" && pwd)
    http=${HELIOS_TEST_CLICKHOUSE_PORT:-$(free_port)}
    native=$(free_port "$http")
    https=$(free_port "$http" "$native")
    write_config "$dir" "$http" "$native" "$https"
    launch "$dir"
}

restart() {
    local dir=${1:-${HELIOS_CLICKHOUSE_DIR:-}}
    if [[ -z $dir || ! -f $dir/config.xml ]]; then
        log "restart needs the dir of a server started before (argument or HELIOS_CLICKHOUSE_DIR)"; exit 1
    fi
    launch "$dir"
}

stop() {
    local pid=${HELIOS_CLICKHOUSE_PID:-}
    if [[ -z $pid && -n ${HELIOS_CLICKHOUSE_DIR:-} && -f $HELIOS_CLICKHOUSE_DIR/clickhouse.pid ]]; then
        pid=$(cat "$HELIOS_CLICKHOUSE_DIR/clickhouse.pid")
    fi
    if [[ -z $pid ]]; then
        log "nothing to stop: HELIOS_CLICKHOUSE_PID and HELIOS_CLICKHOUSE_DIR are unset"; return 0
    fi
    # Only the server we started: the pid must still be a clickhouse process.
    if ! kill -0 "$pid" 2>/dev/null || ! grep -q clickhouse "/proc/$pid/cmdline" 2>/dev/null; then
        log "clickhouse-server (pid $pid) is not running"; return 0
    fi
    kill "$pid"
    local i
    for i in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || { log "stopped clickhouse-server (pid $pid)"; return 0; }
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    log "killed clickhouse-server (pid $pid) after 15s"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    restart) restart "${2:-}" ;;
    *) echo "usage: $0 start|stop|restart [DIR]" >&2; exit 2 ;;
esac
