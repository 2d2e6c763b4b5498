#!/usr/bin/env python3
# Writes the seed corpus of fuzz/vmm_exits.c into fuzz/corpus/vmm_exits: a
# driver bringing a virtio-blk disk and a virtio-scsi CD-ROM up through the
# virtio-mmio registers and sending one request, and a UART session.
#   python3 fuzz/vmm_exits_seeds.py
import os
import struct

GPA = 0x10000
here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "corpus", "vmm_exits")

READ, WRITE, KICK, POLL, UREAD, UWRITE = range(6)


def ex(kind, off=0, val=0, width=4):
    return struct.pack("<BBHI", kind, width, off, val)


def bring_up(queues, qsize=16):
    e = [ex(READ, 0x000), ex(READ, 0x004), ex(READ, 0x008), ex(WRITE, 0x070, 0),
         ex(WRITE, 0x070, 1), ex(WRITE, 0x070, 3), ex(WRITE, 0x014, 1), ex(READ, 0x010),
         ex(WRITE, 0x024, 1), ex(WRITE, 0x020, 1), ex(WRITE, 0x070, 11), ex(READ, 0x070)]
    for q in queues:
        base = GPA + q * 0x400
        e += [ex(WRITE, 0x030, q), ex(READ, 0x034), ex(WRITE, 0x038, qsize),
              ex(WRITE, 0x080, base), ex(WRITE, 0x084, 0),
              ex(WRITE, 0x090, base + 0x100), ex(WRITE, 0x094, 0),
              ex(WRITE, 0x0a0, base + 0x200), ex(WRITE, 0x0a4, 0), ex(WRITE, 0x044, 1)]
    e += [ex(WRITE, 0x070, 15), ex(READ, 0x0fc), ex(READ, 0x100, width=8)]
    return e


def request(mem, q, bufs):
    """bufs: (gpa, len, device-writable)"""
    base = q * 0x400
    for i, (addr, ln, w) in enumerate(bufs):
        flags = (1 if i + 1 < len(bufs) else 0) | (2 if w else 0)
        struct.pack_into("<QIHH", mem, base + 16 * i, addr, ln, flags, i + 1)
    struct.pack_into("<HHH", mem, base + 0x100, 0, 1, 0)


def seed(name, sel, exits, mem):
    blob = bytes([sel]) + struct.pack("<H", 8 * len(exits)) + b"".join(exits) + bytes(mem)
    with open(os.path.join(out, name), "wb") as f:
        f.write(blob)


os.makedirs(out, exist_ok=True)

# virtio-blk: read sector 0 (header, 512 bytes of data, status).
mem = bytearray(0x4000)
struct.pack_into("<IIQ", mem, 0x1000, 0, 0, 0)
request(mem, 0, [(GPA + 0x1000, 16, False), (GPA + 0x2000, 512, True), (GPA + 0x3000, 1, True)])
ex_blk = bring_up([0]) + [ex(KICK, val=0), ex(POLL), ex(POLL), ex(READ, 0x060), ex(WRITE, 0x064, 1)]
seed("blk-read", 0, ex_blk, mem)

# virtio-blk: write then flush (type 1, then 4), kicked through QueueNotify.
mem = bytearray(0x4000)
struct.pack_into("<IIQ", mem, 0x1000, 1, 0, 8)
request(mem, 0, [(GPA + 0x1000, 16, False), (GPA + 0x2000, 512, False), (GPA + 0x3000, 1, True)])
seed("blk-write", 0, bring_up([0]) + [ex(WRITE, 0x050, 0), ex(POLL), ex(READ, 0x060)], mem)

# virtio-scsi CD-ROM: INQUIRY on the request queue (queue 2).
mem = bytearray(0x4000)
hdr = bytes([1, 0, 0, 0, 0, 0, 0, 0]) + struct.pack("<QBBB", 7, 0, 0, 0)
cdb = bytes([0x12, 0, 0, 0, 36, 0]) + bytes(26)
mem[0x1000:0x1000 + len(hdr) + len(cdb)] = hdr + cdb
request(mem, 2, [(GPA + 0x1000, 51, False), (GPA + 0x2000, 108, True), (GPA + 0x3000, 36, True)])
seed("scsi-inquiry", 1, bring_up([0, 1, 2]) + [ex(KICK, val=2), ex(POLL), ex(POLL),
                                               ex(READ, 0x060), ex(WRITE, 0x064, 1)], mem)

# Odd widths and offsets, a reset in the middle, config writes.
odd = bring_up([0]) + [ex(READ, 0x001, width=1), ex(WRITE, 0x102, 0xffff, 2),
                       ex(WRITE, 0x070, 0), ex(READ, 0x044), ex(WRITE, 0x038, 100),
                       ex(WRITE, 0x044, 1), ex(READ, 0xffc, width=8)]
seed("odd-accesses", 0, odd, bytes(16))

# The UART: line control, divisor, "hi\n", status reads, loopback.
uart = [ex(UWRITE, 3, 0x80), ex(UWRITE, 0, 1), ex(UWRITE, 1, 0), ex(UWRITE, 3, 3),
        ex(UWRITE, 1, 3), ex(UWRITE, 0, ord("h")), ex(UWRITE, 0, ord("i")),
        ex(UWRITE, 0, 10), ex(UREAD, 5), ex(UREAD, 2), ex(UWRITE, 4, 0x10),
        ex(UWRITE, 0, 0x41), ex(UREAD, 0), ex(UREAD, 6), ex(UWRITE, 7, 0x55), ex(UREAD, 7)]
seed("uart", 0, uart, b"")
