/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: loading a guest: a raw firmware image started in 32-bit
 * protected mode, or a Linux bzImage by the 64-bit boot protocol
 * (Documentation/arch/x86/boot.rst, zero-page.rst).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "endian.h"
#include "vmm.h"


/* Opens PATH and gives its size (a regular file or a block device of known size). */
static int open_file(const char *what, const char *path, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        vmm_log("%s %s: %s", what, path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        vmm_log("%s %s: not a regular file", what, path);
        close(fd);
        return -EINVAL;
    }
    *size = (uint64_t)st.st_size;
    return fd;
}

static int read_full(int fd, void *buf, size_t n, uint64_t off)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -EIO; /* the file shrank */
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Loads SIZE bytes of FD at OFF into guest memory at GPA. */
static int load_into(const struct vmm_mem *mem, const char *what, const char *path, int fd,
                     uint64_t off, uint64_t size, uint64_t gpa)
{
    void *dst = vmm_gpa(mem, gpa, size);
    if (!dst) {
        vmm_log("%s %s: %llu bytes at 0x%llx do not fit in guest RAM (--mem)", what, path,
                (unsigned long long)size, (unsigned long long)gpa);
        return -ENOSPC;
    }
    int r = read_full(fd, dst, size, off);
    if (r < 0)
        vmm_log("%s %s: %s", what, path, strerror(-r));
    return r;
}

/* A flat segment descriptor. TYPE: 0xA code, 0x2 data; L: 64-bit code. */
static uint64_t gdt_entry(unsigned type, int l, int db)
{
    uint64_t d = 0;
    d |= 0xFFFFull;                         /* limit 15:0 */
    d |= (uint64_t)(type | 0x1) << 40;      /* type, accessed */
    d |= 1ull << 44;                        /* S: code/data */
    d |= 1ull << 47;                        /* present */
    d |= 0xFull << 48;                      /* limit 19:16 */
    d |= (uint64_t)(l ? 1 : 0) << 53;
    d |= (uint64_t)(db ? 1 : 0) << 54;
    d |= 1ull << 55;                        /* 4 KiB granularity */
    return d;
}

/* ---- --firmware --------------------------------------------------------------------- */

int vmm_load_firmware(const struct vmm_mem *mem, const char *path, unsigned ndevs,
                      const struct vmm_mmio_dev *devs, struct vmm_boot *boot)
{
    uint64_t size;
    int fd = open_file("--firmware", path, &size);
    if (fd < 0)
        return fd;
    if (size == 0) {
        vmm_log("--firmware %s: empty file", path);
        close(fd);
        return -EINVAL;
    }
    int r = load_into(mem, "--firmware", path, fd, 0, size, VMM_FIRMWARE_ADDR);
    close(fd);
    if (r < 0)
        return r;

    /* GDT: null, 0x08 flat 32-bit code, 0x10 flat data */
    uint8_t *gdt = vmm_gpa(mem, VMM_GDT_ADDR, 24);
    uint8_t *info = vmm_gpa(mem, VMM_INFO_ADDR, 12 + 8 * (uint64_t)ndevs);
    if (!gdt || !info)
        return -ENOSPC;
    le64_store(gdt, 0);
    le64_store(gdt + 8, gdt_entry(0xA, 0, 1));
    le64_store(gdt + 16, gdt_entry(0x2, 0, 1));

    le32_store(info, VMM_INFO_MAGIC);
    le32_store(info + 4, ndevs);
    le32_store(info + 8, (uint32_t)mem->low_size);
    for (unsigned i = 0; i < ndevs; i++) {
        le32_store(info + 12 + 8 * i, (uint32_t)devs[i].base);
        le32_store(info + 16 + 8 * i, devs[i].irq);
    }
    boot->long_mode = 0;
    boot->entry = VMM_FIRMWARE_ADDR;
    boot->rbx = VMM_INFO_ADDR;
    boot->rsp = VMM_FIRMWARE_STACK;
    boot->rsi = 0;
    return 0;
}

/* ---- --kernel ---------------------------------------------------------------------- */

/* boot_params (zero page) offsets */
#define BP_ACPI_RSDP      0x070
#define BP_EXT_RAMDISK    0x0C0
#define BP_EXT_RAMDISK_SZ 0x0C4
#define BP_EXT_CMDLINE    0x0C8
#define BP_E820_ENTRIES   0x1E8
#define BP_HDR            0x1F1
#define BP_E820_TABLE     0x2D0
#define BP_E820_MAX       128
/* setup header offsets (in the bzImage and in boot_params) */
#define HDR_SETUP_SECTS   0x1F1
#define HDR_BOOT_FLAG     0x1FE
#define HDR_JUMP          0x200
#define HDR_MAGIC         0x202
#define HDR_VERSION       0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS     0x211
#define HDR_CODE32_START  0x214
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE  0x21C
#define HDR_HEAP_END_PTR  0x224
#define HDR_CMD_LINE_PTR  0x228
#define HDR_INITRD_MAX    0x22C
#define HDR_KERNEL_ALIGN  0x230
#define HDR_RELOCATABLE   0x234
#define HDR_XLOADFLAGS    0x236
#define HDR_CMDLINE_SIZE  0x238
#define HDR_PREF_ADDRESS  0x258
#define HDR_INIT_SIZE     0x260
#define HDR_END_MAX       0x290   /* where boot_params' setup header ends */

