/* SPDX-License-Identifier: MIT */
/*
 * tests/nbd/hostile.c: the NBD server of vdisk/nbd.h against a client
 * written here byte by byte: the handshake's rules (fixed newstyle only,
 * option magic, lengths, unknown options and exports), every request's
 * checks (magic, command, flags, range, lengths, read-only) with the exact
 * error values of the spec, structured replies (data, holes, errors, block
 * status), and clients that misbehave over time: a handshake or a request
 * that stalls half-way (dropped at its deadline), a client that never
 * reads its replies (its buffers stay bounded, then it is dropped).  The
 * server is driven from this thread (vdisk_nbd_process), so that its
 * state can be looked at between steps; one case uses the helper thread
 * over TCP.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <vdisk/vdisk.h>

#include "endian.h"
#include "fault.h"
#include "harness.h"
#include "nbd/nbd_internal.h"

#define DISK_SIZE (4u << 20)

static vdisk_dev *dev;
static unsigned max_clients; /* server()'s, 0: the default */
static char lines[64][256];
static unsigned nlines;

static void logger(void *opaque, const char *line)
{
    (void)opaque;
    if (nlines < 64)
        snprintf(lines[nlines++], sizeof lines[0], "%s", line);
}

static bool logged(const char *needle)
{
    for (unsigned i = 0; i < nlines; i++)
        if (strstr(lines[i], needle))
            return true;
    return false;
}

static void setup(void)
{
    /* 1 MiB of 0x5a, 1 MiB of zeroes (a hole), 2 MiB of byte i & 0xff. */
    const char *img = scratch("disk.raw");
    uint8_t *b = calloc(1, DISK_SIZE);
    memset(b, 0x5a, 1u << 20);
    for (size_t i = 2u << 20; i < DISK_SIZE; i++)
        b[i] = (uint8_t)i;
    write_file(img, b, 1u << 20);
    FILE *f = fopen(img, "r+");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 2l << 20, SEEK_SET), 0);
    ck_assert_uint_eq(fwrite(b + (2u << 20), 1, 2u << 20, f), 2u << 20);
    fclose(f);
    free(b);
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "raw"), 0);
    ck_assert_msg(vdisk_open(&dev, img, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    nlines = 0;
}

static void teardown(void)
{
    vdisk_close(dev);
}

static int add_client(vdisk_nbd *h);

/* A handle with no listener, and one client over a socketpair: returns the
 * client's end (non-blocking). */
static vdisk_nbd *server(unsigned flags, unsigned hs_ms, unsigned req_ms, int *client)
{
    struct vdisk_nbd_params p = {.struct_size = sizeof p, .flags = flags, .export_name = "disk",
                                 .description = "test disk", .handshake_timeout_ms = hs_ms,
                                 .request_timeout_ms = req_ms, .log = logger,
                                 .max_clients = max_clients};
    vdisk_nbd *h;
    ck_assert_msg(vdisk_nbd_new(&h, dev, -1, &p) == 0, "%s", vdisk_get_error());
    *client = add_client(h);
    return h;
}

/* Another client of H over a socketpair: its end (non-blocking). */
static int add_client(vdisk_nbd *h)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert_msg(vdisk_nbd_add_connection(h, sv[1]) == 0, "%s", vdisk_get_error());
    return sv[0];
}

static void pump(vdisk_nbd *h, int ms)
{
    struct pollfd p = {.fd = vdisk_nbd_get_fd(h), .events = POLLIN};
    if (poll(&p, 1, ms) > 0)
        ck_assert_int_ge(vdisk_nbd_process(h), 0);
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* Reads N bytes, serving meanwhile; false at the end of the connection. */
static bool xread(vdisk_nbd *h, int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    uint64_t end = now_ms() + 5000;
    while (n) {
        ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EINTR))
            return false;
        ck_assert_msg(now_ms() < end, "no reply within 5 s");
        pump(h, 10);
    }
    return true;
}

static void xwrite(vdisk_nbd *h, int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    uint64_t end = now_ms() + 5000;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        ck_assert_msg(w < 0 && (errno == EAGAIN || errno == EINTR), "send: %s", strerror(errno));
        ck_assert_msg(now_ms() < end, "could not send within 5 s");
        pump(h, 10);
    }
}

/* The server closes the connection within MS (its replies read and dropped). */
static void expect_closed(vdisk_nbd *h, int fd, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    for (;;) {
        uint8_t b[4096];
        ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            break;
        ck_assert_msg(now_ms() < end, "the connection is still open after %u ms", ms);
        pump(h, 10);
    }
    ck_assert_uint_eq(vdisk_nbd_clients(h), 0);
}

