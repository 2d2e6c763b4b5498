/* SPDX-License-Identifier: MIT */
/*
 * tests/vmm/unit.c (vmm-unit): parts of vdisk-vmm that need neither KVM
 * nor libvdisk, compiled in from tools/vmm/: the device bus (bus.c: port
 * I/O byte by byte to the device holding each port, 0xFF from no device;
 * MMIO to the device holding the whole access, zeroes and one log line
 * from nowhere), the power and reset controls on it (power.c: PM1 and the
 * i8042) and the monitor (monitor.c: its command grammar and answers, and
 * its socket: connections, the ninth refused, long lines, the file's mode
 * and removal).  Runs where /dev/kvm is missing, unlike the other vmm-*
 * tests.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "monitor.h"
#include "vmm.h"

/* vdisk-vmm's log, kept here to be compared. */
static char logged[8][256];
static unsigned nlogged;

void vmm_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (nlogged < 8)
        vsnprintf(logged[nlogged], sizeof logged[0], fmt, ap);
    nlogged++;
    va_end(ap);
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

/* The machine behind the monitor: a drive whose medium the commands change. */
struct drive {
    char medium[256];
    unsigned changes, infos;
    char last_iso[256];
    int last_was_eject;
};

static void drive_change(void *opaque, const char *iso, char *answer, size_t len)
{
    struct drive *d = opaque;
    d->changes++;
    d->last_was_eject = !iso;
    snprintf(d->last_iso, sizeof d->last_iso, "%s", iso ? iso : "");
    if (iso && strcmp(iso, "bad.iso") == 0) {
        snprintf(answer, len, "error: bad.iso: not an ISO");
        d->medium[0] = 0;
        return;
    }
    snprintf(d->medium, sizeof d->medium, "%s", iso ? iso : "");
    snprintf(answer, len, "ok");
}

static void drive_info(void *opaque, char *answer, size_t len)
{
    struct drive *d = opaque;
    d->infos++;
    snprintf(answer, len, "ok medium=%s", d->medium[0] ? d->medium : "none");
}

static const struct vmm_monitor_ops drive_ops = { .change = drive_change, .info = drive_info };

struct grammar_case {
    const char *line;
    const char *answer;
    int change;         /* 1: a change with ISO, 2: an eject, 0: no change */
    const char *iso;
};

static const struct grammar_case grammar[] = {
    {"info", "ok medium=none", 0, NULL},
    {"change a.iso", "ok", 1, "a.iso"},
    {"info", "ok medium=a.iso", 0, NULL},
    {"  change \t  b c.iso \t\r", "ok", 1, "b c.iso"},
    {"change\tx.iso", "ok", 1, "x.iso"},
    {"\t info  \r", "ok medium=x.iso", 0, NULL},
    {"change bad.iso", "error: bad.iso: not an ISO", 1, "bad.iso"},
    {"eject", "ok", 2, NULL},
    {" eject\r", "ok", 2, NULL},
    {"change", "error: change needs an ISO file", 0, NULL},
    {"change \t ", "error: change needs an ISO file", 0, NULL},
    {"", "error: empty command (change ISO, eject, info)", 0, NULL},
    {" \t\r", "error: empty command (change ISO, eject, info)", 0, NULL},
    {"changes x", "error: unknown command (change ISO, eject, info)", 0, NULL},
    {"INFO", "error: unknown command (change ISO, eject, info)", 0, NULL},
    {"eject now", "error: unknown command (change ISO, eject, info)", 0, NULL},
    {"info x", "error: unknown command (change ISO, eject, info)", 0, NULL},
    {"quit", "error: unknown command (change ISO, eject, info)", 0, NULL},
};