#define LOADED_HIGH   0x01
#define CAN_USE_HEAP  0x80
#define XLF_KERNEL_64 0x01

#define E820_RAM      1
#define E820_RESERVED 2

static void e820_add(uint8_t *zp, uint64_t addr, uint64_t size, uint32_t type)
{
    unsigned n = zp[BP_E820_ENTRIES];
    if (n >= BP_E820_MAX || size == 0)
        return;
    uint8_t *e = zp + BP_E820_TABLE + 20 * n;
    le64_store(e, addr);
    le64_store(e + 8, size);
    le32_store(e + 16, type);
    zp[BP_E820_ENTRIES] = (uint8_t)(n + 1);
}

/* Identity map of the first 4 GiB with 2 MiB pages; returns 0 or -ENOSPC. */
static int build_page_tables(const struct vmm_mem *mem)
{
    uint8_t *pml4 = vmm_gpa(mem, VMM_PML4_ADDR, 4096);
    uint8_t *pdpt = vmm_gpa(mem, VMM_PDPT_ADDR, 4096);
    uint8_t *pd = vmm_gpa(mem, VMM_PD_ADDR, 4 * 4096);
    if (!pml4 || !pdpt || !pd)
        return -ENOSPC;
    memset(pml4, 0, 4096);
    memset(pdpt, 0, 4096);
    le64_store(pml4, VMM_PDPT_ADDR | 0x3);                  /* present, writable */
    for (unsigned i = 0; i < 4; i++)
        le64_store(pdpt + 8 * i, (VMM_PD_ADDR + 4096u * i) | 0x3);
    for (unsigned i = 0; i < 4 * 512; i++)
        le64_store(pd + 8 * i, ((uint64_t)i << 21) | 0x83); /* present, writable, 2 MiB page */
    return 0;
}

