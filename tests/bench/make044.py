#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# tests/bench/make044.py: turns a fresh qcow2 image with 512-byte clusters
# (qemu-img create -f qcow2 -o cluster_size=512 IMAGE 16G) into the image
# of QEMU's iotest 044: a 4 GiB file whose every cluster is in use, with a
# refcount table whose every entry points to a full refcount block, so the
# next allocation must grow the refcount table.
#
# usage: tests/bench/make044.py IMAGE
#
# Layout (512-byte clusters, 16-bit refcounts: 256 per block, 64 table
# entries per cluster):
#   0                 the header (L1 and refcount table fields rewritten)
#   512               the refcount table: 512 clusters, 32,768 entries
#   + 256 KiB         32,768 refcount blocks, in table order, every
#                     refcount 1: they describe 8 Mi clusters = 4 GiB
#   + 16 MiB          the L1 table: 1 Mi entries (8 MiB)
#   + 8 MiB           1 Mi L2 tables of 512 bytes, L1 entry j -> table j
#   + 512 MiB         data clusters up to 4 GiB, mapped in order from the
#                     first L2 entry on; the L2 entries past the last data
#                     cluster stay zero (unallocated)
# The file is then truncated (extended) to 4 GiB: the data reads as zeroes.
import struct
import sys

CS = 512
REFT_CLUSTERS = 512
REFT_ENTRIES = REFT_CLUSTERS * CS // 8          # 32768
RB_ENTRIES = CS // 2                            # 256 (16-bit refcounts)
FILE_SIZE = REFT_ENTRIES * RB_ENTRIES * CS      # 4 GiB
L1_ENTRIES = 4 * CS * CS                        # 1 Mi
COPIED = 1 << 63


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make044.py IMAGE")
    reft = CS
    rb = reft + REFT_CLUSTERS * CS
    l1 = rb + REFT_ENTRIES * CS
    l2 = l1 + L1_ENTRIES * 8
    data = l2 + L1_ENTRIES * CS
    with open(sys.argv[1], 'r+b') as f:
        hdr = bytearray(f.read(104))
        if hdr[:4] != b'QFI\xfb' or struct.unpack_from('>I', hdr, 20)[0] != 9:
            sys.exit("%s: not a qcow2 image with 512-byte clusters" % sys.argv[1])
        struct.pack_into('>I', hdr, 36, L1_ENTRIES)         # l1_size
        struct.pack_into('>Q', hdr, 40, l1)                 # l1_table_offset
        struct.pack_into('>Q', hdr, 48, reft)               # refcount_table_offset
        struct.pack_into('>I', hdr, 56, REFT_CLUSTERS)      # refcount_table_clusters
        f.seek(0)
        f.write(hdr)
        f.seek(reft)
        f.write(struct.pack('>%dQ' % REFT_ENTRIES,
                            *(rb + i * CS for i in range(REFT_ENTRIES))))
        full = struct.pack('>H', 1) * RB_ENTRIES
        f.write(full * REFT_ENTRIES)
        f.write(struct.pack('>%dQ' % L1_ENTRIES,
                            *(COPIED | (l2 + j * CS) for j in range(L1_ENTRIES))))
        ndata = (FILE_SIZE - data) // CS
        step = 1 << 16
        for k in range(0, ndata, step):
            n = min(step, ndata - k)
            f.write(struct.pack('>%dQ' % n,
                                *(COPIED | (data + (k + i) * CS) for i in range(n))))
        f.truncate(FILE_SIZE)


if __name__ == '__main__':
    main()
