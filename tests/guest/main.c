/* SPDX-License-Identifier: MIT */
/*
 * tests/guest/main.c: the test guest's main program.  vdisk-vmm starts it
 * at 0x100000 in 32-bit protected mode with EBX pointing to its info block
 * (at 0x7000): u32 magic "VDSK" (0x4B534456), u32 number of virtio-mmio
 * devices, u32 memory size (low 32 bits), then {u32 base, u32 irq} per
 * device.  Each device is tested by its type; the results go to the serial
 * port as "GUEST: ..." lines, the last one "GUEST: done", then the guest
 * powers off.
 */
#include "guest.h"

#define INFO_MAGIC 0x4B534456u
#define MAX_DEVICES 16

void guest_main(u32 info_addr);

void guest_main(u32 info_addr)
{
    serial_init();
    say("vdisk test guest");
    crc32_init();

    const u8 *info = (const u8 *)info_addr;
    if (info_addr == 0 || le32(info) != INFO_MAGIC) {
        fail("no info block at %p (EBX)", (void *)info_addr);
        goto out;
    }
    u32 count = le32(info + 4), mem = le32(info + 8);
    say("info block: %u virtio-mmio device(s), %u MiB of memory", count, mem >> 20);
    if (count > MAX_DEVICES) {
        fail("%u devices in the info block, at most %u handled", count, MAX_DEVICES);
        count = MAX_DEVICES;
    }
    if (mem < 0x400000) {
        fail("%u bytes of memory, the guest needs 4 MiB", mem);
        goto out;
    }
    heap_init(mem);

    unsigned nblk = 0, nscsi = 0;
    for (u32 i = 0; i < count; i++) {
        struct vdev *d = vdev_probe(info, i, &nblk, &nscsi);
        if (!d)
            continue;
        switch (d->device_id) {
        case 2:
            say("%s: virtio-blk at %p irq %u", d->name, (void *)d->base, d->irq);
            test_blk(d);
            break;
        case 8:
            say("%s: virtio-scsi at %p irq %u", d->name, (void *)d->base, d->irq);
            test_scsi(d);
            break;
        default:
            say("device %u at %p: device id %u, not tested", i, (void *)d->base,
                d->device_id);
        }
    }
out:
    if (failures)
        say("done, %u failure(s)", failures);
    else
        say("done");
    power_off();
}
