/* SPDX-License-Identifier: MIT */
/* lib/virtio/mem.c: guest physical memory as a sorted list of regions. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/virtio.h>

#include "error_internal.h"
#include "virtio_internal.h"

#define MEM_REGIONS_MAX 256

static int cmp_region(const void *a, const void *b)
{
    const struct vdisk_guest_region *x = a, *y = b;
    return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

VDISK_EXPORT int vdisk_guest_mem_new(vdisk_guest_mem **out, const struct vdisk_guest_region *r, unsigned n)
{
    err_enter(__func__);
    if (!out)
        return err_set(-EINVAL, "no place for the result");
    *out = NULL;
    if (!r || n == 0 || n > MEM_REGIONS_MAX)
        return err_set(-EINVAL, "%u regions given (expected 1 to %d)", n, MEM_REGIONS_MAX);
    struct vdisk_guest_mem *m = calloc(1, sizeof *m + (size_t)n * sizeof m->r[0]);
    if (!m)
        return err_set(-ENOMEM, "out of memory");
    memcpy(m->r, r, (size_t)n * sizeof r[0]);
    m->n = n;
    qsort(m->r, n, sizeof m->r[0], cmp_region);
    for (unsigned i = 0; i < n; i++) {
        const struct vdisk_guest_region *x = &m->r[i];
        if (x->size == 0 || !x->host || x->gpa + x->size - 1 < x->gpa) {
            int e = err_set(-EINVAL, "region %u (guest address 0x%llx, %llu bytes) is empty, "
                            "unmapped or wraps around", i, (unsigned long long)x->gpa,
                            (unsigned long long)x->size);
            free(m);
            return e;
        }
        if (i > 0 && m->r[i - 1].gpa + m->r[i - 1].size > x->gpa) {
            int e = err_set(-EINVAL, "regions at guest addresses 0x%llx and 0x%llx overlap",
                            (unsigned long long)m->r[i - 1].gpa, (unsigned long long)x->gpa);
            free(m);
            return e;
        }
    }
    *out = m;
    return 0;
}

VDISK_EXPORT void vdisk_guest_mem_free(vdisk_guest_mem *m)
{
    free(m);
}

VDISK_EXPORT void *vdisk_guest_mem_translate(const vdisk_guest_mem *m, uint64_t gpa, uint64_t len)
{
    if (!m)
        return NULL;
    /* Binary search for the last region starting at or below GPA. */
    unsigned lo = 0, hi = m->n;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (m->r[mid].gpa <= gpa)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    const struct vdisk_guest_region *x = &m->r[lo - 1];
    uint64_t off = gpa - x->gpa;
    if (off >= x->size || len > x->size - off)
        return NULL;
    return (char *)x->host + off;
}
