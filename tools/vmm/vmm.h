/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: a small KVM virtual machine monitor whose disks and CD-ROM are
 * vdisk devices served by libvdisk's virtio models over virtio-mmio.
 * See doc/vmm.md for the machine it builds.
 *
 * The parts, each in a file of its own with a state of its own, handed in
 * explicitly (no global is shared between them):
 *
 *   main.c      the program: options in, exit status out; vmm_log
 *   config.c    the command line (struct vmm_config)
 *   builder.c   struct vmm: builds the machine from the configuration in
 *               order, runs it, takes it down
 *   machine.c   KVM (the VM, its in-kernel interrupt controllers) and guest
 *               RAM (struct vmm_machine)
 *   vcpu.c      the vCPUs and their threads (struct vmm_vcpus)
 *   bus.c       the device bus: port I/O and MMIO dispatch (bus.h)
 *   devices.c   the machine's devices put on the buses (struct vmm_devices):
 *   mmio.c        virtio-mmio transports over the disks and the CD-ROM
 *   serial.c      the 16550 UART
 *   power.c       the power and reset controls (power.h)
 *   boot.c      loading firmware or a Linux kernel
 *   acpi.c      the ACPI tables
 *   loop.c      the event loop (struct vmm_loop) and stop requests
 *               (struct vmm_control)
 *   watchdog.c  the watchdog (struct vmm_watchdog)
 *   monitor.c   the monitor: the library's (vdisk/monitor.h) on the CD-ROM
 *               drive (monitor.h)
 *   term.c      the terminal in raw mode
 */
#ifndef VDISK_VMM_H
#define VDISK_VMM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <vdisk/device.h>
#include <vdisk/virtio.h>

#include "bus.h"
#include "power.h"

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
/* The UART as a device on the port bus (bus.h; OPAQUE: the struct vmm_serial). */
void vmm_serial_bus_io(void *opaque, uint64_t off, uint8_t *data, unsigned len, int is_write);

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
/* The transport as a device on the MMIO bus (bus.h; OPAQUE: the struct vmm_mmio_dev). */
void vmm_mmio_bus_io(void *opaque, uint64_t off, uint8_t *data, unsigned len, int is_write);

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

/* Process-wide (the terminal is the process's): term.c keeps what it saved. */
void vmm_term_raw(void);
void vmm_term_restore(void);

/* ---- Configuration (config.c) --------------------------------------------------------- */

struct vmm_disk_opt {
    const char *path;
    const char *format;
    const char *serial;
    int readonly;
    int allow_any_backing;      /* backing-confine=off */
    unsigned part;
};

struct vmm_config {
    uint64_t mem;
    unsigned cpus;
    const char *kernel, *initrd, *cmdline, *firmware;
    struct vmm_disk_opt disks[VMM_MAX_DEVICES];
    unsigned ndisks;
    int cdrom;
    const char *cdrom_iso;
    const char *monitor;
    const char *dump_acpi;
    int no_cmdline_devices;
    int watchdog;               /* --watchdog SECONDS; -1: not given (boot watchdog) */
    char *disk_args[VMM_MAX_DEVICES]; /* copies the disk options point into */
};

/* Fills C from the command line.  Returns 0, 1 for --help (printed: exit 0),
 * -1 on errors (logged).  C needs vmm_config_free in every case. */
int vmm_config_parse(struct vmm_config *c, int argc, char **argv);
void vmm_config_free(struct vmm_config *c);

/* ---- Stopping (loop.c) ------------------------------------------------------------------ */

/* What the threads share to end the VM and to show the guest is alive. */
struct vmm_control {
    int stop_fd;                /* eventfd the event loop watches */
    atomic_int stopping;        /* vCPU threads: leave */
    atomic_int stop_requested;
    atomic_int exit_code;
    atomic_uint life;           /* signs of life: vCPU exits to the VMM, queue kicks */
};

/* Ends the VM with exit status CODE (the first request wins).  Any thread. */
void vmm_request_stop(struct vmm_control *ctl, int code);

/* ---- The machine: KVM and RAM (machine.c) ------------------------------------------------ */

struct vmm_machine {
    int kvm_fd, vm_fd;
    struct vmm_mem mem;
};

/* Opens /dev/kvm, checks it, creates the VM with its irqchip and PIT. */
int vmm_machine_open(struct vmm_machine *m);
/* SIZE bytes of guest RAM, below and above the 4 GiB hole. */
int vmm_machine_mem(struct vmm_machine *m, uint64_t size);
/* Closes the VM and KVM (the machine's memory stays). */
void vmm_machine_close(struct vmm_machine *m);
/* Frees the guest RAM. */
void vmm_machine_mem_free(struct vmm_machine *m);

/* ---- vCPUs (vcpu.c) ------------------------------------------------------------------------ */

struct kvm_run;
struct vmm_bus;

struct vmm_vcpu {
    unsigned id;
    int fd;
    struct kvm_run *run;
    size_t run_size;
    pthread_t thread;
    int started;
    struct vmm_vcpus *set;
};

struct vmm_vcpus {
    unsigned n;
    struct vmm_vcpu v[VMM_MAX_CPUS];
    /* what the vCPU threads use */
    struct vmm_bus *pio, *mmio;
    struct vmm_control *ctl;
};

