/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the power and reset controls, as devices on the port bus: the
 * ACPI PM1 event block (status and enable, always 0), the PM1 control
 * register (SCI_EN set: the machine is in ACPI mode; SLP_EN written: the
 * guest powers off, \_S5 in the DSDT) and the i8042's command port (0xFE:
 * the guest pulses the reset line).  Needs neither KVM nor libvdisk.
 */
#ifndef VDISK_VMM_POWER_H
#define VDISK_VMM_POWER_H

#include "bus.h"

enum vmm_power_event {
    VMM_POWER_OFF = 1,      /* PM1 control: SLP_EN */
    VMM_POWER_RESET,        /* i8042: 0xFE */
};

struct vmm_power {
    /* Called on the vCPU thread that made the access. */
    void (*event)(void *opaque, enum vmm_power_event ev);
    void *opaque;
};

/* Puts the controls on the port bus PIO.  Returns 0 or -1 (see vmm_bus_add). */
int vmm_power_attach(struct vmm_power *p, struct vmm_bus *pio,
                     void (*event)(void *opaque, enum vmm_power_event ev), void *opaque);

#endif /* VDISK_VMM_POWER_H */
