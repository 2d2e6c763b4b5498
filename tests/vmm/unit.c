/* SPDX-License-Identifier: MIT */
/*
 * tests/vmm/unit.c (vmm-unit): parts of vdisk-vmm that need no KVM,
 * compiled in from tools/vmm/: the device bus (bus.c: port I/O byte by
 * byte to the device holding each port, 0xFF from no device; MMIO to the
 * device holding the whole access, zeroes and one log line from nowhere),
 * the power and reset controls on it (power.c: PM1 and the i8042) and the
 * monitor (monitor.c: the library's, vdisk/monitor.h, over a real CD-ROM
 * model as devices.c makes it: the commands' answers and log lines, the
 * drive's lock held around them, no drive; its socket: several commands a
 * write, the newest client, long lines, the file's mode and removal, stale
 * and live sockets).  Runs where /dev/kvm is missing, unlike the other
 * vmm-* tests.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <vdisk/device.h>
#include <vdisk/iso9660.h>
#include <vdisk/options.h>
#include <vdisk/virtio.h>

#include "harness.h"
#include "monitor.h"
#include "vmm.h"

/* vdisk-vmm's log, kept here to be compared; with LOCK_WATCHED set, the
 * lines logged while it was held are counted. */
static char logged[8][256];
static unsigned nlogged, nlogged_locked;
static pthread_mutex_t *lock_watched;

void vmm_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (nlogged < 8)
        vsnprintf(logged[nlogged], sizeof logged[0], fmt, ap);
    nlogged++;
    va_end(ap);
    if (lock_watched) {
        if (pthread_mutex_trylock(lock_watched) == 0)
            pthread_mutex_unlock(lock_watched);
        else
            nlogged_locked++;
    }
}

/* ---- The bus ------------------------------------------------------------------------ */

/* A device that records its accesses and reads as 0xA0 + offset. */
struct recorder {
    unsigned calls;
    uint64_t off[16];
    unsigned len[16];
    int write[16];
    uint8_t data[16][8];
};

static void record(void *opaque, uint64_t off, uint8_t *data, unsigned len, int is_write)
{
    struct recorder *r = opaque;
    if (r->calls < 16) {
        r->off[r->calls] = off;
        r->len[r->calls] = len;
        r->write[r->calls] = is_write;
        memcpy(r->data[r->calls], data, len);
    }
    r->calls++;
    if (!is_write)
        for (unsigned k = 0; k < len; k++)
            data[k] = (uint8_t)(0xA0 + off + k);
}

static unsigned power_events[3];

static void power_event(void *opaque, enum vmm_power_event ev)
{
    ck_assert_ptr_eq(opaque, power_events);
    ck_assert(ev == VMM_POWER_OFF || ev == VMM_POWER_RESET);
    power_events[ev]++;
}

/* The port bus of vdisk-vmm: a recorder where the UART is, the power controls. */
static void pio_bus(struct vmm_bus *b, struct vmm_power *p, struct recorder *uart)
{
    vmm_bus_init(b);
    memset(uart, 0, sizeof(*uart));
    memset(power_events, 0, sizeof power_events);
    ck_assert_int_eq(vmm_bus_add(b, VMM_SERIAL_BASE, 8, record, uart), 0);
    ck_assert_int_eq(vmm_power_attach(p, b, power_event, power_events), 0);
}

