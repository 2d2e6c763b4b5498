/* SPDX-License-Identifier: MIT */
/*
 * tests/vhost/hostile.c: one `vdisk serve` process (a qcow2 disk on
 * --vhost-user-blk, an ISO on --vhost-user-scsi, --monitor) against a
 * hostile front end (frontend.c), case after case: malformed messages
 * (sizes, fd counts, regions, ring indices, bad requests) and the defects
 * of issue 14 (a request flood republishing the same head, a region larger
 * than its memfd, memory shrunk under the mapping, a call fd that is a
 * full pipe or an eventfd at its maximum, kick fds that are not eventfds,
 * a slow drip, a log flood).  After each case: the server is alive (fresh
 * front ends read a known sector of the disk and the CD's primary volume
 * descriptor, the monitor answers), the image and the ISO files are
 * unchanged (checksums), its open fds are back to where they were and its
 * RSS has not grown by much.  Then 1,000 connect/disconnect cycles (clean
 * sessions, hang-ups in the middle of a message, hang-ups with requests in
 * flight), the fds and the RSS sampled after 100 and after 1,000.
 *
 * Only resource bounds are asserted, never timings; the server's settling
 * after a hang-up is waited for (bounded).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "frontend.h"

/* Under AddressSanitizer freed memory sits in a quarantine (256 MiB by
 * default) and shadow memory grows with every new allocation, so the RSS
 * says nothing about leaks there (LeakSanitizer does that): only the fds
 * are checked. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_CHECKED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_CHECKED 0
#endif
#endif
#ifndef RSS_CHECKED
#define RSS_CHECKED 1
#endif

#define MiB (1024u * 1024u)
#define IMG_SIZE (1u * MiB)
#define CASE_RSS_BOUND (32u * MiB)   /* growth over the baseline after a case */
#define CYCLE_RSS_BOUND (16u * MiB)  /* growth from cycle 100 to cycle 1,000 */
#define CYCLES 1000u

static struct {
    const char *img, *iso, *bs, *cs, *mon;
    uint8_t *orig;       /* the disk's guest content */
    uint8_t *iso_data;
    size_t iso_len;
    uint64_t img_sum, iso_sum;
    unsigned base_fds;
    unsigned long base_rss; /* bytes */
    struct fe f;         /* guest memory reused by the cycles */
} T;

/* ---- The server's resources ----------------------------------------------------------- */

