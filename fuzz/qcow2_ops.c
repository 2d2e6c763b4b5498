/* SPDX-License-Identifier: MIT */
/*
 * fuzz/qcow2_ops.c: whole-image operations on a fuzzed qcow2 image, through
 * the library's public API: snapshot create, apply and delete, compressed
 * writes, resize (grow and shrink), amend (compat, refcount width, lazy
 * refcounts), make-empty, discard and writes, then check and repair.
 *
 * Input: a qcow2 image, optionally followed by the 8 bytes "VDISKOPS" and
 * a script, one op per byte (op % 10) with its argument in the next byte:
 *   0 snapshot create "sA"   1 snapshot apply #A     2 snapshot delete #A
 *   3 compressed write of cluster A (pattern A)      4 resize to size + A * 64 KiB
 *   5 resize (shrink) to size - A * 4 KiB            6 amend, option set A
 *   7 make-empty             8 discard A * 4 KiB at A * 8 KiB
 *   9 write A + 1 bytes at A * 3 KiB
 * (#A: the snapshot at index A % count).  Bytes 250 to 255 are the
 * persistent dirty bitmap ops (vdisk/bitmap.h) on bitmap "bA % 4":
 *   250 add (granularity 512 << A % 8)  251 remove  252 clear
 *   253 enable or disable (A odd)       254 merge "b(A+1) % 4" into it
 *   255 its dirty extents walked
 * Without a script a default one runs every op.  At most 24 ops.  Any crash, sanitizer report, leak or
 * hang is a bug.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/bitmap.h>
#include <vdisk/check.h>
#include <vdisk/image.h>
#include <vdisk/info.h>
#include <vdisk/snapshot.h>

#include "fuzz.h"

#define MEM_LIMIT (64u << 20)
#define MAX_OPS 24
#define SEP "VDISKOPS"

static const uint8_t default_script[] = {
    0, 1, 9, 5, 3, 0, 0, 2, 9, 7, 1, 0, 8, 3, 4, 2, 5, 1, 6, 0, 6, 3, 2, 0, 7, 0, 6, 5,
};

/* The bitmap ops (script bytes 250 to 255). */
static void bitmap_op(vdisk_dev *dev, unsigned op, unsigned a)
{
    char name[8], other[8];
    snprintf(name, sizeof name, "b%u", a % 4);
    snprintf(other, sizeof other, "b%u", (a + 1) % 4);
    switch (op) {
    case 250:
        vdisk_bitmap_add(dev, name, 512ull << (a % 8), a & 8 ? VDISK_BITMAP_ADD_DISABLED : 0);
        break;
    case 251:
        vdisk_bitmap_remove(dev, name);
        break;
    case 252:
        vdisk_bitmap_clear(dev, name);
        break;
    case 253:
        if (a & 1)
            vdisk_bitmap_disable(dev, name);
        else
            vdisk_bitmap_enable(dev, name);
        break;
    case 254:
        vdisk_bitmap_merge(dev, name, dev, other);
        break;
    default: {
        uint64_t size = vdisk_get_size(dev), len;
        bool dirty;
        for (uint64_t off = 0; off < size; off += len)
            if (vdisk_bitmap_status(dev, name, off, size - off, &len, &dirty) < 0 || !len)
                break;
        break;
    }
    }
}

static const char *const amend_sets[] = {
    "compat=0.10", "compat=1.1", "refcount_bits=1", "refcount_bits=64",
    "lazy_refcounts=on", "lazy_refcounts=off", "refcount_bits=16,compat=1.1",
    "compat=0.10,lazy_refcounts=on",
};