START_TEST(monitor_grammar)
{
    struct drive drv;
    memset(&drv, 0, sizeof drv);
    for (size_t i = 0; i < sizeof grammar / sizeof grammar[0]; i++) {
        const struct grammar_case *c = &grammar[i];
        char line[256], answer[4096];
        snprintf(line, sizeof line, "%s", c->line);
        unsigned changes = drv.changes;
        vmm_monitor_command(&drive_ops, &drv, line, answer, sizeof answer);
        ck_assert_msg(strcmp(answer, c->answer) == 0, "'%s': '%s', expected '%s'", c->line,
                      answer, c->answer);
        ck_assert_uint_eq(drv.changes, changes + (c->change ? 1u : 0u));
        if (c->change == 1) {
            ck_assert_int_eq(drv.last_was_eject, 0);
            ck_assert_str_eq(drv.last_iso, c->iso);
        } else if (c->change == 2) {
            ck_assert_int_eq(drv.last_was_eject, 1);
        }
    }
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

START_TEST(monitor_socket)
{
    const char *path = scratch("mon.sock");
    struct drive drv;
    memset(&drv, 0, sizeof drv);
    struct vmm_monitor *m;
    write_file(path, "x", 1); /* not a socket: not replaced */
    nlogged = 0;
    ck_assert_int_eq(vmm_monitor_new(&m, path, &drive_ops, &drv), -1);
    ck_assert_ptr_null(m);
    ck_assert_uint_eq(nlogged, 1);
    ck_assert_str_eq(logged[0], fmt("--monitor %s: Address already in use", path));
    unlink(path);
    ck_assert_int_eq(vmm_monitor_new(&m, path, &drive_ops, &drv), 0);
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_uint_eq(st.st_mode & 077, 0);

    /* Commands, several in one write, one split over two */
    int c = connect_to(path);
    const char *cmds = "info\nchange a.iso\r\ninfo\nbogus\n\nin";
    ck_assert_int_eq(send(c, cmds, strlen(cmds), 0), (ssize_t)strlen(cmds));
    ck_assert_str_eq(answers(m, c, 5), "ok medium=none\nok\nok medium=a.iso\n"
                     "error: unknown command (change ISO, eject, info)\n"
                     "error: empty command (change ISO, eject, info)\n");
    ck_assert_int_eq(send(c, "fo\neject\ninfo\n", 14, 0), 14);
    ck_assert_str_eq(answers(m, c, 3), "ok medium=a.iso\nok\nok medium=none\n");

    /* Eight connections; the ninth is told so and closed */
    int more[7];
    for (unsigned i = 0; i < 7; i++) {
        more[i] = connect_to(path);
        ck_assert_int_eq(send(more[i], "info\n", 5, 0), 5);
        ck_assert_str_eq(answers(m, more[i], 1), "ok medium=none\n");
    }
    int ninth = connect_to(path);
    ck_assert_str_eq(answers(m, ninth, 2), "error: too many monitor connections\n");
    close(ninth);
    close(more[0]);
    pump(m, -1);
    int again = connect_to(path);
    ck_assert_int_eq(send(again, "info\n", 5, 0), 5);
    ck_assert_str_eq(answers(m, again, 1), "ok medium=none\n");

    /* A line of 4095 bytes or more: the answer, then the connection is closed */
    static char line[5000];
    memset(line, 'a', sizeof line);
    ck_assert_int_eq(send(again, line, sizeof line, 0), (ssize_t)sizeof line);
    ck_assert_str_eq(answers(m, again, 2), "error: line too long\n");
    close(again);
    /* The others go on */
    ck_assert_int_eq(send(c, "change b.iso\n", 13, 0), 13);
    ck_assert_str_eq(answers(m, c, 1), "ok\n");
    ck_assert_str_eq(drv.medium, "b.iso");

    vmm_monitor_free(m);
    ck_assert_int_eq(lstat(path, &st), -1);
    ck_assert_int_eq(recv(c, line, 1, 0), 0); /* closed */
    close(c);
    for (unsigned i = 1; i < 7; i++)
        close(more[i]);

    /* A path too long for a Unix socket */
    char longpath[200];
    memset(longpath, 'p', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = 0;
    nlogged = 0;
    ck_assert_int_eq(vmm_monitor_new(&m, longpath, &drive_ops, &drv), -1);
    ck_assert_str_eq(logged[0], fmt("--monitor %s: path too long", longpath));
    vmm_monitor_free(NULL);
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
    struct drive drv;
    memset(&drv, 0, sizeof drv);
    struct vmm_monitor *m;
    ck_assert_int_eq(vmm_monitor_new(&m, path, &drive_ops, &drv), 0);
    int c = connect_to(path);
    ck_assert_int_eq(send(c, "info\n", 5, 0), 5);
    ck_assert_str_eq(answers(m, c, 1), "ok medium=none\n");
    close(c);
    vmm_monitor_free(m);
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
    tcase_add_test(tc, monitor_grammar);
    tcase_add_test(tc, monitor_socket);
    tcase_add_test(tc, monitor_stale_socket);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(vmm_suite());
}
