/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the power and reset controls (power.h).
 */
#include "power.h"
#include "vmm.h"

/* PM1 event block: status (0x600) and enable (0x602) read 0, writes ignored. */
static void pm1_evt_io(void *opaque, uint64_t off, uint8_t *data, unsigned len, int is_write)
{
    (void)opaque;
    (void)off;
    for (unsigned k = 0; k < len; k++)
        if (!is_write)
            data[k] = 0;
}

/* PM1 control (0x604, 2 bytes). */
static void pm1_cnt_io(void *opaque, uint64_t off, uint8_t *data, unsigned len, int is_write)
{
    struct vmm_power *p = opaque;
    for (unsigned k = 0; k < len; k++) {
        uint64_t o = off + k;
        if (!is_write)
            data[k] = o == 0 ? 0x01 : 0x00;               /* SCI_EN: in ACPI mode */
        else if (o == 1 && (data[k] & 0x20))              /* SLP_EN, bit 13 */
            p->event(p->opaque, VMM_POWER_OFF);
    }
}

/* The i8042's command port (0x64). */
static void i8042_cmd_io(void *opaque, uint64_t off, uint8_t *data, unsigned len, int is_write)
{
    struct vmm_power *p = opaque;
    (void)off;
    for (unsigned k = 0; k < len; k++) {
        if (!is_write)
            data[k] = 0;                                  /* input buffer empty */
        else if (data[k] == 0xFE)                         /* pulse the reset line */
            p->event(p->opaque, VMM_POWER_RESET);
    }
}

int vmm_power_attach(struct vmm_power *p, struct vmm_bus *pio,
                     void (*event)(void *opaque, enum vmm_power_event ev), void *opaque)
{
    p->event = event;
    p->opaque = opaque;
    if (vmm_bus_add(pio, VMM_PM1_EVT_PORT, 4, pm1_evt_io, p) < 0 ||
        vmm_bus_add(pio, VMM_PM1_CNT_PORT, 2, pm1_cnt_io, p) < 0 ||
        vmm_bus_add(pio, VMM_I8042_CMD, 1, i8042_cmd_io, p) < 0)
        return -1;
    return 0;
}