static unsigned server_fds(void)
{
    DIR *d = opendir(fmt("/proc/%d/fd", (int)server_pid));
    ck_assert_ptr_nonnull(d);
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static unsigned long server_rss(void)
{
    char st[4096];
    int fd = open(fmt("/proc/%d/status", (int)server_pid), O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ssize_t n = read(fd, st, sizeof st - 1);
    close(fd);
    ck_assert_int_gt(n, 0);
    st[n] = 0;
    char *p = strstr(st, "VmRSS:");
    ck_assert_ptr_nonnull(p);
    return strtoul(p + 6, NULL, 10) * 1024;
}

/* Waits (10 s at most) for the server to have closed what the last front
 * ends gave it: its fd count back to the baseline. */
static void assert_fds_settle(const char *when)
{
    unsigned n = 0;
    for (int i = 0; i < 1000; i++) {
        assert_server_alive();
        if ((n = server_fds()) == T.base_fds)
            return;
        usleep(10000);
    }
    ck_abort_msg("%s: the server holds %u fds, %u at the start", when, n, T.base_fds);
}

static uint64_t file_sum(const char *path)
{
    size_t len;
    uint8_t *d = read_file(path, &len);
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ d[i]) * 0x100000001b3ull;
    free(d);
    return h;
}

/* ---- Alive ------------------------------------------------------------------------------ */

/* A fresh front end on each device reads what is known; the monitor
 * answers; the files are as they were; the fds and RSS are bounded. */
static void check_after(const char *name)
{
    assert_server_alive();
    assert_serves(T.bs, T.orig);
    struct fe g = {0};
    fe_memory(&g);
    fe_start(&g, T.cs);
    fe_ring(&g, 0);
    fe_ring(&g, 1);
    fe_ring(&g, 2);
    cd_read(&g, 16);
    assert_same_bytes(host(&g, OFF_DATA), T.iso_data + 16 * 2048, 2048, 16 * 2048,
                      fmt("the CD's PVD after %s", name));
    fe_close(&g);
    monitor(T.mon, "info\n", "medium: loaded");
    ck_assert_msg(file_sum(T.img) == T.img_sum, "%s: the image changed", name);
    ck_assert_msg(file_sum(T.iso) == T.iso_sum, "%s: the ISO changed", name);
    assert_fds_settle(name);
    unsigned long rss = server_rss();
    fprintf(stderr, "hostile: %-22s ok: %u fds, RSS %lu KiB\n", name, server_fds(), rss / 1024);
    if (RSS_CHECKED)
        ck_assert_msg(rss < T.base_rss + CASE_RSS_BOUND,
                      "%s: the server's RSS is %lu KiB, %lu KiB at the start", name, rss / 1024,
                      T.base_rss / 1024);
}

/* A session on the disk: negotiated, ring 0 running. */
static void blk_session(struct fe *f)
{
    fe_memory(f);
    fe_start(f, T.bs);
    fe_ring(f, 0);
}

/* ---- The cases ---------------------------------------------------------------------------- */

/* The server hung up on SOCK (an end, or a reset when it left data unread). */
static void assert_hung_up(int sock, const char *what)
{
    char c;
    ssize_t n;
    do
        n = recv(sock, &c, 1, 0);
    while (n < 0 && errno == EINTR);
    ck_assert_msg(n == 0 || (n < 0 && errno == ECONNRESET), "%s: not hung up on (%zd, %s)", what,
                  n, n < 0 ? strerror(errno) : "data");
}

/* Sizes, fd counts, regions, ring indices, bad requests (as vhost_user.c's
 * malformed), and messages that end the connection. */
static void case_malformed(void)
{
    struct fe f = {0};
    blk_session(&f);
    uint32_t st[2] = {0, 16};
    send_raw(f.sock, SET_VRING_NUM, F_VERSION | F_NEED_REPLY, 3, st, 3, NULL, 0);
    uint64_t r = 0;
    ck_assert_uint_eq(recv_reply(&f, SET_VRING_NUM, &r, 8), 8);
    ck_assert_uint_ne(r, 0);
    st[0] = 200;
    ck_assert_uint_ne(acked(&f, SET_VRING_NUM, st, 8, NULL, 0), 0);
    st[0] = 0;
    st[1] = 12;
    ck_assert_uint_ne(acked(&f, SET_VRING_NUM, st, 8, NULL, 0), 0);
    st[1] = 1u << 20;
    ck_assert_uint_ne(acked(&f, SET_VRING_NUM, st, 8, NULL, 0), 0);
    uint32_t base[2] = {0, 1u << 16};
    ck_assert_uint_ne(acked(&f, SET_VRING_BASE, base, 8, NULL, 0), 0);
    uint64_t idx = 99;
    ck_assert_uint_ne(acked(&f, SET_VRING_KICK, &idx, 8, &f.memfd, 1), 0);
    idx = 0;
    ck_assert_uint_ne(acked(&f, SET_VRING_KICK, &idx, 8, NULL, 0), 0);
    idx = 0x100; /* the no-fd flag, with an fd */
    ck_assert_uint_ne(acked(&f, SET_VRING_CALL, &idx, 8, &f.memfd, 1), 0);
    uint64_t mt[1 + 4 * 9] = {9};
    ck_assert_uint_ne(acked(&f, SET_MEM_TABLE, mt, sizeof mt, NULL, 0), 0);
    uint64_t region[5] = {1, GPA_BASE, GUEST_SIZE, uva(&f, 0), 0};
    int two[2] = {f.memfd, f.memfd};
    ck_assert_uint_ne(acked(&f, SET_MEM_TABLE, region, sizeof region, two, 2), 0);
    ck_assert_uint_ne(acked(&f, SET_MEM_TABLE, region, sizeof region, NULL, 0), 0);
    uint64_t wrap[5] = {1, UINT64_MAX - 4095, GUEST_SIZE, uva(&f, 0), 0};
    ck_assert_uint_ne(acked(&f, SET_MEM_TABLE, wrap, sizeof wrap, &f.memfd, 1), 0);
    uint64_t off_wrap[5] = {1, GPA_BASE, GUEST_SIZE, uva(&f, 0), UINT64_MAX - 100};
    ck_assert_uint_ne(acked(&f, SET_MEM_TABLE, off_wrap, sizeof off_wrap, &f.memfd, 1), 0);
    int ev = eventfd(0, EFD_CLOEXEC); /* not a memory file */
    ck_assert_uint_ne(acked(&f, SET_MEM_TABLE, region, sizeof region, &ev, 1), 0);
    close(ev);
    uint32_t cfg_req[5] = {0, 200, 0, 0, 0};
    send_msg(&f, GET_CONFIG, 0, cfg_req, 20, NULL, 0);
    uint8_t cfg[300];
    ck_assert_uint_eq(recv_reply(&f, GET_CONFIG, cfg, sizeof cfg), 0);
    uint32_t addr[10] = {77};
    ck_assert_uint_ne(acked(&f, SET_VRING_ADDR, addr, sizeof addr, NULL, 0), 0);
    ck_assert_uint_ne(acked(&f, 99, NULL, 0, NULL, 0), 0);
    /* The ring still works. */
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 0, 4096, 1), 0);
    assert_same_bytes(host(&f, OFF_DATA), T.orig, 4096, 0, "read after malformed messages");
    /* Bad requests: a descriptor outside guest memory (an error status),
     * an available index that jumps past the ring (the ring breaks, the
     * error fd is signalled). */
    struct buf bad[3] = {{OFF_HDR, 16, false}, {GUEST_SIZE + 0x1000, 512, true},
                         {OFF_STATUS, 1, true}};
    struct { uint32_t type, reserved; uint64_t sector; } h = {BLK_IN, 0, 0};
    memcpy(host(&f, OFF_HDR), &h, sizeof h);
    *(uint8_t *)host(&f, OFF_STATUS) = 0xee;
    fe_add(&f, 0, 0, bad, 3);
    fe_kick(&f, 0);
    fe_wait(&f, 0);
    ck_assert_uint_ne(*(uint8_t *)host(&f, OFF_STATUS), 0);
    int err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    idx = 0;
    ok(&f, SET_VRING_ERR, &idx, 8, &err, 1);
    uint8_t *avail = host(&f, ring_off(0, OFF_AVAIL));
    __atomic_store_n((uint16_t *)(avail + 2), (uint16_t)(f.avail_idx[0] + 3 * QSIZE),
                     __ATOMIC_RELEASE);
    fe_kick(&f, 0);
    struct pollfd pe = {.fd = err, .events = POLLIN};
    ck_assert_msg(poll(&pe, 1, 10000) == 1, "no error signal for a broken ring");
    close(err);
    fe_close(&f);

    /* Messages that end the connection: a payload larger than any request,
     * a wrong version, more fds than any request takes, a header cut short. */
    f.sock = fe_connect(T.bs);
    send_raw(f.sock, SET_VRING_NUM, F_VERSION, 1u << 30, NULL, 0, NULL, 0);
    assert_hung_up(f.sock, "a payload of 1 GiB");
    fe_free(&f);
    f.sock = fe_connect(T.cs);
    send_raw(f.sock, GET_FEATURES, 0x2, 0, NULL, 0, NULL, 0);
    assert_hung_up(f.sock, "version 2");
    fe_free(&f);
    int many[12];
    for (int i = 0; i < 12; i++)
        many[i] = eventfd(0, EFD_CLOEXEC);
    f.sock = fe_connect(T.bs);
    send_raw(f.sock, SET_VRING_CALL, F_VERSION, 8, &idx, 8, many, 12);
    assert_hung_up(f.sock, "12 fds");
    fe_free(&f);
    for (int i = 0; i < 12; i++)
        close(many[i]);
    f.sock = fe_connect(T.cs);
    ck_assert_int_eq(send(f.sock, "\x01\x00\x00", 3, MSG_NOSIGNAL), 3);
    fe_free(&f);
}

