/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: a minimal KVM virtual machine monitor (x86-64) whose disks and
 * CD-ROM are vdisk devices.  See doc/vmm.md.
 *
 * Threads: one per vCPU (KVM_RUN; port I/O and MMIO exits are handled
 * there) and the main thread, which is the I/O thread: an epoll loop over
 * the devices' ioeventfds (queue kicks) and completion fds, stdin, the
 * monitor socket and a signalfd.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include <vdisk/device.h>
#include <vdisk/error.h>
#include <vdisk/iso9660.h>
#include <vdisk/options.h>
#include <vdisk/part.h>
#include <vdisk/virtio.h>

#include "vmm.h"

#define PROG "vdisk-vmm"

/* ---- Logging and small helpers ---------------------------------------------------- */

void vmm_log(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* \r: the terminal may be in raw mode */
    fprintf(stderr, PROG ": %s%s\n", msg, isatty(2) ? "\r" : "");
}

void *vmm_gpa(const struct vmm_mem *m, uint64_t gpa, uint64_t len)
{
    if (gpa < m->low_size && len <= m->low_size - gpa)
        return m->low + gpa;
    if (m->high_size && gpa >= VMM_HIGH_MEM_START) {
        uint64_t off = gpa - VMM_HIGH_MEM_START;
        if (off < m->high_size && len <= m->high_size - off)
            return m->high + off;
    }
    return NULL;
}

/* ---- Terminal ---------------------------------------------------------------------- */

static struct termios saved_termios;
static volatile sig_atomic_t termios_saved;

void vmm_term_restore(void)
{
    if (termios_saved) {
        tcsetattr(0, TCSANOW, &saved_termios);
        termios_saved = 0;
    }
}

static void crash_handler(int sig)
{
    vmm_term_restore();
    signal(sig, SIG_DFL);
    raise(sig);
}

void vmm_term_raw(void)
{
    if (!isatty(0) || tcgetattr(0, &saved_termios) < 0)
        return;
    struct termios raw = saved_termios;
    raw.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    raw.c_oflag &= ~(tcflag_t)OPOST;
    raw.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    raw.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
    raw.c_cflag |= CS8;
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    termios_saved = 1;
    atexit(vmm_term_restore);
    static const int crash[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };
    for (size_t i = 0; i < sizeof(crash) / sizeof(crash[0]); i++) {
        struct sigaction sa = { .sa_handler = crash_handler };
        sigaction(crash[i], &sa, NULL);
    }
    tcsetattr(0, TCSANOW, &raw);
}

/* ---- Options ---------------------------------------------------------------------- */

struct disk_opt {
    const char *path;
    const char *format;
    const char *serial;
    int readonly;
    int allow_any_backing;      /* backing-confine=off */
    unsigned part;
};

struct config {
    uint64_t mem;
    unsigned cpus;
    const char *kernel, *initrd, *cmdline, *firmware;
    struct disk_opt disks[VMM_MAX_DEVICES];
    unsigned ndisks;
    int cdrom;
    const char *cdrom_iso;
    const char *monitor;
    const char *dump_acpi;
    int no_cmdline_devices;
    int watchdog;               /* --watchdog SECONDS; -1: not given (boot watchdog) */
    char *disk_args[VMM_MAX_DEVICES]; /* copies the disk options point into */
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: " PROG " [--mem SIZE] [--cpus N]\n"
        "         (--kernel BZIMAGE [--initrd FILE] [--cmdline STR] [--no-cmdline-devices]\n"
        "          | --firmware FLAT)\n"
        "         [--disk IMAGE[,readonly][,format=FMT][,serial=S][,part=N]\n"
        "                 [,backing-confine=on|off]]...\n"
        "         [--cdrom [ISO]] [--monitor SOCKET] [--dump-acpi DIR] [--watchdog SECONDS]\n"
        "\n"
        "  --mem SIZE       guest RAM (K, M, G, T suffixes, fractions such as 1.5G; a bare\n"
        "                   number is MiB; rounded up to 4 KiB; default 256M)\n"
        "  --cpus N         vCPUs, 1..%u (default 1; --firmware starts only the first)\n"
        "  --kernel FILE    a Linux bzImage, started by the 64-bit boot protocol\n"
        "  --initrd FILE    an initramfs for --kernel\n"
        "  --cmdline STR    the kernel command line (default \"console=ttyS0\")\n"
        "  --no-cmdline-devices  do not append virtio_mmio.device=... to the command line\n"
        "  --firmware FILE  a raw image loaded at 0x100000, started in 32-bit protected mode\n"
        "  --disk ...       a virtio-blk disk over a vdisk image (repeatable); its backing\n"
        "                   files must stay in its folder unless backing-confine=off\n"
        "  --cdrom [ISO]    a virtio-scsi CD-ROM drive, with ISO loaded or empty\n"
        "  --monitor PATH   a Unix socket taking \"change ISO\", \"eject\" and \"info\"\n"
        "  --dump-acpi DIR  write the ACPI tables to DIR as they are in guest memory\n"
        "  --watchdog SECONDS  end the guest when it shows no sign of life (no port or\n"
        "                   MMIO access, serial output or queue kick) for SECONDS; 0: never.\n"
        "                   Without it, only a guest silent for its first %u s is ended.\n"
        "\n"
        "The guest's serial port is on stdin/stdout (Ctrl-A x quits when stdin is a\n"
        "terminal).  Exit status: 0 when the guest powers off or resets, 1 on errors,\n"
        "2 when the watchdog ended a guest that made no progress.\n",
        VMM_MAX_CPUS, VMM_BOOT_WATCHDOG);
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v < min || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_disk(struct config *c, const char *arg)
{
    if (c->ndisks >= VMM_MAX_DEVICES - (c->cdrom ? 1u : 0u)) {
        vmm_log("--disk: at most %u devices (disks and the CD-ROM)", VMM_MAX_DEVICES);
        return -1;
    }
    char *copy = strdup(arg);
    if (!copy)
        return -1;
    c->disk_args[c->ndisks] = copy;
    struct disk_opt *d = &c->disks[c->ndisks];
    memset(d, 0, sizeof(*d));
    char *save = NULL;
    char *tok = strtok_r(copy, ",", &save);
    if (!tok || !*tok) {
        vmm_log("--disk %s: no image", arg);
        return -1;
    }
    d->path = tok;
    while ((tok = strtok_r(NULL, ",", &save))) {
        if (strcmp(tok, "readonly") == 0 || strcmp(tok, "ro") == 0) {
            d->readonly = 1;
        } else if (strncmp(tok, "format=", 7) == 0 && tok[7]) {
            d->format = tok + 7;
        } else if (strncmp(tok, "serial=", 7) == 0) {
            d->serial = tok + 7;
            if (strlen(d->serial) > 20) {
                vmm_log("--disk %s: serial: at most 20 bytes", arg);
                return -1;
            }
        } else if (strcmp(tok, "backing-confine=on") == 0 ||
                   strcmp(tok, "backing-confine=off") == 0) {
            d->allow_any_backing = strcmp(tok, "backing-confine=off") == 0;
        } else if (strncmp(tok, "part=", 5) == 0) {
            if (parse_uint(tok + 5, 1, 4096, &d->part) < 0) {
                vmm_log("--disk %s: part=N: a partition number from 1", arg);
                return -1;
            }
        } else {
            vmm_log("--disk %s: unknown option '%s' (readonly, format=FMT, serial=S, part=N, "
                    "backing-confine=on|off)", arg, tok);
            return -1;
        }
    }
    c->ndisks++;
    return 0;
}

