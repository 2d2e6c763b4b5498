#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Writes the seed corpus of fuzz/vhost_user.c (its input format is described
# there) into fuzz/corpus/vhost_user/: whole sessions of a front end as QEMU
# runs them (features, owner, memory table, rings, a request and its kick),
# and a few with the hostile fds of issue 14.
#   python3 fuzz/vhost_user_seeds.py
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "vhost_user")
GPA = 0x100000
UVA = 0x7F0000000000
MEM = 64 * 16384  # the memfd: (63 + 1) * 16 KiB = 1 MiB


def fd(kind, extra=None):
    return bytes([0, kind]) + (bytes([extra]) if extra is not None else b"")


def msg(req, payload=b"", fds=(), need_reply=False, flags=None):
    f = flags if flags is not None else (1 | (8 if need_reply else 0))
    return bytes([1, req, f]) + struct.pack("<H", len(payload)) + payload + \
        bytes([len(fds)]) + bytes(fds)


def kick(i):
    return bytes([3, i])


def poke(i, off, data):
    return bytes([4, i]) + struct.pack("<IH", off, len(data)) + data


def state(req, idx, num, need_reply=True):
    return msg(req, struct.pack("<II", idx, num), need_reply=need_reply)


def desc(addr, length, flags, nxt):
    return struct.pack("<QIHH", GPA + addr, length, flags, nxt)


def ring_base(q):
    return 0x40000 + q * 0x10000


def setup(proto, features, nrings, memfd=0, first_fd=1):
    """Negotiation, memory table and NRINGS rings; fds: memfd, then a kick
    and a call eventfd per ring from FIRST_FD on."""
    s = msg(1) + msg(15)
    s += msg(16, struct.pack("<Q", proto))
    s += msg(3, need_reply=True)
    s += msg(2, struct.pack("<Q", features), need_reply=True)
    s += msg(5, struct.pack("<II", 1, 0) + struct.pack("<QQQQ", GPA, MEM, UVA, 0), fds=[memfd],
             need_reply=True)
    for q in range(nrings):
        b = ring_base(q)
        s += state(8, q, 16) + state(10, q, 0)
        s += msg(9, struct.pack("<IIQQQQ", q, 0, UVA + b, UVA + b + 0x2000, UVA + b + 0x1000, 0),
                 need_reply=True)
        s += msg(13, struct.pack("<Q", q), fds=[first_fd + 2 * q + 1], need_reply=True)
        s += msg(12, struct.pack("<Q", q), fds=[first_fd + 2 * q], need_reply=True)
        s += state(18, q, 1)
    return s


def avail(q, heads, idx=None):
    b = ring_base(q)
    return poke(0, b + 0x1000, struct.pack("<HH", 0, len(heads) if idx is None else idx) +
                b"".join(struct.pack("<H", h) for h in heads))


def blk_read(sector):
    """A virtio-blk read of 4 KiB at SECTOR on ring 0, made available."""
    b = ring_base(0)
    table = desc(0x10000, 16, 1, 1) + desc(0x20000, 4096, 3, 2) + desc(0x11000, 1, 2, 0)
    return poke(0, b, table) + poke(0, 0x10000, struct.pack("<IIQ", 0, 0, sector)) + avail(0, [0])


def scsi_read10(lba):
    """A virtio-scsi READ(10) of one block at LBA on ring 2, made available."""
    b = ring_base(2)
    req = bytes([1, 0, 0x40, 0]) + bytes(4) + bytes(8) + bytes(3)
    cdb = bytes([0x28, 0]) + struct.pack(">I", lba) + bytes([0, 0, 1, 0])
    req += cdb + bytes(32 - len(cdb))
    table = desc(0x10000, len(req), 1, 1) + desc(0x11000, 108, 3, 2) + desc(0x20000, 2048, 2, 0)
    return poke(0, b, table) + poke(0, 0x10000, req) + avail(2, [0])


BLK_FEATURES = (1 << 32) | (1 << 30)
PROTO = (1 << 0) | (1 << 3) | (1 << 9)
MEMFD = fd(0, 63)
EVENTFD = fd(1)


def blk_session():
    s = bytes([0]) + MEMFD + EVENTFD + EVENTFD
    s += setup(PROTO, BLK_FEATURES, 1)
    s += msg(24, struct.pack("<III", 0, 8, 0) + bytes(8))  # GET_CONFIG: capacity
    s += blk_read(8) + kick(1)
    return s


def scsi_session():
    s = bytes([1]) + MEMFD + EVENTFD * 6
    s += setup(PROTO & ~(1 << 9), BLK_FEATURES, 3)
    s += scsi_read10(16) + kick(5)
    s += scsi_read10(16) + avail(2, [0, 0], 2) + kick(5)
    return s


seeds = {
    "blk-session": blk_session(),
    "scsi-session": scsi_session(),
    # The session, then GET_VRING_BASE, a write and a reconnect with a new one.
    "blk-reconnect": blk_session() + state(11, 0, 0, need_reply=False) + bytes([5]) +
    fd(0, 63) + setup(PROTO, BLK_FEATURES, 1, memfd=3, first_fd=1) + kick(1),
    # The same head published again and again (issue 14 item 1).
    "blk-flood": blk_session() + avail(0, [0] * 16, 16) + kick(1) + avail(0, [0] * 16, 1000) +
    kick(1),
    # A call fd that is a full pipe; an eventfd at its maximum (item 3).
    "blk-call-full": bytes([0]) + MEMFD + EVENTFD + fd(4) + setup(PROTO, BLK_FEATURES, 1) +
    blk_read(0) + kick(1),
    "blk-call-max": bytes([0]) + MEMFD + EVENTFD + fd(9) + setup(PROTO, BLK_FEATURES, 1) +
    blk_read(0) + kick(1),
    # A kick fd that is a pipe at its end, then a listening-like socket (item 5).
    "blk-kick-pipe": bytes([0]) + MEMFD + fd(11) + EVENTFD + setup(PROTO, BLK_FEATURES, 1) +
    blk_read(0) + kick(1),
    # A region larger than its memfd (item 2), sealable memory.
    "blk-region-big": bytes([0]) + fd(8, 3) + msg(5, struct.pack("<II", 1, 0) +
                                                   struct.pack("<QQQQ", GPA, MEM, UVA, 0),
                                                   fds=[0], need_reply=True),
    # A message in pieces (item 4): a header in three bytes, then the rest.
    "blk-pieces": bytes([0, 2, 3, 0]) + b"\x01\x00\x00" + bytes([2, 9, 0]) +
    b"\x00\x01\x00\x00\x00\x00\x00\x00\x00" + msg(1),
}

os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
