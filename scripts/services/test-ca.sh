#!/usr/bin/env bash
# A throwaway certificate authority and a server certificate for loopback, for the TLS
# tests (the ClickHouse test server's HTTPS port, the HTTPS receivers of the Rust tests).
#
#   scripts/services/test-ca.sh DIR
#
# Writes, with the openssl CLI:
#   DIR/ca.pem           the test CA's certificate (what a client is told to trust)
#   DIR/server.pem       a server certificate signed by it, for DNS:localhost and IP:127.0.0.1
#   DIR/server.key       its private key (PKCS#8, mode 0600)
#   DIR/other-ca.pem     a second CA (an "untrusted" CA for tests): it signed only
#   DIR/client.pem       a client certificate signed by the test CA (CN=helios-client), for
#   DIR/client.key       servers that require mutual TLS, and its key (PKCS#8, 0600)
#   DIR/other-client.pem a client certificate signed by the second CA (one such a server
#   DIR/other-client.key refuses), and its key
#   DIR/other-server.pem a server certificate for the same names signed by the second CA
#   DIR/other-server.key (a "renewed" certificate for the listener tests), and its key
#   DIR/ca-none-revoked.crl      the test CA's revocation list (PEM), revoking nothing
#   DIR/ca-client-revoked.crl    the same CA's list revoking client.pem
# Keys are fresh on every run and valid for two days; nothing is read from or written to
# the system's trust store. An existing DIR/ca.pem is kept (a restarted server keeps its
# certificate).
set -euo pipefail

dir=${1:?usage: test-ca.sh DIR}
mkdir -p "$dir"
cd "$dir"
if [[ -s ca.pem && -s server.pem && -s server.key && -s other-ca.pem && -s client.pem \
    && -s client.key && -s other-client.pem && -s other-client.key && -s other-server.pem \
    && -s other-server.key && -s ca-none-revoked.crl && -s ca-client-revoked.crl ]]; then
    exit 0
fi
command -v openssl >/dev/null || { echo "test-ca.sh: openssl is needed (apt-get install -y openssl)" >&2; exit 1; }

umask 077
new_ca() { # <name> <subject>
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$1.key" -out "$1.pem" -days 2 -subj "$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
new_ca ca "/CN=Helios test CA"
new_ca other-ca "/CN=Helios untrusted test CA"
# A certificate for <CN> signed by <CA>, with these X.509 extensions (one per argument).
new_leaf() { # <name> <signing CA> <CN> <extension>...
    local name=$1 signer=$2 cn=$3
    shift 3
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$name.key" -out "$name.csr" -subj "/CN=$cn" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "$@" >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA "$signer.pem" -CAkey "$signer.key" -CAcreateserial \
        -out "$name.pem" -days 2 -extfile "$name.ext" 2>/dev/null
    rm -f "$name.csr" "$name.ext" "$signer.srl"
}
server_ext=("subjectAltName=DNS:localhost,IP:127.0.0.1"
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth")
client_ext=("keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth")
new_leaf server ca localhost "${server_ext[@]}"
new_leaf other-server other-ca localhost "${server_ext[@]}"
new_leaf client ca helios-client "${client_ext[@]}"
new_leaf other-client other-ca helios-client "${client_ext[@]}"
rm -f ca.srl
# Revocation lists of the test CA: `openssl ca` keeps its state in an index file.
cat >crl.cnf <<'CNF'
[ca]
default_ca = test
[test]
database = crl-index.txt
crlnumber = crl-number
default_md = sha256
default_crl_days = 2
CNF
: >crl-index.txt
echo 01 >crl-number
crl() { openssl ca -config crl.cnf -keyfile ca.key -cert ca.pem "$@" 2>/dev/null; }
crl -gencrl -out ca-none-revoked.crl
crl -revoke client.pem
crl -gencrl -out ca-client-revoked.crl
rm -f crl.cnf crl-index.txt* crl-number*
chmod 0644 ca.pem other-ca.pem server.pem other-server.pem client.pem other-client.pem \
    ca-none-revoked.crl ca-client-revoked.crl