/* The same head published again and again, on the disk's request ring and
 * on the CD's event ring (which holds its buffers): issue 14 item 1. */
static void flood(struct fe *f, unsigned q, const struct buf *b, unsigned n)
{
    fe_add(f, q, 0, b, n);
    uint8_t *avail = host(f, ring_off(q, OFF_AVAIL));
    for (unsigned i = 0; i < QSIZE; i++)
        memset(avail + 4 + 2 * i, 0, 2);
    for (unsigned k = 0; k < 200; k++) {
        f->avail_idx[q] = (uint16_t)(f->avail_idx[q] + QSIZE);
        __atomic_store_n((uint16_t *)(avail + 2), f->avail_idx[q], __ATOMIC_RELEASE);
        fe_kick(f, q);
    }
    /* Still answering on this connection. */
    ck_assert_uint_ge(get_u64(f, GET_QUEUE_NUM), 1);
}

static void case_flood(void)
{
    struct fe f = {0};
    blk_session(&f);
    struct { uint32_t type, reserved; uint64_t sector; } h = {BLK_IN, 0, 0};
    memcpy(host(&f, OFF_HDR), &h, sizeof h);
    struct buf rd[3] = {{OFF_HDR, 16, false}, {OFF_DATA, 65536, true}, {OFF_STATUS, 1, true}};
    flood(&f, 0, rd, 3);
    fe_close(&f);
    struct fe g = {0};
    fe_memory(&g);
    fe_start(&g, T.cs);
    fe_ring(&g, 0);
    fe_ring(&g, 1);
    fe_ring(&g, 2);
    /* The event ring keeps its buffers: past its size it must break. */
    int err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    uint64_t idx = 1;
    ok(&g, SET_VRING_ERR, &idx, 8, &err, 1);
    struct buf ev[1] = {{OFF_DATA, 16, true}};
    flood(&g, 1, ev, 1);
    struct pollfd pe = {.fd = err, .events = POLLIN};
    ck_assert_msg(poll(&pe, 1, 10000) == 1, "the flooded event ring did not break");
    close(err);
    fe_close(&g);
}