START_TEST(pio_dispatch)
{
    struct vmm_bus b;
    struct vmm_power p;
    struct recorder uart;
    pio_bus(&b, &p, &uart);

    /* A byte to the UART: its offset, length 1 */
    uint8_t d[4] = {0x41};
    vmm_bus_pio(&b, 0x3F8, d, 1, 1);
    ck_assert_uint_eq(uart.calls, 1);
    ck_assert_uint_eq(uart.off[0], 0);
    ck_assert_uint_eq(uart.len[0], 1);
    ck_assert_int_eq(uart.write[0], 1);
    ck_assert_uint_eq(uart.data[0][0], 0x41);

    /* A 4-byte read from 0x3FD: three UART bytes (offsets 5, 6, 7) and 0x400, nothing */
    memset(d, 0, sizeof d);
    vmm_bus_pio(&b, 0x3FD, d, 4, 0);
    ck_assert_uint_eq(uart.calls, 4);
    for (unsigned k = 0; k < 3; k++) {
        ck_assert_uint_eq(uart.off[1 + k], 5 + k);
        ck_assert_uint_eq(uart.len[1 + k], 1);
        ck_assert_int_eq(uart.write[1 + k], 0);
        ck_assert_uint_eq(d[k], 0xA5 + k);
    }
    ck_assert_uint_eq(d[3], 0xFF);

    /* Ports no device holds: 0xFF, writes go nowhere; 0xFFFF + k past the 16 bits */
    static const uint16_t nothing[] = {0x0, 0x60, 0x3F7, 0x400, 0x5FF, 0x606, 0xCF8, 0xFFFF};
    for (size_t i = 0; i < sizeof nothing / sizeof nothing[0]; i++) {
        uint8_t x[2] = {0, 0};
        vmm_bus_pio(&b, nothing[i], x, nothing[i] == 0x3F7 || nothing[i] == 0x5FF ? 1 : 2, 0);
        ck_assert_uint_eq(x[0], 0xFF);
        x[0] = 0xFE;
        vmm_bus_pio(&b, nothing[i], x, 1, 1);
    }
    ck_assert_uint_eq(uart.calls, 4);
    ck_assert_uint_eq(power_events[VMM_POWER_OFF] + power_events[VMM_POWER_RESET], 0);
    ck_assert_uint_eq(nlogged, 0);
}
END_TEST

START_TEST(power_controls)
{
    struct vmm_bus b;
    struct vmm_power p;
    struct recorder uart;
    pio_bus(&b, &p, &uart);

    /* PM1 status and enable read 0; control reads SCI_EN (ACPI mode) */
    uint8_t d[8];
    memset(d, 0x55, sizeof d);
    vmm_bus_pio(&b, VMM_PM1_EVT_PORT, d, 4, 0);
    vmm_bus_pio(&b, VMM_PM1_CNT_PORT, d + 4, 2, 0);
    vmm_bus_pio(&b, VMM_PM1_CNT_PORT + 2, d + 6, 1, 0);
    static const uint8_t want[7] = {0, 0, 0, 0, 0x01, 0x00, 0xFF};
    ck_assert_mem_eq(d, want, 7);
    /* i8042: the command port reads 0 (input buffer empty); the data port is not there */
    vmm_bus_pio(&b, VMM_I8042_CMD, d, 1, 0);
    vmm_bus_pio(&b, VMM_I8042_DATA, d + 1, 1, 0);
    ck_assert_uint_eq(d[0], 0x00);
    ck_assert_uint_eq(d[1], 0xFF);

    /* Writes that are no power event */
    static const struct { uint16_t port; uint8_t v; } none[] = {
        {VMM_PM1_EVT_PORT, 0xFF}, {VMM_PM1_EVT_PORT + 1, 0x20}, {VMM_PM1_CNT_PORT, 0x20},
        {VMM_PM1_CNT_PORT, 0xFF}, {VMM_PM1_CNT_PORT + 1, 0x1F}, {VMM_PM1_CNT_PORT + 1, 0xDF},
        {VMM_I8042_CMD, 0xFD}, {VMM_I8042_CMD, 0xFF}, {VMM_I8042_DATA, 0xFE},
    };
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        uint8_t v = none[i].v;
        vmm_bus_pio(&b, none[i].port, &v, 1, 1);
    }
    ck_assert_uint_eq(power_events[VMM_POWER_OFF] + power_events[VMM_POWER_RESET], 0);

    /* SLP_EN (bit 13 of PM1 control): off, whatever the sleep type; a 16-bit write too */
    uint8_t v = 0x20;
    vmm_bus_pio(&b, VMM_PM1_CNT_PORT + 1, &v, 1, 1);
    ck_assert_uint_eq(power_events[VMM_POWER_OFF], 1);
    uint8_t w[2] = {0x01, 0x3C};
    vmm_bus_pio(&b, VMM_PM1_CNT_PORT, w, 2, 1);
    ck_assert_uint_eq(power_events[VMM_POWER_OFF], 2);
    /* 0xFE to the i8042: the reset line */
    v = 0xFE;
    vmm_bus_pio(&b, VMM_I8042_CMD, &v, 1, 1);
    ck_assert_uint_eq(power_events[VMM_POWER_RESET], 1);
    ck_assert_uint_eq(power_events[VMM_POWER_OFF], 2);
    ck_assert_uint_eq(uart.calls, 0);
}
END_TEST

