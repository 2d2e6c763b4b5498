#!/usr/bin/env bash
# CTest's rbd-cli (label ceph; run by tests/ceph/with-cluster.sh against a
# cluster of its own): the vdisk CLI on rbd: images, against rbd and
# qemu-img's rbd driver, exact bytes and outputs.
#
#   usage: rbd-cli.sh VDISK
#
#   - create, info (text and JSON, as qemu-img; plain and json:{...}
#     names), resize;
#   - convert into the pool and out of it, many sizes and shapes of sparse
#     images: rbd export, qemu-img convert and vdisk read the same bytes,
#     and zeroes are not written (rbd du);
#   - images that rbd import and qemu-img wrote, read by vdisk;
#   - map (as qemu-img), compare;
#   - snapshots: -c, -l (as qemu-img), -a, -d, reading @SNAP, refusing to
#     write it;
#   - one-line errors: no pool, image, snapshot or namespace, a user
#     without a key, a wrong key, no monitor, an unknown Ceph option, a
#     backing file name that names Ceph options;
#   - the OSD frozen mid-write: the write fails after the OSD timeout, the
#     data an earlier flush covered is intact.
set -euo pipefail
V=${1:?usage: rbd-cli.sh VDISK}
P=$VDISK_CEPH_POOL
work=$VDISK_CEPH_DIR/rbd-cli
mkdir -p "$work"
cd "$work"

fail() {
  echo "FAIL: $*"
  exit 1
}
t() { timeout -k 5 120 "$@"; }
# same A B WHAT: files A and B are equal.
same() { cmp "$1" "$2" >/dev/null || fail "$3: $1 and $2 differ: $(cmp "$1" "$2" 2>&1 | head -1)"; }
# info_as_qemu [ARGS...] NAME: vdisk info prints what qemu-img info prints,
# as text and as JSON.
info_as_qemu() {
  local fmt_args
  for fmt_args in "" "--output=json"; do
    t qemu-img info $fmt_args "$@" >q.txt
    t "$V" info $fmt_args "$@" >v.txt
    same q.txt v.txt "info $fmt_args $*"
  done
}
# error_is WANT CMD...: CMD fails and prints exactly WANT (stderr).
error_is() {
  local want=$1 rc=0
  shift
  t "$@" >out.txt 2>err.txt || rc=$?
  [ $rc != 0 ] || fail "$* succeeded"
  [ "$(cat err.txt)" = "$want" ] || fail "$*: expected the error
  $want
got
  $(cat err.txt)"
}

# ---- create, info, resize ----------------------------------------------------
t "$V" create -f raw "rbd:$P/a" 16M >out.txt
[ "$(cat out.txt)" = "Formatting 'rbd:$P/a', fmt=raw size=16777216" ] || fail "create: $(cat out.txt)"
for n in "rbd:$P/a" "rbd:$P/a:conf=$CEPH_CONF:id=admin"; do
  info_as_qemu "$n"
done
# The JSON form of the names (json:{...}, as qemu-img takes and shows them).
for n in "json:{\"driver\":\"raw\",\"file\":{\"driver\":\"rbd\",\"pool\":\"$P\",\"image\":\"a\"}}" \
  "json:{\"driver\": \"raw\", \"file\": {\"driver\": \"rbd\", \"pool\": \"$P\", \"image\": \"a\", \"conf\": \"$CEPH_CONF\", \"user\": \"admin\"}}" \
  "json:{\"file.driver\":\"rbd\",\"file.pool\":\"$P\",\"file.image\":\"a\",\"file.namespace\":\"\"}"; do
  info_as_qemu "$n"
done
# And the options form (--image-opts).
info_as_qemu --image-opts "driver=raw,file.driver=rbd,file.pool=$P,file.image=a,file.conf=$CEPH_CONF"
t "$V" resize -f raw "rbd:$P/a" 48M >/dev/null
[ "$(t rbd info --format json "$P/a" | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')" = 50331648 ] ||
  fail "resize: rbd info does not say 48 MiB"
