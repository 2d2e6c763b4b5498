/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the device bus.  A guest's port I/O and MMIO exits reach the
 * device whose range holds the address; what no device claims reads as
 * nothing there.  Two buses: one for ports, one for MMIO (separate address
 * spaces).  Devices are added while the machine is built (one thread) and
 * never removed; dispatch then runs on the vCPU threads concurrently, each
 * device locking what it must.  Needs neither KVM nor libvdisk.
 */
#ifndef VDISK_VMM_BUS_H
#define VDISK_VMM_BUS_H

#include <stdatomic.h>
#include <stdint.h>

/*
 * A guest access at OFFSET inside a device's range: LEN bytes at DATA
 * (written by the guest when IS_WRITE, else filled by the device).
 */
typedef void vmm_bus_fn(void *opaque, uint64_t offset, uint8_t *data, unsigned len, int is_write);

#define VMM_BUS_MAX_RANGES 16u

struct vmm_bus_range {
    uint64_t base, size;
    vmm_bus_fn *fn;
    void *opaque;
};

struct vmm_bus {
    unsigned n;
    struct vmm_bus_range r[VMM_BUS_MAX_RANGES];
    atomic_int logged;      /* an MMIO access to nothing was logged */
};

/* An empty bus. */
void vmm_bus_init(struct vmm_bus *b);

/*
 * Adds a device at [BASE, BASE + SIZE).  Returns 0, or -1 when the bus is
 * full, SIZE is 0 or the range overlaps another (a bug of the builder).
 */
int vmm_bus_add(struct vmm_bus *b, uint64_t base, uint64_t size, vmm_bus_fn *fn, void *opaque);

/*
 * A port I/O exit: SIZE bytes from PORT, one byte at a time, each to the
 * device that holds its port (offset inside it, length 1).  Reads of ports
 * no device holds give 0xFF; writes to them are ignored.
 */
void vmm_bus_pio(struct vmm_bus *b, uint16_t port, uint8_t *data, unsigned size, int is_write);

/*
 * An MMIO exit of LEN bytes (at most 8 are handled) at ADDR: to the device
 * whose range holds all of it; else the access is logged (once per bus),
 * a read gives zeroes and a write is ignored.
 */
void vmm_bus_mmio(struct vmm_bus *b, uint64_t addr, uint8_t *data, unsigned len, int is_write);

#endif /* VDISK_VMM_BUS_H */
