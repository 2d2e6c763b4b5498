#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Writes the seed corpus of fuzz/nbd.c (its input format is described
# there) into fuzz/corpus/nbd/: whole sessions of an NBD client as qemu-img,
# qemu-io and nbdinfo run them, and a few hostile ones.
#   python3 fuzz/nbd_seeds.py
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "nbd")
IHAVEOPT = 0x49484156454F5054
REQ = 0x25609513


def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data


def go(name=b"", infos=(), o=7):
    return opt(o, struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos)) +
               b"".join(struct.pack(">H", i) for i in infos))


def meta(o, name=b"", queries=()):
    d = struct.pack(">I", len(name)) + name + struct.pack(">I", len(queries))
    for q in queries:
        d += struct.pack(">I", len(q)) + q
    return opt(o, d)


def req(t, off=0, length=0, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", REQ, flags, t, cookie, off, length) + payload


def pieces(stream, size=200):
    out = b""
    for i in range(0, len(stream), size):
        chunk = stream[i:i + size]
        out += bytes([len(chunk)]) + chunk
    return out


def write(name, sel, stream, size=200):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes([sel]) + pieces(stream, size))


FLAGS = struct.pack(">I", 3)
os.makedirs(OUT, exist_ok=True)

session = (FLAGS + go(infos=(1, 2, 3)) +
           req(1, 4096, 512, payload=b"\xab" * 512, cookie=1) +
           req(0, 4096, 512, cookie=2) + req(0, 0, 65536, cookie=3) +
           req(1, 8192, 16, flags=1, payload=b"\0" * 16, cookie=4) +
           req(3, cookie=5) + req(4, 65536, 65536, cookie=6) +
           req(4, 65536, 65536, flags=1, cookie=7) +
           req(6, 131072, 4096, cookie=8) + req(6, 0, 4096, flags=2 | 16, cookie=9) +
           req(5, 0, 4096, cookie=10) + req(0, 1 << 20, 1, cookie=11) + req(2))
write("go-simple", 0, session)
write("go-simple-unmap-detect", 6, session)
write("go-read-only", 1, session)

structured = (FLAGS + opt(8) + meta(9, queries=()) + meta(9, queries=(b"base:", b"qemu:")) +
              meta(10, queries=(b"base:allocation", b"qemu:allocation-depth")) + go(infos=(3,)) +
              req(7, 0, 1 << 20, cookie=1) + req(7, 4096, 8192, flags=8, cookie=2) +
              req(0, 0, 4096, flags=4, cookie=3) + req(0, 1 << 19, 4096, cookie=4) +
              req(4, 0, 65536, cookie=5) + req(0, 0, 65536, cookie=6) + req(2))
write("structured", 2, structured)
write("structured-tiny-pieces", 2, structured, size=3)

write("export-name", 8, struct.pack(">I", 1) + opt(1, b"fuzz") +
      req(0, 0, 4096) + req(1, 0, 8, payload=b"12345678") + req(3) + req(2))
write("list-info-abort", 8, FLAGS + opt(3) + go(b"fuzz", (0, 1, 2, 3), o=6) +
      go(b"nope") + opt(5) + opt(99, b"xyz") + opt(2))
write("bad-requests", 0, FLAGS + go() + req(0, 1 << 20, 512) + req(0, 0, 0xffffffff) +
      req(99) + req(3, flags=1) + req(7, 0, 512) + b"\0" * 28)
write("wait-for-completions", 0, FLAGS + go() +
      b"".join(req(0, i * 4096, 4096, cookie=i) for i in range(80)))
