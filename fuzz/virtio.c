/* SPDX-License-Identifier: MIT */
/*
 * fuzz/virtio.c: the fuzz input is a guest: its first byte picks the model
 * (virtio-blk over a memory disk, or virtio-scsi with a CD-ROM), the queue
 * and the features; the rest is the guest's memory, holding one queue's
 * descriptor table, available ring and buffers.  The queue is kicked and
 * everything in flight completed, twice; in between, as the first byte
 * says, the driver may change sense_size (with commands in flight) and the
 * queue may be stopped and started again.  Any crash, sanitizer report (a write
 * outside the guest's memory among them), leak or hang is a bug.
 *
 * Guest memory layout (GPA 0x10000, 64 KiB): descriptors at +0x000 (16
 * entries), available ring at +0x100, used ring at +0x200, buffers above.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/iso9660.h>
#include <vdisk/virtio.h>

#include "fuzz.h"

#define GPA 0x10000u
#define MEM 0x10000u
#define QSIZE 16

static uint8_t mem[MEM];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    memset(mem, 0, sizeof mem);
    memcpy(mem, data + 1, size - 1 < MEM ? size - 1 : MEM);

    vdisk_options *o;
    if (vdisk_options_new(&o) < 0)
        return 0;
    vdisk_options_set(o, "engine", "threads");
    vdisk_virtio *v = NULL;
    unsigned q;
    if (!(sel & 1)) {
        struct vdisk_open_params p = fuzz_params(sel & 0x20);
        struct vdisk_dev *disk;
        if (dev_open_memory(&disk, NULL, 0, 1 << 20, &p) == 0) {
            uint8_t z = 0;
            vdisk_pwrite(disk, &z, 1, (1 << 20) - 1);
            vdisk_virtio_blk_new(&v, disk, NULL);
            vdisk_close(disk);
        }
        q = 0;
    } else {
        vdisk_dev *cd;
        if (vdisk_open_cdrom(&cd, (sel & 0x20) ? NULL : fuzz_cd_medium(), o) == 0) {
            vdisk_virtio_scsi_cdrom_new(&v, cd, NULL);
            vdisk_close(cd);
        }
        q = (sel >> 1) % 3;
    }
    vdisk_options_free(o);
    if (!v)
        return 0;

    struct vdisk_guest_region r = {.gpa = GPA, .size = MEM, .host = mem};
    vdisk_guest_mem *gm;
    if (vdisk_guest_mem_new(&gm, &r, 1) == 0) {
        uint64_t f = vdisk_virtio_features(v);
        if (sel & 0x08)
            f &= ~(1ull << VDISK_VIRTIO_F_RING_EVENT_IDX);
        if (sel & 0x10)
            f &= ~(1ull << VDISK_VIRTIO_F_RING_INDIRECT_DESC);
        vdisk_virtio_set_features(v, f);
        vdisk_virtio_set_mem(v, gm);
        if (vdisk_virtio_queue_setup(v, q, QSIZE, GPA, GPA + 0x100, GPA + 0x200) == 0 &&
            vdisk_virtio_queue_enable(v, q, 1) == 0) {
            /* two kicks: the second sees what the first left */
            vdisk_virtio_queue_notify(v, q);
            if (sel & 0x40) {
                /* the driver changes sense_size with commands in flight */
                uint32_t sense = data[size - 1];
                vdisk_virtio_config_write(v, 20, &sense, 4);
            }
            vdisk_virtio_drain(v);
            if (sel & 0x80) {
                /* stopped and started again where it stopped, as a
                 * vhost-user front end does (held event buffers go) */
                uint16_t base = 0;
                vdisk_virtio_queue_enable(v, q, 0);
                vdisk_virtio_queue_get_base(v, q, &base);
                if (vdisk_virtio_queue_setup(v, q, QSIZE, GPA, GPA + 0x100, GPA + 0x200) == 0)
                    vdisk_virtio_queue_set_base(v, q, base);
                vdisk_virtio_queue_enable(v, q, 1);
            }
            vdisk_virtio_queue_notify(v, q);
            vdisk_virtio_drain(v);
        }
        vdisk_virtio_free(v);
        vdisk_guest_mem_free(gm);
    } else {
        vdisk_virtio_free(v);
    }
    return 0;
}
