/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: ACPI tables (ACPI 6.0): RSDP, XSDT, FADT, FACS, MADT and a DSDT
 * whose AML is encoded by the small helpers below.  The DSDT describes each
 * virtio-mmio window as a device with _HID "LNRO0005" (a Memory32Fixed
 * range and an edge-triggered, active-high interrupt), and \_S5 for the
 * power-off through the PM1a control block at 0x604.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "endian.h"
#include "vmm.h"

/* ---- A growable byte buffer --------------------------------------------------- */

struct buf {
    uint8_t *p;
    size_t len, cap;
    int err;
};

static void put(struct buf *b, const void *data, size_t n)
{
    if (b->err)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->err = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put8(struct buf *b, uint8_t v) { put(b, &v, 1); }
static void put16(struct buf *b, uint16_t v) { uint8_t x[2]; le16_store(x, v); put(b, x, 2); }
static void put32(struct buf *b, uint32_t v) { uint8_t x[4]; le32_store(x, v); put(b, x, 4); }
static void put64(struct buf *b, uint64_t v) { uint8_t x[8]; le64_store(x, v); put(b, x, 8); }
static void putz(struct buf *b, size_t n) { while (n--) put8(b, 0); }

static void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- AML ---------------------------------------------------------------------- */

#define AML_ZERO       0x00
#define AML_ONE        0x01
#define AML_NAME       0x08
#define AML_BYTE       0x0A
#define AML_WORD       0x0B
#define AML_DWORD      0x0C
#define AML_STRING     0x0D
#define AML_QWORD      0x0E
#define AML_SCOPE      0x10
#define AML_BUFFER     0x11
#define AML_PACKAGE    0x12
#define AML_EXT        0x5B
#define AML_DEVICE     0x82  /* after AML_EXT */
#define AML_ROOT       0x5C

/* PkgLength (ACPI 6.0, 20.2.4): counts itself and what follows it. */
static void aml_pkglen(struct buf *b, size_t content)
{
    size_t total;
    if (content + 1 < 0x40) {
        put8(b, (uint8_t)(content + 1));
        return;
    }
    if (content + 2 < 0x1000) {
        total = content + 2;
        put8(b, (uint8_t)(0x40 | (total & 0x0F)));
        put8(b, (uint8_t)(total >> 4));
        return;
    }
    if (content + 3 < 0x100000) {
        total = content + 3;
        put8(b, (uint8_t)(0x80 | (total & 0x0F)));
        put8(b, (uint8_t)(total >> 4));
        put8(b, (uint8_t)(total >> 12));
        return;
    }
    total = content + 4;
    put8(b, (uint8_t)(0xC0 | (total & 0x0F)));
    put8(b, (uint8_t)(total >> 4));
    put8(b, (uint8_t)(total >> 12));
    put8(b, (uint8_t)(total >> 20));
}

/* OP PkgLength CONTENT: the shape of Scope, Device, Buffer and Package. */
static void aml_wrap(struct buf *b, const uint8_t *op, size_t oplen, struct buf *content)
{
    if (content->err)
        b->err = 1;
    put(b, op, oplen);
    aml_pkglen(b, content->len);
    put(b, content->p, content->len);
    buf_free(content);
}

/* A NameSeg: four characters, padded with '_'. */
static void aml_nameseg(struct buf *b, const char *name)
{
    char seg[4] = { '_', '_', '_', '_' };
    for (size_t i = 0; i < 4 && name[i]; i++)
        seg[i] = name[i];
    put(b, seg, 4);
}

static void aml_integer(struct buf *b, uint64_t v)
{
    if (v == 0) {
        put8(b, AML_ZERO);
    } else if (v == 1) {
        put8(b, AML_ONE);
    } else if (v <= 0xFF) {
        put8(b, AML_BYTE);
        put8(b, (uint8_t)v);
    } else if (v <= 0xFFFF) {
        put8(b, AML_WORD);
        put16(b, (uint16_t)v);
    } else if (v <= 0xFFFFFFFF) {
        put8(b, AML_DWORD);
        put32(b, (uint32_t)v);
    } else {
        put8(b, AML_QWORD);
        put64(b, v);
    }
}

static void aml_string(struct buf *b, const char *s)
{
    put8(b, AML_STRING);
    put(b, s, strlen(s) + 1);
}

/* Name(NAME, <the object already encoded in OBJ>) */
static void aml_name(struct buf *b, const char *name, struct buf *obj)
{
    put8(b, AML_NAME);
    aml_nameseg(b, name);
    if (obj->err)
        b->err = 1;
    put(b, obj->p, obj->len);
    buf_free(obj);
}

static void aml_name_string(struct buf *b, const char *name, const char *s)
{
    struct buf o = { 0 };
    aml_string(&o, s);
    aml_name(b, name, &o);
}

static void aml_name_integer(struct buf *b, const char *name, uint64_t v)
{
    struct buf o = { 0 };
    aml_integer(&o, v);
    aml_name(b, name, &o);
}

/* Buffer(){ BYTES } */
static void aml_buffer(struct buf *b, const uint8_t *bytes, size_t n)
{
    struct buf c = { 0 };
    aml_integer(&c, n);
    put(&c, bytes, n);
    const uint8_t op = AML_BUFFER;
    aml_wrap(b, &op, 1, &c);
}

/* The _CRS of a virtio-mmio window: Memory32Fixed + Interrupt + EndTag. */
static void aml_mmio_crs(struct buf *b, uint32_t base, uint32_t size, uint32_t irq)
{
    struct buf r = { 0 };
    /* Memory32Fixed (ReadWrite, base, size): large item 0x86, length 9 */
    put8(&r, 0x86);
    put16(&r, 9);
    put8(&r, 1); /* read-write */
    put32(&r, base);
    put32(&r, size);
    /* Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {irq}: large item 0x89 */
    put8(&r, 0x89);
    put16(&r, 6);
    put8(&r, 0x01 | 0x02); /* consumer, edge-triggered, active-high, exclusive */
    put8(&r, 1);           /* one interrupt */
    put32(&r, irq);
    /* End tag, checksum 0 ("treated as if the checksum operation succeeded") */
    put8(&r, 0x79);
    put8(&r, 0);
    if (r.err)
        b->err = 1;
    else
        aml_buffer(b, r.p, r.len);
    buf_free(&r);
}

static void aml_virtio_device(struct buf *b, unsigned i)
{
    char name[5];
    snprintf(name, sizeof(name), "VR%02X", i & 0xFF);
    struct buf dev = { 0 };
    aml_nameseg(&dev, name);
    aml_name_string(&dev, "_HID", "LNRO0005");
    aml_name_integer(&dev, "_UID", i);
    struct buf crs = { 0 };
    aml_mmio_crs(&crs, VMM_MMIO_BASE + i * VMM_MMIO_SIZE, VMM_MMIO_SIZE, VMM_MMIO_IRQ_BASE + i);
    aml_name(&dev, "_CRS", &crs);
    const uint8_t op[2] = { AML_EXT, AML_DEVICE };
    aml_wrap(b, op, 2, &dev);
}

/* ---- Tables -------------------------------------------------------------------- */

#define SLP_TYP_S5 5u  /* the value the guest writes to PM1a_CNT.SLP_TYP for S5 */

static void table_header(struct buf *b, const char *sig, uint8_t revision)
{
    put(b, sig, 4);
    put32(b, 0);        /* length, fixed up */
    put8(b, revision);
    put8(b, 0);         /* checksum, fixed up */
    put(b, "VDISK ", 6);
    put(b, "VDISKVMM", 8);
    put32(b, 1);        /* OEM revision */
    put(b, "VDSK", 4);  /* creator ID */
    put32(b, 1);        /* creator revision */
}

static uint8_t checksum(const uint8_t *p, size_t n)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum = (uint8_t)(sum + p[i]);
    return (uint8_t)(0 - sum);
}