static void send_flags(vdisk_nbd *h, int fd, uint32_t flags)
{
    uint8_t g[18], f[4];
    ck_assert(xread(h, fd, g, sizeof g));
    ck_assert_uint_eq(be64_load(g), NBD_MAGIC);
    ck_assert_uint_eq(be64_load(g + 8), NBD_OPTS_MAGIC);
    ck_assert_uint_eq(be16_load(g + 16), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    be32_store(f, flags);
    xwrite(h, fd, f, 4);
}

static void send_opt(vdisk_nbd *h, int fd, uint32_t opt, const void *data, uint32_t len)
{
    uint8_t hd[16];
    be64_store(hd, NBD_OPTS_MAGIC);
    be32_store(hd + 8, opt);
    be32_store(hd + 12, len);
    xwrite(h, fd, hd, 16);
    if (len)
        xwrite(h, fd, data, len);
}

/* One option reply: its type, its data in BUF (at most CAP bytes). */
static uint32_t opt_reply(vdisk_nbd *h, int fd, uint32_t opt, uint8_t *buf, size_t cap,
                          uint32_t *len)
{
    uint8_t r[20];
    ck_assert(xread(h, fd, r, 20));
    ck_assert_uint_eq(be64_load(r), NBD_REP_MAGIC);
    ck_assert_uint_eq(be32_load(r + 8), opt);
    *len = be32_load(r + 16);
    ck_assert_uint_le(*len, cap);
    if (*len)
        ck_assert(xread(h, fd, buf, *len));
    return be32_load(r + 12);
}

/* The message of go()'s last error reply. */
static char go_msg[4200];

/* NBD_OPT_GO on NAME: the transmission flags, or the error reply's type. */
static uint32_t go(vdisk_nbd *h, int fd, const char *name, uint16_t *tflags)
{
    uint8_t d[64], buf[4200];
    size_t n = strlen(name);
    be32_store(d, (uint32_t)n);
    memcpy(d + 4, name, n);
    be16_store(d + 4 + n, 0);
    send_opt(h, fd, NBD_OPT_GO, d, (uint32_t)(4 + n + 2));
    for (;;) {
        uint32_t len, t = opt_reply(h, fd, NBD_OPT_GO, buf, sizeof buf, &len);
        if (t == NBD_REP_ACK)
            return 0;
        if (t != NBD_REP_INFO) {
            memcpy(go_msg, buf, len);
            go_msg[len] = 0;
            return t;
        }
        if (be16_load(buf) == NBD_INFO_EXPORT) {
            ck_assert_uint_eq(len, 12);
            ck_assert_uint_eq(be64_load(buf + 2), (uint64_t)vdisk_get_size(dev));
            *tflags = be16_load(buf + 10);
        }
    }
}

/* A client in the transmission phase (structured replies when asked,
 * base:allocation selected with them). */
static void handshake(vdisk_nbd *h, int *fd, bool structured);

static vdisk_nbd *connected(unsigned flags, unsigned req_ms, bool structured, int *fd)
{
    vdisk_nbd *h = server(flags, 0, req_ms, fd);
    handshake(h, fd, structured);
    return h;
}

/* FD's client through the handshake (as connected() says). */
static void handshake(vdisk_nbd *h, int *fd, bool structured)
{
    send_flags(h, *fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    uint8_t buf[256];
    uint32_t len;
    if (structured) {
        send_opt(h, *fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
        ck_assert_uint_eq(opt_reply(h, *fd, NBD_OPT_STRUCTURED_REPLY, buf, sizeof buf, &len),
                          NBD_REP_ACK);
        uint8_t d[64];
        be32_store(d, 4);
        memcpy(d + 4, "disk", 4);
        be32_store(d + 8, 1);
        be32_store(d + 12, 15);
        memcpy(d + 16, "base:allocation", 15);
        send_opt(h, *fd, NBD_OPT_SET_META_CONTEXT, d, 31);
        ck_assert_uint_eq(opt_reply(h, *fd, NBD_OPT_SET_META_CONTEXT, buf, sizeof buf, &len),
                          NBD_REP_META_CONTEXT);
        ck_assert_uint_eq(be32_load(buf), NBD_CTX_BASE_ALLOCATION);
        ck_assert_uint_eq(opt_reply(h, *fd, NBD_OPT_SET_META_CONTEXT, buf, sizeof buf, &len),
                          NBD_REP_ACK);
    }
    uint16_t tf = 0;
    ck_assert_uint_eq(go(h, *fd, "disk", &tf), 0);
    ck_assert(tf & NBD_FLAG_HAS_FLAGS);
}

static void request(vdisk_nbd *h, int fd, uint16_t type, uint16_t flags, uint64_t cookie,
                    uint64_t off, uint32_t len)
{
    uint8_t r[28];
    be32_store(r, NBD_REQUEST_MAGIC);
    be16_store(r + 4, flags);
    be16_store(r + 6, type);
    be64_store(r + 8, cookie);
    be64_store(r + 16, off);
    be32_store(r + 24, len);
    xwrite(h, fd, r, 28);
}

/* A simple reply: its error; checks the cookie. */
static uint32_t simple_reply(vdisk_nbd *h, int fd, uint64_t cookie)
{
    uint8_t r[16];
    ck_assert(xread(h, fd, r, 16));
    ck_assert_uint_eq(be32_load(r), NBD_SIMPLE_REPLY_MAGIC);
    ck_assert_uint_eq(be64_load(r + 8), cookie);
    return be32_load(r + 4);
}

START_TEST(handshake_rules)
{
    int fd;
    uint8_t buf[4200];
    uint32_t len;
    /* A client that is not fixed newstyle (plain newstyle, or oldstyle's
     * expectations) is refused. */
    vdisk_nbd *h = server(0, 0, 0, &fd);
    send_flags(h, fd, 0);
    expect_closed(h, fd, 2000);
    ck_assert(logged("not a fixed newstyle client"));
    close(fd);
    vdisk_nbd_free(h);
    /* Unknown client flags. */
    h = server(0, 0, 0, &fd);
    send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE | 0x100);
    expect_closed(h, fd, 2000);
    close(fd);
    vdisk_nbd_free(h);
    /* A request before the handshake ended: no option magic. */
    h = server(0, 0, 0, &fd);
    send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE);
    request(h, fd, NBD_CMD_READ, 0, 1, 0, 512);
    expect_closed(h, fd, 2000);
    ck_assert(logged("an option without its magic (IHAVEOPT)"));
    close(fd);
    vdisk_nbd_free(h);
    /* An option above 64 KiB. */
    h = server(0, 0, 0, &fd);
    send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE);
    uint8_t hd[16];
    be64_store(hd, NBD_OPTS_MAGIC);
    be32_store(hd + 8, NBD_OPT_GO);
    be32_store(hd + 12, 1u << 20);
    xwrite(h, fd, hd, 16);
    expect_closed(h, fd, 2000);
    ck_assert(logged("NBD_OPT_GO with 1048576 bytes of data (at most 65536)"));
    close(fd);
    vdisk_nbd_free(h);
    /* Unknown options, STARTTLS, bad lengths, unknown exports: error
     * replies, and the handshake goes on. */
    h = server(0, 0, 0, &fd);
    send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    send_opt(h, fd, 99, "abc", 3);
    ck_assert_uint_eq(opt_reply(h, fd, 99, buf, sizeof buf, &len), NBD_REP_ERR_UNSUP);
    send_opt(h, fd, NBD_OPT_STARTTLS, NULL, 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_STARTTLS, buf, sizeof buf, &len),
                      NBD_REP_ERR_UNSUP);
    send_opt(h, fd, NBD_OPT_LIST, "x", 1);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_LIST, buf, sizeof buf, &len),
                      NBD_REP_ERR_INVALID);
    send_opt(h, fd, NBD_OPT_STRUCTURED_REPLY, "x", 1);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_STRUCTURED_REPLY, buf, sizeof buf, &len),
                      NBD_REP_ERR_INVALID);
    /* SET_META_CONTEXT before structured replies. */
    uint8_t d[16] = {0};
    be32_store(d, 0);
    send_opt(h, fd, NBD_OPT_SET_META_CONTEXT, d, 8);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_SET_META_CONTEXT, buf, sizeof buf, &len),
                      NBD_REP_ERR_INVALID);
    /* GO whose name length is past its data. */
    be32_store(d, 1000);
    send_opt(h, fd, NBD_OPT_GO, d, 6);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_GO, buf, sizeof buf, &len), NBD_REP_ERR_INVALID);
    uint16_t tf;
    ck_assert_uint_eq(go(h, fd, "other", &tf), NBD_REP_ERR_UNKNOWN);
    ck_assert_str_eq(go_msg, "export 'other' not present");
    /* LIST: the export and its description. */
    send_opt(h, fd, NBD_OPT_LIST, NULL, 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_LIST, buf, sizeof buf, &len), NBD_REP_SERVER);
    ck_assert_uint_eq(len, 4 + 4 + 9);
    ck_assert_uint_eq(be32_load(buf), 4);
    ck_assert_int_eq(memcmp(buf + 4, "disktest disk", 13), 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_LIST, buf, sizeof buf, &len), NBD_REP_ACK);
    ck_assert_uint_eq(go(h, fd, "disk", &tf), 0);
    /* (One client at a time: no multi-conn.) */
    ck_assert_uint_eq(tf, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                              NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
                              NBD_FLAG_SEND_CACHE | NBD_FLAG_SEND_FAST_ZERO);
    request(h, fd, NBD_CMD_READ, 0, 7, 0, 512);
    ck_assert_uint_eq(simple_reply(h, fd, 7), 0);
    ck_assert(xread(h, fd, buf, 512));
    ck_assert_uint_eq(buf[0], 0x5a);
    ck_assert_uint_eq(buf[511], 0x5a);
    close(fd);
    vdisk_nbd_free(h);
    /* Several clients at once (one device, whose flush covers them all):
     * multi-conn, read-only or not. */
    max_clients = 2;
    for (unsigned ro = 0; ro < 2; ro++) {
        h = server(ro ? VDISK_NBD_READ_ONLY : 0, 0, 0, &fd);
        send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
        ck_assert_uint_eq(go(h, fd, "disk", &tf), 0);
        ck_assert(tf & NBD_FLAG_CAN_MULTI_CONN);
        ck_assert_uint_eq(!!(tf & NBD_FLAG_READ_ONLY), ro);
        close(fd);
        vdisk_nbd_free(h);
    }
    max_clients = 0;
    /* ABORT: acknowledged, then closed. */
    h = server(0, 0, 0, &fd);
    send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE);
    send_opt(h, fd, NBD_OPT_ABORT, NULL, 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_ABORT, buf, sizeof buf, &len), NBD_REP_ACK);
    expect_closed(h, fd, 2000);
    close(fd);
    vdisk_nbd_free(h);
}
END_TEST

START_TEST(request_checks)
{
    int fd;
    uint8_t buf[8192];
    vdisk_nbd *h = connected(0, 0, false, &fd);
    /* Past the end: EINVAL for a read or a trim, ENOSPC for a write (its
     * payload is read all the same) or a write zeroes. */
    request(h, fd, NBD_CMD_READ, 0, 1, DISK_SIZE - 512, 1024);
    ck_assert_uint_eq(simple_reply(h, fd, 1), NBD_EINVAL);
    request(h, fd, NBD_CMD_READ, 0, 2, UINT64_MAX - 10, 512);
    ck_assert_uint_eq(simple_reply(h, fd, 2), NBD_EINVAL);
    request(h, fd, NBD_CMD_WRITE, 0, 3, DISK_SIZE, 4096);
    memset(buf, 1, 4096);
    xwrite(h, fd, buf, 4096);
    ck_assert_uint_eq(simple_reply(h, fd, 3), NBD_ENOSPC);
    request(h, fd, NBD_CMD_WRITE_ZEROES, 0, 4, DISK_SIZE - 1, 2);
    ck_assert_uint_eq(simple_reply(h, fd, 4), NBD_ENOSPC);
    request(h, fd, NBD_CMD_TRIM, 0, 5, DISK_SIZE + 1, 0);
    ck_assert_uint_eq(simple_reply(h, fd, 5), NBD_EINVAL);
    /* FUA is taken by every command (the spec: the server MUST accept it,
     * even by ignoring it; old QEMU sends FLUSH with FUA). */
    request(h, fd, NBD_CMD_FLUSH, NBD_CMD_FLAG_FUA, 6, 0, 0);
    ck_assert_uint_eq(simple_reply(h, fd, 6), 0);
    request(h, fd, NBD_CMD_READ, NBD_CMD_FLAG_FUA, 61, 0, 512);
    ck_assert_uint_eq(simple_reply(h, fd, 61), 0);
    ck_assert(xread(h, fd, buf, 512));
    ck_assert_uint_eq(buf[0], 0x5a);
    request(h, fd, NBD_CMD_CACHE, NBD_CMD_FLAG_FUA, 62, 0, 4096);
    ck_assert_uint_eq(simple_reply(h, fd, 62), 0);
    request(h, fd, NBD_CMD_TRIM, NBD_CMD_FLAG_FUA, 63, 0, 0);
    ck_assert_uint_eq(simple_reply(h, fd, 63), 0);
    request(h, fd, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FUA, 64, 4096, 0);
    ck_assert_uint_eq(simple_reply(h, fd, 64), 0);
    /* Flags a command does not take; unknown commands. */
    request(h, fd, NBD_CMD_FLUSH, NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE, 65, 0, 0);
    ck_assert_uint_eq(simple_reply(h, fd, 65), NBD_EINVAL);
    request(h, fd, NBD_CMD_READ, NBD_CMD_FLAG_DF, 7, 0, 512); /* DF needs structured replies */
    ck_assert_uint_eq(simple_reply(h, fd, 7), NBD_EINVAL);
    request(h, fd, NBD_CMD_WRITE, 0x8000, 8, 0, 16);
    xwrite(h, fd, buf, 16);
    ck_assert_uint_eq(simple_reply(h, fd, 8), NBD_EINVAL);
    request(h, fd, 99, 0, 9, 0, 0);
    ck_assert_uint_eq(simple_reply(h, fd, 9), NBD_EINVAL);
    /* A read above 32 MiB; a block status with no context selected. */
    request(h, fd, NBD_CMD_READ, 0, 10, 0, (32u << 20) + 1);
    ck_assert_uint_eq(simple_reply(h, fd, 10), NBD_EINVAL);
    request(h, fd, NBD_CMD_BLOCK_STATUS, 0, 11, 0, 4096);
    ck_assert_uint_eq(simple_reply(h, fd, 11), NBD_EINVAL);
    /* The stream is intact: a write and its read back, FUA, flush. */
    memset(buf, 0xc3, 4096);
    request(h, fd, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 12, 8192, 4096);
    xwrite(h, fd, buf, 4096);
    ck_assert_uint_eq(simple_reply(h, fd, 12), 0);
    request(h, fd, NBD_CMD_FLUSH, 0, 13, 0, 0);
    ck_assert_uint_eq(simple_reply(h, fd, 13), 0);
    request(h, fd, NBD_CMD_READ, 0, 14, 8192, 4096);
    ck_assert_uint_eq(simple_reply(h, fd, 14), 0);
    uint8_t back[4096];
    ck_assert(xread(h, fd, back, 4096));
    ck_assert_int_eq(memcmp(back, buf, 4096), 0);
    /* A bad request magic breaks the framing: closed. */
    uint8_t r[28] = {0};
    xwrite(h, fd, r, 28);
    expect_closed(h, fd, 2000);
    ck_assert(logged("request magic 0x00000000 (expected 0x25609513)"));
    close(fd);
    vdisk_nbd_free(h);
    /* A write above 32 MiB cannot be skipped: closed. */
    nlines = 0;
    h = connected(0, 0, false, &fd);
    request(h, fd, NBD_CMD_WRITE, 0, 1, 0, (32u << 20) + 1);
    expect_closed(h, fd, 2000);
    ck_assert(logged("write of 33554433 bytes (at most 33554432)"));
    close(fd);
    vdisk_nbd_free(h);
    /* Read-only: EPERM for what writes. */
    h = connected(VDISK_NBD_READ_ONLY, 0, false, &fd);
    request(h, fd, NBD_CMD_WRITE, 0, 1, 0, 16);
    xwrite(h, fd, buf, 16);
    ck_assert_uint_eq(simple_reply(h, fd, 1), NBD_EPERM);
    request(h, fd, NBD_CMD_TRIM, 0, 2, 0, 4096);
    ck_assert_uint_eq(simple_reply(h, fd, 2), NBD_EPERM);
    request(h, fd, NBD_CMD_WRITE_ZEROES, 0, 3, 0, 4096);
    ck_assert_uint_eq(simple_reply(h, fd, 3), NBD_EPERM);
    /* DISC: the read in flight is answered first, then the end. */
    request(h, fd, NBD_CMD_READ, 0, 4, 0, 4096);
    request(h, fd, NBD_CMD_DISC, 0, 5, 0, 0);
    ck_assert_uint_eq(simple_reply(h, fd, 4), 0);
    ck_assert(xread(h, fd, buf, 4096));
    expect_closed(h, fd, 2000);
    close(fd);
    vdisk_nbd_free(h);
}
END_TEST