error_is "vdisk: rbd:$P/a: the image 'a' exists already in the pool '$P'" \
  "$V" create -f raw "rbd:$P/a" 1M
echo "create, info, resize: as qemu-img"

# ---- convert in and out, sparse shapes ---------------------------------------
# shape N SIZE: a raw file of SIZE bytes with data in some pieces, holes and
# explicit zeroes elsewhere (seeded by N).
shape() {
  python3 - "$1" "$2" <<'EOF'
import random, sys
n, size = int(sys.argv[1]), int(sys.argv[2])
r = random.Random(n)
with open("src.raw", "wb") as f:
    f.truncate(size)
    data = 0
    for _ in range(r.randint(0, 12)):
        ln = r.choice([1, 511, 512, 4096, 65536, 1 << 20, 3 << 20, 4 << 20, 5 << 20])
        off = r.randrange(0, size)
        ln = min(ln, size - off)
        f.seek(off)
        if r.random() < 0.25:
            f.write(b"\0" * ln)          # zeroes written out: stay holes
        else:
            f.write(r.randbytes(ln))
            data += ln
print(data)
EOF
}
i=0
for size in 512 4096 1048576 4194304 $((4194304 + 512)) $((13 << 20)) $((33 << 20)); do
  for seed in 1 2; do
    i=$((i + 1))
    data=$(shape $((size + seed)) $size)
    t "$V" convert -f raw -O raw src.raw "rbd:$P/c$i"
    rm -f exp.raw
    t rbd export --no-progress "$P/c$i" exp.raw >/dev/null 2>&1
    same src.raw exp.raw "rbd export of vdisk convert (size $size, seed $seed)"
    t qemu-img convert -f raw -O raw "rbd:$P/c$i" q.raw
    same src.raw q.raw "qemu-img convert of vdisk convert (size $size, seed $seed)"
    t "$V" convert -f raw -O raw "rbd:$P/c$i" v.raw
    same src.raw v.raw "vdisk convert out of the pool (size $size, seed $seed)"
    t "$V" compare -f raw -F raw "rbd:$P/c$i" src.raw >/dev/null || fail "compare (size $size)"
    # Sparse in the pool: what rbd counts as used is at most the data,
    # rounded out to whole objects (4 MiB) a piece.
    used=$(t rbd du --format json "$P/c$i" | python3 -c 'import json,sys; print(json.load(sys.stdin)["images"][0]["used_size"])')
    [ "$used" -le $((data + 13 * (4 << 20))) ] || fail "convert wrote zeroes: $used bytes used for $data of data"
    [ "$data" != 0 ] || [ "$used" = 0 ] || fail "an image of zeroes uses $used bytes"
    t qemu-img map --output=json "rbd:$P/c$i" >q.txt
    t "$V" map --output=json "rbd:$P/c$i" >v.txt
    same q.txt v.txt "map --output=json (size $size, seed $seed)"
  done
done
echo "convert in and out: $i images, as rbd export and qemu-img read them; sparse; map as qemu-img"

# rbd import and qemu-img convert write, vdisk reads.
shape 99 $((9 << 20)) >/dev/null
t rbd import --no-progress src.raw "$P/imp" >/dev/null 2>&1
t "$V" convert -f raw -O raw "rbd:$P/imp" v.raw
same src.raw v.raw "vdisk reading an rbd import"
t qemu-img convert -f raw -O raw src.raw "rbd:$P/qimg"
t "$V" convert -f raw -O raw "rbd:$P/qimg" v.raw
same src.raw v.raw "vdisk reading qemu-img's convert"
# A qcow2 source into the pool.
t qemu-img convert -f raw -O qcow2 src.raw src.qcow2
t "$V" convert -f qcow2 -O raw src.qcow2 "rbd:$P/fromq"
rm -f exp.raw
t rbd export --no-progress "$P/fromq" exp.raw >/dev/null 2>&1
same src.raw exp.raw "qcow2 converted into the pool"
echo "images rbd import and qemu-img wrote: read by vdisk"