/* Sets the length and the checksum of a table with a standard header. */
static void table_finish(struct buf *b)
{
    if (b->err || b->len < 36)
        return;
    le32_store(b->p + 4, (uint32_t)b->len);
    b->p[9] = 0;
    b->p[9] = checksum(b->p, b->len);
}

/* Generic Address Structure */
static void put_gas(struct buf *b, uint8_t space, uint8_t bits, uint8_t access, uint64_t addr)
{
    put8(b, space);
    put8(b, bits);
    put8(b, 0);
    put8(b, access);
    put64(b, addr);
}

#define GAS_IO 1
#define GAS_BYTE 1
#define GAS_WORD 2
#define GAS_DWORD 3

static void build_dsdt(struct buf *b, const struct vmm_acpi_info *info)
{
    table_header(b, "DSDT", 2);
    struct buf sb = { 0 };
    put8(&sb, AML_ROOT);
    aml_nameseg(&sb, "_SB_");
    for (unsigned i = 0; i < info->ndevs; i++)
        aml_virtio_device(&sb, i);
    const uint8_t scope = AML_SCOPE;
    aml_wrap(b, &scope, 1, &sb);
    /* Name (_S5, Package () { SLP_TYPa, SLP_TYPb, 0, 0 }) */
    struct buf pkg = { 0 };
    put8(&pkg, 4);
    aml_integer(&pkg, SLP_TYP_S5);
    aml_integer(&pkg, SLP_TYP_S5);
    aml_integer(&pkg, 0);
    aml_integer(&pkg, 0);
    struct buf obj = { 0 };
    const uint8_t package = AML_PACKAGE;
    aml_wrap(&obj, &package, 1, &pkg);
    aml_name(b, "_S5_", &obj);
    table_finish(b);
}

