/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: a small KVM virtual machine monitor whose disks and CD-ROM are
 * vdisk devices served by libvdisk's virtio models over virtio-mmio.
 * See doc/vmm.md for the machine it builds.
 */
#ifndef VDISK_VMM_H
#define VDISK_VMM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <vdisk/virtio.h>

/* ---- The machine's fixed layout (doc/vmm.md) -------------------------------- */

#define VMM_LOW_MEM_MAX      (3ull << 30)      /* RAM below the 4 GiB hole */
#define VMM_HIGH_MEM_START   (4ull << 30)
#define VMM_GDT_ADDR         0x500u
#define VMM_INFO_ADDR        0x7000u           /* --firmware info block */
#define VMM_ZERO_PAGE_ADDR   0x7000u           /* --kernel boot_params */
#define VMM_PML4_ADDR        0x9000u
#define VMM_PDPT_ADDR        0xA000u
#define VMM_PD_ADDR          0xB000u           /* four page directories */
#define VMM_CMDLINE_ADDR     0x20000u
#define VMM_CMDLINE_MAX      0x10000u
#define VMM_EBDA_START       0x9FC00u
#define VMM_ACPI_START       0xE0000u          /* RSDP, then the other tables */
#define VMM_ACPI_END         0x100000u
#define VMM_FIRMWARE_ADDR    0x100000u
#define VMM_FIRMWARE_STACK   0x8FFF0u
#define VMM_INFO_MAGIC       0x4B534456u       /* "VDSK" */

#define VMM_MMIO_BASE        0xD0000000u
#define VMM_MMIO_SIZE        0x1000u
#define VMM_MMIO_IRQ_BASE    5u
#define VMM_MAX_DEVICES      8u                /* IRQs 5..12 */
#define VMM_IOAPIC_ADDR      0xFEC00000u
#define VMM_LAPIC_ADDR       0xFEE00000u
#define VMM_TSS_ADDR         0xFFFBD000u
#define VMM_IDENTITY_ADDR    0xFFFBC000u

#define VMM_SERIAL_BASE      0x3F8u
#define VMM_SERIAL_IRQ       4u
#define VMM_SCI_IRQ          3u                /* never raised */
#define VMM_PM1_EVT_PORT     0x600u            /* status 0x600, enable 0x602 */
#define VMM_PM1_CNT_PORT     0x604u
#define VMM_I8042_DATA       0x60u
#define VMM_I8042_CMD        0x64u

#define VMM_MAX_CPUS         8u
#define VMM_BOOT_WATCHDOG    60u     /* s: a guest silent from its start is ended */
#define VMM_WATCHDOG_MAX     86400u  /* s: the largest --watchdog */

/* ---- Logging ---------------------------------------------------------------- */

void vmm_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- Guest memory ------------------------------------------------------------ */

struct vmm_mem {
    uint64_t size;        /* total RAM */
    uint64_t low_size;    /* RAM at [0, low_size) */
    uint64_t high_size;   /* RAM at [4 GiB, 4 GiB + high_size) */
    uint8_t *low;
    uint8_t *high;
    vdisk_guest_mem *gmem;
};

/* A host pointer to LEN bytes at GPA inside one RAM region, or NULL. */
void *vmm_gpa(const struct vmm_mem *m, uint64_t gpa, uint64_t len);

/* ---- Serial port (16550) ------------------------------------------------------- */

struct vmm_serial {
    pthread_mutex_t lock;
    int vm_fd;
    int out_fd;
    uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
    int thre_pending;       /* a THR-empty interrupt is pending */
    int irq_level;          /* what was last told to KVM */
    uint8_t rx[1024];       /* received bytes not yet read by the guest */
    unsigned rx_head, rx_len;
};

