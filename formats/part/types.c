/* SPDX-License-Identifier: MIT */
/*
 * formats/part/types.c: partition type names as sfdisk prints them
 * ("Linux filesystem", "W95 FAT32 (LBA)", ...); "unknown" for the others,
 * as sfdisk says.
 */
#include <stddef.h>
#include <stdint.h>
#include <strings.h>

#include "part.h"

struct code_name {
    uint32_t code;
    const char *name;
};

struct guid_name {
    const char *guid;
    const char *name;
};

#include "types_table.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *by_code(const struct code_name *t, size_t n, uint32_t code)
{
    for (size_t i = 0; i < n; i++)
        if (t[i].code == code)
            return t[i].name;
    return "unknown";
}

const char *pt_type_name(int kind, uint32_t code, const char *guid)
{
    switch (kind) {
    case VDISK_PT_MBR:
        return by_code(dos_types, N(dos_types), code);
    case VDISK_PT_SUN:
        return by_code(sun_types, N(sun_types), code);
    case VDISK_PT_SGI:
        return by_code(sgi_types, N(sgi_types), code);
    case VDISK_PT_BSD:
        return by_code(bsd_types, N(bsd_types), code);
    case VDISK_PT_GPT:
        for (size_t i = 0; guid && i < N(gpt_types); i++)
            if (strcasecmp(gpt_types[i].guid, guid) == 0)
                return gpt_types[i].name;
        return "unknown";
    default:
        return "unknown";
    }
}