static void snapshot_name(vdisk_dev *dev, unsigned a, char *buf, size_t len)
{
    int n = vdisk_snapshot_count(dev);
    struct vdisk_snapshot sn = {.struct_size = sizeof sn};
    if (n > 0 && vdisk_snapshot_get(dev, a % (unsigned)n, &sn) == 0)
        snprintf(buf, len, "%s", a & 1 ? sn.id : sn.name);
    else
        snprintf(buf, len, "s%u", a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *script = default_script;
    size_t slen = sizeof default_script, ilen = size;
    const uint8_t *sep = memmem(data, size, SEP, sizeof SEP - 1);
    if (sep) {
        ilen = (size_t)(sep - data);
        script = sep + sizeof SEP - 1;
        slen = size - ilen - (sizeof SEP - 1);
    }
    struct vdisk_open_params p = fuzz_params(false);
    struct vdisk_dev *file, *dev;
    if (dev_open_memory(&file, data, ilen, MEM_LIMIT, &p) < 0)
        return 0;
    if (dev_open_format(&dev, file, "qcow2", &p, NULL) < 0) {
        dev_unref(file);
        return 0;
    }
    struct vdisk_info info = {.struct_size = sizeof info};
    uint32_t cs = 65536;
    if (vdisk_get_info(dev, &info) == 0 && info.cluster_size >= 512 &&
        info.cluster_size <= (2u << 20))
        cs = info.cluster_size;
    uint8_t *buf = malloc(cs > 65536 ? cs : 65536);
    if (!buf)
        abort();
    char name[64];
    for (size_t i = 0; i < slen && i / 2 < MAX_OPS; i += 2) {
        unsigned op = script[i] % 10, a = i + 1 < slen ? script[i + 1] : 0;
        uint64_t vsize = vdisk_get_size(dev);
        if (script[i] >= 250)
            op = 10;
        switch (op) {
        case 10:
            bitmap_op(dev, script[i], a);
            break;
        case 0:
            snprintf(name, sizeof name, "s%u", a);
            vdisk_snapshot_create(dev, name);
            break;
        case 1:
            snapshot_name(dev, a, name, sizeof name);
            vdisk_snapshot_apply(dev, name);
            break;
        case 2:
            snapshot_name(dev, a, name, sizeof name);
            vdisk_snapshot_delete(dev, name);
            break;
        case 3: {
            uint64_t clusters = vsize / cs;
            if (!clusters)
                break;
            uint64_t off = (uint64_t)(a % clusters) * cs;
            /* Half a pattern, half zeroes: it compresses. */
            memset(buf, (int)a, cs / 2);
            memset(buf + cs / 2, 0, cs / 2);
            vdisk_pwrite_compressed(dev, buf, vsize - off < cs ? (size_t)(vsize - off) : cs, off);
            break;
        }
        case 4:
            vdisk_resize(dev, vsize + (uint64_t)a * 65536, 0);
            break;
        case 5:
            if (vsize > (uint64_t)a * 4096)
                vdisk_resize(dev, vsize - (uint64_t)a * 4096, VDISK_RESIZE_SHRINK);
            break;
        case 6: {
            vdisk_options *o = NULL;
            if (vdisk_options_new(&o) == 0 &&
                vdisk_options_parse(o, amend_sets[a % (sizeof amend_sets / sizeof *amend_sets)]) == 0)
                vdisk_amend(dev, o);
            vdisk_options_free(o);
            break;
        }
        case 7:
            vdisk_make_empty(dev);
            break;
        case 8:
            vdisk_discard(dev, (uint64_t)a * 8192, (uint64_t)a * 4096 + 4096);
            break;
        default:
            memset(buf, 0xc0 | (int)a, 65536);
            vdisk_pwrite(dev, buf, a + 1u, (uint64_t)a * 3072);
            break;
        }
        if (dev->drv->check) {
            struct vdisk_check_result res = {.struct_size = sizeof res};
            dev->drv->check(dev, 0, &res, NULL, NULL);
        }
    }
    vdisk_flush(dev);
    uint64_t vsize = vdisk_get_size(dev);
    for (uint64_t off = 0; off < vsize && off < (1u << 20); off += 65536)
        vdisk_pread(dev, buf, vsize - off < 65536 ? (size_t)(vsize - off) : 65536, off);
    struct vdisk_check_result res = {.struct_size = sizeof res};
    vdisk_check(dev, VDISK_CHECK_REPAIR_LEAKS | VDISK_CHECK_REPAIR_ERRORS, &res, NULL, NULL);
    free(buf);
    dev_unref(dev);
    return 0;
}