# ---- qcow2 in the pool, and served over NBD ---------------------------------
t "$V" create -f qcow2 "rbd:$P/q" 64M >/dev/null
t "$V" io -f qcow2 -c "write -P 0x71 1M 300k" -c "write -P 0x72 40M 4k" "rbd:$P/q" >/dev/null
t "$V" convert -f raw -O qcow2 src.raw "rbd:$P/q2"
for img in q q2; do
  t qemu-img check -f qcow2 "rbd:$P/$img" >q.txt || fail "qemu-img check of qcow2 in RBD $img: $(cat q.txt)"
  grep -q "No errors were found on the image." q.txt || fail "qemu-img check $img: $(cat q.txt)"
  t "$V" check -f qcow2 "rbd:$P/$img" >v.txt || fail "vdisk check $img: $(cat v.txt)"
done
t qemu-img compare -f raw -F qcow2 src.raw "rbd:$P/q2" >/dev/null || fail "qcow2 in RBD differs from its source"
jq2="json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"rbd\",\"pool\":\"$P\",\"image\":\"q2\"}}"
for n in "rbd:$P/q2" "$jq2"; do
  info_as_qemu "$n"
done
# Read through its JSON name, and written to a new image named so.
t "$V" convert -O raw "$jq2" out.raw
same src.raw out.raw "convert from $jq2"
jq3="json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"rbd\",\"pool\":\"$P\",\"image\":\"q3\"}}"
t "$V" convert -f raw -O qcow2 src.raw "$jq3"
t qemu-img compare -f raw -F qcow2 src.raw "rbd:$P/q3" >/dev/null || fail "convert to $jq3"
t qemu-io -f qcow2 -r -c "read -P 0x71 1M 300k" -c "read -P 0x72 40M 4k" -c "read -P 0 0 1M" "rbd:$P/q" >/dev/null ||
  fail "qemu-io reading vdisk's qcow2 in RBD"
t "$V" nbd -t -f qcow2 -r -k "$work/nbd.sock" -x disk --fork --pid-file "$work/nbd.pid" "rbd:$P/q2"
t qemu-img compare -f raw -F raw src.raw "nbd+unix:///disk?socket=$work/nbd.sock" >/dev/null ||
  fail "the qcow2 in RBD served by vdisk nbd differs from its source"
kill "$(cat "$work/nbd.pid")"
echo "qcow2 in RBD: qemu-img and vdisk check it clean, read it right, info as qemu-img; vdisk nbd serves it"

# ---- snapshots ---------------------------------------------------------------
printf 'A%.0s' $(seq 65536) >a.bin
t "$V" io -f raw -c "write -P 0x41 0 64k" "rbd:$P/a" >/dev/null
t "$V" snapshot -f raw -c s1 "rbd:$P/a"
t "$V" io -f raw -c "write -P 0x42 0 64k" "rbd:$P/a" >/dev/null
t qemu-img snapshot -c s2 "rbd:$P/a" 2>/dev/null
t qemu-img snapshot -l "rbd:$P/a" >q.txt
t "$V" snapshot -f raw -l "rbd:$P/a" >v.txt
same q.txt v.txt "snapshot -l"
t "$V" io -f raw -r -c "read -P 0x41 0 64k" "rbd:$P/a@s1" >/dev/null || fail "reading @s1"
error_is "vdisk: rbd:$P/a@s1: an RBD snapshot is read-only (open it read-only)" \
  "$V" io -f raw -c "write 0 512" "rbd:$P/a@s1"
t "$V" snapshot -f raw -a s1 "rbd:$P/a"
t "$V" io -f raw -c "read -P 0x41 0 64k" "rbd:$P/a" >/dev/null || fail "after snapshot -a s1"
t "$V" snapshot -f raw -d s2 "rbd:$P/a"
t "$V" snapshot -f raw -d s1 "rbd:$P/a"
[ -z "$(t rbd snap ls "$P/a")" ] || fail "snapshots left after -d: $(rbd snap ls "$P/a")"
error_is "vdisk: rbd:$P/a: there is no snapshot 'nope'" \
  "$V" snapshot -f raw -d nope "rbd:$P/a"