/* A region larger than its memfd, or past it by its offset (item 2). */
static void case_region_past_file(void)
{
    struct fe f = {0};
    fe_memory(&f);
    f.sock = fe_connect(T.bs);
    uint64_t big[5] = {1, GPA_BASE, 2ull * GUEST_SIZE, uva(&f, 0), 0};
    ck_assert_uint_eq(acked(&f, SET_MEM_TABLE, big, sizeof big, &f.memfd, 1), EINVAL);
    uint64_t shifted[5] = {1, GPA_BASE, GUEST_SIZE, uva(&f, 0), 4096};
    ck_assert_uint_eq(acked(&f, SET_MEM_TABLE, shifted, sizeof shifted, &f.memfd, 1), EINVAL);
    fe_close(&f);
}

/* Memory that cannot be sealed, shrunk under a request (item 2): that
 * connection is closed, the process lives. */
static void case_memory_shrunk(void)
{
    struct fe f = {0};
    blk_session(&f);
    struct { uint32_t type, reserved; uint64_t sector; } h = {BLK_OUT, 0, 0};
    memcpy(host(&f, OFF_HDR), &h, sizeof h);
    struct buf b[3] = {{OFF_HDR, 16, false}, {OFF_DATA, 4096, false}, {OFF_STATUS, 1, true}};
    fe_add(&f, 0, 8, b, 3);
    ck_assert_int_eq(ftruncate(f.memfd, 0), 0);
    munmap(f.mem, GUEST_SIZE);
    f.mem = NULL;
    fe_kick(&f, 0);
    assert_hung_up(f.sock, "memory shrunk");
    fe_close(&f);
}

/* A ring's call fd replaced by CALL: reads go on (item 3). */
static void hostile_call(int call)
{
    struct fe f = {0};
    blk_session(&f);
    uint64_t idx = 0;
    ok(&f, SET_VRING_CALL, &idx, 8, &call, 1);
    for (unsigned k = 0; k < 4; k++) {
        ck_assert_uint_eq(blk_req(&f, BLK_IN, 8 * k, 4096, 1), 0);
        assert_same_bytes(host(&f, OFF_DATA), T.orig + 4096 * k, 4096, 4096 * k,
                          "read with a hostile call fd");
    }
    fe_close(&f);
}

static void case_call_full_pipe(void)
{
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    char junk[4096] = {0};
    while (write(p[1], junk, sizeof junk) > 0)
        ;
    while (write(p[1], junk, 1) > 0)
        ;
    ck_assert_int_eq(fcntl(p[1], F_SETFL, 0), 0);
    hostile_call(p[1]);
    close(p[1]);
    close(p[0]);
}

static void case_call_eventfd_max(void)
{
    int e = eventfd(0, EFD_CLOEXEC);
    uint64_t max = 0xfffffffffffffffeull;
    ck_assert_int_eq(write(e, &max, 8), 8);
    hostile_call(e);
    close(e);
}

/* Kick fds that are not counting eventfds: refused, the error fd
 * signalled (item 5). */