/* A structured reply's header: its flags and type; checks magic, cookie. */
static uint16_t chunk(vdisk_nbd *h, int fd, uint64_t cookie, uint16_t *flags, uint32_t *len)
{
    uint8_t r[20];
    ck_assert(xread(h, fd, r, 20));
    ck_assert_uint_eq(be32_load(r), NBD_STRUCTURED_REPLY_MAGIC);
    ck_assert_uint_eq(be64_load(r + 8), cookie);
    *flags = be16_load(r + 4);
    *len = be32_load(r + 16);
    return be16_load(r + 6);
}

START_TEST(structured)
{
    int fd;
    uint8_t buf[8192];
    uint16_t fl;
    uint32_t len;
    vdisk_nbd *h = connected(0, 0, true, &fd);
    /* Data: OFFSET_DATA; zeroes: OFFSET_HOLE; DF is taken. */
    request(h, fd, NBD_CMD_READ, NBD_CMD_FLAG_DF, 1, 4096, 4096);
    ck_assert_uint_eq(chunk(h, fd, 1, &fl, &len), NBD_REPLY_TYPE_OFFSET_DATA);
    ck_assert_uint_eq(fl, NBD_REPLY_FLAG_DONE);
    ck_assert_uint_eq(len, 8 + 4096);
    ck_assert(xread(h, fd, buf, len));
    ck_assert_uint_eq(be64_load(buf), 4096);
    ck_assert_uint_eq(buf[8], 0x5a);
    request(h, fd, NBD_CMD_READ, 0, 2, 1u << 20, 65536);
    ck_assert_uint_eq(chunk(h, fd, 2, &fl, &len), NBD_REPLY_TYPE_OFFSET_HOLE);
    ck_assert_uint_eq(len, 12);
    ck_assert(xread(h, fd, buf, len));
    ck_assert_uint_eq(be64_load(buf), 1u << 20);
    ck_assert_uint_eq(be32_load(buf + 8), 65536);
    /* An error: NBD_REPLY_TYPE_ERROR. */
    request(h, fd, NBD_CMD_READ, 0, 3, DISK_SIZE, 1);
    ck_assert_uint_eq(chunk(h, fd, 3, &fl, &len), NBD_REPLY_TYPE_ERROR);
    ck_assert_uint_eq(fl, NBD_REPLY_FLAG_DONE);
    ck_assert_uint_eq(len, 6);
    ck_assert(xread(h, fd, buf, len));
    ck_assert_uint_eq(be32_load(buf), NBD_EINVAL);
    /* Block status: data, hole, data over the whole disk; one extent with
     * REQ_ONE. */
    request(h, fd, NBD_CMD_BLOCK_STATUS, 0, 4, 0, DISK_SIZE);
    ck_assert_uint_eq(chunk(h, fd, 4, &fl, &len), NBD_REPLY_TYPE_BLOCK_STATUS);
    ck_assert_uint_eq(fl, NBD_REPLY_FLAG_DONE);
    ck_assert_uint_eq(len, 4 + 3 * 8);
    ck_assert(xread(h, fd, buf, len));
    ck_assert_uint_eq(be32_load(buf), NBD_CTX_BASE_ALLOCATION);
    ck_assert_uint_eq(be32_load(buf + 4), 1u << 20);
    ck_assert_uint_eq(be32_load(buf + 8), 0);
    ck_assert_uint_eq(be32_load(buf + 12), 1u << 20);
    ck_assert_uint_eq(be32_load(buf + 16), NBD_STATE_HOLE | NBD_STATE_ZERO);
    ck_assert_uint_eq(be32_load(buf + 20), 2u << 20);
    ck_assert_uint_eq(be32_load(buf + 24), 0);
    request(h, fd, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE | NBD_CMD_FLAG_FUA, 5, 4096,
            DISK_SIZE - 4096); /* (FUA is ignored) */
    ck_assert_uint_eq(chunk(h, fd, 5, &fl, &len), NBD_REPLY_TYPE_BLOCK_STATUS);
    ck_assert_uint_eq(len, 4 + 8);
    ck_assert(xread(h, fd, buf, len));
    ck_assert_uint_eq(be32_load(buf + 4), (1u << 20) - 4096);
    /* Other commands: simple replies still.  A read with FUA and DF. */
    request(h, fd, NBD_CMD_FLUSH, 0, 6, 0, 0);
    ck_assert_uint_eq(simple_reply(h, fd, 6), 0);
    request(h, fd, NBD_CMD_READ, NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF, 7, 0, 512);
    ck_assert_uint_eq(chunk(h, fd, 7, &fl, &len), NBD_REPLY_TYPE_OFFSET_DATA);
    ck_assert_uint_eq(len, 8 + 512);
    ck_assert(xread(h, fd, buf, len));
    ck_assert_uint_eq(buf[8], 0x5a);
    close(fd);
    vdisk_nbd_free(h);
}
END_TEST

/* LIST_META_CONTEXT or SET_META_CONTEXT on EXPORT with QUERY (NULL: none). */
static void send_meta(vdisk_nbd *h, int fd, uint32_t opt, const char *export, const char *query)
{
    uint8_t d[128];
    size_t el = strlen(export), p = 0;
    be32_store(d, (uint32_t)el);
    memcpy(d + 4, export, el);
    p = 4 + el;
    be32_store(d + p, query ? 1 : 0);
    p += 4;
    if (query) {
        size_t ql = strlen(query);
        be32_store(d + p, (uint32_t)ql);
        memcpy(d + p + 4, query, ql);
        p += 4 + ql;
    }
    send_opt(h, fd, opt, d, (uint32_t)p);
}

/* LIST_META_CONTEXT replies carry id 0; a SET_META_CONTEXT that fails
 * leaves no context selected (the spec: it replaces the selection, also
 * when it fails). */