# create -b: an RBD clone of a snapshot, grown to the size asked.
t "$V" snapshot -f raw -c gold "rbd:$P/a"
t "$V" create -f raw -b "rbd:$P/a@gold" -F raw "rbd:$P/clone" 64M >/dev/null
[ "$(t rbd info --format json "$P/clone" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["parent"]["image"], j["parent"]["snapshot"], j["size"])')" = "a gold 67108864" ] ||
  fail "create -b: not a clone of a@gold: $(rbd info "$P/clone")"
t "$V" io -f raw -r -c "read -P 0x41 0 64k" "rbd:$P/clone" >/dev/null || fail "the clone does not read its parent"
t "$V" io -f raw -c "write -P 0x43 0 4k" "rbd:$P/clone" >/dev/null
t "$V" io -f raw -r -c "read -P 0x41 0 64k" "rbd:$P/a@gold" >/dev/null || fail "writing the clone changed its parent"
error_is "vdisk: rbd:$P/c2: the backing file of an RBD image is a snapshot of another RBD image in the same cluster, named rbd:POOL[/NAMESPACE]/IMAGE@SNAP without options (an RBD clone); 'rbd:$P/a' is not" \
  "$V" create -f raw -b "rbd:$P/a" -F raw "rbd:$P/c2" 1M
t rbd rm --no-progress "$P/clone" >/dev/null 2>&1
t "$V" snapshot -f raw -d gold "rbd:$P/a"
echo "snapshots: -c, -l (as qemu-img), -a, -d, @SNAP read-only; create -b makes a clone"

# ---- errors ------------------------------------------------------------------
error_is "vdisk: rbd:nopool/x: there is no pool 'nopool' in the Ceph cluster" \
  "$V" info rbd:nopool/x
error_is "vdisk: rbd:$P/noimg: there is no image 'noimg' in the pool '$P'" \
  "$V" info "rbd:$P/noimg"
error_is "vdisk: rbd:$P/a@nosnap: there is no image 'a' with a snapshot 'nosnap' in the pool '$P'" \
  "$V" info "rbd:$P/a@nosnap"
error_is "vdisk: rbd:$P/ns9/a: there is no namespace 'ns9' in the pool '$P'" \
  "$V" info "rbd:$P/ns9/a"
error_is "vdisk: rbd:$P/a:id=nobody: could not connect to the Ceph cluster as client.nobody: no key for that user (keyring) was found" \
  "$V" info "rbd:$P/a:id=nobody"
error_is "vdisk: rbd:$P/a:keyring=$VDISK_CEPH_BAD_KEYRING: the Ceph cluster refused the user client.admin: Permission denied" \
  "$V" info "rbd:$P/a:keyring=$VDISK_CEPH_BAD_KEYRING"
error_is "vdisk: rbd:$P/a:mon_host=127.0.0.1\\:1:client_mount_timeout=2: could not connect to the Ceph cluster: no monitor answered within 2 seconds" \
  "$V" info "rbd:$P/a:mon_host=127.0.0.1\\:1:client_mount_timeout=2"
error_is "vdisk: rbd:$P/a:no_such_option=1: unknown Ceph option 'no_such_option'" \
  "$V" info "rbd:$P/a:no_such_option=1"
error_is "vdisk: rbd:$P: expected rbd:POOL[/NAMESPACE]/IMAGE[@SNAP][:KEY=VALUE...]" \
  "$V" info "rbd:$P"