void vmm_serial_init(struct vmm_serial *s, int vm_fd, int out_fd);
void vmm_serial_destroy(struct vmm_serial *s);
/* A guest access to port PORT (0..7 relative to 0x3F8). */
void vmm_serial_io(struct vmm_serial *s, unsigned port, int is_write, uint8_t *data);
/* Room in the receive buffer. */
unsigned vmm_serial_rx_room(struct vmm_serial *s);
/* Bytes from stdin for the guest. */
void vmm_serial_rx(struct vmm_serial *s, const uint8_t *buf, unsigned len);

/* ---- virtio-mmio devices --------------------------------------------------------- */

#define VMM_MMIO_MAX_QUEUES 68u

struct vmm_queue_regs {
    uint32_t num;
    uint32_t ready;
    uint64_t desc, driver, device;
};

struct vmm_mmio_dev {
    pthread_mutex_t lock;           /* every model call happens under it */
    char name[32];                  /* "disk0", "cdrom" */
    int is_cdrom;
    unsigned index;
    uint64_t base;
    unsigned irq;
    int vm_fd;
    vdisk_virtio *model;
    unsigned nqueues;
    unsigned queue_max;
    /* event file descriptors */
    int irqfd;                      /* -1: KVM_IRQ_LINE instead */
    int kickfd[VMM_MMIO_MAX_QUEUES];/* -1: QueueNotify handled on the MMIO exit */
    /* registers */
    uint32_t device_features_sel;
    uint32_t driver_features_sel;
    uint64_t driver_features;
    uint32_t queue_sel;
    struct vmm_queue_regs q[VMM_MMIO_MAX_QUEUES];
    uint32_t status;
    atomic_uint isr;
    uint32_t config_generation;
    int broken_reported;
    unsigned logged;                /* kinds of guest mistakes already logged */
    /* CD-ROM medium (for the monitor's info) */
    char *medium;
};

int vmm_mmio_dev_init(struct vmm_mmio_dev *d, unsigned index, int vm_fd, vdisk_virtio *model,
                      const struct vmm_mem *mem, const char *name, int is_cdrom);
void vmm_mmio_dev_destroy(struct vmm_mmio_dev *d);
/* An MMIO exit at OFFSET inside the device's window. */
void vmm_mmio_access(struct vmm_mmio_dev *d, uint64_t offset, uint8_t *data, unsigned len,
                     int is_write);
/* The I/O thread: queue Q was kicked (its ioeventfd fired). */
void vmm_mmio_kick(struct vmm_mmio_dev *d, unsigned q);
/* The I/O thread: the model's fd is readable. */
void vmm_mmio_poll(struct vmm_mmio_dev *d);

/* ---- ACPI ------------------------------------------------------------------------- */

struct vmm_acpi_info {
    unsigned ncpus;
    unsigned ndevs;
};

/*
 * Writes RSDP (at 0xE0000), DSDT, FACS, FADT, MADT and XSDT into guest
 * memory.  Returns the RSDP's address or 0 on error.  When DUMP_DIR is set,
 * every table is also written there as <signature>.dat.
 */
uint64_t vmm_acpi_build(const struct vmm_mem *mem, const struct vmm_acpi_info *info,
                        const char *dump_dir);

/* ---- Loading -------------------------------------------------------------------- */

struct vmm_boot {
    /* results: how to start the boot CPU */
    int long_mode;
    uint64_t entry;         /* RIP / EIP */
    uint64_t rsi;           /* zero page (long mode) */
    uint64_t rbx;           /* info block (firmware) */
    uint64_t rsp;
};

int vmm_load_firmware(const struct vmm_mem *mem, const char *path, unsigned ndevs,
                      const struct vmm_mmio_dev *devs, struct vmm_boot *boot);
int vmm_load_linux(const struct vmm_mem *mem, const char *kernel, const char *initrd,
                   const char *cmdline, uint64_t rsdp, struct vmm_boot *boot);

/* ---- Terminal ---------------------------------------------------------------------- */

void vmm_term_raw(void);
void vmm_term_restore(void);

#endif /* VDISK_VMM_H */