START_TEST(meta_contexts)
{
    int fd;
    uint8_t buf[256];
    uint32_t len;
    uint16_t fl, tf;
    /* Without VDISK_NBD_ALLOCATION_DEPTH: base:allocation alone, and a
     * SET naming qemu:allocation-depth selects nothing. */
    vdisk_nbd *h = server(0, 0, 0, &fd);
    send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    send_opt(h, fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_STRUCTURED_REPLY, buf, sizeof buf, &len),
                      NBD_REP_ACK);
    send_meta(h, fd, NBD_OPT_LIST_META_CONTEXT, "disk", NULL);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_LIST_META_CONTEXT, buf, sizeof buf, &len),
                      NBD_REP_META_CONTEXT);
    ck_assert_int_eq(memcmp(buf + 4, "base:allocation", 15), 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_LIST_META_CONTEXT, buf, sizeof buf, &len),
                      NBD_REP_ACK);
    send_meta(h, fd, NBD_OPT_SET_META_CONTEXT, "disk", "qemu:allocation-depth");
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_SET_META_CONTEXT, buf, sizeof buf, &len),
                      NBD_REP_ACK);
    close(fd);
    vdisk_nbd_free(h);
    h = server(VDISK_NBD_ALLOCATION_DEPTH, 0, 0, &fd);
    send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    send_opt(h, fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_STRUCTURED_REPLY, buf, sizeof buf, &len),
                      NBD_REP_ACK);
    send_meta(h, fd, NBD_OPT_LIST_META_CONTEXT, "disk", NULL);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_LIST_META_CONTEXT, buf, sizeof buf, &len),
                      NBD_REP_META_CONTEXT);
    ck_assert_uint_eq(len, 4 + 15);
    ck_assert_uint_eq(be32_load(buf), 0);
    ck_assert_int_eq(memcmp(buf + 4, "base:allocation", 15), 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_LIST_META_CONTEXT, buf, sizeof buf, &len),
                      NBD_REP_META_CONTEXT);
    ck_assert_uint_eq(len, 4 + 21);
    ck_assert_uint_eq(be32_load(buf), 0);
    ck_assert_int_eq(memcmp(buf + 4, "qemu:allocation-depth", 21), 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_LIST_META_CONTEXT, buf, sizeof buf, &len),
                      NBD_REP_ACK);
    /* SET: its id; a LIST meanwhile does not change the selection. */
    send_meta(h, fd, NBD_OPT_SET_META_CONTEXT, "disk", "base:allocation");
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_SET_META_CONTEXT, buf, sizeof buf, &len),
                      NBD_REP_META_CONTEXT);
    ck_assert_uint_eq(be32_load(buf), NBD_CTX_BASE_ALLOCATION);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_SET_META_CONTEXT, buf, sizeof buf, &len),
                      NBD_REP_ACK);
    send_meta(h, fd, NBD_OPT_LIST_META_CONTEXT, "disk", "base:allocation");
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_LIST_META_CONTEXT, buf, sizeof buf, &len),
                      NBD_REP_META_CONTEXT);
    ck_assert_uint_eq(be32_load(buf), 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_LIST_META_CONTEXT, buf, sizeof buf, &len),
                      NBD_REP_ACK);
    /* A SET that fails (unknown export): nothing selected any more. */
    send_meta(h, fd, NBD_OPT_SET_META_CONTEXT, "other", "base:allocation");
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_SET_META_CONTEXT, buf, sizeof buf, &len),
                      NBD_REP_ERR_UNKNOWN);
    ck_assert_uint_eq(go(h, fd, "disk", &tf), 0);
    request(h, fd, NBD_CMD_BLOCK_STATUS, 0, 1, 0, 4096);
    ck_assert_uint_eq(chunk(h, fd, 1, &fl, &len), NBD_REPLY_TYPE_ERROR);
    ck_assert_uint_eq(len, 6);
    ck_assert(xread(h, fd, buf, len));
    ck_assert_uint_eq(be32_load(buf), NBD_EINVAL);
    ck_assert(logged("block status with no meta context selected"));
    close(fd);
    vdisk_nbd_free(h);
}
END_TEST

START_TEST(stalls)
{
    int fd;
    /* A handshake that never ends. */
    vdisk_nbd *h = server(0, 300, 0, &fd);
    uint64_t t0 = now_ms();
    send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE);
    expect_closed(h, fd, 3000);
    ck_assert_uint_ge(now_ms() - t0, 250);
    ck_assert(logged("the handshake did not end in time"));
    close(fd);
    vdisk_nbd_free(h);
    /* Half a request header, then nothing. */
    h = connected(0, 300, false, &fd);
    uint8_t r[28] = {0};
    be32_store(r, NBD_REQUEST_MAGIC);
    xwrite(h, fd, r, 10);
    t0 = now_ms();
    expect_closed(h, fd, 3000);
    ck_assert_uint_ge(now_ms() - t0, 250);
    ck_assert(logged("a request begun stalled"));
    close(fd);
    vdisk_nbd_free(h);
    /* A write whose payload stops half-way. */
    h = connected(0, 300, false, &fd);
    request(h, fd, NBD_CMD_WRITE, 0, 1, 0, 65536);
    xwrite(h, fd, r, 28);
    expect_closed(h, fd, 3000);
    close(fd);
    vdisk_nbd_free(h);
    /* A write payload coming slowly but steadily (16 pieces 100 ms apart,
     * longer in all than the 1 s deadline): served, the deadline starts
     * again with each piece.  Then a stall after half of one: dropped. */
    h = connected(0, 1000, false, &fd);
    request(h, fd, NBD_CMD_WRITE, 0, 7, 0, 16 * 4096);
    uint8_t piece[4096];
    memset(piece, 0x33, sizeof piece);
    for (int i = 0; i < 16; i++) {
        xwrite(h, fd, piece, sizeof piece);
        for (uint64_t t = now_ms() + 100; now_ms() < t;)
            pump(h, 10);
    }
    ck_assert_uint_eq(simple_reply(h, fd, 7), 0);
    ck_assert_uint_eq(vdisk_nbd_clients(h), 1);
    request(h, fd, NBD_CMD_WRITE, 0, 8, 0, 16 * 4096);
    for (int i = 0; i < 8; i++)
        xwrite(h, fd, piece, sizeof piece);
    expect_closed(h, fd, 5000);
    close(fd);
    vdisk_nbd_free(h);
    /* Idle between requests is fine: no deadline. */
    h = connected(0, 200, false, &fd);
    for (int i = 0; i < 40; i++)
        pump(h, 10);
    request(h, fd, NBD_CMD_FLUSH, 0, 1, 0, 0);
    ck_assert_uint_eq(simple_reply(h, fd, 1), 0);
    close(fd);
    vdisk_nbd_free(h);
}
END_TEST

/* With TLS configured (PSK here): every option but STARTTLS and ABORT
 * gets NBD_REP_ERR_TLS_REQD, EXPORT_NAME closes; after STARTTLS's ack,
 * bytes that are not TLS end the connection (no crash, no hang), and a
 * client that goes silent meets the handshake's deadline.  The parameters'
 * checks: TLS without a directory, a missing or malformed key file, and
 * an older caller's structure (V1: no TLS fields read). */
static vdisk_nbd *tls_server(const char *dir, unsigned hs_ms, int *client)
{
    struct vdisk_nbd_params p = {.struct_size = sizeof p, .export_name = "disk",
                                 .handshake_timeout_ms = hs_ms, .log = logger,
                                 .tls = VDISK_NBD_TLS_PSK, .tls_dir = dir};
    vdisk_nbd *h;
    ck_assert_msg(vdisk_nbd_new(&h, dev, -1, &p) == 0, "%s", vdisk_get_error());
    *client = add_client(h);
    return h;
}

