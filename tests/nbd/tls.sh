#!/usr/bin/env bash
# tests/nbd/tls.sh VDISK: NBD over TLS (NBD_OPT_STARTTLS), with x509
# certificates and pre-shared keys made here (certtool, psktool):
#   - `vdisk nbd --object tls-creds-x509|tls-creds-psk ... --tls-creds`
#     read and written by qemu-io, qemu-img and nbdinfo; a plain client, a
#     client without a certificate (verify-peer) and a wrong key refused;
#   - vdisk's own client (vdisk info, convert, io on nbds+unix:// URIs)
#     against qemu-nbd --tls-creds and against vdisk nbd, x509 and PSK.
# Exact bytes compared (cmp) and exact messages where the peers print them.
# Unix sockets only (in the test's own directory).
set -euo pipefail
VDISK_TEST_NAME=${VDISK_TEST_NAME:-nbd-tls}
# shellcheck source=SCRIPTDIR/../common/skip.sh
. "$(dirname "${BASH_SOURCE[0]}")/../common/skip.sh"

VDISK=$(realpath "$1")
for t in certtool psktool qemu-img qemu-io qemu-nbd nbdinfo; do
  command -v "$t" >/dev/null || skip_test "$t is not installed"
done

W=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-nbd-tls.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$W"
}
trap cleanup EXIT
cd "$W"

fail() {
  echo "FAIL: $*"
  exit 1
}

# expect_eq WHAT GOT WANT
expect_eq() {
  [ "$2" == "$3" ] || fail "$1: got
---
$2
---
want
---
$3
---"
}

# ---- Credentials -------------------------------------------------------------
mkdir -p ca x509 client noclient psk wrongpsk
certtool --generate-privkey --key-type=ecdsa --outfile ca/ca-key.pem 2>/dev/null
printf 'cn = vdisk test CA\nca\ncert_signing_key\nexpiration_days = 2\n' >ca/ca.info
certtool --generate-self-signed --load-privkey ca/ca-key.pem --template ca/ca.info \
  --outfile ca/ca-cert.pem 2>/dev/null
certtool --generate-privkey --key-type=ecdsa --outfile x509/server-key.pem 2>/dev/null
printf 'organization = vdisk\ncn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\nsigning_key\nencryption_key\nexpiration_days = 2\n' >ca/server.info
certtool --generate-certificate --load-ca-certificate ca/ca-cert.pem \
  --load-ca-privkey ca/ca-key.pem --load-privkey x509/server-key.pem \
  --template ca/server.info --outfile x509/server-cert.pem 2>/dev/null
certtool --generate-privkey --key-type=ecdsa --outfile client/client-key.pem 2>/dev/null
printf 'organization = vdisk\ncn = client\ntls_www_client\nsigning_key\nencryption_key\nexpiration_days = 2\n' >ca/client.info
certtool --generate-certificate --load-ca-certificate ca/ca-cert.pem \
  --load-ca-privkey ca/ca-key.pem --load-privkey client/client-key.pem \
  --template ca/client.info --outfile client/client-cert.pem 2>/dev/null
cp ca/ca-cert.pem x509/
cp ca/ca-cert.pem client/
cp ca/ca-cert.pem noclient/ # a client with no certificate of its own
psktool -u alice -p psk/keys.psk >/dev/null
psktool -u alice -p wrongpsk/keys.psk >/dev/null
cmp -s psk/keys.psk wrongpsk/keys.psk && fail "psktool made the same key twice"

CX=(--object "tls-creds-x509,id=tls0,dir=$W/client,endpoint=client")
CP=(--object "tls-creds-psk,id=tls0,dir=$W/psk,username=alice,endpoint=client")
CW=(--object "tls-creds-psk,id=tls0,dir=$W/wrongpsk,username=alice,endpoint=client")

# The image: 4 MiB, patterns in places.
qemu-img create -q -f raw disk.raw 4M
qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'write -P 0x22 3M 512k' disk.raw >/dev/null
cp disk.raw want.raw