static void config_free(struct config *c)
{
    for (unsigned i = 0; i < VMM_MAX_DEVICES; i++)
        free(c->disk_args[i]);
}

/* Returns 0, 1 for --help (exit 0), -1 on errors. */
static int parse_args(struct config *c, int argc, char **argv)
{
    memset(c, 0, sizeof(*c));
    c->watchdog = -1;
    c->mem = 256ull << 20;
    c->cpus = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            vmm_log("unexpected argument '%s' (try --help)", a);
            return -1;
        }
        /* --name=value or --name value */
        char name[32];
        const char *val = NULL;
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        if (nlen >= sizeof(name)) {
            vmm_log("unknown option '%s' (try --help)", a);
            return -1;
        }
        memcpy(name, a, nlen);
        name[nlen] = 0;
        if (eq)
            val = eq + 1;

        /* options without a value */
        if (strcmp(name, "--no-cmdline-devices") == 0 && !val) {
            c->no_cmdline_devices = 1;
            continue;
        }
        if (strcmp(name, "--cdrom") == 0) {
            if (c->cdrom) {
                vmm_log("--cdrom: only one CD-ROM drive");
                return -1;
            }
            if (c->ndisks >= VMM_MAX_DEVICES) {
                vmm_log("--cdrom: at most %u devices (disks and the CD-ROM)", VMM_MAX_DEVICES);
                return -1;
            }
            c->cdrom = 1;
            if (!val && i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
                val = argv[++i];
            c->cdrom_iso = (val && *val) ? val : NULL;
            continue;
        }
        static const char *const with_value[] = { "--mem", "--cpus", "--kernel", "--initrd",
                                                  "--cmdline", "--firmware", "--disk",
                                                  "--monitor", "--dump-acpi", "--watchdog" };
        int known = 0;
        for (size_t k = 0; k < sizeof(with_value) / sizeof(with_value[0]); k++)
            known |= strcmp(name, with_value[k]) == 0;
        if (!known) {
            vmm_log("unknown option '%s' (try --help)", a);
            return -1;
        }
        if (!val) {
            if (i + 1 >= argc) {
                vmm_log("%s needs a value", name);
                return -1;
            }
            val = argv[++i];
        }
        if (strcmp(name, "--mem") == 0) {
            /* vdisk_parse_size's grammar, a bare number in MiB (QEMU's -m). */
            if (vdisk_parse_size(val, 1u << 20, &c->mem) < 0 || c->mem < (4ull << 20) ||
                c->mem > (1ull << 40)) {
                vmm_log("--mem %s: a size from 4M to 1T", val);
                return -1;
            }
            c->mem = (c->mem + 4095) & ~4095ull; /* whole pages, for KVM */
        } else if (strcmp(name, "--cpus") == 0) {
            if (parse_uint(val, 1, VMM_MAX_CPUS, &c->cpus) < 0) {
                vmm_log("--cpus %s: a number from 1 to %u", val, VMM_MAX_CPUS);
                return -1;
            }
        } else if (strcmp(name, "--kernel") == 0) {
            c->kernel = val;
        } else if (strcmp(name, "--initrd") == 0) {
            c->initrd = val;
        } else if (strcmp(name, "--cmdline") == 0) {
            c->cmdline = val;
        } else if (strcmp(name, "--firmware") == 0) {
            c->firmware = val;
        } else if (strcmp(name, "--disk") == 0) {
            if (parse_disk(c, val) < 0)
                return -1;
        } else if (strcmp(name, "--monitor") == 0) {
            c->monitor = val;
        } else if (strcmp(name, "--dump-acpi") == 0) {
            c->dump_acpi = val;
        } else if (strcmp(name, "--watchdog") == 0) {
            unsigned w;
            if (parse_uint(val, 0, VMM_WATCHDOG_MAX, &w) < 0) {
                vmm_log("--watchdog %s: a number of seconds from 0 (never) to %u", val,
                        VMM_WATCHDOG_MAX);
                return -1;
            }
            c->watchdog = (int)w;
        }
    }
    if (!c->kernel == !c->firmware) {
        vmm_log("give one of --kernel or --firmware (try --help)");
        return -1;
    }
    if (c->firmware && (c->initrd || c->cmdline)) {
        vmm_log("--initrd and --cmdline go with --kernel, not --firmware");
        return -1;
    }
    return 0;
}

/* ---- The machine -------------------------------------------------------------------- */

struct vcpu {
    unsigned id;
    int fd;
    struct kvm_run *run;
    size_t run_size;
    pthread_t thread;
    int started;
};

struct mon_client {
    int fd;
    size_t len;
    char buf[4096];
};

#define MON_MAX_CLIENTS 8