START_TEST(mmio_dispatch)
{
    struct vmm_bus b;
    struct recorder dev[2];
    memset(dev, 0, sizeof dev);
    vmm_bus_init(&b);
    nlogged = 0;
    for (unsigned i = 0; i < 2; i++)
        ck_assert_int_eq(vmm_bus_add(&b, VMM_MMIO_BASE + i * VMM_MMIO_SIZE, VMM_MMIO_SIZE, record,
                                     &dev[i]), 0);

    /* Inside a window: the device gets the offset and the length */
    uint8_t d[16];
    memset(d, 0x11, sizeof d);
    vmm_bus_mmio(&b, VMM_MMIO_BASE + 0x70, d, 4, 1);
    vmm_bus_mmio(&b, VMM_MMIO_BASE + VMM_MMIO_SIZE + 0xFFC, d, 4, 0);
    vmm_bus_mmio(&b, VMM_MMIO_BASE + 0xFF8, d + 8, 8, 0);
    ck_assert_uint_eq(dev[0].calls, 2);
    ck_assert_uint_eq(dev[1].calls, 1);
    ck_assert_uint_eq(dev[0].off[0], 0x70);
    ck_assert_uint_eq(dev[0].len[0], 4);
    ck_assert_int_eq(dev[0].write[0], 1);
    ck_assert_uint_eq(dev[1].off[0], 0xFFC);
    ck_assert_uint_eq(d[0], (uint8_t)(0xA0 + 0xFFC));
    ck_assert_uint_eq(dev[0].off[1], 0xFF8);
    ck_assert_uint_eq(dev[0].len[1], 8);
    /* More than 8 bytes: 8 of them */
    vmm_bus_mmio(&b, VMM_MMIO_BASE + 0x100, d, 16, 0);
    ck_assert_uint_eq(dev[0].len[2], 8);
    ck_assert_uint_eq(nlogged, 0);

    /* Across a window's end, past the last window, below the first: nothing there,
     * reads give zeroes, logged once */
    memset(d, 0x11, sizeof d);
    vmm_bus_mmio(&b, VMM_MMIO_BASE + 0xFFE, d, 4, 0);
    ck_assert_uint_eq(nlogged, 1);
    ck_assert_str_eq(logged[0], "guest read of 4 bytes at 0xd0000ffe: nothing there "
                                "(reads 0; logged once)");
    static const uint8_t zero[8];
    ck_assert_mem_eq(d, zero, 4);
    ck_assert_uint_eq(d[4], 0x11);
    memset(d, 0x11, sizeof d);
    vmm_bus_mmio(&b, VMM_MMIO_BASE + 2 * VMM_MMIO_SIZE, d, 16, 0);
    ck_assert_mem_eq(d, zero, 8);
    ck_assert_uint_eq(d[8], 0x11);
    vmm_bus_mmio(&b, VMM_MMIO_BASE - 4, d, 4, 1);
    vmm_bus_mmio(&b, 0, d, 1, 0);
    ck_assert_uint_eq(nlogged, 1);
    ck_assert_uint_eq(dev[0].calls + dev[1].calls, 4);

    /* A new bus logs again, a write this time */
    vmm_bus_init(&b);
    vmm_bus_mmio(&b, 0xFEE00300, d, 4, 1);
    ck_assert_uint_eq(nlogged, 2);
    ck_assert_str_eq(logged[1], "guest write of 4 bytes at 0xfee00300: nothing there "
                                "(ignored; logged once)");
}
END_TEST

START_TEST(bus_add_refuses)
{
    struct vmm_bus b;
    struct recorder r;
    vmm_bus_init(&b);
    ck_assert_int_eq(vmm_bus_add(&b, 0x100, 0, record, &r), -1);
    ck_assert_int_eq(vmm_bus_add(&b, UINT64_MAX - 1, 4, record, &r), -1);
    ck_assert_int_eq(vmm_bus_add(&b, 0x100, 0x10, record, &r), 0);
    ck_assert_int_eq(vmm_bus_add(&b, 0x10F, 1, record, &r), -1);
    ck_assert_int_eq(vmm_bus_add(&b, 0xF8, 9, record, &r), -1);
    ck_assert_int_eq(vmm_bus_add(&b, 0x80, 0x100, record, &r), -1);
    ck_assert_int_eq(vmm_bus_add(&b, 0xF0, 0x10, record, &r), 0);
    ck_assert_int_eq(vmm_bus_add(&b, 0x110, 1, record, &r), 0);
    for (unsigned i = 3; i < VMM_BUS_MAX_RANGES; i++)
        ck_assert_int_eq(vmm_bus_add(&b, 0x1000 + i, 1, record, &r), 0);
    ck_assert_int_eq(vmm_bus_add(&b, 0x2000, 1, record, &r), -1);
}
END_TEST