static void build_facs(struct buf *b)
{
    put(b, "FACS", 4);
    put32(b, 64);   /* length */
    put32(b, 0);    /* hardware signature */
    put32(b, 0);    /* firmware waking vector */
    put32(b, 0);    /* global lock */
    put32(b, 0);    /* flags */
    put64(b, 0);    /* X firmware waking vector */
    put8(b, 2);     /* version */
    putz(b, 3);
    put32(b, 0);    /* OSPM flags */
    putz(b, 24);
}

static void build_fadt(struct buf *b, uint64_t facs, uint64_t dsdt)
{
    table_header(b, "FACP", 6);
    put32(b, (uint32_t)facs);       /* 36 FIRMWARE_CTRL (below 4 GiB: X_FIRMWARE_CTRL is 0) */
    put32(b, (uint32_t)dsdt);       /* 40 DSDT */
    put8(b, 0);                     /* 44 reserved */
    put8(b, 0);                     /* 45 preferred PM profile: unspecified */
    put16(b, VMM_SCI_IRQ);          /* 46 SCI_INT */
    put32(b, 0);                    /* 48 SMI_CMD: none, ACPI mode always on */
    put8(b, 0);                     /* 52 ACPI_ENABLE */
    put8(b, 0);                     /* 53 ACPI_DISABLE */
    put8(b, 0);                     /* 54 S4BIOS_REQ */
    put8(b, 0);                     /* 55 PSTATE_CNT */
    put32(b, VMM_PM1_EVT_PORT);     /* 56 PM1a_EVT_BLK */
    put32(b, 0);                    /* 60 PM1b_EVT_BLK */
    put32(b, VMM_PM1_CNT_PORT);     /* 64 PM1a_CNT_BLK */
    put32(b, 0);                    /* 68 PM1b_CNT_BLK */
    put32(b, 0);                    /* 72 PM2_CNT_BLK */
    put32(b, 0);                    /* 76 PM_TMR_BLK: none (optional since 5.0A) */
    put32(b, 0);                    /* 80 GPE0_BLK */
    put32(b, 0);                    /* 84 GPE1_BLK */
    put8(b, 4);                     /* 88 PM1_EVT_LEN */
    put8(b, 2);                     /* 89 PM1_CNT_LEN */
    put8(b, 0);                     /* 90 PM2_CNT_LEN */
    put8(b, 0);                     /* 91 PM_TMR_LEN */
    put8(b, 0);                     /* 92 GPE0_BLK_LEN */
    put8(b, 0);                     /* 93 GPE1_BLK_LEN */
    put8(b, 0);                     /* 94 GPE1_BASE */
    put8(b, 0);                     /* 95 CST_CNT */
    put16(b, 101);                  /* 96 P_LVL2_LAT: > 100, C2 not supported */
    put16(b, 1001);                 /* 98 P_LVL3_LAT: > 1000, C3 not supported */
    put16(b, 0);                    /* 100 FLUSH_SIZE */
    put16(b, 0);                    /* 102 FLUSH_STRIDE */
    put8(b, 0);                     /* 104 DUTY_OFFSET */
    put8(b, 0);                     /* 105 DUTY_WIDTH */
    put8(b, 0);                     /* 106 DAY_ALRM */
    put8(b, 0);                     /* 107 MON_ALRM */
    put8(b, 0);                     /* 108 CENTURY */
    /* 109 IAPC_BOOT_ARCH: no 8042 (bit 1 clear), VGA not present (2), MSI not
     * supported (3), CMOS RTC not present (5) */
    put16(b, (1u << 2) | (1u << 3) | (1u << 5));
    put8(b, 0);                     /* 111 reserved */
    /* 112 flags: WBINVD (0), PROC_C1 (2), PWR_BUTTON (4), SLP_BUTTON (5),
     * RESET_REG_SUP (10) */
    put32(b, (1u << 0) | (1u << 2) | (1u << 4) | (1u << 5) | (1u << 10));
    put_gas(b, GAS_IO, 8, GAS_BYTE, VMM_I8042_CMD); /* 116 RESET_REG */
    put8(b, 0xFE);                  /* 128 RESET_VALUE */
    put16(b, 0);                    /* 129 ARM_BOOT_ARCH */
    put8(b, 0);                     /* 131 FADT minor version */
    put64(b, 0);                    /* 132 X_FIRMWARE_CTRL */
    put64(b, dsdt);                 /* 140 X_DSDT */
    put_gas(b, GAS_IO, 32, GAS_WORD, VMM_PM1_EVT_PORT); /* 148 X_PM1a_EVT_BLK */
    put_gas(b, 0, 0, 0, 0);         /* 160 X_PM1b_EVT_BLK */
    put_gas(b, GAS_IO, 16, GAS_WORD, VMM_PM1_CNT_PORT); /* 172 X_PM1a_CNT_BLK */
    put_gas(b, 0, 0, 0, 0);         /* 184 X_PM1b_CNT_BLK */
    put_gas(b, 0, 0, 0, 0);         /* 196 X_PM2_CNT_BLK */
    put_gas(b, 0, 0, 0, 0);         /* 208 X_PM_TMR_BLK */
    put_gas(b, 0, 0, 0, 0);         /* 220 X_GPE0_BLK */
    put_gas(b, 0, 0, 0, 0);         /* 232 X_GPE1_BLK */
    put_gas(b, 0, 0, 0, 0);         /* 244 SLEEP_CONTROL_REG */
    put_gas(b, 0, 0, 0, 0);         /* 256 SLEEP_STATUS_REG */
    put(b, "VDISKVMM", 8);          /* 268 hypervisor vendor identity */
    table_finish(b);                /* 276 bytes */
}