static struct vmm {
    struct config cfg;
    int kvm_fd, vm_fd;
    struct vmm_mem mem;
    unsigned ncpus;
    struct vcpu vcpus[VMM_MAX_CPUS];
    struct vmm_serial serial;
    int serial_ready;
    struct vmm_mmio_dev devs[VMM_MAX_DEVICES];
    unsigned ndevs;
    struct vmm_boot boot;
    int epoll_fd;
    int stop_fd;
    int signal_fd;
    int mon_fd;
    struct mon_client mon[MON_MAX_CLIENTS];
    int stdin_open;
    int stdin_paused;   /* the receive buffer is full: stdin is not watched */
    int stdin_tty;
    int ctrl_a;
    atomic_int stopping;
    atomic_int exit_code;
    atomic_int stop_requested;
    atomic_uint life;   /* signs of life: vCPU exits to the VMM, queue kicks */
} vm = {
    .kvm_fd = -1, .vm_fd = -1, .epoll_fd = -1, .stop_fd = -1, .signal_fd = -1, .mon_fd = -1,
};

/* Ends the VM with exit status CODE (the first request wins). */
static void vmm_request_stop(int code)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&vm.stop_requested, &expected, 1))
        return;
    atomic_store(&vm.exit_code, code);
    uint64_t one = 1;
    if (write(vm.stop_fd, &one, sizeof(one)) < 0) {
        /* the eventfd cannot overflow with one write; nothing else to do */
    }
}