/* ---- The monitor -------------------------------------------------------------------- */

/*
 * vdisk-vmm's monitor is the library's (vdisk/monitor.h) over the drive
 * vmm_loop_setup gives it: here a real CD-ROM device and virtio-scsi model,
 * as devices.c makes them, with the mutex a struct vmm_mmio_dev has.
 */
struct drive {
    vdisk_dev *dev;
    vdisk_virtio *model;
    pthread_mutex_t lock;
    struct vmm_monitor_drive d;
};

static void drive_open(struct drive *t)
{
    memset(t, 0, sizeof *t);
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "raw"), 0);
    ck_assert_int_eq(vdisk_open_cdrom(&t->dev, NULL, o), 0);
    vdisk_options_free(o);
    struct vdisk_virtio_scsi_params p = {.struct_size = sizeof p, .num_queues = 1};
    ck_assert_int_eq(vdisk_virtio_scsi_cdrom_new(&t->model, t->dev, &p), 0);
    pthread_mutex_init(&t->lock, NULL);
    t->d = (struct vmm_monitor_drive){t->model, t->dev, &t->lock};
    lock_watched = &t->lock;
}

static void drive_close(struct drive *t)
{
    /* Nothing left the drive's lock taken. */
    ck_assert_int_eq(pthread_mutex_trylock(&t->lock), 0);
    pthread_mutex_unlock(&t->lock);
    lock_watched = NULL;
    vdisk_virtio_free(t->model);
    vdisk_close(t->dev);
    pthread_mutex_destroy(&t->lock);
}

/* An ISO 9660 image of BLOCKS sectors with only its volume descriptors
 * (the primary one, volume id ID, and the terminator), at PATH. */
static void make_iso(const char *path, const char *id, unsigned blocks)
{
    size_t len = (size_t)blocks * 2048;
    uint8_t *img = calloc(1, len);
    ck_assert_ptr_nonnull(img);
    uint8_t *pvd = img + 16 * 2048, *end = img + 17 * 2048;
    pvd[0] = 1;
    memcpy(pvd + 1, "CD001", 5);
    pvd[6] = 1;
    memset(pvd + 40, ' ', 32);
    memcpy(pvd + 40, id, strlen(id));
    for (unsigned i = 0; i < 4; i++) { /* both-endian volume space size */
        pvd[80 + i] = (uint8_t)(blocks >> (8 * i));
        pvd[87 - i] = (uint8_t)(blocks >> (8 * i));
    }
    end[0] = 255;
    memcpy(end + 1, "CD001", 5);
    end[6] = 1;
    write_file(path, img, len);
    free(img);
}

static const char *run_cmd(struct vmm_monitor *m, const char *line)
{
    static char answer[4096];
    memset(answer, 'x', sizeof answer);
    vmm_monitor_run(m, line, answer, sizeof answer);
    return answer;
}

/* The commands (the library's grammar and answers), their log lines, and
 * the drive's lock held around them. */