wait_sock() {
  for _ in $(seq 200); do
    [ -S "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || fail "the server exited before listening: $(cat "$3")"
    sleep 0.05
  done
  fail "no socket $1"
}

# serve NAME ARGS...: vdisk nbd -t -v on the socket NAME.sock, log NAME.log.
serve() {
  local name=$1
  shift
  "$VDISK" nbd -t -v -k "$W/$name.sock" -f raw "$@" disk.raw 2>"$name.log" &
  PIDS+=($!)
  SERVER=$!
  wait_sock "$W/$name.sock" "$SERVER" "$name.log"
}

stop() {
  kill -TERM "$SERVER"
  wait "$SERVER" || fail "the server exited with $?: $(cat "$1.log")"
}

# ---- vdisk nbd with x509 (verify-peer: on, qemu's default) ------------------------
serve x509 --object "tls-creds-x509,id=tls0,dir=$W/x509,endpoint=server" --tls-creds tls0
S=$W/x509.sock
out=$(qemu-io "${CX[@]}" --image-opts "driver=nbd,path=$S,tls-creds=tls0,tls-hostname=localhost" \
  -c 'read -P 0x11 0 1M' -c 'write -P 0x33 1M 64k' -c 'read -P 0x33 1M 64k' \
  -c 'read -P 0x22 3M 512k' | grep -v '^[0-9].*sec')
expect_eq "qemu-io over x509" "$out" "read 1048576/1048576 bytes at offset 0
wrote 65536/65536 bytes at offset 1048576
read 65536/65536 bytes at offset 1048576
read 524288/524288 bytes at offset 3145728"
qemu-io -f raw -c 'write -P 0x33 1M 64k' want.raw >/dev/null
qemu-img convert -O raw "${CX[@]}" --image-opts "driver=nbd,path=$S,tls-creds=tls0,tls-hostname=localhost" got.raw
cmp got.raw want.raw || fail "qemu-img convert over x509: not the image's bytes"
out=$(nbdinfo --size "nbds+unix:///?socket=$S&tls-certificates=$W/client")
expect_eq "nbdinfo over x509" "$out" 4194304
# A plain client is refused: TLS is required.
out=$(nbdinfo --size "nbd+unix:///?socket=$S" 2>&1) && fail "nbdinfo without TLS: $out"
expect_eq "nbdinfo without TLS" "$out" \
  "nbdinfo: nbd_connect_uri: handshake: server requires TLS encryption first: Operation not supported"
out=$(qemu-img info --image-opts "driver=nbd,path=$S" 2>&1) && fail "qemu-img without TLS: $out"
expect_eq "qemu-img without TLS" "$out" \
  "qemu-img: Could not open 'driver=nbd,path=$S': TLS negotiation required before option 7 (go)
Did you forget a valid tls-creds?
server reported: TLS is required: NBD_OPT_GO needs NBD_OPT_STARTTLS first"
# A client with no certificate: the handshake fails (verify-peer).
out=$(nbdinfo --size "nbds+unix:///?socket=$S&tls-certificates=$W/noclient" 2>&1) &&
  fail "nbdinfo without a client certificate: $out"
# vdisk's own client on the export: read, written, converted.
out=$("$VDISK" info "nbds+unix:///?socket=$S&tls-certificates=$W/client")
expect_eq "vdisk info over x509" "$out" "image: nbds+unix:///?socket=$S&tls-certificates=$W/client
file format: raw
virtual size: 4 MiB (4194304 bytes)
disk size: unavailable"
out=$("$VDISK" io -f raw -c 'write -P 0x44 2M 128k' -c 'read -P 0x44 2M 128k' \
  "nbds+unix:///?socket=$S&tls-certificates=$W/client" | grep -v '^[0-9].*sec')
expect_eq "vdisk io over x509" "$out" "wrote 131072/131072 bytes at offset 2097152
read 131072/131072 bytes at offset 2097152"
qemu-io -f raw -c 'write -P 0x44 2M 128k' want.raw >/dev/null
rm -f got.raw
"$VDISK" convert -O raw "nbds+unix:///?socket=$S&tls-certificates=$W/client" got.raw
cmp got.raw want.raw || fail "vdisk convert from vdisk nbd over x509: not the image's bytes"
stop x509
grep -q "client 1: TLS: (TLS1" x509.log || fail "no TLS line in the server's log: $(cat x509.log)"
grep -q "the TLS handshake failed" x509.log ||
  fail "the client without a certificate was not refused in the TLS handshake: $(cat x509.log)"
cmp disk.raw want.raw || fail "the image after the x509 session: not the bytes written"

# ---- The same over TCP on 127.0.0.1: nbds://, the certificate's address checked -----------
port=
for _ in $(seq 20); do
  p=$((20000 + RANDOM % 40000))
  if "$VDISK" nbd -t -b 127.0.0.1 -p "$p" -f raw --fork --pid-file "$W/tcp.pid" \
    --object "tls-creds-x509,id=tls0,dir=$W/x509,endpoint=server" --tls-creds tls0 \
    disk.raw 2>tcp.log; then
    port=$p
    break
  fi
done
[ -n "$port" ] || fail "vdisk nbd found no free port: $(cat tcp.log)"
PIDS+=("$(cat "$W/tcp.pid")")
out=$(nbdinfo --size "nbds://127.0.0.1:$port/?tls-certificates=$W/client")
expect_eq "nbdinfo over TCP and x509" "$out" 4194304
rm -f got.raw
qemu-img convert -O raw "${CX[@]}" --image-opts "driver=nbd,host=127.0.0.1,port=$port,tls-creds=tls0" \
  got.raw
cmp got.raw want.raw || fail "qemu-img convert over TCP and x509: not the image's bytes"
rm -f got.raw
"$VDISK" convert -O raw "nbds://127.0.0.1:$port/?tls-certificates=$W/client" got.raw
cmp got.raw want.raw || fail "vdisk convert over TCP and x509: not the image's bytes"
kill -TERM "$(cat "$W/tcp.pid")"
for _ in $(seq 200); do
  [ -e "$W/tcp.pid" ] || break
  sleep 0.05
done
[ ! -e "$W/tcp.pid" ] || fail "vdisk nbd over TCP did not exit on SIGTERM"

# ---- vdisk nbd with PSK ---------------------------------------------------------------
serve psk --object "tls-creds-psk,id=tls0,dir=$W/psk,endpoint=server" --tls-creds tls0
S=$W/psk.sock
out=$(qemu-io "${CP[@]}" --image-opts "driver=nbd,path=$S,tls-creds=tls0,tls-hostname=localhost" \
  -c 'write -P 0x55 512k 4k' -c 'read -P 0x55 512k 4k' | grep -v '^[0-9].*sec')
expect_eq "qemu-io over PSK" "$out" "wrote 4096/4096 bytes at offset 524288
read 4096/4096 bytes at offset 524288"
qemu-io -f raw -c 'write -P 0x55 512k 4k' want.raw >/dev/null
rm -f got.raw
qemu-img convert -O raw "${CP[@]}" --image-opts "driver=nbd,path=$S,tls-creds=tls0" got.raw
cmp got.raw want.raw || fail "qemu-img convert over PSK: not the image's bytes"
out=$(nbdinfo --size "nbds+unix://alice@/?socket=$S&tls-psk-file=$W/psk/keys.psk")
expect_eq "nbdinfo over PSK" "$out" 4194304
# A wrong key: refused in the handshake.
out=$(nbdinfo --size "nbds+unix://alice@/?socket=$S&tls-psk-file=$W/wrongpsk/keys.psk" 2>&1) &&
  fail "nbdinfo with a wrong key: $out"
expect_eq "nbdinfo with a wrong key" "$out" \
  "nbdinfo: nbd_connect_uri: gnutls_handshake: A TLS fatal alert has been received. (-1/1)"
out=$(qemu-img info "${CW[@]}" --image-opts "driver=nbd,path=$S,tls-creds=tls0" 2>&1) &&
  fail "qemu-img with a wrong key: $out"
expect_eq "qemu-img with a wrong key" "$out" \
  "qemu-img: Could not open 'driver=nbd,path=$S,tls-creds=tls0': TLS handshake failed: A TLS fatal alert has been received."
rm -f got.raw
"$VDISK" convert -O raw "nbds+unix://alice@/?socket=$S&tls-psk-file=$W/psk/keys.psk" got.raw
cmp got.raw want.raw || fail "vdisk convert from vdisk nbd over PSK: not the image's bytes"
stop psk
[ "$(grep -c "the TLS handshake failed" psk.log)" = 2 ] ||
  fail "the wrong keys were not refused in the TLS handshake: $(cat psk.log)"

# ---- Many requests in flight over TLS (nbdcopy, 4 connections) --------------------------
if command -v nbdcopy >/dev/null; then
  head -c 16M /dev/urandom >src.raw
  qemu-img create -q -f raw big.raw 16M
  "$VDISK" nbd -t -e 4 -k "$W/big.sock" -f raw \
    --object "tls-creds-x509,id=tls0,dir=$W/x509,endpoint=server" --tls-creds tls0 \
    big.raw 2>big.log &
  PIDS+=($!)
  SERVER=$!
  wait_sock "$W/big.sock" "$SERVER" big.log
  U="nbds+unix:///?socket=$W/big.sock&tls-certificates=$W/client"
  nbdcopy --requests=64 src.raw "$U" || fail "nbdcopy to vdisk nbd over x509: $(cat big.log)"
  rm -f got.raw
  nbdcopy --requests=64 "$U" got.raw || fail "nbdcopy from vdisk nbd over x509: $(cat big.log)"
  cmp got.raw src.raw || fail "nbdcopy over x509: not the bytes written"
  stop big
  cmp big.raw src.raw || fail "nbdcopy over x509: the image holds other bytes"
fi

# ---- vdisk's client against qemu-nbd --tls-creds -------------------------------------
qemu_nbd() {
  local name=$1
  shift
  qemu-nbd -t -f raw -k "$W/$name.sock" "$@" disk.raw 2>"$name.log" &
  PIDS+=($!)
  SERVER=$!
  wait_sock "$W/$name.sock" "$SERVER" "$name.log"
}
qemu_nbd qx --object "tls-creds-x509,id=tls0,dir=$W/x509,endpoint=server" --tls-creds tls0
S=$W/qx.sock
out=$("$VDISK" io -f raw -c 'write -P 0x66 256k 8k' -c 'read -P 0x66 256k 8k' \
  "nbds+unix:///?socket=$S&tls-certificates=$W/client" | grep -v '^[0-9].*sec')
expect_eq "vdisk io on qemu-nbd over x509" "$out" "wrote 8192/8192 bytes at offset 262144
read 8192/8192 bytes at offset 262144"
qemu-io -f raw -c 'write -P 0x66 256k 8k' want.raw >/dev/null
rm -f got.raw
"$VDISK" convert -O raw "nbds+unix:///?socket=$S&tls-certificates=$W/client" got.raw
cmp got.raw want.raw || fail "vdisk convert from qemu-nbd over x509: not the image's bytes"
out=$("$VDISK" info "nbd+unix:///?socket=$S" 2>&1) && fail "vdisk info without TLS: $out"
expect_eq "vdisk info on qemu-nbd without TLS" "$out" \
  "vdisk: Could not open 'nbd+unix:///?socket=$S': nbd_poll: handshake: server requires TLS encryption first: Operation not supported"
kill -TERM "$SERVER"
wait "$SERVER" || true

qemu_nbd qp --object "tls-creds-psk,id=tls0,dir=$W/psk,endpoint=server" --tls-creds tls0
S=$W/qp.sock
out=$("$VDISK" info "nbds+unix://alice@/?socket=$S&tls-psk-file=$W/psk/keys.psk")
expect_eq "vdisk info on qemu-nbd over PSK" "$out" "image: nbds+unix://alice@/?socket=$S&tls-psk-file=$W/psk/keys.psk
file format: raw
virtual size: 4 MiB (4194304 bytes)
disk size: unavailable"
rm -f got.raw
"$VDISK" convert -O raw "nbds+unix://alice@/?socket=$S&tls-psk-file=$W/psk/keys.psk" got.raw
cmp got.raw want.raw || fail "vdisk convert from qemu-nbd over PSK: not the image's bytes"
out=$("$VDISK" info "nbds+unix://alice@/?socket=$S&tls-psk-file=$W/wrongpsk/keys.psk" 2>&1) &&
  fail "vdisk info with a wrong key: $out"
kill -TERM "$SERVER"
wait "$SERVER" || true

# ---- vdisk nbd's command line ------------------------------------------------------
out=$("$VDISK" nbd -f raw -k "$W/never.sock" --object "tls-creds-psk,id=tls0,dir=$W/nowhere,endpoint=server" \
  --tls-creds tls0 disk.raw 2>&1) && fail "vdisk nbd with no credentials: $out"
expect_eq "vdisk nbd with no credentials" "$out" \
  "vdisk: TLS credentials: the directory $W/nowhere: No such file or directory"
out=$("$VDISK" nbd -f raw -k "$W/never.sock" --object "tls-creds-x509,id=tls0,dir=$W/psk,endpoint=server" \
  --tls-creds tls0 disk.raw 2>&1) && fail "vdisk nbd with no certificates: $out"
expect_eq "vdisk nbd with no certificates" "$out" \
  "vdisk: Unable to access credentials $W/psk/ca-cert.pem (the CA certificate, to verify clients' certificates): No such file or directory"
echo "PASS"