static void case_kick_not_eventfd(void)
{
    struct fe f = {0};
    blk_session(&f);
    int err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    uint64_t idx = 0, v;
    ok(&f, SET_VRING_ERR, &idx, 8, &err, 1);
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    close(p[1]);
    int sem = eventfd(1u << 30, EFD_CLOEXEC | EFD_SEMAPHORE);
    int sp[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    ck_assert_int_eq(write(sp[1], "x", 1), 1);
    int bad[3] = {p[0], sem, sp[0]};
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_ne(acked(&f, SET_VRING_KICK, &idx, 8, &bad[i], 1), 0);
        struct pollfd pe = {.fd = err, .events = POLLIN};
        ck_assert_msg(poll(&pe, 1, 10000) == 1, "kick fd %d: the error fd was not signalled", i);
        ck_assert_int_eq(read(err, &v, 8), 8);
        close(bad[i]);
    }
    close(sp[1]);
    ok(&f, SET_VRING_KICK, &idx, 8, &f.kick[0], 1);
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 0, 4096, 1), 0);
    close(err);
    fe_close(&f);
}

/* Three bytes of a header on the CD's socket, then nothing (item 4): the
 * disk and the monitor are served meanwhile, and the CD's connection is
 * closed at the whole-message deadline. */
static void case_slow_drip(void)
{
    int d = fe_connect(T.cs);
    uint32_t hdr = GET_FEATURES;
    ck_assert_int_eq(send(d, &hdr, 3, MSG_NOSIGNAL), 3);
    assert_serves(T.bs, T.orig);
    monitor(T.mon, "info\n", "medium: loaded");
    assert_hung_up(d, "a slow drip"); /* SO_RCVTIMEO is 10 s; the deadline 5 s */
    close(d);
}

static unsigned log_lines(void)
{
    size_t len;
    char *log = read_file(server_log, &len);
    unsigned lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += log[i] == '\n';
    free(log);
    return lines;
}

/* 1,000 mistakes with and without need_reply, 200 connections with a bad
 * header: the log grows by little (item 8). */
static void case_log_flood(void)
{
    unsigned before = log_lines();
    struct fe f = {0};
    f.sock = fe_connect(T.bs);
    uint32_t st[2] = {200, 16};
    for (unsigned k = 0; k < 500; k++)
        ck_assert_uint_ne(acked(&f, SET_VRING_NUM, st, 8, NULL, 0), 0);
    for (unsigned k = 0; k < 500; k++)
        send_msg(&f, SET_VRING_NUM, 0, st, 8, NULL, 0);
    ck_assert_uint_ne(get_u64(&f, GET_FEATURES), 0);
    fe_free(&f);
    for (unsigned k = 0; k < 200; k++) {
        f.sock = fe_connect(k % 2 ? T.bs : T.cs);
        send_raw(f.sock, GET_FEATURES, 0x2, 0, NULL, 0, NULL, 0);
        assert_hung_up(f.sock, "version 2");
        fe_free(&f);
    }
    unsigned added = log_lines() - before;
    ck_assert_msg(added < 200, "%u lines of log for 1,200 mistakes", added);
}

/* ---- Connect/disconnect cycles ---------------------------------------------------------- */

static void cycle(unsigned i)
{
    struct fe *f = &T.f;
    switch (i % 10) {
    case 0: case 1: case 2: case 3: /* a clean session on the disk */
        fe_start(f, T.bs);
        fe_ring(f, 0);
        ck_assert_uint_eq(blk_req(f, BLK_IN, 8, 4096, 1), 0);
        ck_assert_int_eq(memcmp(host(f, OFF_DATA), T.orig + 4096, 4096), 0);
        break;
    case 4: case 5: /* a clean session on the CD */
        fe_start(f, T.cs);
        fe_ring(f, 0);
        fe_ring(f, 1);
        fe_ring(f, 2);
        cd_read(f, 16);
        ck_assert_int_eq(memcmp(host(f, OFF_DATA), T.iso_data + 16 * 2048, 2048), 0);
        break;
    case 6: case 7: { /* hung up in the middle of a message, fds sent */
        f->sock = fe_connect(i % 2 ? T.bs : T.cs);
        ck_assert_uint_ne(get_u64(f, GET_FEATURES), 0);
        uint64_t region[5] = {1, GPA_BASE, GUEST_SIZE, uva(f, 0), 0};
        send_raw(f->sock, SET_MEM_TABLE, F_VERSION, sizeof region + 100, region, sizeof region,
                 &f->memfd, 1);
        break;
    }
    default: { /* hung up with requests in flight */
        fe_start(f, T.bs);
        fe_ring(f, 0);
        for (unsigned k = 0; k < 4; k++) {
            struct { uint32_t type, reserved; uint64_t sector; } h = {BLK_IN, 0, 64 * k};
            memcpy(host(f, OFF_HDR + 32 * k), &h, sizeof h);
            struct buf b[3] = {{OFF_HDR + 32 * k, 16, false},
                               {OFF_DATA + 65536 * k, 65536, true},
                               {OFF_STATUS + k, 1, true}};
            fe_add(f, 0, 3 * k, b, 3);
        }
        fe_kick(f, 0);
        break;
    }
    }
    fe_free(f);
}