START_TEST(monitor_commands)
{
    const char *a = scratch("a.iso"), *b = scratch("b.iso"), *dir = scratch("adir");
    make_iso(a, "FIRSTCD", 20);
    make_iso(b, "SECONDCD", 24);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    struct drive t;
    drive_open(&t);
    struct vmm_monitor *m;
    nlogged = nlogged_locked = 0;
    ck_assert_int_eq(vmm_monitor_new(&m, NULL, &t.d), 0);
    ck_assert_uint_eq(nlogged, 0);

    ck_assert_str_eq(run_cmd(m, "help"), "commands: change PATH | eject | info | help\n");
    ck_assert_str_eq(run_cmd(m, "info"), "medium: none, 0 changes\n");
    ck_assert_str_eq(run_cmd(m, fmt("change %s", a)), "ok\n");
    ck_assert_str_eq(run_cmd(m, "\t info \r"),
                     "medium: loaded, 20 blocks of 2048 bytes, volume id 'FIRSTCD', 1 changes\n");
    ck_assert_str_eq(run_cmd(m, fmt("  change   %s \t\r", b)), "ok\n");
    ck_assert_str_eq(run_cmd(m, "info"),
                     "medium: loaded, 24 blocks of 2048 bytes, volume id 'SECONDCD', 3 changes\n");
    ck_assert_str_eq(run_cmd(m, "eject"), "ok\n");
    ck_assert_str_eq(run_cmd(m, "info"), "medium: none, 4 changes\n");
    ck_assert_uint_eq(nlogged, 3);
    ck_assert_str_eq(logged[0], fmt("cdrom: medium changed to %s", a));
    ck_assert_str_eq(logged[1], fmt("cdrom: medium changed to %s", b));
    ck_assert_str_eq(logged[2], "cdrom: medium ejected");
    ck_assert_uint_eq(nlogged_locked, 3); /* each under the drive's lock */

    /* Mistakes: answered, the drive left as it was */
    nlogged = nlogged_locked = 0;
    ck_assert_str_eq(run_cmd(m, "change"), "error: change: no path\n");
    ck_assert_str_eq(run_cmd(m, "change \t "), "error: change: no path\n");
    ck_assert_str_eq(run_cmd(m, fmt("change %s/missing.iso", dir)),
                     fmt("error: %s/missing.iso: No such file or directory\n", dir));
    ck_assert_str_eq(run_cmd(m, fmt("change %s", dir)),
                     fmt("error: %s: not a regular file or block device\n", dir));
    ck_assert_str_eq(run_cmd(m, "changes x"), "error: unknown command (try 'help')\n");
    ck_assert_str_eq(run_cmd(m, "INFO"), "error: unknown command (try 'help')\n");
    ck_assert_str_eq(run_cmd(m, "eject now"), "error: unknown command (try 'help')\n");
    ck_assert_str_eq(run_cmd(m, "quit"), "error: unknown command (try 'help')\n");
    ck_assert_str_eq(run_cmd(m, ""), "");
    ck_assert_str_eq(run_cmd(m, " \t\r"), "");
    ck_assert_str_eq(run_cmd(m, "info"), "medium: none, 4 changes\n");
    ck_assert_uint_eq(nlogged, 0);

    /* SIGUSR1's eject (loop.c) of a drive already empty */
    ck_assert_str_eq(run_cmd(m, "eject"), "ok\n");
    ck_assert_uint_eq(nlogged, 1);
    ck_assert_str_eq(logged[0], "cdrom: medium ejected");
    vmm_monitor_free(m);
    vmm_monitor_free(NULL);
    drive_close(&t);

    /* No drive (--monitor without --cdrom) */
    struct vmm_monitor_drive none = {NULL, NULL, NULL};
    ck_assert_int_eq(vmm_monitor_new(&m, NULL, &none), 0);
    ck_assert_str_eq(run_cmd(m, "help"), "commands: change PATH | eject | info | help\n");
    ck_assert_str_eq(run_cmd(m, "info"), "error: no CD-ROM is served\n");
    ck_assert_str_eq(run_cmd(m, "eject"), "error: no CD-ROM is served\n");
    ck_assert_str_eq(run_cmd(m, fmt("change %s", a)), "error: no CD-ROM is served\n");
    vmm_monitor_free(m);
}
END_TEST

/* Runs the monitor until FD has something to read (or about 2 s pass), or,
 * with FD -1, until the monitor has had nothing to do for 50 ms. */
static void pump(struct vmm_monitor *m, int fd)
{
    for (int idle = 0; idle < 100;) {
        struct pollfd p[2] = {{.fd = vmm_monitor_fd(m), .events = POLLIN},
                              {.fd = fd, .events = POLLIN}};
        int n = poll(p, fd >= 0 ? 2 : 1, fd >= 0 ? 20 : 50);
        ck_assert_int_ge(n, 0);
        if (p[0].revents & POLLIN)
            vmm_monitor_dispatch(m);
        else if (fd >= 0 && p[1].revents)
            return;
        else if (fd < 0)
            return;
        else
            idle++;
    }
}