static void build_madt(struct buf *b, const struct vmm_acpi_info *info)
{
    table_header(b, "APIC", 5);
    put32(b, VMM_LAPIC_ADDR);
    put32(b, 1);                    /* PCAT_COMPAT: there are 8259s */
    for (unsigned i = 0; i < info->ncpus; i++) {
        put8(b, 0);                 /* processor local APIC */
        put8(b, 8);
        put8(b, (uint8_t)i);        /* ACPI processor UID */
        put8(b, (uint8_t)i);        /* APIC ID */
        put32(b, 1);                /* enabled */
    }
    put8(b, 1);                     /* I/O APIC */
    put8(b, 12);
    put8(b, 0);                     /* I/O APIC ID */
    put8(b, 0);
    put32(b, VMM_IOAPIC_ADDR);
    put32(b, 0);                    /* GSI base */
    put8(b, 2);                     /* interrupt source override: the SCI, level, active high */
    put8(b, 10);
    put8(b, 0);                     /* ISA */
    put8(b, VMM_SCI_IRQ);
    put32(b, VMM_SCI_IRQ);
    put16(b, 0x1 | (0x3 << 2));
    put8(b, 4);                     /* local APIC NMI on LINT1 of every processor */
    put8(b, 6);
    put8(b, 0xFF);
    put16(b, 0);
    put8(b, 1);
    table_finish(b);
}