START_TEST(tls_gate)
{
    const char *dir = scratch("psk");
    ck_assert(mkdir(dir, 0700) == 0 || errno == EEXIST);
    const char *keys = scratch("psk/keys.psk");
    const char *line = "alice:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
    write_file(keys, line, strlen(line));
    int fd;
    uint8_t buf[4200];
    uint32_t len;
    uint16_t tf;
    vdisk_nbd *h = tls_server(dir, 0, &fd);
    send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    ck_assert_uint_eq(go(h, fd, "disk", &tf), NBD_REP_ERR(5));
    ck_assert_str_eq(go_msg, "TLS is required: NBD_OPT_GO needs NBD_OPT_STARTTLS first");
    send_opt(h, fd, NBD_OPT_LIST, NULL, 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_LIST, buf, sizeof buf, &len), NBD_REP_ERR(5));
    send_opt(h, fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_STRUCTURED_REPLY, buf, sizeof buf, &len),
                      NBD_REP_ERR(5));
    send_opt(h, fd, NBD_OPT_STARTTLS, "x", 1);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_STARTTLS, buf, sizeof buf, &len),
                      NBD_REP_ERR_INVALID);
    /* The ack, then bytes that are no TLS record. */
    send_opt(h, fd, NBD_OPT_STARTTLS, NULL, 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_STARTTLS, buf, sizeof buf, &len), NBD_REP_ACK);
    static const char junk[] = "GET / HTTP/1.0\r\nHost: x\r\n\r\n0123456789abcdef0123456789";
    xwrite(h, fd, junk, sizeof junk);
    expect_closed(h, fd, 3000);
    ck_assert(logged("the TLS handshake failed"));
    close(fd);
    vdisk_nbd_free(h);
    /* A TLS record header announcing more than it sends, then silence: the
     * handshake's deadline. */
    nlines = 0;
    h = tls_server(dir, 300, &fd);
    send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE);
    send_opt(h, fd, NBD_OPT_STARTTLS, NULL, 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_STARTTLS, buf, sizeof buf, &len), NBD_REP_ACK);
    static const uint8_t rec[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00};
    xwrite(h, fd, rec, sizeof rec);
    expect_closed(h, fd, 3000);
    ck_assert(logged("the handshake did not end in time"));
    close(fd);
    vdisk_nbd_free(h);
    /* EXPORT_NAME without TLS: closed; ABORT is served. */
    nlines = 0;
    h = tls_server(dir, 0, &fd);
    send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE);
    send_opt(h, fd, NBD_OPT_EXPORT_NAME, "disk", 4);
    expect_closed(h, fd, 2000);
    ck_assert(logged("NBD_OPT_EXPORT_NAME without TLS (TLS is required)"));
    close(fd);
    fd = add_client(h);
    send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE);
    send_opt(h, fd, NBD_OPT_ABORT, NULL, 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_ABORT, buf, sizeof buf, &len), NBD_REP_ACK);
    expect_closed(h, fd, 2000);
    close(fd);
    vdisk_nbd_free(h);
    /* The parameters. */
    struct vdisk_nbd_params p = {.struct_size = sizeof p, .tls = VDISK_NBD_TLS_PSK};
    ck_assert_int_eq(vdisk_nbd_new(&h, dev, -1, &p), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_nbd_new: TLS without a credentials directory "
                                        "(tls_dir)");
    p.tls_dir = scratch("nowhere");
    ck_assert_int_eq(vdisk_nbd_new(&h, dev, -1, &p), -ENOENT);
    p.tls_dir = scratch_dir();
    ck_assert_int_eq(vdisk_nbd_new(&h, dev, -1, &p), -ENOENT);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_nbd_new: Unable to access credentials "
                                            "%s/keys.psk (the PSK file): No such file or "
                                            "directory", scratch_dir()));
    write_file(keys, "alice:0g\n", 9);
    p.tls_dir = dir;
    ck_assert_int_eq(vdisk_nbd_new(&h, dev, -1, &p), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_nbd_new: TLS credentials: %s line 1: the "
                                            "key is not hexadecimal", keys));
    p.tls = VDISK_NBD_TLS_X509;
    p.flags = VDISK_NBD_TLS_VERIFY_PEER;
    ck_assert_int_eq(vdisk_nbd_new(&h, dev, -1, &p), -ENOENT);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_nbd_new: Unable to access credentials "
                                            "%s/ca-cert.pem (the CA certificate, to verify "
                                            "clients' certificates): No such file or "
                                            "directory", dir));
    p.tls = 0;
    ck_assert_int_eq(vdisk_nbd_new(&h, dev, -1, &p), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_nbd_new: VDISK_NBD_TLS_VERIFY_PEER without TLS");
    /* A caller of the first version: the TLS fields are not read. */
    p = (struct vdisk_nbd_params){.struct_size = VDISK_NBD_PARAMS_SIZE_V1, .tls = 77,
                                  .tls_dir = "/nowhere"};
    ck_assert_msg(vdisk_nbd_new(&h, dev, -1, &p) == 0, "%s", vdisk_get_error());
    fd = add_client(h);
    send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE);
    send_opt(h, fd, NBD_OPT_STARTTLS, NULL, 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_STARTTLS, buf, sizeof buf, &len),
                      NBD_REP_ERR_UNSUP);
    close(fd);
    vdisk_nbd_free(h);
}
END_TEST

/* Over TLS (a GnuTLS client here, PSK), a client that sends 100 READs in
 * one TLS record: the server takes 64 at once, and the 36 left wait as
 * plaintext in its TLS session while the socket has nothing more (and
 * the small replies never fill it, so it is not polled for writing
 * either); they must still be read (the kick) and answered, each with
 * its data. */
static void tls_xfer(vdisk_nbd *h, gnutls_session_t cs, void *buf, size_t n, bool send)
{
    uint8_t *p = buf;
    uint64_t end = now_ms() + 5000;
    while (n) {
        ssize_t r = send ? gnutls_record_send(cs, p, n) : gnutls_record_recv(cs, p, n);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        ck_assert_msg(r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED, "TLS %s: %s",
                      send ? "send" : "recv", r == 0 ? "end of stream" : gnutls_strerror((int)r));
        ck_assert_msg(now_ms() < end, "no progress within 5 s");
        pump(h, 10);
    }
}

START_TEST(tls_pipelined)
{
    const char *dir = scratch("psk2");
    ck_assert(mkdir(dir, 0700) == 0 || errno == EEXIST);
    const char *hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const char *line = fmt("alice:%s\n", hex);
    write_file(scratch("psk2/keys.psk"), line, strlen(line));
    int fd;
    uint8_t buf[256];
    uint32_t len;
    vdisk_nbd *h = tls_server(dir, 0, &fd);
    send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    send_opt(h, fd, NBD_OPT_STARTTLS, NULL, 0);
    ck_assert_uint_eq(opt_reply(h, fd, NBD_OPT_STARTTLS, buf, sizeof buf, &len), NBD_REP_ACK);
    gnutls_psk_client_credentials_t cred;
    ck_assert_int_eq(gnutls_psk_allocate_client_credentials(&cred), 0);
    uint8_t key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(i % 16 * 0x11);
    gnutls_datum_t kd = {key, 32};
    ck_assert_int_eq(gnutls_psk_set_client_credentials(cred, "alice", &kd, GNUTLS_PSK_KEY_RAW), 0);
    gnutls_session_t cs;
    ck_assert_int_eq(gnutls_init(&cs, GNUTLS_CLIENT | GNUTLS_NONBLOCK), 0);
    ck_assert_int_eq(gnutls_priority_set_direct(cs, "NORMAL:+ECDHE-PSK:+DHE-PSK", NULL), 0);
    ck_assert_int_eq(gnutls_credentials_set(cs, GNUTLS_CRD_PSK, cred), 0);
    gnutls_transport_set_int(cs, fd);
    uint64_t end = now_ms() + 5000;
    int g;
    while ((g = gnutls_handshake(cs)) == GNUTLS_E_AGAIN || g == GNUTLS_E_INTERRUPTED) {
        ck_assert_msg(now_ms() < end, "the TLS handshake did not end within 5 s");
        pump(h, 10);
    }
    ck_assert_msg(g == 0, "TLS handshake: %s", gnutls_strerror(g));
    /* NBD_OPT_GO "disk" over TLS, its replies read up to the ACK. */
    uint8_t go_opt[16 + 10];
    be64_store(go_opt, NBD_OPTS_MAGIC);
    be32_store(go_opt + 8, NBD_OPT_GO);
    be32_store(go_opt + 12, 10);
    be32_store(go_opt + 16, 4);
    memcpy(go_opt + 20, "disk", 4);
    be16_store(go_opt + 24, 0);
    tls_xfer(h, cs, go_opt, sizeof go_opt, true);
    for (;;) {
        uint8_t r[20];
        tls_xfer(h, cs, r, 20, false);
        ck_assert_uint_eq(be64_load(r), NBD_REP_MAGIC);
        uint32_t type = be32_load(r + 12), rl = be32_load(r + 16);
        ck_assert_uint_le(rl, sizeof buf);
        if (rl)
            tls_xfer(h, cs, buf, rl, false);
        if (type == NBD_REP_ACK)
            break;
        ck_assert_uint_eq(type, NBD_REP_INFO);
    }
    /* 100 READs of 512 bytes in one record. */
    enum { N = 100 };
    uint8_t reqs[N * NBD_REQ_SIZE];
    for (unsigned i = 0; i < N; i++) {
        uint8_t *q = reqs + i * NBD_REQ_SIZE;
        be32_store(q, NBD_REQUEST_MAGIC);
        be16_store(q + 4, 0);
        be16_store(q + 6, NBD_CMD_READ);
        be64_store(q + 8, 1000 + i);
        be64_store(q + 16, (uint64_t)i * 512);
        be32_store(q + 24, 512);
    }
    tls_xfer(h, cs, reqs, sizeof reqs, true);
    bool seen[N] = {false};
    uint8_t data[512];
    for (unsigned i = 0; i < N; i++) {
        uint8_t r[16];
        tls_xfer(h, cs, r, 16, false);
        ck_assert_uint_eq(be32_load(r), NBD_SIMPLE_REPLY_MAGIC);
        ck_assert_uint_eq(be32_load(r + 4), 0);
        uint64_t cookie = be64_load(r + 8);
        ck_assert(cookie >= 1000 && cookie < 1000 + N && !seen[cookie - 1000]);
        seen[cookie - 1000] = true;
        tls_xfer(h, cs, data, sizeof data, false);
        for (size_t k = 0; k < sizeof data; k++)
            ck_assert_uint_eq(data[k], 0x5a);
    }
    /* NBD_CMD_DISC: the server closes its end. */
    uint8_t disc[NBD_REQ_SIZE] = {0};
    be32_store(disc, NBD_REQUEST_MAGIC);
    be16_store(disc + 6, NBD_CMD_DISC);
    tls_xfer(h, cs, disc, sizeof disc, true);
    for (int i = 0; i < 50 && vdisk_nbd_clients(h); i++)
        pump(h, 10);
    ck_assert_uint_eq(vdisk_nbd_clients(h), 0);
    gnutls_deinit(cs);
    gnutls_psk_free_client_credentials(cred);
    close(fd);
    vdisk_nbd_free(h);
}
END_TEST

/* Options sent without reading their replies: the server stops reading
 * options while 256 KiB of replies wait, then the handshake times out. */
