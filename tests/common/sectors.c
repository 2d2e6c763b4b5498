/* SPDX-License-Identifier: MIT */
/* tests/common/sectors.c: crash images checked sector by sector. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"
#include "sectors.h"

void sectors_verify(const uint8_t *data, const uint8_t *dur, const uint8_t *pend, unsigned n,
                    const char *what)
{
    for (unsigned k = 0; k < n; k++) {
        const uint8_t *p = data + (size_t)k * SECTOR_BYTES;
        uint8_t v = p[0];
        bool uniform = true;
        for (unsigned i = 1; i < SECTOR_BYTES && uniform; i++)
            uniform = p[i] == v;
        unsigned allowed = (1u << dur[k]) | pend[k];
        ck_assert_msg(uniform && v < 8 && (allowed >> v) & 1,
                      "%s: sector %u (offset %u) reads %s0x%02x; allowed: 0x%02x at the last "
                      "flush, or written since: mask 0x%02x", what, k, k * SECTOR_BYTES,
                      uniform ? "" : "noise starting with ", v, dur[k], pend[k]);
    }
}

char *sectors_qemu_reads(const uint8_t *data, unsigned n)
{
    size_t cap = 1 << 16, len = 0;
    char *cmds = malloc(cap);
    ck_assert_ptr_nonnull(cmds);
    cmds[0] = 0;
    for (unsigned k = 0; k < n;) {
        uint8_t v = data[(size_t)k * SECTOR_BYTES];
        unsigned e = k + 1;
        while (e < n && data[(size_t)e * SECTOR_BYTES] == v)
            e++;
        if (cap - len < 64) {
            cap *= 2;
            ck_assert_ptr_nonnull(cmds = realloc(cmds, cap));
        }
        int w = snprintf(cmds + len, cap - len, " -c 'read -q -P 0x%02x %u %u'", v,
                         k * SECTOR_BYTES, (e - k) * SECTOR_BYTES);
        ck_assert(w > 0 && (size_t)w < cap - len);
        len += (size_t)w;
        k = e;
    }
    return cmds;
}