static int kvm_open(void)
{
    vm.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm.kvm_fd < 0) {
        vmm_log("/dev/kvm: %s (KVM is needed)", strerror(errno));
        return -1;
    }
    int v = ioctl(vm.kvm_fd, KVM_GET_API_VERSION, 0);
    if (v != KVM_API_VERSION) {
        vmm_log("/dev/kvm: API version %d, %d is needed", v, KVM_API_VERSION);
        return -1;
    }
    static const struct { int cap; const char *name; } need[] = {
        { KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
        { KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
        { KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
        { KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
        { KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
    };
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        if (ioctl(vm.kvm_fd, KVM_CHECK_EXTENSION, need[i].cap) <= 0) {
            vmm_log("/dev/kvm: %s is missing", need[i].name);
            return -1;
        }
    }
    vm.vm_fd = ioctl(vm.kvm_fd, KVM_CREATE_VM, 0);
    if (vm.vm_fd < 0) {
        vmm_log("KVM_CREATE_VM: %s", strerror(errno));
        return -1;
    }
    if (ioctl(vm.vm_fd, KVM_SET_TSS_ADDR, (unsigned long)VMM_TSS_ADDR) < 0) {
        vmm_log("KVM_SET_TSS_ADDR: %s", strerror(errno));
        return -1;
    }
    uint64_t idmap = VMM_IDENTITY_ADDR;
    if (ioctl(vm.kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0 &&
        ioctl(vm.vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) {
        vmm_log("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
        return -1;
    }
    if (ioctl(vm.vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        vmm_log("KVM_CREATE_IRQCHIP: %s", strerror(errno));
        return -1;
    }
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    if (ioctl(vm.vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        vmm_log("KVM_CREATE_PIT2: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int mem_setup(uint64_t size)
{
    struct vmm_mem *m = &vm.mem;
    m->size = size;
    m->low_size = size < VMM_LOW_MEM_MAX ? size : VMM_LOW_MEM_MAX;
    m->high_size = size - m->low_size;
    struct vdisk_guest_region regions[2];
    unsigned nregions = 0;
    for (unsigned slot = 0; slot < 2; slot++) {
        uint64_t len = slot ? m->high_size : m->low_size;
        uint64_t gpa = slot ? VMM_HIGH_MEM_START : 0;
        if (!len)
            continue;
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            vmm_log("guest RAM: mmap of %" PRIu64 " bytes: %s", len, strerror(errno));
            return -1;
        }
        if (slot)
            m->high = p;
        else
            m->low = p;
        struct kvm_userspace_memory_region r = {
            .slot = slot, .guest_phys_addr = gpa, .memory_size = len,
            .userspace_addr = (uintptr_t)p,
        };
        if (ioctl(vm.vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
            vmm_log("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
            return -1;
        }
        regions[nregions++] = (struct vdisk_guest_region){ .gpa = gpa, .size = len, .host = p };
    }
    int r = vdisk_guest_mem_new(&m->gmem, regions, nregions);
    if (r < 0) {
        vmm_log("guest memory map: %s", vdisk_get_error());
        return -1;
    }
    return 0;
}

static void mem_free(void)
{
    struct vmm_mem *m = &vm.mem;
    vdisk_guest_mem_free(m->gmem);
    if (m->low)
        munmap(m->low, m->low_size);
    if (m->high)
        munmap(m->high, m->high_size);
    memset(m, 0, sizeof(*m));
}

/* ---- Devices ------------------------------------------------------------------------- */

static int open_disk(const struct disk_opt *d, vdisk_dev **out)
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

static int devices_setup(void)
{
    struct config *c = &vm.cfg;
    for (unsigned i = 0; i < c->ndisks + (c->cdrom ? 1u : 0u); i++) {
        int is_cdrom = i == c->ndisks;
        vdisk_dev *dev = NULL;
        vdisk_virtio *model = NULL;
        char name[32];
        int r;
        if (!is_cdrom) {
            const struct disk_opt *d = &c->disks[i];
            snprintf(name, sizeof(name), "disk%u", i);
            if (open_disk(d, &dev) < 0)
                return -1;
            struct vdisk_virtio_blk_params p = { .struct_size = sizeof p,
                                                 .num_queues = 1, .serial = d->serial,
                                                 .read_only = d->readonly };
            r = vdisk_virtio_blk_new(&model, dev, &p);
        } else {
            snprintf(name, sizeof(name), "cdrom");
            r = vdisk_open_cdrom(&dev, c->cdrom_iso, NULL);
            if (r < 0) {
                vmm_log("--cdrom %s: %s", c->cdrom_iso ? c->cdrom_iso : "", vdisk_get_error());
                return -1;
            }
            struct vdisk_virtio_scsi_params p = { .struct_size = sizeof p, .num_queues = 1 };
            r = vdisk_virtio_scsi_cdrom_new(&model, dev, &p);
        }
        vdisk_close(dev); /* the model holds its own reference */
        if (r < 0) {
            vmm_log("%s: the virtio model: %s", name, vdisk_get_error());
            return -1;
        }
        r = vmm_mmio_dev_init(&vm.devs[vm.ndevs], vm.ndevs, vm.vm_fd, model, &vm.mem, name,
                              is_cdrom);
        vm.ndevs++; /* destroyed (with its model) even when the init failed */
        if (r < 0)
            return -1;
        if (is_cdrom && c->cdrom_iso) {
            vm.devs[vm.ndevs - 1].medium = strdup(c->cdrom_iso);
            if (!vm.devs[vm.ndevs - 1].medium)
                return -1;
        }
    }
    return 0;
}

static struct vmm_mmio_dev *find_cdrom(void)
{
    for (unsigned i = 0; i < vm.ndevs; i++)
        if (vm.devs[i].is_cdrom)
            return &vm.devs[i];
    return NULL;
}

/* Changes the CD (ISO NULL: eject).  Writes the monitor's answer in ANSWER. */
static void cdrom_change(const char *iso, char *answer, size_t len)
{
    struct vmm_mmio_dev *d = find_cdrom();
    if (!d) {
        snprintf(answer, len, "error: there is no CD-ROM drive (--cdrom)");
        return;
    }
    char *copy = NULL;
    if (iso && !(copy = strdup(iso))) {
        snprintf(answer, len, "error: out of memory");
        return;
    }
    pthread_mutex_lock(&d->lock);
    int r = vdisk_virtio_scsi_change_medium(d->model, iso);
    free(d->medium);
    d->medium = NULL;
    if (r < 0) {
        snprintf(answer, len, "error: %s", vdisk_get_error());
        free(copy);
    } else {
        d->medium = copy;
        snprintf(answer, len, "ok");
    }
    pthread_mutex_unlock(&d->lock);
}

/* ---- vCPUs ---------------------------------------------------------------------------- */

static struct kvm_cpuid2 *supported_cpuid(void)
{
    for (unsigned n = 64; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
        if (!c)
            return NULL;
        c->nent = n;
        if (ioctl(vm.kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
            return c;
        int e = errno;
        free(c);
        if (e != E2BIG) {
            vmm_log("KVM_GET_SUPPORTED_CPUID: %s", strerror(e));
            return NULL;
        }
    }
    vmm_log("KVM_GET_SUPPORTED_CPUID: too many entries");
    return NULL;
}

static void seg_flat(struct kvm_segment *s, uint16_t sel, uint8_t type, int l, int db)
{
    memset(s, 0, sizeof(*s));
    s->base = 0;
    s->limit = 0xFFFFFFFF;
    s->selector = sel;
    s->type = type;
    s->present = 1;
    s->s = 1;
    s->l = (uint8_t)l;
    s->db = (uint8_t)db;
    s->g = 1;
}

static int vcpu_setup_boot(struct vcpu *v)
{
    struct kvm_sregs sregs;
    if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0) {
        vmm_log("KVM_GET_SREGS: %s", strerror(errno));
        return -1;
    }
    struct kvm_segment code, data;
    if (vm.boot.long_mode) {
        seg_flat(&code, 0x10, 0xB, 1, 0);
        seg_flat(&data, 0x18, 0x3, 0, 1);
        sregs.gdt.base = VMM_GDT_ADDR;
        sregs.gdt.limit = 4 * 8 - 1;
        sregs.cr3 = VMM_PML4_ADDR;
        sregs.cr4 = 0x20;                       /* PAE */
        sregs.efer = 0x500;                     /* LME | LMA */
        sregs.cr0 = 0x80000033;                 /* PG | NE | ET | MP | PE */
    } else {
        seg_flat(&code, 0x08, 0xB, 0, 1);
        seg_flat(&data, 0x10, 0x3, 0, 1);
        sregs.gdt.base = VMM_GDT_ADDR;
        sregs.gdt.limit = 3 * 8 - 1;
        sregs.cr0 = 0x31;                       /* NE | ET | PE, caches on, paging off */
        sregs.cr4 = 0;
        sregs.efer = 0;
    }
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0) {
        vmm_log("KVM_SET_SREGS: %s", strerror(errno));
        return -1;
    }
    struct kvm_regs regs;
    memset(&regs, 0, sizeof(regs));
    regs.rflags = 0x2;
    regs.rip = vm.boot.entry;
    regs.rsp = vm.boot.rsp;
    regs.rsi = vm.boot.rsi;
    regs.rbx = vm.boot.rbx;
    if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0) {
        vmm_log("KVM_SET_REGS: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int vcpu_create(struct vcpu *v, unsigned id, const struct kvm_cpuid2 *sup, int mmap_size)
{
    v->id = id;
    v->fd = ioctl(vm.vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
    if (v->fd < 0) {
        vmm_log("KVM_CREATE_VCPU %u: %s", id, strerror(errno));
        return -1;
    }
    v->run_size = (size_t)mmap_size;
    void *run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (run == MAP_FAILED) {
        vmm_log("mmap of vCPU %u's kvm_run: %s", id, strerror(errno));
        v->run = NULL;
        return -1;
    }
    v->run = run;

    /* CPUID: what KVM supports, with this CPU's APIC ID and the hypervisor bit */
    size_t sz = sizeof(*sup) + sup->nent * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *c = malloc(sz);
    if (!c)
        return -1;
    memcpy(c, sup, sz);
    for (unsigned i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        if (e->function == 1) {
            e->ebx = (e->ebx & 0x00FFFFFFu) | (id << 24);
            e->ecx |= 1u << 31;
        } else if (e->function == 0xB || e->function == 0x1F) {
            e->edx = id;
        }
    }
    int r = ioctl(v->fd, KVM_SET_CPUID2, c);
    free(c);
    if (r < 0) {
        vmm_log("KVM_SET_CPUID2: %s", strerror(errno));
        return -1;
    }

    struct kvm_fpu fpu;
    memset(&fpu, 0, sizeof(fpu));
    fpu.fcw = 0x37F;
    fpu.mxcsr = 0x1F80;
    if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0) {
        vmm_log("KVM_SET_FPU: %s", strerror(errno));
        return -1;
    }

    /* The local APIC's LINT0 is ExtINT (the 8259) and LINT1 NMI, as a BIOS leaves them */
    struct kvm_lapic_state lapic;
    if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) == 0) {
        uint32_t lvt0 = 0x700, lvt1 = 0x400;
        memcpy(&lapic.regs[0x350], &lvt0, 4);
        memcpy(&lapic.regs[0x360], &lvt1, 4);
        if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0) {
            vmm_log("KVM_SET_LAPIC: %s", strerror(errno));
            return -1;
        }
    }
    if (id == 0)
        return vcpu_setup_boot(v);
    return 0; /* application processors wait for INIT/SIPI in the kernel */
}

static void vcpu_fail(struct vcpu *v, const char *what)
{
    struct kvm_regs regs;
    if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
        vmm_log("vCPU %u: %s (rip 0x%llx)", v->id, what, (unsigned long long)regs.rip);
    else
        vmm_log("vCPU %u: %s", v->id, what);
    vmm_request_stop(1);
}

static void pio(uint16_t port, uint8_t *data, unsigned size, int is_write)
{
    for (unsigned k = 0; k < size; k++) {
        unsigned p = (unsigned)port + k;
        uint8_t *b = &data[k];
        if (p >= VMM_SERIAL_BASE && p < VMM_SERIAL_BASE + 8) {
            vmm_serial_io(&vm.serial, p - VMM_SERIAL_BASE, is_write, b);
        } else if (p >= VMM_PM1_EVT_PORT && p < VMM_PM1_EVT_PORT + 4) {
            if (!is_write)
                *b = 0;
        } else if (p == VMM_PM1_CNT_PORT || p == VMM_PM1_CNT_PORT + 1) {
            if (!is_write)
                *b = p == VMM_PM1_CNT_PORT ? 0x01 : 0x00;  /* SCI_EN: in ACPI mode */
            else if (p == VMM_PM1_CNT_PORT + 1 && (*b & 0x20)) /* SLP_EN, bit 13 */
                vmm_request_stop(0);
        } else if (p == VMM_I8042_CMD) {
            if (!is_write)
                *b = 0;                                   /* input buffer empty */
            else if (*b == 0xFE)                          /* pulse the reset line */
                vmm_request_stop(0);
        } else if (!is_write) {
            *b = 0xFF;                                    /* nothing there */
        }
    }
}

static void mmio(uint64_t addr, uint8_t *data, unsigned len, int is_write)
{
    if (len > 8)
        len = 8;
    if (addr >= VMM_MMIO_BASE && addr < VMM_MMIO_BASE + (uint64_t)vm.ndevs * VMM_MMIO_SIZE) {
        uint64_t off = addr - VMM_MMIO_BASE;
        struct vmm_mmio_dev *d = &vm.devs[off / VMM_MMIO_SIZE];
        off %= VMM_MMIO_SIZE;
        if (off + len <= VMM_MMIO_SIZE) {
            vmm_mmio_access(d, off, data, len, is_write);
            return;
        }
    }
    static atomic_int logged;
    if (atomic_exchange(&logged, 1) == 0)
        vmm_log("guest %s of %u bytes at 0x%llx: nothing there (%s; logged once)",
                is_write ? "write" : "read", len, (unsigned long long)addr,
                is_write ? "ignored" : "reads 0");
    if (!is_write)
        memset(data, 0, len);
}

static void kick_handler(int sig)
{
    (void)sig;
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    struct kvm_run *run = v->run;
    char what[256];

    while (!atomic_load(&vm.stopping) && !atomic_load(&vm.stop_requested)) {
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            snprintf(what, sizeof(what), "KVM_RUN: %s", strerror(errno));
            vcpu_fail(v, what);
            break;
        }
        if (run->exit_reason != KVM_EXIT_INTR) /* those are the VMM's own signals */
            atomic_fetch_add_explicit(&vm.life, 1, memory_order_relaxed);
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            uint64_t size = run->io.size, count = run->io.count;
            uint64_t off = run->io.data_offset;
            if ((size != 1 && size != 2 && size != 4) || off > v->run_size ||
                size * count > v->run_size - off) {
                vcpu_fail(v, "bad KVM_EXIT_IO");
                return NULL;
            }
            uint8_t *p = (uint8_t *)run + off;
            for (uint64_t i = 0; i < count; i++)
                pio(run->io.port, p + i * size, (unsigned)size,
                    run->io.direction == KVM_EXIT_IO_OUT);
            break;
        }
        case KVM_EXIT_MMIO:
            mmio(run->mmio.phys_addr, run->mmio.data, run->mmio.len, run->mmio.is_write);
            break;
        case KVM_EXIT_HLT:
            break; /* only without an in-kernel LAPIC */
        case KVM_EXIT_SHUTDOWN:
            vcpu_fail(v, "the guest triple-faulted (KVM_EXIT_SHUTDOWN)");
            return NULL;
        case KVM_EXIT_SYSTEM_EVENT:
            if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN ||
                run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
                vmm_request_stop(0);
            } else {
                snprintf(what, sizeof(what), "system event %u", run->system_event.type);
                vcpu_fail(v, what);
            }
            return NULL;
        case KVM_EXIT_INTERNAL_ERROR: {
            int n = snprintf(what, sizeof(what), "KVM internal error, suberror %u%s",
                             run->internal.suberror,
                             run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                                 ? " (instruction emulation failed)" : "");
            for (unsigned i = 0; i < run->internal.ndata && i < 4 && n > 0 &&
                                 (size_t)n < sizeof(what); i++)
                n += snprintf(what + n, sizeof(what) - (size_t)n, " 0x%llx",
                              (unsigned long long)run->internal.data[i]);
            vcpu_fail(v, what);
            return NULL;
        }
        case KVM_EXIT_FAIL_ENTRY:
            snprintf(what, sizeof(what), "VM entry failed, reason 0x%llx",
                     (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
            vcpu_fail(v, what);
            return NULL;
        case KVM_EXIT_INTR:
            break;
        default:
            snprintf(what, sizeof(what), "unexpected KVM exit %u", run->exit_reason);
            vcpu_fail(v, what);
            return NULL;
        }
    }
    return NULL;
}

static int vcpus_setup(void)
{
    int mmap_size = ioctl(vm.kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmap_size < (int)sizeof(struct kvm_run)) {
        vmm_log("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
        return -1;
    }
    struct kvm_cpuid2 *sup = supported_cpuid();
    if (!sup)
        return -1;
    int r = 0;
    for (unsigned i = 0; i < vm.ncpus && r == 0; i++) {
        vm.vcpus[i].fd = -1;
        r = vcpu_create(&vm.vcpus[i], i, sup, mmap_size);
    }
    free(sup);
    return r;
}

static void vcpus_stop(void)
{
    atomic_store(&vm.stopping, 1);
    for (unsigned i = 0; i < vm.ncpus; i++) {
        struct vcpu *v = &vm.vcpus[i];
        if (!v->started)
            continue;
        v->run->immediate_exit = 1;
        pthread_kill(v->thread, SIGUSR2);
    }
    for (unsigned i = 0; i < vm.ncpus; i++) {
        struct vcpu *v = &vm.vcpus[i];
        if (!v->started)
            continue;
        pthread_join(v->thread, NULL);
        v->started = 0;
    }
}

/* ---- The monitor ------------------------------------------------------------------------ */

enum { EV_STOP = 1, EV_SIGNAL, EV_STDIN, EV_MON_LISTEN, EV_MON_CLIENT, EV_DEV_POLL, EV_DEV_KICK };

static uint64_t ev_tag(unsigned kind, unsigned a, unsigned b)
{
    return (uint64_t)kind << 48 | (uint64_t)a << 24 | b;
}

static int ep_add(int fd, uint64_t tag)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };
    return epoll_ctl(vm.epoll_fd, EPOLL_CTL_ADD, fd, &ev);
}

static int monitor_setup(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path)) {
        vmm_log("--monitor %s: path too long", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        vmm_log("--monitor: socket: %s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path); /* a stale socket */
    mode_t old = umask(077);
    int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    int e = errno;
    umask(old);
    if (r < 0 || listen(fd, 4) < 0) {
        vmm_log("--monitor %s: %s", path, strerror(r < 0 ? e : errno));
        close(fd);
        return -1;
    }
    vm.mon_fd = fd;
    for (unsigned i = 0; i < MON_MAX_CLIENTS; i++)
        vm.mon[i].fd = -1;
    return ep_add(fd, ev_tag(EV_MON_LISTEN, 0, 0));
}

static void monitor_close_client(struct mon_client *c)
{
    epoll_ctl(vm.epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->len = 0;
}

static void monitor_answer(struct mon_client *c, const char *answer)
{
    char line[4200];
    int n = snprintf(line, sizeof(line), "%s\n", answer);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line))
        n = (int)sizeof(line) - 1;
    if (send(c->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n)
        monitor_close_client(c);
}

static void monitor_command(struct mon_client *c, char *line)
{
    char answer[4096];
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
        line[--n] = 0;
    while (*line == ' ' || *line == '\t')
        line++;
    if (strcmp(line, "eject") == 0) {
        cdrom_change(NULL, answer, sizeof(answer));
    } else if (strncmp(line, "change", 6) == 0 && (line[6] == ' ' || line[6] == '\t' || !line[6])) {
        const char *iso = line + 6;
        while (*iso == ' ' || *iso == '\t')
            iso++;
        if (!*iso)
            snprintf(answer, sizeof(answer), "error: change needs an ISO file");
        else
            cdrom_change(iso, answer, sizeof(answer));
    } else if (strcmp(line, "info") == 0) {
        struct vmm_mmio_dev *d = find_cdrom();
        if (!d) {
            snprintf(answer, sizeof(answer), "error: there is no CD-ROM drive (--cdrom)");
        } else {
            pthread_mutex_lock(&d->lock);
            snprintf(answer, sizeof(answer), "ok medium=%s", d->medium ? d->medium : "none");
            pthread_mutex_unlock(&d->lock);
        }
    } else if (!*line) {
        snprintf(answer, sizeof(answer), "error: empty command (change ISO, eject, info)");
    } else {
        snprintf(answer, sizeof(answer), "error: unknown command (change ISO, eject, info)");
    }
    monitor_answer(c, answer);
}

static void monitor_accept(void)
{
    int fd = accept4(vm.mon_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    for (unsigned i = 0; i < MON_MAX_CLIENTS; i++) {
        if (vm.mon[i].fd >= 0)
            continue;
        vm.mon[i].fd = fd;
        vm.mon[i].len = 0;
        if (ep_add(fd, ev_tag(EV_MON_CLIENT, i, 0)) < 0) {
            close(fd);
            vm.mon[i].fd = -1;
        }
        return;
    }
    static const char busy[] = "error: too many monitor connections\n";
    send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

static void monitor_read(struct mon_client *c)
{
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        monitor_close_client(c);
        return;
    }
    c->len += (size_t)n;
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (!nl)
            break;
        *nl = 0;
        size_t used = (size_t)(nl - c->buf) + 1;
        monitor_command(c, c->buf);
        if (c->fd < 0)
            return;
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
    }
    if (c->len >= sizeof(c->buf) - 1) {
        monitor_answer(c, "error: line too long");
        if (c->fd >= 0)
            monitor_close_client(c);
    }
}

static void monitor_shutdown(void)
{
    for (unsigned i = 0; i < MON_MAX_CLIENTS; i++)
        if (vm.mon_fd >= 0 && vm.mon[i].fd >= 0)
            monitor_close_client(&vm.mon[i]);
    if (vm.mon_fd >= 0) {
        close(vm.mon_fd);
        vm.mon_fd = -1;
        unlink(vm.cfg.monitor);
    }
}

/* ---- The I/O thread ---------------------------------------------------------------------- */

static void stdin_read(void)
{
    uint8_t buf[256];
    unsigned room = vmm_serial_rx_room(&vm.serial);
    if (room == 0) {
        /* the guest has not read what it has: stop watching stdin until it has */
        epoll_ctl(vm.epoll_fd, EPOLL_CTL_DEL, 0, NULL);
        vm.stdin_paused = 1;
        return;
    }
    ssize_t n = read(0, buf, room < sizeof(buf) ? room : sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        epoll_ctl(vm.epoll_fd, EPOLL_CTL_DEL, 0, NULL); /* EOF: the guest gets no more input */
        vm.stdin_open = 0;
        return;
    }
    if (!vm.stdin_tty) {
        vmm_serial_rx(&vm.serial, buf, (unsigned)n);
        return;
    }
    /* Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A */
    uint8_t out[256];
    unsigned m = 0;
    for (ssize_t i = 0; i < n; i++) {
        uint8_t b = buf[i];
        if (vm.ctrl_a) {
            vm.ctrl_a = 0;
            if (b == 'x' || b == 'X') {
                vmm_log("quit (Ctrl-A x)");
                vmm_request_stop(1);
                return;
            }
            out[m++] = b;
        } else if (b == 0x01) {
            vm.ctrl_a = 1;
        } else {
            out[m++] = b;
        }
    }
    vmm_serial_rx(&vm.serial, out, m);
}

static void handle_signal(void)
{
    struct signalfd_siginfo si;
    while (read(vm.signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGUSR1) {
            char answer[4096];
            cdrom_change(NULL, answer, sizeof(answer));
            vmm_log("SIGUSR1: eject: %s", answer);
        } else {
            int sig = (int)si.ssi_signo;
            vmm_log("terminated by %s", sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT"
                                        : sig == SIGHUP ? "SIGHUP" : "a signal");
            vmm_request_stop(1);
        }
    }
}

static int io_setup(void)
{
    vm.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (vm.epoll_fd < 0 || ep_add(vm.stop_fd, ev_tag(EV_STOP, 0, 0)) < 0 ||
        ep_add(vm.signal_fd, ev_tag(EV_SIGNAL, 0, 0)) < 0) {
        vmm_log("epoll: %s", strerror(errno));
        return -1;
    }
    for (unsigned i = 0; i < vm.ndevs; i++) {
        struct vmm_mmio_dev *d = &vm.devs[i];
        int fd = vdisk_virtio_get_fd(d->model);
        if (fd < 0 || ep_add(fd, ev_tag(EV_DEV_POLL, i, 0)) < 0) {
            vmm_log("%s: the model's fd: %s", d->name, fd < 0 ? vdisk_get_error() : strerror(errno));
            return -1;
        }
        for (unsigned q = 0; q < d->nqueues; q++)
            if (d->kickfd[q] >= 0 && ep_add(d->kickfd[q], ev_tag(EV_DEV_KICK, i, q)) < 0) {
                vmm_log("epoll: %s", strerror(errno));
                return -1;
            }
    }
    vm.stdin_tty = isatty(0);
    vm.stdin_open = ep_add(0, ev_tag(EV_STDIN, 0, 0)) == 0; /* not for regular files, closed fds */
    if (vm.cfg.monitor && monitor_setup(vm.cfg.monitor) < 0)
        return -1;
    return 0;
}

/* ---- The watchdog ----------------------------------------------------------------------- */

/*
 * A guest that makes no progress gives no sign of it: a vCPU spinning in
 * KVM_RUN (or a KVM that cannot run the guest at all, such as a software
 * hypervisor running an unmodified Linux kernel) makes no exit to the VMM,
 * writes nothing to the serial port, kicks no queue.  The I/O thread looks
 * at the count of such signs (vm.life) at least once a second; when it has
 * not moved for the watchdog's time, the VM ends with exit status 2 and a
 * message that names the likely cause.  --watchdog SECONDS watches the
 * whole run; without it only the start (a guest that never shows a sign of
 * life in VMM_BOOT_WATCHDOG seconds), since an idle guest waiting for input
 * with its timer in KVM's local APIC makes no exit either.
 */
static struct {
    uint64_t limit_ms;  /* 0: off */
    int whole_run;      /* else only until the first sign of life */
    uint64_t start_ms, last_ms;
    unsigned seen;
    int alive;          /* a sign of life was seen */
} wd;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void watchdog_arm(int seconds)
{
    wd.whole_run = seconds >= 0;
    wd.limit_ms = (uint64_t)(seconds >= 0 ? (unsigned)seconds : VMM_BOOT_WATCHDOG) * 1000u;
    wd.start_ms = wd.last_ms = mono_ms();
    wd.seen = atomic_load(&vm.life);
}

/* Whether the file at PATH exists. */
static int path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Whether /proc/cpuinfo's flags name hardware virtualization (vmx, svm);
 * -1 when it cannot be read. */
static int cpu_has_hw_virt(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return -1;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "flags", 5) != 0)
            continue;
        for (char *t = strtok(line, " \t\n"); t && !found; t = strtok(NULL, " \t\n"))
            found = strcmp(t, "vmx") == 0 || strcmp(t, "svm") == 0;
    }
    fclose(f);
    return found;
}

static void watchdog_fire(void)
{
    unsigned secs = (unsigned)(wd.limit_ms / 1000u);
    if (wd.alive) {
        vmm_log("watchdog: the guest has shown no sign of life for %u s (no port or MMIO "
                "access, serial output or queue kick since %.1f s after start); ending it. "
                "Likely cause: the guest hung (a loop with interrupts off, a panic with no "
                "console) or sits idle; raise --watchdog, or --watchdog 0 to turn it off",
                secs, (double)(wd.last_ms - wd.start_ms) / 1000.0);
    } else {
        const char *why;
        if (path_exists("/sys/module/kvm_pvm"))
            why = "this host's /dev/kvm is kvm_pvm, a software hypervisor that runs 32-bit "
                  "firmware but not an unmodified Linux kernel (doc/vmm.md); use a host with "
                  "hardware virtualization";
        else if (cpu_has_hw_virt() == 0)
            why = "this host's CPU shows no hardware virtualization (no vmx or svm in "
                  "/proc/cpuinfo): /dev/kvm is a software or nested hypervisor that cannot "
                  "run this guest";
        else if (vm.cfg.kernel)
            why = "the kernel stops before its first port access: a kernel without a serial "
                  "console on ttyS0 (--cmdline), or one this machine cannot start";
        else
            why = "the firmware never touches a port or MMIO register (a loop, or code that "
                  "is not 32-bit protected-mode code loaded at 0x100000)";
        vmm_log("watchdog: the guest has shown no sign of life in its first %u s (no port "
                "or MMIO access, no serial output, no queue kick); ending it "
                "(--watchdog 0 turns this off). Likely cause: %s", secs, why);
    }
    vmm_request_stop(2);
}

/* How long epoll_wait may sleep for the watchdog (ms), or -1. */
static int watchdog_timeout(void)
{
    return wd.limit_ms ? 1000 : -1;
}

static void watchdog_check(void)
{
    if (!wd.limit_ms)
        return;
    uint64_t now = mono_ms();
    unsigned life = atomic_load(&vm.life);
    if (life != wd.seen) {
        wd.seen = life;
        wd.last_ms = now;
        wd.alive = 1;
        if (!wd.whole_run)
            wd.limit_ms = 0; /* the guest started: the boot watchdog is done */
        return;
    }
    if (now - wd.last_ms >= wd.limit_ms) {
        watchdog_fire();
        wd.limit_ms = 0;
    }
}

static void io_loop(void)
{
    struct epoll_event evs[32];
    for (;;) {
        int wait = watchdog_timeout();
        if (vm.stdin_paused)
            wait = 10;
        int n = epoll_wait(vm.epoll_fd, evs, 32, wait);
        if (n < 0 && errno != EINTR) {
            vmm_log("epoll_wait: %s", strerror(errno));
            vmm_request_stop(1);
            return;
        }
        watchdog_check();
        if (vm.stdin_paused && vmm_serial_rx_room(&vm.serial) > 0) {
            vm.stdin_paused = 0;
            if (ep_add(0, ev_tag(EV_STDIN, 0, 0)) < 0)
                vm.stdin_open = 0;
        }
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            unsigned kind = (unsigned)(tag >> 48), a = (unsigned)(tag >> 24) & 0xFFFFFF;
            unsigned b = (unsigned)tag & 0xFFFFFF;
            switch (kind) {
            case EV_STOP:
                return;
            case EV_SIGNAL:
                handle_signal();
                break;
            case EV_STDIN:
                stdin_read();
                break;
            case EV_MON_LISTEN:
                monitor_accept();
                break;
            case EV_MON_CLIENT:
                if (vm.mon[a].fd >= 0)
                    monitor_read(&vm.mon[a]);
                break;
            case EV_DEV_POLL:
                vmm_mmio_poll(&vm.devs[a]);
                break;
            case EV_DEV_KICK: {
                uint64_t cnt;
                if (read(vm.devs[a].kickfd[b], &cnt, sizeof(cnt)) == (ssize_t)sizeof(cnt)) {
                    atomic_fetch_add_explicit(&vm.life, 1, memory_order_relaxed);
                    vmm_mmio_kick(&vm.devs[a], b);
                }
                break;
            }
            default:
                break;
            }
        }
    }
}

/* ---- main --------------------------------------------------------------------------------- */

static char *build_cmdline(void)
{
    const char *base = vm.cfg.cmdline ? vm.cfg.cmdline : "console=ttyS0";
    size_t len = strlen(base) + 1 + (size_t)vm.ndevs * 48;
    char *s = malloc(len);
    if (!s)
        return NULL;
    size_t at = (size_t)snprintf(s, len, "%s", base);
    if (!vm.cfg.no_cmdline_devices)
        for (unsigned i = 0; i < vm.ndevs && at < len; i++)
            at += (size_t)snprintf(s + at, len - at, " virtio_mmio.device=4K@0x%llx:%u",
                                   (unsigned long long)vm.devs[i].base, vm.devs[i].irq);
    return s;
}

static void teardown(void)
{
    vcpus_stop();
    monitor_shutdown();
    for (unsigned i = 0; i < vm.ndevs; i++)
        vmm_mmio_dev_destroy(&vm.devs[i]); /* waits for requests, flushes, closes */
    vm.ndevs = 0;
    for (unsigned i = 0; i < vm.ncpus; i++) {
        struct vcpu *v = &vm.vcpus[i];
        if (v->run)
            munmap(v->run, v->run_size);
        if (v->fd >= 0)
            close(v->fd);
        v->run = NULL;
        v->fd = -1;
    }
    if (vm.serial_ready)
        vmm_serial_destroy(&vm.serial);
    if (vm.vm_fd >= 0)
        close(vm.vm_fd);
    if (vm.kvm_fd >= 0)
        close(vm.kvm_fd);
    mem_free();
    if (vm.epoll_fd >= 0)
        close(vm.epoll_fd);
    if (vm.stop_fd >= 0)
        close(vm.stop_fd);
    if (vm.signal_fd >= 0)
        close(vm.signal_fd);
    vm.vm_fd = vm.kvm_fd = vm.epoll_fd = vm.stop_fd = vm.signal_fd = -1;
    vmm_term_restore();
    config_free(&vm.cfg);
}

static int run(void)
{
    struct config *c = &vm.cfg;
    vm.ncpus = c->firmware ? 1 : c->cpus;
    for (unsigned i = 0; i < VMM_MAX_CPUS; i++)
        vm.vcpus[i].fd = -1;

    /* Signals: handled by the I/O thread through a signalfd; SIGUSR2 kicks vCPUs */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    sigdelset(&set, SIGUSR2);
    vm.signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    vm.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm.signal_fd < 0 || vm.stop_fd < 0) {
        vmm_log("signalfd/eventfd: %s", strerror(errno));
        return 1;
    }
    struct sigaction sa = { .sa_handler = kick_handler };
    sigaction(SIGUSR2, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (kvm_open() < 0 || mem_setup(c->mem) < 0 || devices_setup() < 0)
        return 1;
    struct vmm_acpi_info ai = { .ncpus = vm.ncpus, .ndevs = vm.ndevs };
    uint64_t rsdp = vmm_acpi_build(&vm.mem, &ai, c->dump_acpi);
    if (!rsdp)
        return 1;
    if (c->firmware) {
        if (vmm_load_firmware(&vm.mem, c->firmware, vm.ndevs, vm.devs, &vm.boot) < 0)
            return 1;
    } else {
        char *cmdline = build_cmdline();
        if (!cmdline) {
            vmm_log("out of memory");
            return 1;
        }
        int r = vmm_load_linux(&vm.mem, c->kernel, c->initrd, cmdline, rsdp, &vm.boot);
        free(cmdline);
        if (r < 0)
            return 1;
    }
    vmm_serial_init(&vm.serial, vm.vm_fd, 1);
    vm.serial_ready = 1;
    if (vcpus_setup() < 0 || io_setup() < 0)
        return 1;

    vmm_term_raw();
    if (c->watchdog != 0)
        watchdog_arm(c->watchdog);
    for (unsigned i = 0; i < vm.ncpus; i++) {
        int e = pthread_create(&vm.vcpus[i].thread, NULL, vcpu_thread, &vm.vcpus[i]);
        if (e) {
            vmm_log("pthread_create: %s", strerror(e));
            vmm_request_stop(1);
            break;
        }
        vm.vcpus[i].started = 1;
    }
    io_loop();
    return atomic_load(&vm.exit_code);
}

int main(int argc, char **argv)
{
    int r = parse_args(&vm.cfg, argc, argv);
    if (r != 0) {
        config_free(&vm.cfg);
        return r > 0 ? 0 : 1;
    }
    int code = run();
    teardown();
    return code;
}
