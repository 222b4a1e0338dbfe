#!/usr/bin/env bash
# Makes the certificates a TLS ticketd cluster needs, with the openssl command line: a CA, one
# certificate per node (SAN URI ticketd:node:<id>, which peers check with --tls-cluster yes,
# plus the IPs/names clients connect to) and one for clients. With --test-extras also what the
# tests need to be refused: a second CA with a client and a node-1 certificate of its own, an
# expired client certificate, and a certificate of our CA naming node 9 (not the one meant for
# node 1). Keys are EC P-256, mode 600. Existing files in DIR are overwritten.
set -euo pipefail

DIR=certs
NODES="1 2 3"
DAYS=825
NAMES=()
EXTRAS=0
REUSE_CA=0

usage() {
  cat <<EOF
usage: tools/make-certs.sh [--dir DIR] [--nodes "1 2 3"] [--ip IP]... [--dns NAME]... [--days N]
                           [--reuse-ca] [--test-extras]

Writes into DIR (default ./certs):
  ca.crt ca.key                     the CA (--tls-ca-cert-file on every node, --cacert for clients)
  node-<id>.crt node-<id>.key       one per node id (--tls-cert-file / --tls-key-file); SAN
                                    URI:ticketd:node:<id>, IP:127.0.0.1, DNS:localhost and
                                    every --ip / --dns given (the addresses clients dial)
  client.crt client.key             a client certificate (redis-cli --cert/--key)
with --test-extras also:
  other-ca.crt other-ca.key         a second CA
  other-client.crt/.key             a client certificate of the second CA
  other-node-1.crt/.key             a node-1 certificate of the second CA
  expired-client.crt/.key           a client certificate of our CA that expired in 2020
  node-9-as-1.crt/.key              our CA's certificate for node 9 (a peer posing as node 1)

  --days N     validity of the certificates (default 825)
  --reuse-ca   keep DIR's ca.crt/ca.key (and client.*): only make the --nodes certificates,
               e.g. for a node about to join: tools/make-certs.sh --reuse-ca --nodes 4
  -h, --help   this text
EOF
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) [[ $# -ge 2 ]] || { echo "make-certs.sh: --dir needs a value" >&2; exit 2; }; DIR=$2; shift 2 ;;
    --nodes) [[ $# -ge 2 ]] || { echo "make-certs.sh: --nodes needs a value" >&2; exit 2; }; NODES=$2; shift 2 ;;
    --ip) [[ $# -ge 2 ]] || { echo "make-certs.sh: --ip needs a value" >&2; exit 2; }; NAMES+=("IP:$2"); shift 2 ;;
    --dns) [[ $# -ge 2 ]] || { echo "make-certs.sh: --dns needs a value" >&2; exit 2; }; NAMES+=("DNS:$2"); shift 2 ;;
    --days)
      [[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -gt 0 ]] || { echo "make-certs.sh: --days needs a positive integer" >&2; exit 2; }
      DAYS=$2; shift 2 ;;
    --test-extras) EXTRAS=1; shift ;;
    --reuse-ca) REUSE_CA=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "make-certs.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
for id in $NODES; do
  [[ "$id" =~ ^[1-9][0-9]*$ ]] || { echo "make-certs.sh: node id '$id' is not a positive integer" >&2; exit 2; }
done
command -v openssl >/dev/null || { echo "make-certs.sh: openssl not found (apt-get install openssl)" >&2; exit 2; }

mkdir -p "$DIR"
cd "$DIR"
umask 077
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; chmod 600 "$1.key"; }

# ca NAME CN
ca() {
  key "$1"
  openssl req -x509 -new -key "$1.key" -sha256 -days "$((DAYS + 365))" -subj "/O=ticketd/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1.crt"
  chmod 644 "$1.crt"
}

# leaf NAME CN CA EXT-LINES
leaf() {
  local name=$1 cn=$2 issuer=$3 ext=$4
  key "$name"
  openssl req -new -key "$name.key" -subj "/O=ticketd/CN=$cn" -out "$WORK/$name.csr"
  printf '%b\n' "$ext" >"$WORK/$name.ext"
  openssl x509 -req -in "$WORK/$name.csr" -CA "$issuer.crt" -CAkey "$issuer.key" -CAcreateserial \
    -CAserial "$WORK/$issuer.srl" -sha256 -days "$DAYS" -extfile "$WORK/$name.ext" -out "$name.crt" 2>/dev/null
  chmod 644 "$name.crt"
}

node_ext() {
  local san="URI:ticketd:node:$1,IP:127.0.0.1,DNS:localhost"
  for n in "${NAMES[@]+"${NAMES[@]}"}"; do san+=",$n"; done
  echo "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=$san"
}
CLIENT_EXT="basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth"

if [[ $REUSE_CA -eq 1 ]]; then
  [[ -f ca.crt && -f ca.key ]] || { echo "make-certs.sh: --reuse-ca: no ca.crt/ca.key in $(pwd)" >&2; exit 2; }
else
  ca ca "ticketd CA"
fi
for id in $NODES; do leaf "node-$id" "ticketd node $id" ca "$(node_ext "$id")"; done
[[ $REUSE_CA -eq 1 && -f client.crt ]] || leaf client "ticketd client" ca "$CLIENT_EXT"

if [[ $EXTRAS -eq 1 ]]; then
  ca other-ca "another CA"
  leaf other-client "client of another CA" other-ca "$CLIENT_EXT"
  leaf other-node-1 "node 1 of another CA" other-ca "$(node_ext 1)"
  leaf node-9-as-1 "ticketd node 9" ca "$(node_ext 9)"
  # Expired: `openssl ca` is the CLI's way to set both dates (x509 -req only counts days from now).
  key expired-client
  openssl req -new -key expired-client.key -subj "/O=ticketd/CN=expired client" -out "$WORK/expired.csr"
  mkdir -p "$WORK/ca"
  : >"$WORK/ca/index.txt"
  echo 1000 >"$WORK/ca/serial"
  cat >"$WORK/ca.cnf" <<EOF
[ca]
default_ca = expired
[expired]
dir = $WORK/ca
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
default_md = sha256
policy = anything
copy_extensions = none
x509_extensions = client
[anything]
commonName = supplied
[client]
basicConstraints = critical,CA:FALSE
extendedKeyUsage = clientAuth
EOF
  openssl ca -batch -config "$WORK/ca.cnf" -cert ca.crt -keyfile ca.key -startdate 20200101000000Z \
    -enddate 20200201000000Z -in "$WORK/expired.csr" -out expired-client.crt -notext >/dev/null 2>&1
  chmod 644 expired-client.crt
fi
echo "make-certs.sh: wrote $(ls | tr '\n' ' ')into $(pwd)"