START_TEST(option_flood)
{
    int fd;
    vdisk_nbd *h = server(0, 1000, 0, &fd);
    send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE);
    uint8_t o[16 * 64];
    for (int i = 0; i < 64; i++) {
        be64_store(o + 16 * i, NBD_OPTS_MAGIC);
        be32_store(o + 16 * i + 8, NBD_OPT_LIST);
        be32_store(o + 16 * i + 12, 0);
    }
    size_t sent = 0, peak = 0;
    uint64_t end = now_ms() + 700;
    while (now_ms() < end) {
        ssize_t w = send(fd, o + sent % sizeof o, sizeof o - sent % sizeof o,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0)
            sent += (size_t)w;
        pump(h, w > 0 ? 0 : 5);
        struct nbd_conn *c = h->conns[0];
        if (c && c->mem > peak)
            peak = c->mem;
    }
    ck_assert_uint_gt(sent, 16 * 8000);
    ck_assert_msg(peak <= NBD_HANDSHAKE_MEM + (128u << 10), "the handshake held %zu bytes", peak);
    expect_closed(h, fd, 3000);
    ck_assert(logged("the handshake did not end in time"));
    close(fd);
    vdisk_nbd_free(h);
}
END_TEST

/* A client that hangs up right after DISC, or while the server reads
 * nothing from it (requests in flight at their limit): its requests finish
 * and it is dropped (the hang-up is no longer polled meanwhile). */
START_TEST(hangup_in_flight)
{
    int fd;
    vdisk_nbd *h = connected(0, 0, false, &fd);
    request(h, fd, NBD_CMD_READ, 0, 1, 0, 1u << 20);
    request(h, fd, NBD_CMD_FLUSH, 0, 2, 0, 0);
    request(h, fd, NBD_CMD_DISC, 0, 3, 0, 0);
    close(fd);
    uint64_t end = now_ms() + 3000;
    unsigned wakeups = 0;
    while (vdisk_nbd_clients(h) && now_ms() < end) {
        pump(h, 20);
        wakeups++;
    }
    ck_assert_uint_eq(vdisk_nbd_clients(h), 0);
    ck_assert_msg(wakeups < 100, "%u wake-ups", wakeups);
    vdisk_nbd_free(h);
    /* 64 reads in flight (the most), more requests waiting, then gone. */
    h = connected(0, 0, false, &fd);
    for (unsigned i = 0; i < 80; i++)
        request(h, fd, NBD_CMD_READ, 0, i, 0, 4096);
    close(fd);
    end = now_ms() + 3000;
    while (vdisk_nbd_clients(h) && now_ms() < end)
        pump(h, 20);
    ck_assert_uint_eq(vdisk_nbd_clients(h), 0);
    vdisk_nbd_free(h);
}
END_TEST

/* A client that goes (closes, or resets) with requests in flight on a slow
 * device does not hold the loop: a second client is served while the
 * first one's reads are still held by the device; the first connection is
 * freed once they complete.  Then the same with vdisk_nbd_free() while
 * they are held: it waits for them (released from another thread). */
static void *release_reads(void *arg)
{
    struct fault_disk *f = arg;
    struct timespec t = {0, 50 * 1000000L};
    nanosleep(&t, NULL);
    fault_hold_reads(f, 0, 0);
    return NULL;
}

/* A raw device over a fault disk holding IMG (DISK_SIZE bytes). */
static struct vdisk_dev *open_fault(struct fault_disk *f)
{
    struct vdisk_open_params op;
    memset(&op, 0, sizeof op);
    op.cache = VDISK_CACHE_WRITEBACK;
    const char *e = getenv("VDISK_ENGINE");
    op.engine = e && strcmp(e, "threads") == 0 ? VDISK_ENGINE_THREADS
              : engine_uring_available() ? VDISK_ENGINE_URING : VDISK_ENGINE_THREADS;
    op.locking = LOCK_OFF;
    struct vdisk_dev *file, *fdev;
    ck_assert(fault_open(&file, f, scratch("slow.img"), &op) == 0);
    ck_assert_msg(dev_open_format(&fdev, file, "raw", &op, NULL) == 0, "%s", vdisk_get_error());
    return fdev;
}

START_TEST(gone_with_reads_held)
{
    uint8_t *img = malloc(DISK_SIZE);
    for (size_t i = 0; i < DISK_SIZE; i++)
        img[i] = (uint8_t)(i >> 12);
    struct fault_disk *f = fault_new(img, DISK_SIZE, DISK_SIZE);
    ck_assert_ptr_nonnull(f);
    struct vdisk_dev *fdev = open_fault(f);
    vdisk_dev *saved = dev;
    dev = fdev;
    max_clients = 2;
    for (int round = 0; round < 4; round++) {
        bool reset = round & 1, free_held = round >= 2;
        /* Reads run on the disk's own thread (slow mode): the first 2 MiB
         * are held there. */
        ck_assert_int_eq(fault_set_delay(f, 1), 0);
        fault_hold_reads(f, 0, 2u << 20);
        uint64_t started = fault_reads_started(f);
        int a;
        vdisk_nbd *h = connected(0, 0, false, &a);
        for (unsigned i = 0; i < 16; i++)
            request(h, a, NBD_CMD_READ, 0, i, (uint64_t)(i % 2) << 20, 1u << 20);
        uint64_t end = now_ms() + 5000;
        while (fault_reads_started(f) - started < 16) {
            ck_assert_msg(now_ms() < end, "the reads did not start");
            pump(h, 10);
        }
        while (fault_reads_held(f) != 1) {
            ck_assert_msg(now_ms() < end, "no read is held");
            pump(h, 10);
        }
        /* The other requests run at once, on the submitting thread. */
        ck_assert_int_eq(fault_set_delay(f, 0), 0);
        nlines = 0;
        if (reset) {
            /* A reply left unread: closing resets the connection (Unix
             * sockets: the server's recv fails with ECONNRESET). */
            request(h, a, NBD_CMD_READ, 0, 99, DISK_SIZE, 512);
            struct pollfd p = {.fd = a, .events = POLLIN};
            while (poll(&p, 1, 0) == 0) {
                ck_assert_msg(now_ms() < end, "no reply to an invalid read");
                pump(h, 10);
            }
        }
        close(a);
        /* A second client, served from start to end meanwhile. */
        int b = add_client(h);
        handshake(h, &b, false);
        request(h, b, NBD_CMD_READ, 0, 100, 3u << 20, 8192);
        ck_assert_uint_eq(simple_reply(h, b, 100), 0);
        uint8_t buf[8192];
        ck_assert(xread(h, b, buf, sizeof buf));
        ck_assert(memcmp(buf, img + (3u << 20), sizeof buf) == 0);
        ck_assert_uint_eq(fault_reads_held(f), 1);
        ck_assert_uint_eq(vdisk_nbd_clients(h), 2); /* the first one's reads hold its slot */
        ck_assert_msg(logged(reset ? "client 1: Connection reset by peer; connection closed"
                                   : "client 1 disconnected"), "%u lines: %s", nlines,
                      nlines ? lines[0] : "");
        request(h, b, NBD_CMD_DISC, 0, 101, 0, 0);
        close(b);
        while (vdisk_nbd_clients(h) > 1)
            pump(h, 10);
        if (free_held) {
            /* vdisk_nbd_free waits for the reads (another thread lets them go). */
            pthread_t t;
            ck_assert_int_eq(pthread_create(&t, NULL, release_reads, f), 0);
            vdisk_nbd_free(h);
            pthread_join(t, NULL);
        } else {
            fault_hold_reads(f, 0, 0);
            end = now_ms() + 5000;
            while (vdisk_nbd_clients(h)) {
                ck_assert_msg(now_ms() < end, "the first client was not freed");
                pump(h, 10);
            }
            vdisk_nbd_free(h);
        }
        ck_assert_uint_eq(fault_reads_started(f) - started, 17);
        ck_assert_uint_eq(fault_reads_held(f), 0);
    }
    max_clients = 0;
    dev = saved;
    vdisk_close(fdev);
    fault_free(f);
    free(img);
}
END_TEST

/* accept() failing with EMFILE does not make the loop spin: the listening
 * socket is left alone for a while, the failure is logged once, and the
 * waiting client is served once descriptors are free again. */
START_TEST(accept_emfile)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(lfd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(lfd, 4), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&a, &al), 0);
    struct vdisk_nbd_params p = {.struct_size = sizeof p, .log = logger};
    vdisk_nbd *h;
    ck_assert_msg(vdisk_nbd_new(&h, dev, lfd, &p) == 0, "%s", vdisk_get_error());
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(connect(c, (struct sockaddr *)&a, sizeof a), 0);
    /* No descriptor left: the lowest free one is the limit. */
    int low = dup(2);
    ck_assert_int_ge(low, 0);
    close(low);
    struct rlimit old, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)low;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
    nlines = 0;
    unsigned wakeups = 0;
    uint64_t end = now_ms() + 600;
    while (now_ms() < end) {
        struct pollfd pf = {.fd = vdisk_nbd_get_fd(h), .events = POLLIN};
        if (poll(&pf, 1, 20) > 0) {
            ck_assert_int_ge(vdisk_nbd_process(h), 0);
            wakeups++;
        }
    }
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    /* Spinning makes thousands; paused: the failure, a tick every 100 ms,
     * a retry every 250 ms. */
    ck_assert_msg(wakeups < 40, "%u wake-ups in 600 ms", wakeups);
    ck_assert_uint_eq(vdisk_nbd_clients(h), 0);
    unsigned n = 0;
    for (unsigned i = 0; i < nlines; i++)
        n += strstr(lines[i], "accept: Too many open files; new clients wait") != NULL;
    ck_assert_msg(n == 1, "%u lines: %s", nlines, nlines ? lines[0] : "");
    /* Descriptors again: the client is served. */
    uint8_t g[18];
    ck_assert(xread(h, c, g, sizeof g));
    ck_assert_uint_eq(be64_load(g), NBD_MAGIC);
    ck_assert_uint_eq(vdisk_nbd_clients(h), 1);
    close(c);
    vdisk_nbd_free(h);
    close(lfd);
}
END_TEST