# The restricted user reads the pool with its own keyring.
t "$V" info "rbd:$P/a:id=vdisk:keyring=$VDISK_CEPH_USER_KEYRING" >/dev/null || fail "client.vdisk"
# A backing file in RBD named by an image is opened only when the user
# allows network backing files, and even then its name may not set Ceph
# options (keyring= would read a local file).
t qemu-img create -f qcow2 -u -b "rbd:$P/a:keyring=/etc/shadow" -F raw over.qcow2 48M >/dev/null
error_is "vdisk: over.qcow2: the image's backing file is the network export 'rbd:$P/a:keyring=/etc/shadow'; opening it needs the open option backing-allow-network=on (or VDISK_BACKING_ALLOW_NETWORK=on in the environment)" \
  "$V" info --backing-chain over.qcow2
error_is "vdisk: Could not open backing file: rbd:$P/a:keyring=/etc/shadow: a backing file name may not set the Ceph option 'keyring'" \
  env VDISK_BACKING_ALLOW_NETWORK=on "$V" info --backing-chain over.qcow2
echo "errors: one line each"

# ---- the OSD frozen mid-write -------------------------------------------------
t "$V" create -f raw "rbd:$P/f" 8M >/dev/null
t "$V" io -f raw -c "write -P 0x61 0 8M" -c flush "rbd:$P/f" >/dev/null
# Writes of the same bytes go on, many in flight, when the OSD freezes:
# whatever lands or not, the image must still read 0x61 throughout.
rc=0
start=$(date +%s)
t "$V" bench -f raw -w -c 100000000 -d 32 --pattern=0x61 \
  "rbd:$P/f:rados_osd_op_timeout=4" >io.out 2>io.err &
bench=$!
sleep 3
"$VDISK_CEPH_SCRIPT" osd-freeze "$VDISK_CEPH_DIR"
wait $bench || rc=$?
"$VDISK_CEPH_SCRIPT" osd-thaw "$VDISK_CEPH_DIR"
[ $rc != 0 ] || fail "writes to a frozen OSD succeeded: $(cat io.out)"
grep -q "Connection timed out" io.err || fail "no timeout reported: $(cat io.err)"
echo "the OSD frozen under writes: they failed after $(($(date +%s) - start)) s: $(head -1 io.err)"
# The thawed OSD serves again once it has caught up (bounded wait).  On a
# loaded machine a thawed memstore OSD once kept the frozen client's writes
# "delayed" for good (the PG stuck, every later op behind them, for over 8
# minutes): after 90 s the OSD is stopped cleanly (memstore keeps its
# objects) and started again, once, which is what an operator would do;
# the bytes are then checked as before.
# Served means the image's data objects answer, not only its header: once
# the header answered while the data's PG stayed stuck behind the frozen
# writes past the read's 180 s.
served() {
  timeout -k 5 30 rbd --rados-osd-op-timeout 10 export "$P/f" - >/dev/null 2>&1
}
deadline=$((SECONDS + 90))
restarted=
until served; do
  if ((SECONDS >= deadline)); then
    [ -z "$restarted" ] || fail "the OSD does not serve again after the thaw and a restart"
    echo "the thawed OSD did not serve within 90 s: stopped cleanly and started again"
    "$VDISK_CEPH_SCRIPT" osd-stop "$VDISK_CEPH_DIR" || fail "the OSD did not stop cleanly"
    "$VDISK_CEPH_SCRIPT" osd-start "$VDISK_CEPH_DIR" || fail "the OSD did not start again"
    restarted=1
    deadline=$((SECONDS + 90))
    continue
  fi
  sleep 1
done
# The frozen client's writes, queued in the OSD, go first: on a loaded
# machine that took over 30 s once, so the read may wait up to 3 minutes
# (the check is on the bytes, not the time; a read that fails on the bytes
# fails at once).
timeout -k 5 200 "$V" io -f raw -r -c "read -P 0x61 0 8M" "rbd:$P/f:rados_osd_op_timeout=180" \
  >read.out 2>&1 || fail "the data flushed before the OSD froze is not intact: $(cat read.out)"
echo "the OSD thawed: what the flush covered is intact"
echo PASS