static int connect_to(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* What the monitor sends on FD until LINES lines (or the end). */
static char *answers(struct vmm_monitor *m, int fd, unsigned lines)
{
    static char buf[8192];
    size_t len = 0;
    unsigned got = 0;
    for (int tries = 0; got < lines && len < sizeof buf - 1 && tries < 20; tries++) {
        pump(m, fd);
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            got += buf[len + (size_t)i] == '\n';
        len += (size_t)n;
    }
    buf[len] = 0;
    return buf;
}

/* The socket: the library's, made by vdisk-vmm's monitor over the drive. */
START_TEST(monitor_socket)
{
    const char *path = scratch("mon.sock"), *a = scratch("s.iso");
    make_iso(a, "SOCKCD", 18);
    struct drive t;
    drive_open(&t);
    struct vmm_monitor *m;
    write_file(path, "x", 1); /* not a socket: not replaced */
    nlogged = 0;
    ck_assert_int_eq(vmm_monitor_new(&m, path, &t.d), -1);
    ck_assert_ptr_null(m);
    ck_assert_uint_eq(nlogged, 1);
    ck_assert_str_eq(logged[0],
                     fmt("--monitor: vdisk_monitor_listen: '%s' exists and is not a socket", path));
    unlink(path);
    ck_assert_int_eq(vmm_monitor_new(&m, path, &t.d), 0);
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_uint_eq(st.st_mode & 077, 0);

    /* Commands, several in one write, one split over two */
    int c = connect_to(path);
    char *cmds = fmt("info\nchange %s\r\ninfo\nbogus\n\nin", a);
    ck_assert_int_eq(send(c, cmds, strlen(cmds), 0), (ssize_t)strlen(cmds));
    ck_assert_str_eq(answers(m, c, 4), "medium: none, 0 changes\nok\n"
                     "medium: loaded, 18 blocks of 2048 bytes, volume id 'SOCKCD', 1 changes\n"
                     "error: unknown command (try 'help')\n");
    ck_assert_int_eq(send(c, "fo\neject\ninfo\n", 14, 0), 14);
    ck_assert_str_eq(answers(m, c, 3),
                     "medium: loaded, 18 blocks of 2048 bytes, volume id 'SOCKCD', 1 changes\n"
                     "ok\nmedium: none, 2 changes\n");

    /* One client at a time: a new one replaces the one before */
    int c2 = connect_to(path);
    ck_assert_int_eq(send(c2, "info\n", 5, 0), 5);
    ck_assert_str_eq(answers(m, c2, 1), "medium: none, 2 changes\n");
    ck_assert_str_eq(answers(m, c, 1), ""); /* closed */
    close(c);

    /* A line of 4095 bytes or more: the answer, then the connection is closed */
    static char line[5000];
    memset(line, 'a', sizeof line);
    ck_assert_int_eq(send(c2, line, sizeof line, 0), (ssize_t)sizeof line);
    ck_assert_str_eq(answers(m, c2, 2), "error: line too long\n");
    close(c2);

    /* A last line without its newline is run at the end */
    int c3 = connect_to(path);
    char *last = fmt("change %s", a);
    ck_assert_int_eq(send(c3, last, strlen(last), 0), (ssize_t)strlen(last));
    shutdown(c3, SHUT_WR);
    ck_assert_str_eq(answers(m, c3, 1), "ok\n");
    ck_assert_int_eq(lstat(path, &st), 0);

    vmm_monitor_free(m);
    ck_assert_int_eq(lstat(path, &st), -1);
    close(c3);
    drive_close(&t);
}
END_TEST

START_TEST(monitor_stale_socket)
{
    const char *path = scratch("stale.sock");
    /* A socket file nobody listens on, as a killed vdisk-vmm leaves */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    close(s);
    struct drive t;
    drive_open(&t);
    struct vmm_monitor *m;
    ck_assert_int_eq(vmm_monitor_new(&m, path, &t.d), 0);
    int c = connect_to(path);
    ck_assert_int_eq(send(c, "info\n", 5, 0), 5);
    ck_assert_str_eq(answers(m, c, 1), "medium: none, 0 changes\n");
    close(c);
    /* A live one is not replaced */
    struct vmm_monitor *m2;
    nlogged = 0;
    ck_assert_int_eq(vmm_monitor_new(&m2, path, &t.d), -1);
    ck_assert_str_eq(logged[0],
                     fmt("--monitor: vdisk_monitor_listen: '%s' is in use by another server", path));
    vmm_monitor_free(m);
    drive_close(&t);
}
END_TEST

static Suite *vmm_suite(void)
{
    Suite *s = suite_create("vmm");
    TCase *tc = tcase_create("bus");
    tcase_add_test(tc, pio_dispatch);
    tcase_add_test(tc, power_controls);
    tcase_add_test(tc, mmio_dispatch);
    tcase_add_test(tc, bus_add_refuses);
    suite_add_tcase(s, tc);
    tc = tcase_create("monitor");
    tcase_add_test(tc, monitor_commands);
    tcase_add_test(tc, monitor_socket);
    tcase_add_test(tc, monitor_stale_socket);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(vmm_suite());
}
