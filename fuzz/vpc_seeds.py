#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# fuzz/vpc_seeds.py OUTDIR: VHD seeds that qemu-img cannot make: dynamic
# images with 4 KiB blocks and partial sector bitmaps (small enough for a
# corpus), and a differencing image (its parent UUID its own, since the
# harness gives an image itself as its parent) with W2ru and MacX locators.
import os
import struct
import sys

SECTOR = 512


def checksum(b, at):
    s = sum(b[:at]) + sum(b[at + 4:])
    return (~s) & 0xffffffff


def image(kind, block=4096, blocks=8, alloc=(0, 3, 5)):
    size = block * blocks
    bm = ((block // SECTOR // 8) + 511) // 512 * 512
    hdr_off, bat_off = 512, 1536
    bat_bytes = (blocks * 4 + 511) // 512 * 512
    loc_off = bat_off + bat_bytes
    data_off = loc_off + (1024 if kind == 4 else 0)
    uuid = bytes(range(16))
    f = bytearray(512)
    f[0:8] = b"conectix"
    struct.pack_into(">IIQI", f, 8, 2, 0x10000, hdr_off, 0)
    f[28:32] = b"win "
    struct.pack_into(">HH", f, 32, 5, 3)
    f[36:40] = b"Wi2k"
    struct.pack_into(">QQHBBI", f, 40, size, size, 0, 0, 0, kind)
    f[68:84] = uuid
    struct.pack_into(">I", f, 64, checksum(f, 64))
    h = bytearray(1024)
    h[0:8] = b"cxsparse"
    struct.pack_into(">QQIII", h, 8, 2**64 - 1, bat_off, 0x10000, blocks, block)
    bat = bytearray(b"\xff" * bat_bytes)
    body = bytearray()
    for n, i in enumerate(alloc):
        off = data_off + n * (bm + block)
        struct.pack_into(">I", bat, 4 * i, off // SECTOR)
        bitmap = bytearray(bm)
        bitmap[0] = 0xa5 if n % 2 else 0xff
        body += bitmap + bytes([0x30 + i]) * block
    locs = bytearray()
    if kind == 4:
        h[40:56] = uuid
        name = "self.vhd"
        h[64:64 + 2 * len(name)] = name.encode("utf-16-be")
        w = ".\\self.vhd".encode("utf-16-le")
        m = b"file://localhost/tmp/self.vhd"
        struct.pack_into(">4sIII Q", h, 576, b"W2ru", 512, len(w), 0, loc_off)
        struct.pack_into(">4sIII Q", h, 600, b"MacX", 512, len(m), 0, loc_off + 512)
        locs = bytearray(1024)
        locs[0:len(w)] = w
        locs[512:512 + len(m)] = m
    struct.pack_into(">I", h, 36, checksum(h, 36))
    return bytes(f + h + bat + locs + body + f)


out = sys.argv[1]
for name, kind in (("dyn-4k-bitmaps.vhd", 3), ("diff-4k-self.vhd", 4)):
    with open(os.path.join(out, name), "wb") as fh:
        fh.write(image(kind))