START_TEST(hostile_front_end)
{
    const char *tree = scratch("isotree");
    T.iso = scratch("hostile.iso");
    RUN_OK("mkdir -p '%s' && head -c 200000 /dev/urandom > '%s/file.bin' && "
           "xorriso -as mkisofs -quiet -R -V HOSTILECD -o '%s' '%s'",
           tree, tree, T.iso, tree);
    T.iso_data = read_file(T.iso, &T.iso_len);
    uint64_t seed = 41;
    T.img = make_qcow2(&seed, &T.orig, IMG_SIZE);
    T.bs = scratch("h-blk.sock");
    T.cs = scratch("h-scsi.sock");
    T.mon = scratch("h-mon.sock");
    T.img_sum = file_sum(T.img);
    T.iso_sum = file_sum(T.iso);
    start_server(T.bs, "--vhost-user-blk", T.bs, "--vhost-user-scsi", T.cs, "--cdrom", T.iso,
                 "--monitor", T.mon, T.img, NULL);
    wait_for_file(T.cs, server_pid);
    wait_for_file(T.mon, server_pid);
    T.base_fds = server_fds();
    /* A first round of every kind of session warms the allocator up. */
    fe_memory(&T.f);
    for (unsigned i = 0; i < 10; i++)
        cycle(i);
    check_after("warm-up");
    T.base_rss = server_rss();
    fprintf(stderr, "hostile: baseline %u fds, RSS %lu KiB%s\n", T.base_fds, T.base_rss / 1024,
            RSS_CHECKED ? "" : " (not checked under AddressSanitizer)");

    static const struct {
        const char *name;
        void (*run)(void);
    } cases[] = {
        {"malformed", case_malformed},
        {"flood", case_flood},
        {"region-past-file", case_region_past_file},
        {"memory-shrunk", case_memory_shrunk},
        {"call-full-pipe", case_call_full_pipe},
        {"call-eventfd-max", case_call_eventfd_max},
        {"kick-not-eventfd", case_kick_not_eventfd},
        {"slow-drip", case_slow_drip},
        {"log-flood", case_log_flood},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        cases[k].run();
        check_after(cases[k].name);
    }

    unsigned long rss100 = 0;
    for (unsigned i = 0; i < CYCLES; i++) {
        cycle(i);
        if (i + 1 == 100 || i + 1 == CYCLES) {
            assert_fds_settle(fmt("after %u cycles", i + 1));
            unsigned long rss = server_rss();
            fprintf(stderr, "hostile: after %u cycles: %u fds, RSS %lu KiB\n", i + 1,
                    server_fds(), rss / 1024);
            if (i + 1 == 100)
                rss100 = rss;
            else if (RSS_CHECKED)
                ck_assert_msg(rss < rss100 + CYCLE_RSS_BOUND,
                              "RSS %lu KiB after %u cycles, %lu KiB after 100", rss / 1024,
                              CYCLES, rss100 / 1024);
        }
    }
    check_after("cycles");
    ck_assert_int_eq(stop_server(), 0);
    ck_assert_msg(file_sum(T.img) == T.img_sum, "the image changed at exit");
    RUN_OK("'%s' check '%s'", vdisk_bin(), T.img);
    fe_close(&T.f);
    free(T.orig);
    free(T.iso_data);
}
END_TEST

static void teardown(void)
{
    kill_server();
}

static Suite *suite(void)
{
    Suite *s = suite_create("vhost-hostile");
    TCase *tc = tcase_create("serve");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, hostile_front_end);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    require_program("xorriso");
    return run_suite(suite());
}
