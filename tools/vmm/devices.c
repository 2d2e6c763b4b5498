/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the machine's devices and where they sit on the buses: a
 * virtio-mmio transport (mmio.c) over a libvdisk virtio model for each
 * disk and the CD-ROM, the 16550 UART (serial.c), the power and reset
 * controls (power.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/device.h>
#include <vdisk/error.h>
#include <vdisk/iso9660.h>
#include <vdisk/options.h>
#include <vdisk/part.h>
#include <vdisk/virtio.h>

#include "vmm.h"

static int open_disk(const struct vmm_disk_opt *d, vdisk_dev **out)
{
    vdisk_options *o = NULL;
    vdisk_dev *dev = NULL;
    int r = vdisk_options_new(&o);
    if (r == 0 && d->format)
        r = vdisk_options_set(o, "format", d->format);
    if (r == 0 && d->readonly)
        r = vdisk_options_set(o, "read-only", "on");
    /* The guest writes the image: its backing file names are untrusted. */
    if (r == 0)
        r = vdisk_options_set(o, "backing-confine", d->allow_any_backing ? "off" : "on");
    if (r == 0)
        r = vdisk_open(&dev, d->path, o);
    vdisk_options_free(o);
    if (r < 0) {
        vmm_log("--disk %s: %s", d->path, vdisk_get_error());
        return r;
    }
    if (d->part) {
        vdisk_dev *part = NULL;
        r = vdisk_open_partition(&part, dev, d->part, d->readonly ? VDISK_OPEN_RDONLY : 0);
        vdisk_close(dev);
        if (r < 0) {
            vmm_log("--disk %s,part=%u: %s", d->path, d->part, vdisk_get_error());
            return r;
        }
        dev = part;
    }
    *out = dev;
    return 0;
}

int vmm_devices_virtio(struct vmm_devices *d, const struct vmm_config *c, int vm_fd,
                       const struct vmm_mem *mem, struct vmm_bus *mmio)
{
    for (unsigned i = 0; i < c->ndisks + (c->cdrom ? 1u : 0u); i++) {
        int is_cdrom = i == c->ndisks;
        vdisk_dev *dev = NULL;
        vdisk_virtio *model = NULL;
        char name[32];
        int r;
        if (!is_cdrom) {
            const struct vmm_disk_opt *o = &c->disks[i];
            snprintf(name, sizeof(name), "disk%u", i);
            if (open_disk(o, &dev) < 0)
                return -1;
            struct vdisk_virtio_blk_params p = { .struct_size = sizeof p,
                                                 .num_queues = 1, .serial = o->serial,
                                                 .read_only = o->readonly };
            r = vdisk_virtio_blk_new(&model, dev, &p);
        } else {
            snprintf(name, sizeof(name), "cdrom");
            /* ISO images, and the media the monitor changes to, are raw:
             * never probed, so no backing file. */
            vdisk_options *o = NULL;
            r = vdisk_options_new(&o);
            if (r == 0)
                r = vdisk_options_set(o, "format", "raw");
            if (r == 0)
                r = vdisk_open_cdrom(&dev, c->cdrom_iso, o);
            vdisk_options_free(o);
            if (r < 0) {
                vmm_log("--cdrom %s: %s", c->cdrom_iso ? c->cdrom_iso : "", vdisk_get_error());
                return -1;
            }
            struct vdisk_virtio_scsi_params p = { .struct_size = sizeof p, .num_queues = 1 };
            r = vdisk_virtio_scsi_cdrom_new(&model, dev, &p);
        }
        if (is_cdrom && r == 0)
            d->cdrom_dev = dev; /* kept for the monitor's info */
        else
            vdisk_close(dev); /* the model holds its own reference */
        if (r < 0) {
            vmm_log("%s: the virtio model: %s", name, vdisk_get_error());
            return -1;
        }
        struct vmm_mmio_dev *m = &d->dev[d->n];
        r = vmm_mmio_dev_init(m, d->n, vm_fd, model, mem, name, is_cdrom);
        d->n++; /* destroyed (with its model) even when the init failed */
        if (r < 0)
            return -1;
        if (vmm_bus_add(mmio, m->base, VMM_MMIO_SIZE, vmm_mmio_bus_io, m) < 0) {
            vmm_log("%s: no room on the MMIO bus", name);
            return -1;
        }
    }
    return 0;
}

/* A power-off or reset from the guest: the VM ends with status 0. */
static void power_event(void *opaque, enum vmm_power_event ev)
{
    (void)ev;
    vmm_request_stop(opaque, 0);
}

int vmm_devices_legacy(struct vmm_devices *d, int vm_fd, int out_fd, struct vmm_bus *pio,
                       struct vmm_control *ctl)
{
    vmm_serial_init(&d->serial, vm_fd, out_fd);
    d->serial_ready = 1;
    if (vmm_bus_add(pio, VMM_SERIAL_BASE, 8, vmm_serial_bus_io, &d->serial) < 0 ||
        vmm_power_attach(&d->power, pio, power_event, ctl) < 0) {
        vmm_log("no room on the port bus");
        return -1;
    }
    return 0;
}

void vmm_devices_destroy(struct vmm_devices *d)
{
    for (unsigned i = 0; i < d->n; i++)
        vmm_mmio_dev_destroy(&d->dev[i]); /* waits for requests, flushes, closes */
    d->n = 0;
    vdisk_close(d->cdrom_dev);
    d->cdrom_dev = NULL;
    if (d->serial_ready)
        vmm_serial_destroy(&d->serial);
    d->serial_ready = 0;
}
