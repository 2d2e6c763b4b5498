/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the device bus (bus.h): port I/O and MMIO exits dispatched to
 * the device whose range holds the address.
 */
#include <string.h>

#include "bus.h"
#include "vmm.h"

void vmm_bus_init(struct vmm_bus *b)
{
    memset(b, 0, sizeof(*b));
    atomic_init(&b->logged, 0);
}

int vmm_bus_add(struct vmm_bus *b, uint64_t base, uint64_t size, vmm_bus_fn *fn, void *opaque)
{
    if (b->n >= VMM_BUS_MAX_RANGES || size == 0 || base + size < base || !fn)
        return -1;
    for (unsigned i = 0; i < b->n; i++)
        if (base < b->r[i].base + b->r[i].size && b->r[i].base < base + size)
            return -1;
    b->r[b->n++] = (struct vmm_bus_range){ .base = base, .size = size, .fn = fn, .opaque = opaque };
    return 0;
}

static const struct vmm_bus_range *bus_find(const struct vmm_bus *b, uint64_t addr)
{
    for (unsigned i = 0; i < b->n; i++)
        if (addr >= b->r[i].base && addr - b->r[i].base < b->r[i].size)
            return &b->r[i];
    return NULL;
}

void vmm_bus_pio(struct vmm_bus *b, uint16_t port, uint8_t *data, unsigned size, int is_write)
{
    for (unsigned k = 0; k < size; k++) {
        unsigned p = (unsigned)port + k;
        const struct vmm_bus_range *r = bus_find(b, p);
        if (r)
            r->fn(r->opaque, p - r->base, &data[k], 1, is_write);
        else if (!is_write)
            data[k] = 0xFF;                               /* nothing there */
    }
}

void vmm_bus_mmio(struct vmm_bus *b, uint64_t addr, uint8_t *data, unsigned len, int is_write)
{
    if (len > 8)
        len = 8;
    const struct vmm_bus_range *r = bus_find(b, addr);
    if (r && addr - r->base + len <= r->size) {
        r->fn(r->opaque, addr - r->base, data, len, is_write);
        return;
    }
    if (atomic_exchange(&b->logged, 1) == 0)
        vmm_log("guest %s of %u bytes at 0x%llx: nothing there (%s; logged once)",
                is_write ? "write" : "read", len, (unsigned long long)addr,
                is_write ? "ignored" : "reads 0");
    if (!is_write)
        memset(data, 0, len);
}