int vmm_load_linux(const struct vmm_mem *mem, const char *kernel, const char *initrd,
                   const char *cmdline, uint64_t rsdp, struct vmm_boot *boot)
{
    uint64_t ksize;
    int fd = open_file("--kernel", kernel, &ksize);
    if (fd < 0)
        return fd;
    uint8_t hdr[1024];
    int r = -EINVAL;
    if (ksize < sizeof(hdr) || read_full(fd, hdr, sizeof(hdr), 0) < 0) {
        vmm_log("--kernel %s: too short for a bzImage", kernel);
        goto out;
    }
    if (le16_load(hdr + HDR_BOOT_FLAG) != 0xAA55 || memcmp(hdr + HDR_MAGIC, "HdrS", 4) != 0) {
        vmm_log("--kernel %s: not a bzImage (no boot flag 0xAA55 and \"HdrS\" magic)", kernel);
        goto out;
    }
    uint16_t version = le16_load(hdr + HDR_VERSION);
    if (version < 0x020C || !(le16_load(hdr + HDR_XLOADFLAGS) & XLF_KERNEL_64) ||
        !(hdr[HDR_LOADFLAGS] & LOADED_HIGH)) {
        vmm_log("--kernel %s: boot protocol %u.%02u without a 64-bit entry point "
                "(2.12 with XLF_KERNEL_64 is needed)", kernel, version >> 8, version & 0xFF);
        goto out;
    }
    unsigned setup_sects = hdr[HDR_SETUP_SECTS] ? hdr[HDR_SETUP_SECTS] : 4;
    uint64_t setup_size = (uint64_t)(setup_sects + 1) * 512;
    size_t hdr_end = 0x202 + (size_t)hdr[HDR_JUMP + 1];
    if (hdr_end > HDR_END_MAX)
        hdr_end = HDR_END_MAX;
    if (setup_size >= ksize) {
        vmm_log("--kernel %s: setup (%llu bytes) is larger than the file", kernel,
                (unsigned long long)setup_size);
        goto out;
    }
    uint64_t kernel_size = ksize - setup_size;
    uint32_t init_size = le32_load(hdr + HDR_INIT_SIZE);
    uint32_t align = le32_load(hdr + HDR_KERNEL_ALIGN);
    uint64_t pref = le64_load(hdr + HDR_PREF_ADDRESS);
    uint64_t need = init_size > kernel_size ? init_size : kernel_size;

    /* Where the protected-mode kernel goes: its preferred address when it
     * is relocatable... the decompressor relocates itself anyway; 1 MiB
     * when the preferred place does not fit. */
    uint64_t load = VMM_FIRMWARE_ADDR;
    if (hdr[HDR_RELOCATABLE] && pref >= VMM_FIRMWARE_ADDR && align && (pref % align) == 0 &&
        pref + need <= mem->low_size)
        load = pref;
    if (load + need > mem->low_size) {
        vmm_log("--kernel %s: needs %llu bytes at 0x%llx, more than --mem gives below 3 GiB",
                kernel, (unsigned long long)need, (unsigned long long)load);
        r = -ENOSPC;
        goto out;
    }
    r = load_into(mem, "--kernel", kernel, fd, setup_size, kernel_size, load);
    if (r < 0)
        goto out;

    /* The zero page */
    uint8_t *zp = vmm_gpa(mem, VMM_ZERO_PAGE_ADDR, 4096);
    uint8_t *cl = vmm_gpa(mem, VMM_CMDLINE_ADDR, VMM_CMDLINE_MAX);
    r = -ENOSPC;
    if (!zp || !cl || build_page_tables(mem) < 0)
        goto out;
    memset(zp, 0, 4096);
    memcpy(zp + BP_HDR, hdr + BP_HDR, hdr_end - BP_HDR);
    zp[HDR_TYPE_OF_LOADER] = 0xFF;      /* undefined boot loader */
    zp[HDR_LOADFLAGS] = (uint8_t)(zp[HDR_LOADFLAGS] | CAN_USE_HEAP);
    le16_store(zp + HDR_HEAP_END_PTR, 0xFE00);
    le32_store(zp + HDR_CODE32_START, (uint32_t)load);

    size_t cmdline_max = version >= 0x0206 ? le32_load(hdr + HDR_CMDLINE_SIZE) : 255;
    if (cmdline_max >= VMM_CMDLINE_MAX)
        cmdline_max = VMM_CMDLINE_MAX - 1;
    size_t cmdlen = strlen(cmdline);
    if (cmdlen > cmdline_max) {
        vmm_log("--cmdline: %zu bytes, the kernel takes at most %zu", cmdlen, cmdline_max);
        r = -E2BIG;
        goto out;
    }
    memset(cl, 0, cmdlen + 1);
    memcpy(cl, cmdline, cmdlen);
    le32_store(zp + HDR_CMD_LINE_PTR, VMM_CMDLINE_ADDR);
    le32_store(zp + BP_EXT_CMDLINE, 0);

    if (initrd) {
        uint64_t isize;
        int ifd = open_file("--initrd", initrd, &isize);
        if (ifd < 0) {
            r = ifd;
            goto out;
        }
        uint64_t max = le32_load(hdr + HDR_INITRD_MAX);
        if (version < 0x0203 || max == 0)
            max = 0x37FFFFFF;
        uint64_t top = max + 1 < mem->low_size ? max + 1 : mem->low_size;
        uint64_t kend = load + need;
        if (isize == 0 || isize > top || ((top - isize) & ~0xFFFull) < kend) {
            vmm_log("--initrd %s: %llu bytes do not fit between the kernel (ends at 0x%llx) "
                    "and 0x%llx", initrd, (unsigned long long)isize, (unsigned long long)kend,
                    (unsigned long long)top);
            close(ifd);
            r = -ENOSPC;
            goto out;
        }
        uint64_t iaddr = (top - isize) & ~0xFFFull;
        r = load_into(mem, "--initrd", initrd, ifd, 0, isize, iaddr);
        close(ifd);
        if (r < 0)
            goto out;
        le32_store(zp + HDR_RAMDISK_IMAGE, (uint32_t)iaddr);
        le32_store(zp + HDR_RAMDISK_SIZE, (uint32_t)isize);
        le32_store(zp + BP_EXT_RAMDISK, (uint32_t)(iaddr >> 32));
        le32_store(zp + BP_EXT_RAMDISK_SZ, (uint32_t)(isize >> 32));
    }

    le64_store(zp + BP_ACPI_RSDP, rsdp);
    e820_add(zp, 0, VMM_EBDA_START, E820_RAM);
    e820_add(zp, VMM_EBDA_START, 0xA0000 - VMM_EBDA_START, E820_RESERVED);
    e820_add(zp, VMM_ACPI_START, VMM_ACPI_END - VMM_ACPI_START, E820_RESERVED);
    e820_add(zp, VMM_FIRMWARE_ADDR, mem->low_size - VMM_FIRMWARE_ADDR, E820_RAM);
    if (mem->high_size)
        e820_add(zp, VMM_HIGH_MEM_START, mem->high_size, E820_RAM);

    /* GDT: null, null, 0x10 64-bit code (__BOOT_CS), 0x18 data (__BOOT_DS) */
    uint8_t *gdt = vmm_gpa(mem, VMM_GDT_ADDR, 32);
    if (!gdt)
        goto out;
    le64_store(gdt, 0);
    le64_store(gdt + 8, 0);
    le64_store(gdt + 16, gdt_entry(0xA, 1, 0));
    le64_store(gdt + 24, gdt_entry(0x2, 0, 1));

    boot->long_mode = 1;
    boot->entry = load + 0x200;         /* the 64-bit entry point */
    boot->rsi = VMM_ZERO_PAGE_ADDR;
    boot->rbx = 0;
    boot->rsp = VMM_ZERO_PAGE_ADDR - 16;
    r = 0;
out:
    close(fd);
    return r;
}