/* The device failing a WRITE_ZEROES with ENOTSUP: EIO without FAST_ZERO
 * (the spec: it MUST NOT fail with NBD_ENOTSUP then), ENOTSUP with it. */
START_TEST(zeroes_enotsup)
{
    uint8_t *img = calloc(1, DISK_SIZE);
    struct fault_disk *f = fault_new(img, DISK_SIZE, DISK_SIZE);
    ck_assert_ptr_nonnull(f);
    struct vdisk_dev *fdev = open_fault(f);
    vdisk_dev *saved = dev;
    dev = fdev;
    int fd;
    vdisk_nbd *h = connected(0, 0, false, &fd);
    fault_fail_writes(f, fault_writes(f) + 1, 2, -ENOTSUP);
    request(h, fd, NBD_CMD_WRITE_ZEROES, 0, 1, 0, 4096);
    ck_assert_uint_eq(simple_reply(h, fd, 1), NBD_EIO);
    request(h, fd, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 2, 0, 4096);
    ck_assert_uint_eq(simple_reply(h, fd, 2), NBD_ENOTSUP);
    /* Then it works. */
    request(h, fd, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 3, 0, 4096);
    ck_assert_uint_eq(simple_reply(h, fd, 3), 0);
    close(fd);
    vdisk_nbd_free(h);
    dev = saved;
    vdisk_close(fdev);
    fault_free(f);
    free(img);
}
END_TEST

/* FAST_ZERO on a qcow2 image (64 KiB clusters): whole clusters are zeroed
 * in its tables (fast); a partial cluster would be written as zeroes, so
 * FAST_ZERO fails with NBD_ENOTSUP and leaves the data alone, and the same
 * request without FAST_ZERO writes the zeroes. */
START_TEST(fast_zero_no_fallback)
{
    const char *img = scratch("fz.qcow2");
    ck_assert_msg(vdisk_create(img, "qcow2", DISK_SIZE, NULL) == 0, "%s", vdisk_get_error());
    vdisk_dev *q;
    ck_assert_msg(vdisk_open(&q, img, NULL) == 0, "%s", vdisk_get_error());
    uint8_t *b = malloc(1u << 20);
    memset(b, 0x77, 1u << 20);
    ck_assert_int_eq(vdisk_pwrite(q, b, 1u << 20, 0), 0);
    vdisk_dev *saved = dev;
    dev = q;
    int fd;
    vdisk_nbd *h = connected(0, 0, false, &fd);
    request(h, fd, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 1, 65536, 131072);
    ck_assert_uint_eq(simple_reply(h, fd, 1), 0);
    request(h, fd, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 2, 4096, 4096);
    ck_assert_uint_eq(simple_reply(h, fd, 2), NBD_ENOTSUP);
    request(h, fd, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_NO_HOLE, 3,
            200000, 100000);
    ck_assert_uint_eq(simple_reply(h, fd, 3), NBD_ENOTSUP);
    ck_assert(!logged("request of type 6"));
    uint8_t r[8192];
    ck_assert_int_eq(vdisk_pread(q, r, 8192, 0), 0);
    for (int i = 0; i < 8192; i++)
        ck_assert_uint_eq(r[i], 0x77);
    ck_assert_int_eq(vdisk_pread(q, r, 8192, 65536), 0);
    for (int i = 0; i < 8192; i++)
        ck_assert_uint_eq(r[i], 0);
    request(h, fd, NBD_CMD_WRITE_ZEROES, 0, 4, 4096, 4096);
    ck_assert_uint_eq(simple_reply(h, fd, 4), 0);
    ck_assert_int_eq(vdisk_pread(q, r, 8192, 0), 0);
    for (int i = 0; i < 8192; i++)
        ck_assert_uint_eq(r[i], i >= 4096 ? 0 : 0x77);
    close(fd);
    vdisk_nbd_free(h);
    dev = saved;
    vdisk_close(q);
    free(b);
}
END_TEST

/* BLOCK_STATUS over 4096 extents (4 KiB of data, 4 KiB of hole, ...): a
 * reply has at most 1024 extents (a prefix of the range), and the
 * lookups one wake-up makes are bounded: of 4 requests sent at once, one
 * process() answers one. */
START_TEST(status_bounded)
{
    const char *img = scratch("frag.raw");
    FILE *f = fopen(img, "w");
    ck_assert_ptr_nonnull(f);
    uint8_t d[4096];
    memset(d, 0xab, sizeof d);
    for (unsigned i = 0; i < 2048; i++) {
        ck_assert_int_eq(fseek(f, (long)i * 8192, SEEK_SET), 0);
        ck_assert_uint_eq(fwrite(d, 1, sizeof d, f), sizeof d);
    }
    ck_assert_int_eq(ftruncate(fileno(f), 16l << 20), 0);
    fclose(f);
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "raw"), 0);
    vdisk_dev *fd_dev;
    ck_assert_msg(vdisk_open(&fd_dev, img, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    struct vdisk_extent e;
    ck_assert_int_eq(vdisk_block_status(fd_dev, 0, 16u << 20, &e), 0);
    if (e.length != 4096) {
        /* A file system without 4 KiB holes: nothing to count here. */
        vdisk_close(fd_dev);
        return;
    }
    vdisk_dev *saved = dev;
    dev = fd_dev;
    int fd;
    vdisk_nbd *h = connected(0, 0, true, &fd);
    uint8_t r[4 * 28];
    for (int i = 0; i < 4; i++) {
        be32_store(r + 28 * i, NBD_REQUEST_MAGIC);
        be16_store(r + 28 * i + 4, 0);
        be16_store(r + 28 * i + 6, NBD_CMD_BLOCK_STATUS);
        be64_store(r + 28 * i + 8, 10 + (uint64_t)i);
        be64_store(r + 28 * i + 16, 0);
        be32_store(r + 28 * i + 24, 16u << 20);
    }
    ck_assert_int_eq(send(fd, r, sizeof r, MSG_DONTWAIT), (ssize_t)sizeof r);
    struct pollfd p = {.fd = vdisk_nbd_get_fd(h), .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 5000), 1);
    ck_assert_int_gt(vdisk_nbd_process(h), 0);
    /* One reply: 20 + 4 + 1024 * 8 bytes, then nothing yet. */
    size_t one = NBD_STRUCT_HDR + 4 + 1024 * 8;
    uint8_t *b = malloc(4 * one);
    ssize_t got = recv(fd, b, 4 * one, MSG_DONTWAIT);
    ck_assert_int_eq(got, (ssize_t)one);
    ck_assert_uint_eq(be32_load(b + 16), 4 + 1024 * 8);
    uint64_t covered = 0;
    for (unsigned i = 0; i < 1024; i++) {
        ck_assert_uint_eq(be32_load(b + 24 + 8 * i), 4096);
        ck_assert_uint_eq(be32_load(b + 24 + 8 * i + 4), i % 2 ? NBD_STATE_HOLE | NBD_STATE_ZERO
                                                                : 0);
        covered += 4096;
    }
    ck_assert_uint_eq(covered, 4u << 20);
    /* The others follow on later turns. */
    for (int i = 1; i < 4; i++) {
        uint16_t fl;
        uint32_t len;
        ck_assert_uint_eq(chunk(h, fd, 10 + (uint64_t)i, &fl, &len), NBD_REPLY_TYPE_BLOCK_STATUS);
        ck_assert_uint_eq(len, 4 + 1024 * 8);
        ck_assert(xread(h, fd, b, len));
    }
    free(b);
    close(fd);
    vdisk_nbd_free(h);
    dev = saved;
    vdisk_close(fd_dev);
}
END_TEST

/* NBD_OPT_GO when the connection's queue cannot be made (no descriptor
 * left for its eventfd): an error reply, never a success followed by a
 * closed connection; the handshake goes on and a later GO works. */
START_TEST(go_without_queue)
{
    int fd;
    vdisk_nbd *h = server(0, 0, 0, &fd);
    send_flags(h, fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    int low = dup(2);
    ck_assert_int_ge(low, 0);
    close(low);
    struct rlimit old, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)low;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
    uint16_t tf = 0;
    uint32_t t = go(h, fd, "disk", &tf);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    ck_assert_uint_eq(t, NBD_REP_ERR_PLATFORM);
    ck_assert_msg(strstr(go_msg, "cannot serve the export now"), "%s", go_msg);
    ck_assert(logged("no queue for it"));
    ck_assert_uint_eq(vdisk_nbd_served(h), 0);
    ck_assert_uint_eq(go(h, fd, "disk", &tf), 0);
    ck_assert_uint_eq(vdisk_nbd_served(h), 1);
    request(h, fd, NBD_CMD_FLUSH, 0, 1, 0, 0);
    ck_assert_uint_eq(simple_reply(h, fd, 1), 0);
    close(fd);
    vdisk_nbd_free(h);
}
END_TEST

