#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# fuzz/vhdx_seeds.py OUTDIR: VHDX seeds for fuzz/vhdx.c, packed as it reads
# them (16-bit page number, 4 KiB page; the non-zero pages and the last):
# images qemu-img and qemu-io make (dynamic and fixed, written, zeroed,
# discarded), and one with a log entry to replay (data, zero and BAT
# descriptors), which qemu-img cannot make.
import os
import struct
import subprocess
import sys
import tempfile

PAGE = 4096
MIB = 1 << 20


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def summed(b, at, n):
    b[at + 4:at + 8] = b"\0\0\0\0"
    struct.pack_into("<I", b, at + 4, crc32c(bytes(b[at:at + n])))


def pack(img):
    out = bytearray()
    last = (len(img) + PAGE - 1) // PAGE - 1
    for p in range(last + 1):
        page = img[p * PAGE:(p + 1) * PAGE]
        if p == last or page.count(0) != len(page):
            out += struct.pack("<H", p) + page
    return bytes(out)


def qemu_image(d, opts, size, io):
    f = os.path.join(d, "s.vhdx")
    if os.path.exists(f):
        os.unlink(f)
    subprocess.run(["qemu-img", "create", "-q", "-f", "vhdx", "-o", opts, f, size], check=True)
    if io:
        args = ["qemu-io", "-f", "vhdx"]
        for c in io:
            args += ["-c", c]
        subprocess.run(args + [f], check=True, stdout=subprocess.DEVNULL)
    return bytearray(open(f, "rb").read())


def dirty(img):
    """One log entry (sequence 5): 0x77 over block 0's first 4 KiB, zeroes
    over its next 8 KiB, block 2 mapped where block 0 is."""
    bat, log = 2 * MIB, MIB
    blk0 = struct.unpack_from("<Q", img, bat)[0] & ~0xFFFFF
    h1, h2 = 64 << 10, 128 << 10
    cur = h2 if struct.unpack_from("<Q", img, h2 + 8)[0] > struct.unpack_from("<Q", img, h1 + 8)[0] else h1
    guid = bytes(range(0xA0, 0xB0))
    e = bytearray(3 * PAGE)
    struct.pack_into("<4sIIIQII16sQQ", e, 0, b"loge", 0, 3 * PAGE, 0, 5, 3, 0, guid,
                     len(img), len(img))
    sector = bytes([0x77]) * PAGE
    bsec = bytearray(img[bat:bat + PAGE])
    struct.pack_into("<Q", bsec, 16, blk0 | 6)
    for k, (s, off) in enumerate(((sector, blk0), (bytes(bsec), bat))):
        struct.pack_into("<4s4s8sQQ", e, 64 + 32 * k, b"desc", s[4092:], s[:8], off, 5)
        ds = PAGE * (1 + k)
        e[ds:ds + PAGE] = b"data" + struct.pack("<I", 0) + s[8:4092] + struct.pack("<I", 5)
    struct.pack_into("<4sIQQQ", e, 128, b"zero", 0, 8192, blk0 + PAGE, 5)
    summed(e, 0, len(e))
    img[log:log + len(e)] = e
    img[cur + 48:cur + 64] = guid
    summed(img, cur, PAGE)
    return img


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        seeds = {
            "empty-1M.vhdx": qemu_image(d, "block_size=1M", "4M", []),
            "written-1M.vhdx": qemu_image(d, "block_size=1M", "8M",
                                          ["write -P 0x5a 4k 12k", "write -z 2M 1M",
                                           "write -P 7 5M 4k", "discard 5M 1M"]),
            "fixed-1M.vhdx": qemu_image(d, "block_size=1M,subformat=fixed", "2M",
                                        ["write -P 0x11 0 4k"]),
        }
        base = qemu_image(d, "block_size=1M", "8M", ["write -P 0x11 0 16k"])
        seeds["log-replay.vhdx"] = dirty(base)
        for name, img in seeds.items():
            with open(os.path.join(out, name), "wb") as f:
                f.write(pack(img))


if __name__ == "__main__":
    main()