/* No vCPUs yet: N to be created, their exits going to PIO and MMIO. */
void vmm_vcpus_init(struct vmm_vcpus *s, unsigned n, struct vmm_bus *pio, struct vmm_bus *mmio,
                    struct vmm_control *ctl);
/* The handler of SIGUSR2, with which vmm_vcpus_stop takes a vCPU out of KVM_RUN. */
void vmm_vcpus_kick_signal(void);
/* Creates the vCPUs; the first starts as BOOT says. */
int vmm_vcpus_create(struct vmm_vcpus *s, const struct vmm_machine *m, const struct vmm_boot *boot);
/* Starts the vCPU threads; on a failure, logs it and requests the stop (status 1). */
void vmm_vcpus_start(struct vmm_vcpus *s);
/* Takes the vCPU threads out of KVM_RUN and joins them. */
void vmm_vcpus_stop(struct vmm_vcpus *s);
/* Closes the (stopped) vCPUs. */
void vmm_vcpus_destroy(struct vmm_vcpus *s);

/* ---- Devices (devices.c) -------------------------------------------------------------------- */

struct vmm_devices {
    struct vmm_mmio_dev dev[VMM_MAX_DEVICES];   /* disks, then the CD-ROM */
    unsigned n;
    vdisk_dev *cdrom_dev;       /* the CD-ROM's device (a reference), or NULL */
    struct vmm_serial serial;
    int serial_ready;
    struct vmm_power power;
};

/* The virtio-mmio devices of C's disks and CD-ROM, put on the MMIO bus. */
int vmm_devices_virtio(struct vmm_devices *d, const struct vmm_config *c, int vm_fd,
                       const struct vmm_mem *mem, struct vmm_bus *mmio);
/* The UART (output to OUT_FD) and the power controls, put on the port bus;
 * a power-off or reset requests the stop with status 0 through CTL. */
int vmm_devices_legacy(struct vmm_devices *d, int vm_fd, int out_fd, struct vmm_bus *pio,
                       struct vmm_control *ctl);
/* Destroys the devices (waits for their requests, flushes, closes). */
void vmm_devices_destroy(struct vmm_devices *d);

/* ---- The watchdog (watchdog.c) --------------------------------------------------------------- */

struct vmm_watchdog {
    uint64_t limit_ms;  /* 0: off */
    int whole_run;      /* else only until the first sign of life */
    uint64_t start_ms, last_ms;
    unsigned seen;
    int alive;          /* a sign of life was seen */
    int kernel;         /* the guest is a Linux kernel (for the likely cause) */
};

/* Watches the whole run for SECONDS (>= 1), or the start only (SECONDS -1);
 * LIFE is the count of signs of life now. */
void vmm_watchdog_arm(struct vmm_watchdog *wd, int seconds, int kernel, unsigned life);
/* How long the event loop may sleep for the watchdog (ms), or -1. */
int vmm_watchdog_timeout(const struct vmm_watchdog *wd);
/* Looks at the count of signs of life; returns 1 when the watchdog fired
 * (logged; the VM is to end with status 2). */
int vmm_watchdog_check(struct vmm_watchdog *wd, unsigned life);

/* ---- The event loop (loop.c) ------------------------------------------------------------------ */

struct vmm_loop {
    int epoll_fd;
    int signal_fd;
    int stdin_open;
    int stdin_paused;   /* the receive buffer is full: stdin is not watched */
    int stdin_tty;
    int ctrl_a;
};

struct vmm;

/* Blocks the signals the loop takes through a signalfd (and SIGUSR2, the
 * vCPUs' kick) and creates CTL's stop eventfd. */
int vmm_loop_signals(struct vmm_loop *l, struct vmm_control *ctl);
/* Watches the stop and signal fds, the devices, stdin and the monitor. */
int vmm_loop_setup(struct vmm *vmm);
/* Runs until a stop is requested. */
void vmm_loop_run(struct vmm *vmm);
/* Closes the loop's fds and CTL's stop eventfd. */
void vmm_loop_close(struct vmm_loop *l, struct vmm_control *ctl);

/* ---- The whole (builder.c) --------------------------------------------------------------------- */

struct vmm_monitor;

struct vmm {
    struct vmm_config cfg;
    struct vmm_control ctl;
    struct vmm_machine machine;
    struct vmm_bus pio, mmio;
    struct vmm_devices devices;
    struct vmm_boot boot;
    struct vmm_vcpus vcpus;
    struct vmm_loop loop;
    struct vmm_watchdog watchdog;
    struct vmm_monitor *monitor;
};

/*
 * Builds the machine CFG describes (taking CFG's allocations over) up to
 * the point where its vCPUs can start.  *OUT is set, even on errors, unless
 * out of memory; it needs vmm_destroy.  Returns 0, or the exit status.
 */
int vmm_build(struct vmm **out, struct vmm_config *cfg);
/* Starts the vCPUs and runs the event loop; returns the exit status. */
int vmm_run(struct vmm *vmm);
/* Takes it all down.  VMM may be NULL. */
void vmm_destroy(struct vmm *vmm);

#endif /* VDISK_VMM_H */
