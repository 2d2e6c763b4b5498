/* SPDX-License-Identifier: MIT */
/*
 * fuzz/vmm_exits.c: what a guest does to vdisk-vmm through its exits, as
 * fuzz input: register accesses to a virtio-mmio device window (any offset,
 * any width, reads and writes), queue kicks, completion polls and port I/O
 * to the 16550 UART, played against vdisk-vmm's own transport and UART
 * (tools/vmm/mmio.c and serial.c compiled in, without KVM: no irqfd or
 * ioeventfd, interrupts through a KVM_IRQ_LINE that fails harmlessly) and
 * the library's virtio-blk or virtio-scsi model.  The guest's memory
 * (64 KiB at GPA 0x10000) comes from the input too, so the driver's rings
 * and buffers are the fuzzer's.  Any crash, sanitizer report, leak or hang
 * is a bug.
 *
 * Input: byte 0 picks the model (bit 0: virtio-scsi with a CD-ROM, else
 * virtio-blk over a 1 MiB memory disk); bytes 1-2 (little endian) are the
 * length L of the exit list that follows, 8 bytes an exit; the rest is
 * guest memory.  An exit: kind (0 read, 1 write, 2 kick, 3 poll, 4 UART
 * read, 5 UART write), width (low 4 bits), offset (2 bytes, little endian,
 * inside the 4 KiB window), value (4 bytes).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/iso9660.h>
#include <vdisk/virtio.h>

#include "fuzz.h"
#include "vmm.h"

#define GPA 0x10000u
#define MEM 0x10000u
#define MAX_EXITS 512u

static uint8_t mem[MEM];

/* vdisk-vmm's log goes nowhere here (its messages are bounded per kind). */
void vmm_log(const char *fmt, ...)
{
    (void)fmt;
}

static vdisk_virtio *make_model(uint8_t sel)
{
    vdisk_virtio *v = NULL;
    if (!(sel & 1)) {
        struct vdisk_open_params p = fuzz_params(false);
        struct vdisk_dev *disk;
        if (dev_open_memory(&disk, NULL, 0, 1 << 20, &p) == 0) {
            uint8_t z = 0;
            vdisk_pwrite(disk, &z, 1, (1 << 20) - 1);
            vdisk_virtio_blk_new(&v, disk, NULL);
            vdisk_close(disk);
        }
        return v;
    }
    vdisk_options *o;
    if (vdisk_options_new(&o) < 0)
        return NULL;
    vdisk_options_set(o, "engine", "threads");
    vdisk_dev *cd;
    if (vdisk_open_cdrom(&cd, (sel & 2) ? NULL : fuzz_cd_medium(), o) == 0) {
        vdisk_virtio_scsi_cdrom_new(&v, cd, NULL);
        vdisk_close(cd);
    }
    vdisk_options_free(o);
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t sel = data[0];
    size_t nexit = (size_t)(data[1] | data[2] << 8) / 8;
    if (nexit > MAX_EXITS)
        nexit = MAX_EXITS;
    if (nexit > (size - 3) / 8)
        nexit = (size - 3) / 8;
    const uint8_t *exits = data + 3, *guest = exits + nexit * 8;
    size_t glen = size - 3 - nexit * 8;
    memset(mem, 0, sizeof mem);
    memcpy(mem, guest, glen < MEM ? glen : MEM);

    vdisk_virtio *v = make_model(sel);
    if (!v)
        return 0;
    struct vdisk_guest_region r = {.gpa = GPA, .size = MEM, .host = mem};
    struct vmm_mem vm = {.size = MEM, .low_size = 0};
    if (vdisk_guest_mem_new(&vm.gmem, &r, 1) < 0) {
        vdisk_virtio_free(v);
        return 0;
    }
    static struct vmm_mmio_dev d;
    if (vmm_mmio_dev_init(&d, 0, -1, v, &vm, "fuzz", sel & 1) < 0) {
        vdisk_virtio_free(v);
        vdisk_guest_mem_free(vm.gmem);
        return 0;
    }
    struct vmm_serial uart;
    vmm_serial_init(&uart, -1, -1);
    for (size_t i = 0; i < nexit; i++) {
        const uint8_t *e = exits + 8 * i;
        unsigned width = e[1] & 15u;
        uint64_t off = (uint64_t)(e[2] | e[3] << 8) & (VMM_MMIO_SIZE - 1);
        uint8_t val[8] = {e[4], e[5], e[6], e[7], e[4], e[5], e[6], e[7]};
        if (width == 0 || width > 8)
            width = 4;
        switch (e[0] % 6) {
        case 0:
            vmm_mmio_access(&d, off, val, width, 0);
            break;
        case 1:
            vmm_mmio_access(&d, off, val, width, 1);
            break;
        case 2:
            vmm_mmio_kick(&d, e[4] % d.nqueues);
            break;
        case 3:
            vmm_mmio_poll(&d);
            break;
        case 4:
            vmm_serial_io(&uart, off & 7, 0, val);
            break;
        default:
            vmm_serial_io(&uart, off & 7, 1, val);
            break;
        }
    }
    vmm_serial_destroy(&uart);
    vmm_mmio_dev_destroy(&d); /* waits for requests, frees the model */
    vdisk_guest_mem_free(vm.gmem);
    return 0;
}
