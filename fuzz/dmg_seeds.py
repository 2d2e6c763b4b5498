#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# fuzz/dmg_seeds.py OUTDIR: small DMG (UDIF) seeds, laid out as
# tests/interop/interop_dmg.c builds them: chunk tables in an XML property
# list (base64 mish blocks) or in the older resource fork; raw, zero,
# ignore, zlib, bzip2, ADC and lzfse chunks, several mish blocks whose
# sectors and data offsets count from their own.  (QEMU's simple-dmg.dmg is
# a seed too: scripts/fetch-qemu-samples.sh fetches it.)
import base64
import bz2
import os
import random
import struct
import sys
import zlib

ZERO, RAW, IGNORE, ADC, ZLIB, BZIP2, LZFSE = 0, 1, 2, 0x80000004, 0x80000005, 0x80000006, 0x80000007
COMMENT, END = 0x7FFFFFFE, 0xFFFFFFFF


def payload(t, d):
    if t == RAW:
        return d
    if t == ZLIB:
        return zlib.compress(d, 9)
    if t == BZIP2:
        return bz2.compress(d, 9)
    if t in (ADC, LZFSE):
        return d[:64]
    return b""


def image(chunks, per_mish, rsrc=False, fork_at=0, seed=1):
    rnd = random.Random(seed)
    fork = bytearray()
    mishes = []
    sector = 0
    for m in range(0, len(chunks), per_mish):
        part = chunks[m:m + per_mish]
        entries = [(COMMENT, 0, 0, 0, 0)]
        base_fork, rel = len(fork), 0
        for i, (t, n) in enumerate(part):
            if t in (ZERO, IGNORE):
                d = bytes(n * 512)
            else:
                half = n * 256
                d = bytes(rnd.getrandbits(8) for _ in range(half)) + bytes([0x30 + i]) * (n * 512 - half)
            p = payload(t, d)
            entries.append((t, rel, n, len(fork) - base_fork, len(p)))
            fork += p
            rel += n
        entries.append((END, rel, 0, 0, 0))
        h = bytearray(204)
        h[0:4] = b"mish"
        struct.pack_into(">IQQQ", h, 4, 1, sector, rel, base_fork)
        struct.pack_into(">I", h, 200, len(entries))
        body = b"".join(struct.pack(">IIQQQQ", t, 0, s, n, o, ln) for t, s, n, o, ln in entries)
        mishes.append(bytes(h) + body)
        sector += rel
    f = bytearray(b"\xa5" * fork_at) + fork
    tables_off = len(f)
    if rsrc:
        data = b"".join(struct.pack(">I", len(x)) + x for x in mishes)
        hdr = bytearray(256)
        struct.pack_into(">IIII", hdr, 0, 256, 256 + len(data), len(data), 30)
        tables = bytes(hdr) + data + bytes(30)
    else:
        t = ['<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0">\n<dict>\n'
             '\t<key>resource-fork</key>\n\t<dict>\n\t\t<key>blkx</key>\n\t\t<array>\n']
        for i, x in enumerate(mishes):
            b64 = base64.b64encode(x).decode()
            lines = "\n\t\t\t\t".join(b64[j:j + 52] for j in range(0, len(b64), 52))
            t.append("\t\t\t<dict>\n\t\t\t\t<key>Data</key>\n\t\t\t\t<data>\n\t\t\t\t%s\n"
                     "\t\t\t\t</data>\n\t\t\t\t<key>ID</key>\n\t\t\t\t<string>%d</string>\n"
                     "\t\t\t</dict>\n" % (lines, i - 1))
        t.append("\t\t</array>\n\t</dict>\n</dict>\n</plist>\n")
        tables = "".join(t).encode()
    f += tables
    k = bytearray(512)
    k[0:4] = b"koly"
    struct.pack_into(">III", k, 4, 4, 512, 1)
    struct.pack_into(">QQ", k, 0x18, fork_at, len(fork))
    if rsrc:
        struct.pack_into(">QQ", k, 0x28, tables_off, len(tables))
    else:
        struct.pack_into(">QQ", k, 0xD8, tables_off, len(tables))
    struct.pack_into(">IIIQ", k, 0x1E4, 0, 1, 0, 0)
    struct.pack_into(">Q", k, 0x1EC, sector)
    return bytes(f + k)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    mixed = [(RAW, 4), (ZERO, 64), (ZLIB, 8), (IGNORE, 2), (ZLIB, 1), (RAW, 1), (ZERO, 4096)]
    seeds = {
        "xml-mixed.dmg": image(mixed, 3),
        "rsrc-mixed.dmg": image(mixed, 2, rsrc=True, fork_at=1000),
        "xml-bzip2.dmg": image([(BZIP2, 8), (ZERO, 8), (BZIP2, 1), (ZLIB, 2)], 8, seed=2),
        "xml-adc-lzfse.dmg": image([(RAW, 1), (ADC, 2), (LZFSE, 2), (ZERO, 1)], 2, seed=3),
        "xml-zero-huge.dmg": image([(ZERO, 1 << 24), (RAW, 1)], 1, seed=4),
    }
    for name, b in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(b)


if __name__ == "__main__":
    main()