START_TEST(never_reads)
{
    int fd;
    vdisk_nbd *h = connected(0, 1500, false, &fd);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    /* 1 MiB reads, as many as the server takes, never reading a reply. */
    size_t sent = 0, peak = 0;
    uint8_t req[28];
    be32_store(req, NBD_REQUEST_MAGIC);
    be16_store(req + 4, 0);
    be16_store(req + 6, NBD_CMD_READ);
    be32_store(req + 24, 1u << 20);
    uint64_t end = now_ms() + 1000;
    size_t part = 0;
    while (now_ms() < end) {
        be64_store(req + 8, sent);
        be64_store(req + 16, (sent % 4) << 20);
        ssize_t w = send(fd, req + part, 28 - part, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            part += (size_t)w;
            if (part == 28) {
                part = 0;
                sent++;
            }
        }
        pump(h, w > 0 ? 0 : 5);
        struct nbd_conn *c = h->conns[0];
        if (c && c->mem > peak)
            peak = c->mem;
    }
    ck_assert_uint_gt(sent, 64);
    ck_assert_msg(peak <= NBD_CONN_MEM + (1u << 20), "a connection held %zu bytes", peak);
    ck_assert_uint_eq(vdisk_nbd_clients(h), 1);
    /* It never reads: dropped once its replies waited 1.5 s. */
    end = now_ms() + 5000;
    while (vdisk_nbd_clients(h) && now_ms() < end)
        pump(h, 20);
    ck_assert_uint_eq(vdisk_nbd_clients(h), 0);
    ck_assert(logged("it does not read its replies"));
    close(fd);
    vdisk_nbd_free(h);
}
END_TEST

/* Requests sent in one go, many per read of the socket (the server reads
 * ahead in the transmission phase): more than the 64 in flight at once
 * wait in its read-ahead and are started as room is made, writes'
 * payloads straddle the reads, and every reply is right. */
START_TEST(pipelined)
{
    int fd;
    vdisk_nbd *h = connected(0, 0, false, &fd);
    enum { NREAD = 300, NWRITE = 40, WLEN = 3000 };
    /* 300 reads of 512 bytes, from the pattern at 2 MiB (byte i & 0xff). */
    uint8_t *reqs = malloc(NREAD * 28);
    for (unsigned i = 0; i < NREAD; i++) {
        uint8_t *r = reqs + 28 * i;
        be32_store(r, NBD_REQUEST_MAGIC);
        be16_store(r + 4, 0);
        be16_store(r + 6, NBD_CMD_READ);
        be64_store(r + 8, 1000 + i);
        be64_store(r + 16, (2u << 20) + 7 * i);
        be32_store(r + 24, 512);
    }
    xwrite(h, fd, reqs, NREAD * 28);
    bool seen[NREAD] = {false};
    uint8_t buf[WLEN];
    for (unsigned k = 0; k < NREAD; k++) {
        uint8_t r[16];
        ck_assert(xread(h, fd, r, 16));
        ck_assert_uint_eq(be32_load(r), NBD_SIMPLE_REPLY_MAGIC);
        ck_assert_uint_eq(be32_load(r + 4), 0);
        uint64_t i = be64_load(r + 8) - 1000;
        ck_assert_uint_lt(i, NREAD);
        ck_assert(!seen[i]);
        seen[i] = true;
        ck_assert(xread(h, fd, buf, 512));
        for (unsigned j = 0; j < 512; j++)
            ck_assert_uint_eq(buf[j], (uint8_t)(7 * i + j));
    }
    /* 40 writes of 3000 bytes (odd sizes: headers and payloads fall
     * anywhere in a read), then a flush, in one stream. */
    size_t len = NWRITE * (28 + WLEN) + 28, at = 0;
    uint8_t *st = malloc(len);
    for (unsigned i = 0; i < NWRITE; i++, at += 28 + WLEN) {
        be32_store(st + at, NBD_REQUEST_MAGIC);
        be16_store(st + at + 4, 0);
        be16_store(st + at + 6, NBD_CMD_WRITE);
        be64_store(st + at + 8, 2000 + i);
        be64_store(st + at + 16, (1u << 20) + (uint64_t)WLEN * i);
        be32_store(st + at + 24, WLEN);
        memset(st + at + 28, 0x30 + (int)i, WLEN);
    }
    be32_store(st + at, NBD_REQUEST_MAGIC);
    be16_store(st + at + 4, 0);
    be16_store(st + at + 6, NBD_CMD_FLUSH);
    be64_store(st + at + 8, 3000);
    be64_store(st + at + 16, 0);
    be32_store(st + at + 24, 0);
    xwrite(h, fd, st, len);
    unsigned acks = 0;
    for (unsigned k = 0; k < NWRITE + 1; k++) {
        uint8_t r[16];
        ck_assert(xread(h, fd, r, 16));
        ck_assert_uint_eq(be32_load(r + 4), 0);
        uint64_t c = be64_load(r + 8);
        ck_assert((c >= 2000 && c < 2000 + NWRITE) || c == 3000);
        acks++;
    }
    ck_assert_uint_eq(acks, NWRITE + 1);
    for (unsigned i = 0; i < NWRITE; i++) {
        request(h, fd, NBD_CMD_READ, 0, 4000 + i, (1u << 20) + (uint64_t)WLEN * i, WLEN);
        ck_assert_uint_eq(simple_reply(h, fd, 4000 + i), 0);
        ck_assert(xread(h, fd, buf, WLEN));
        for (unsigned j = 0; j < WLEN; j++)
            ck_assert_uint_eq(buf[j], 0x30 + i);
    }
    free(reqs);
    free(st);
    close(fd);
    vdisk_nbd_free(h);
}
END_TEST

START_TEST(tcp_thread_and_api)
{
    vdisk_nbd *h;
    struct vdisk_nbd_params p = {.struct_size = sizeof p, .flags = VDISK_NBD_QUIET,
                                 .max_clients = 2, .log = logger};
    ck_assert_int_eq(vdisk_nbd_listen_tcp(&h, NULL, "127.0.0.1", 0, &p), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_nbd_listen_tcp: no device given (NULL)");
    p.flags = 0x100;
    ck_assert_int_eq(vdisk_nbd_listen_tcp(&h, dev, "127.0.0.1", 0, &p), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_nbd_listen_tcp: unknown flags 0x100");
    p.flags = VDISK_NBD_QUIET;
    struct vdisk_nbd_params old = {.struct_size = 4};
    ck_assert_int_eq(vdisk_nbd_new(&h, dev, -1, &old), -EINVAL);
    ck_assert_int_eq(vdisk_nbd_listen_tcp(&h, dev, "127.0.0.1", 0, &p), 0);
    uint16_t port = vdisk_nbd_get_port(h);
    ck_assert_uint_ne(port, 0);
    ck_assert_int_eq(vdisk_nbd_start(h), 0);
    ck_assert_int_eq(vdisk_nbd_start(h), -EBUSY);
    ck_assert_int_eq(vdisk_nbd_process(h), -EBUSY);
    /* Two clients at once, each served to its end. */
    int fds[2];
    for (int i = 0; i < 2; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        ck_assert_int_eq(connect(fds[i], (struct sockaddr *)&a, sizeof a), 0);
        uint8_t g[18];
        ck_assert_int_eq(recv(fds[i], g, 18, MSG_WAITALL), 18);
        ck_assert_uint_eq(be64_load(g), NBD_MAGIC);
    }
    for (int i = 0; i < 2; i++) {
        uint8_t m[4 + 16];
        be32_store(m, NBD_FLAG_C_FIXED_NEWSTYLE);
        be64_store(m + 4, NBD_OPTS_MAGIC);
        be32_store(m + 12, NBD_OPT_EXPORT_NAME);
        be32_store(m + 16, 0);
        ck_assert_int_eq(send(fds[i], m, sizeof m, MSG_NOSIGNAL), (ssize_t)sizeof m);
        uint8_t e[10 + 124];
        ck_assert_int_eq(recv(fds[i], e, sizeof e, MSG_WAITALL), (ssize_t)sizeof e);
        ck_assert_uint_eq(be64_load(e), DISK_SIZE);
        close(fds[i]);
    }
    ck_assert_int_eq(vdisk_nbd_stop(h), 0);
    ck_assert_int_eq(vdisk_nbd_stop(h), -EINVAL);
    ck_assert_uint_eq(vdisk_nbd_connections(h), 2);
    vdisk_nbd_free(h);
    vdisk_nbd_free(NULL);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("nbd-hostile");
    TCase *tc = tcase_create("nbd");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, handshake_rules);
    tcase_add_test(tc, request_checks);
    tcase_add_test(tc, structured);
    tcase_add_test(tc, meta_contexts);
    tcase_add_test(tc, stalls);
    tcase_add_test(tc, tls_gate);
    tcase_add_test(tc, tls_pipelined);
    tcase_add_test(tc, option_flood);
    tcase_add_test(tc, hangup_in_flight);
    tcase_add_test(tc, gone_with_reads_held);
    tcase_add_test(tc, accept_emfile);
    tcase_add_test(tc, zeroes_enotsup);
    tcase_add_test(tc, fast_zero_no_fallback);
    tcase_add_test(tc, status_bounded);
    tcase_add_test(tc, go_without_queue);
    tcase_add_test(tc, never_reads);
    tcase_add_test(tc, tcp_thread_and_api);
    tcase_add_test(tc, pipelined);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    return run_suite(suite());
}