static void build_xsdt(struct buf *b, const uint64_t *tables, unsigned n)
{
    table_header(b, "XSDT", 1);
    for (unsigned i = 0; i < n; i++)
        put64(b, tables[i]);
    table_finish(b);
}

static void build_rsdp(struct buf *b, uint64_t xsdt)
{
    put(b, "RSD PTR ", 8);
    put8(b, 0);                     /* checksum of the first 20 bytes */
    put(b, "VDISK ", 6);
    put8(b, 2);                     /* revision: ACPI 2.0+ */
    put32(b, 0);                    /* RSDT: none, the XSDT is used */
    put32(b, 36);                   /* length */
    put64(b, xsdt);
    put8(b, 0);                     /* extended checksum */
    putz(b, 3);
    if (b->err)
        return;
    b->p[8] = checksum(b->p, 20);
    b->p[32] = checksum(b->p, 36);
}

static int dump_table(const char *dir, const char *name, const void *p, size_t n)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s.dat", dir, name) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        vmm_log("--dump-acpi: %s: %s", path, strerror(e));
        return -e;
    }
    ssize_t w = write(fd, p, n);
    int e = w < 0 ? errno : EIO;
    close(fd);
    if (w != (ssize_t)n) {
        vmm_log("--dump-acpi: %s: %s", path, strerror(e));
        return -e;
    }
    return 0;
}

uint64_t vmm_acpi_build(const struct vmm_mem *mem, const struct vmm_acpi_info *info,
                        const char *dump_dir)
{
    struct buf t[6] = { { 0 } };
    enum { RSDP, FACS, DSDT, FADT, MADT, XSDT };
    static const char *const names[6] = { "rsdp", "facs", "dsdt", "facp", "apic", "xsdt" };
    static const unsigned align[6] = { 16, 64, 16, 16, 16, 16 };
    uint64_t addr[6];
    uint64_t at = VMM_ACPI_START;
    uint64_t ret = 0;

    /* Every table's address is fixed by the sizes of the ones before it;
     * the RSDP (36 bytes) goes first, at 0xE0000. */
    addr[RSDP] = at;
    at += 36;
    build_facs(&t[FACS]);
    build_dsdt(&t[DSDT], info);
    for (int i = FACS; i <= DSDT; i++) {
        at = (at + align[i] - 1) & ~(uint64_t)(align[i] - 1);
        addr[i] = at;
        at += t[i].len;
    }
    build_fadt(&t[FADT], addr[FACS], addr[DSDT]);
    build_madt(&t[MADT], info);
    for (int i = FADT; i <= MADT; i++) {
        at = (at + align[i] - 1) & ~(uint64_t)(align[i] - 1);
        addr[i] = at;
        at += t[i].len;
    }
    uint64_t entries[2] = { addr[FADT], addr[MADT] };
    build_xsdt(&t[XSDT], entries, 2);
    at = (at + 15) & ~(uint64_t)15;
    addr[XSDT] = at;
    at += t[XSDT].len;
    build_rsdp(&t[RSDP], addr[XSDT]);

    for (int i = 0; i < 6; i++) {
        if (t[i].err) {
            vmm_log("ACPI tables: out of memory");
            goto out;
        }
    }
    if (at > VMM_ACPI_END) {
        vmm_log("ACPI tables: %llu bytes do not fit below 1 MiB",
                (unsigned long long)(at - VMM_ACPI_START));
        goto out;
    }
    for (int i = 0; i < 6; i++) {
        uint8_t *p = vmm_gpa(mem, addr[i], t[i].len);
        if (!p) {
            vmm_log("ACPI tables: 0x%llx is not in guest RAM", (unsigned long long)addr[i]);
            goto out;
        }
        memcpy(p, t[i].p, t[i].len);
        if (dump_dir && dump_table(dump_dir, names[i], p, t[i].len) < 0)
            goto out;
    }
    ret = addr[RSDP];
out:
    for (int i = 0; i < 6; i++)
        buf_free(&t[i]);
    return ret;
}
