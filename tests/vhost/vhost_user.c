/* SPDX-License-Identifier: MIT */
/*
 * tests/vhost/vhost_user.c: `vdisk serve` driven by the tests' small
 * vhost-user front end (frontend.c): guest memory in a memfd, split
 * virtqueues built in it, kicks and calls through eventfds.  virtio-blk reads, writes, flushes and
 * GET_ID checked against the image afterwards; GET_CONFIG; malformed
 * messages that must not crash the server; a disconnect and a reconnect;
 * SIGTERM (exit 0, image flushed); virtio-scsi INQUIRY and READ(10) on the
 * CD-ROM, and a medium change through the monitor socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"
#include "frontend.h"

START_TEST(blk_io)
{
    uint64_t seed = 7;
    uint8_t *orig;
    const size_t size = 4u << 20;
    const char *img = make_qcow2(&seed, &orig, size);
    const char *sock = scratch("blk.sock");
    start_server(sock, "--vhost-user-blk", sock, "--serial", "vhost-test-serial", img, NULL);
    struct fe f = {0};
    fe_memory(&f);
    fe_start(&f, sock);

    ck_assert_uint_ge(get_u64(&f, GET_QUEUE_NUM), 1);
    ck_assert_uint_ne(f.proto & (1ull << PROTO_CONFIG), 0);
    /* GET_CONFIG: the capacity in 512-byte sectors. */
    uint32_t cfg_req[3 + 2] = {0, 8, 0, 0, 0};
    send_msg(&f, GET_CONFIG, 0, cfg_req, 20, NULL, 0);
    uint8_t cfg[20];
    ck_assert_uint_eq(recv_reply(&f, GET_CONFIG, cfg, sizeof cfg), 20);
    uint64_t cap;
    memcpy(&cap, cfg + 12, 8);
    ck_assert_uint_eq(cap, size / 512);

    fe_ring(&f, 0);

    /* A read of 12 KiB at sector 8, in three segments. */
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 8, 12288, 3), 0);
    assert_same_bytes(host(&f, OFF_DATA), orig + 8 * 512, 12288, 8 * 512, "read");
    ck_assert_uint_eq(used_len(&f, 0, 0), 12288 + 1);

    /* Writes: 8 KiB at sector 100 in two segments, 512 bytes at the last sector. */
    uint8_t *pat = malloc(8192);
    fill_random(pat, 8192, &seed);
    memcpy(host(&f, OFF_DATA), pat, 8192);
    ck_assert_uint_eq(blk_req(&f, BLK_OUT, 100, 8192, 2), 0);
    memcpy(host(&f, OFF_DATA), pat, 512);
    ck_assert_uint_eq(blk_req(&f, BLK_OUT, size / 512 - 1, 512, 1), 0);
    ck_assert_uint_eq(blk_req(&f, BLK_FLUSH, 0, 0, 1), 0);

    /* The write reads back through the ring. */
    memset(host(&f, OFF_DATA), 0, 8192);
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 100, 8192, 1), 0);
    assert_same_bytes(host(&f, OFF_DATA), pat, 8192, 100 * 512, "read after write");

    /* Five reads in flight at once, one kick: each lands in its own buffer. */
    for (unsigned k = 0; k < 5; k++) {
        struct { uint32_t type, reserved; uint64_t sector; } rh = {BLK_IN, 0, 200 + 16 * k};
        memcpy(host(&f, OFF_HDR + 32 * k), &rh, sizeof rh);
        *(uint8_t *)host(&f, OFF_STATUS + k) = 0xee;
        struct buf b[3] = {{OFF_HDR + 32 * k, 16, false}, {OFF_DATA + 8192 * k, 8192, true},
                           {OFF_STATUS + k, 1, true}};
        fe_add(&f, 0, 3 * k, b, 3);
    }
    fe_kick(&f, 0);
    fe_wait(&f, 0);
    for (unsigned k = 0; k < 5; k++) {
        ck_assert_uint_eq(*(uint8_t *)host(&f, OFF_STATUS + k), 0);
        assert_same_bytes(host(&f, OFF_DATA + 8192 * k), orig + (200 + 16 * k) * 512, 8192,
                          (200 + 16 * k) * 512, "batched read");
    }

    /* GET_ID. */
    memset(host(&f, OFF_DATA), 0, 20);
    ck_assert_uint_eq(blk_req(&f, BLK_GET_ID, 0, 20, 1), 0);
    ck_assert_str_eq((char *)host(&f, OFF_DATA), "vhost-test-serial");

    /* Beyond the end: an I/O error, and the server goes on. */
    ck_assert_uint_eq(blk_req(&f, BLK_IN, size / 512, 512, 1), 1);
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 0, 512, 1), 0);

    /* GET_VRING_BASE stops the ring and says how far it got. */
    uint32_t st[2] = {0, 0};
    send_msg(&f, GET_VRING_BASE, 0, st, 8, NULL, 0);
    ck_assert_uint_eq(recv_reply(&f, GET_VRING_BASE, st, 8), 8);
    ck_assert_uint_eq(st[0], 0);
    ck_assert_uint_eq(st[1], f.avail_idx[0]);

    /* SIGTERM: exit 0, the socket file gone, the writes in the image. */
    ck_assert_int_eq(stop_server(), 0);
    ck_assert_int_ne(access(sock, F_OK), 0);
    fe_free(&f);
    uint8_t back[8192];
    read_image(img, back, 8192, 100 * 512);
    assert_same_bytes(back, pat, 8192, 100 * 512, "image after exit");
    read_image(img, back, 512, size - 512);
    assert_same_bytes(back, pat, 512, size - 512, "image's last sector");
    read_image(img, back, 4096, 0);
    assert_same_bytes(back, orig, 4096, 0, "image's first sectors");
    RUN_OK("'%s' check '%s'", vdisk_bin(), img);
    if (have_program("qemu-img"))
        RUN_OK("qemu-img check '%s'", img);
    else
        skip_note("blk_io: qemu-img check of the image: qemu-img is not installed");
    fe_close(&f);
    free(pat);
    free(orig);
}
END_TEST

/* Malformed messages: failures the front end hears about, never a crash;
 * a message that cannot be read closes the connection, and the next
 * front end is served. */
START_TEST(malformed)
{
    uint64_t seed = 11;
    uint8_t *orig;
    const char *img = make_qcow2(&seed, &orig, 1u << 20);
    const char *sock = scratch("bad.sock");
    start_server(sock, "--vhost-user-blk", sock, img, NULL);
    struct fe f = {0};
    fe_memory(&f);
    fe_start(&f, sock);

    /* A vring state 3 bytes long. */
    uint32_t st[2] = {0, 16};
    send_raw(f.sock, SET_VRING_NUM, F_VERSION | F_NEED_REPLY, 3, st, 3, NULL, 0);
    uint64_t r = 0;
    ck_assert_uint_eq(recv_reply(&f, SET_VRING_NUM, &r, 8), 8);
    ck_assert_uint_ne(r, 0);
    /* A ring that does not exist; a size that is not a power of two. */
    st[0] = 200;
    ck_assert_uint_ne(acked(&f, SET_VRING_NUM, st, 8, NULL, 0), 0);
    st[0] = 0;
    st[1] = 12;
    ck_assert_uint_ne(acked(&f, SET_VRING_NUM, st, 8, NULL, 0), 0);
    st[1] = 1u << 20;
    ck_assert_uint_ne(acked(&f, SET_VRING_NUM, st, 8, NULL, 0), 0);
    /* A kick for ring 99; a kick without its fd. */
    uint64_t idx = 99;
    ck_assert_uint_ne(acked(&f, SET_VRING_KICK, &idx, 8, &f.memfd, 1), 0);
    idx = 0;
    ck_assert_uint_ne(acked(&f, SET_VRING_KICK, &idx, 8, NULL, 0), 0);
    /* Memory tables: 9 regions; one region and two fds; an address that wraps;
     * a region larger than the file. */
    uint64_t mt[1 + 4 * 9] = {9};
    ck_assert_uint_ne(acked(&f, SET_MEM_TABLE, mt, sizeof mt, NULL, 0), 0);
    uint64_t region[5] = {1, GPA_BASE, GUEST_SIZE, uva(&f, 0), 0};
    int two[2] = {f.memfd, f.memfd};
    ck_assert_uint_ne(acked(&f, SET_MEM_TABLE, region, sizeof region, two, 2), 0);
    uint64_t wrap[5] = {1, UINT64_MAX - 4095, GUEST_SIZE, uva(&f, 0), 0};
    ck_assert_uint_ne(acked(&f, SET_MEM_TABLE, wrap, sizeof wrap, &f.memfd, 1), 0);
    uint64_t off_wrap[5] = {1, GPA_BASE, GUEST_SIZE, uva(&f, 0), UINT64_MAX - 100};
    ck_assert_uint_ne(acked(&f, SET_MEM_TABLE, off_wrap, sizeof off_wrap, &f.memfd, 1), 0);
    /* GET_CONFIG whose size disagrees with the payload: an empty reply. */
    uint32_t cfg_req[5] = {0, 200, 0, 0, 0};
    send_msg(&f, GET_CONFIG, 0, cfg_req, 20, NULL, 0);
    uint8_t cfg[300];
    ck_assert_uint_eq(recv_reply(&f, GET_CONFIG, cfg, sizeof cfg), 0);
    /* An unknown request. */
    ck_assert_uint_ne(acked(&f, 99, NULL, 0, NULL, 0), 0);
    /* The connection still works, and so does the ring. */
    ck_assert_uint_ne(get_u64(&f, GET_FEATURES) & (1ull << VIRTIO_F_VERSION_1), 0);
    fe_ring(&f, 0);
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 0, 4096, 1), 0);
    assert_same_bytes(host(&f, OFF_DATA), orig, 4096, 0, "read");
    /* A descriptor pointing outside guest memory: an error status. */
    struct buf bad[3] = {{OFF_HDR, 16, false}, {GUEST_SIZE + 0x1000, 512, true},
                         {OFF_STATUS, 1, true}};
    struct { uint32_t type, reserved; uint64_t sector; } h = {BLK_IN, 0, 0};
    memcpy(host(&f, OFF_HDR), &h, sizeof h);
    *(uint8_t *)host(&f, OFF_STATUS) = 0xee;
    fe_add(&f, 0, 0, bad, 3);
    fe_kick(&f, 0);
    fe_wait(&f, 0);
    ck_assert_uint_ne(*(uint8_t *)host(&f, OFF_STATUS), 0);

    /* An available index that jumps by more than the ring's size breaks the
     * ring: the error eventfd (SET_VRING_ERR) is signalled. */
    int err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    idx = 0;
    ok(&f, 14 /* SET_VRING_ERR */, &idx, 8, &err, 1);
    uint8_t *avail = host(&f, ring_off(0, OFF_AVAIL));
    __atomic_store_n((uint16_t *)(avail + 2), (uint16_t)(f.avail_idx[0] + 3 * QSIZE),
                     __ATOMIC_RELEASE);
    fe_kick(&f, 0);
    struct pollfd pe = {.fd = err, .events = POLLIN};
    ck_assert_msg(poll(&pe, 1, 10000) == 1, "no error signal for a broken ring");
    close(err);
    assert_server_alive();

    /* A payload bigger than any request: the server hangs up. */
    send_raw(f.sock, SET_VRING_NUM, F_VERSION, 1u << 30, NULL, 0, NULL, 0);
    char c;
    ck_assert_int_eq(recv(f.sock, &c, 1, 0), 0);
    fe_free(&f);
    assert_server_alive();
    /* A wrong protocol version: the same. */
    f.sock = fe_connect(sock);
    send_raw(f.sock, GET_FEATURES, 0x2, 0, NULL, 0, NULL, 0);
    ck_assert_int_eq(recv(f.sock, &c, 1, 0), 0);
    fe_free(&f);
    /* A header cut short, then the end of the connection. */
    f.sock = fe_connect(sock);
    ck_assert_int_eq(send(f.sock, "\x01\x00\x00", 3, MSG_NOSIGNAL), 3);
    fe_free(&f);
    assert_server_alive();

    /* The next front end is served as the first. */
    fe_start(&f, sock);
    fe_ring(&f, 0);
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 8, 4096, 2), 0);
    assert_same_bytes(host(&f, OFF_DATA), orig + 4096, 4096, 4096, "read after reconnect");
    ck_assert_int_eq(stop_server(), 0);
    fe_close(&f);
    free(orig);
}
END_TEST

/* The front end goes away with the ring running, and comes back (QEMU's
 * reconnect): its writes are in the image, the new session works. */
START_TEST(reconnect)
{
    uint64_t seed = 13;
    uint8_t *orig;
    const char *img = make_qcow2(&seed, &orig, 2u << 20);
    const char *sock = scratch("re.sock");
    start_server(sock, "--vhost-user-blk", sock, "--num-queues", "2", img, NULL);
    uint8_t pat[4096];
    for (int round = 0; round < 3; round++) {
        struct fe f = {0};
        fe_memory(&f);
        fe_start(&f, sock);
        ck_assert_uint_eq(get_u64(&f, GET_QUEUE_NUM), 2);
        fe_ring(&f, 0);
        if (round > 0) {
            ck_assert_uint_eq(blk_req(&f, BLK_IN, 64, 4096, 1), 0);
            assert_same_bytes(host(&f, OFF_DATA), pat, 4096, 64 * 512, "previous session's write");
        }
        memset(pat, 0x30 + round, sizeof pat);
        memcpy(host(&f, OFF_DATA), pat, sizeof pat);
        ck_assert_uint_eq(blk_req(&f, BLK_OUT, 64, 4096, 1), 0);
        /* Leave buffers available without kicking, then hang up. */
        fe_close(&f);
        fe_free(&f);
        assert_server_alive();
    }
    ck_assert_int_eq(stop_server(), 0);
    uint8_t back[4096];
    read_image(img, back, sizeof back, 64 * 512);
    assert_same_bytes(back, pat, sizeof back, 64 * 512, "image");
    free(orig);
}
END_TEST

/* ---- virtio-scsi CD-ROM ------------------------------------------------------------------ */

START_TEST(scsi_cdrom)
{
    CASE_REQUIRE_PROGRAM("xorriso");
    const char *tree = scratch("isotree"), *iso = scratch("cd.iso"), *iso2 = scratch("cd2.iso");
    RUN_OK("mkdir -p '%s' && head -c 100000 /dev/urandom > '%s/file.bin' && "
           "xorriso -as mkisofs -quiet -R -V FIRSTCD -o '%s' '%s' && "
           "xorriso -as mkisofs -quiet -R -V SECONDCD -o '%s' '%s'",
           tree, tree, iso, tree, iso2, tree);
    size_t iso_len;
    uint8_t *iso_data = read_file(iso, &iso_len);
    const char *sock = scratch("scsi.sock"), *mon = scratch("mon.sock");
    start_server(sock, "--vhost-user-scsi", sock, "--cdrom", iso, "--monitor", mon, NULL);
    struct fe f = {0};
    fe_memory(&f);
    fe_start(&f, sock);
    ck_assert_uint_ge(get_u64(&f, GET_QUEUE_NUM), 3);
    fe_ring(&f, 0);
    fe_ring(&f, 1);
    fe_ring(&f, 2);

    /* CONFIG is not offered: SET_CONFIG (sense_size 256) is refused, and
     * commands keep their 96-byte sense field (issue 14 item 6). */
    ck_assert_uint_eq(f.proto & (1ull << PROTO_CONFIG), 0);
    uint32_t set_sense[4] = {20, 4, 0, 256};
    ck_assert_uint_eq(acked(&f, SET_CONFIG, set_sense, sizeof set_sense, NULL, 0), ENOTSUP);
    uint32_t get_sense[4] = {20, 4, 0, 0}, sense_size;
    send_msg(&f, GET_CONFIG, 0, get_sense, sizeof get_sense, NULL, 0);
    ck_assert_uint_eq(recv_reply(&f, GET_CONFIG, get_sense, sizeof get_sense), 16);
    memcpy(&sense_size, &get_sense[3], 4);
    ck_assert_uint_eq(sense_size, 96);

    uint8_t key;
    const uint8_t inquiry[6] = {0x12, 0, 0, 0, 36, 0};
    ck_assert_uint_eq(scsi_cmd_ua(&f, inquiry, 6, 36, &key), 0);
    ck_assert_uint_eq(used_len(&f, 2, (uint16_t)(f.used_seen[2] - 1)), 108 + 36);
    uint8_t *d = host(&f, OFF_DATA);
    ck_assert_uint_eq(d[0] & 0x1f, 5);     /* an MMC device */
    ck_assert_uint_eq(d[1] & 0x80, 0x80);  /* removable */

    const uint8_t read10[10] = {0x28, 0, 0, 0, 0, 16, 0, 0, 1, 0}; /* LBA 16, 1 block */
    ck_assert_uint_eq(scsi_cmd_ua(&f, read10, 10, 2048, &key), 0);
    assert_same_bytes(d, iso_data + 16 * 2048, 2048, 16 * 2048, "READ(10) of the PVD");
    ck_assert_int_eq(memcmp(d + 40, "FIRSTCD", 7), 0);

    /* The monitor changes the medium: a unit attention, then the new disc. */
    monitor(mon, "info\n", "medium: loaded");
    monitor(mon, "change ", "error");
    monitor(mon, fmt("change %s\n", iso2), "ok");
    ck_assert_uint_eq(scsi_cmd_ua(&f, read10, 10, 2048, &key), 0);
    ck_assert_int_eq(memcmp(d + 40, "SECONDCD", 8), 0);
    monitor(mon, "eject\n", "ok");
    monitor(mon, "info\n", "medium: none");
    const uint8_t tur[6] = {0};
    ck_assert_uint_eq(scsi_cmd_ua(&f, tur, 6, 0, &key), 2);
    ck_assert_uint_eq(key, 2); /* NOT READY */
    monitor(mon, "bogus\n", "error");

    ck_assert_int_eq(stop_server(), 0);
    ck_assert_int_ne(access(mon, F_OK), 0);
    fe_close(&f);
    free(iso_data);
}
END_TEST

/* One process, two sockets: a disk and a CD-ROM; SIGINT stops it too. */
START_TEST(two_devices)
{
    uint64_t seed = 17;
    uint8_t *orig;
    const char *img = make_qcow2(&seed, &orig, 1u << 20);
    const char *bs = scratch("two-blk.sock"), *cs = scratch("two-scsi.sock");
    start_server(bs, "--vhost-user-blk", bs, "--vhost-user-scsi", cs, "-r", img, NULL);
    wait_for_file(cs, server_pid);
    struct fe f = {0}, g = {0};
    fe_memory(&f);
    fe_memory(&g);
    fe_start(&f, bs);
    fe_start(&g, cs);
    ck_assert_uint_ge(get_u64(&g, GET_QUEUE_NUM), 3);
    fe_ring(&f, 0);
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 0, 4096, 1), 0);
    assert_same_bytes(host(&f, OFF_DATA), orig, 4096, 0, "read");
    /* Read-only: a write fails. */
    ck_assert_uint_ne(blk_req(&f, BLK_OUT, 0, 512, 1), 0);
    kill(server_pid, SIGINT);
    int status;
    ck_assert_int_eq(waitpid(server_pid, &status, 0), server_pid);
    server_pid = -1;
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status 0x%x", status);
    ck_assert_int_ne(access(bs, F_OK), 0);
    ck_assert_int_ne(access(cs, F_OK), 0);
    fe_free(&f);
    fe_free(&g);
    munmap(f.mem, GUEST_SIZE);
    munmap(g.mem, GUEST_SIZE);
    close(f.memfd);
    close(g.memfd);
    free(orig);
}
END_TEST

START_TEST(cli_errors)
{
    struct run *r = run("'%s' serve", vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    r = run("'%s' serve --vhost-user-blk '%s'", vdisk_bin(), scratch("x.sock"));
    ck_assert_int_eq(r->status, 1);
    ck_assert_ptr_nonnull(strstr(r->err, "IMAGE"));
    r = run("'%s' serve --vhost-user-blk '%s' '%s'", vdisk_bin(), scratch("x.sock"),
            scratch("missing.img"));
    ck_assert_int_eq(r->status, 1);
    ck_assert_int_ne(access(scratch("x.sock"), F_OK), 0);
    /* A socket path that is a regular file is not replaced. */
    write_file(scratch("plain"), "x", 1);
    r = run("'%s' serve --vhost-user-scsi '%s'", vdisk_bin(), scratch("plain"));
    ck_assert_int_eq(r->status, 1);
    ck_assert_int_eq(access(scratch("plain"), F_OK), 0);
    RUN_OK("'%s' serve --help | grep -q monitor", vdisk_bin());
}
END_TEST

/* ---- Issue 14 item 2: guest memory that does not hold up -------------------------------- */

/* A region larger than its memfd (or pushed past its end by the offset)
 * is refused with a failure reply; the server goes on. */
START_TEST(mem_region_past_file)
{
    uint64_t seed = 21;
    uint8_t *orig;
    const char *img = make_qcow2(&seed, &orig, 1u << 20);
    const char *sock = scratch("big.sock");
    start_server(sock, "--vhost-user-blk", sock, img, NULL);
    struct fe f = {0};
    fe_memory(&f);
    f.sock = fe_connect(sock);
    uint64_t big[5] = {1, GPA_BASE, 2ull * GUEST_SIZE, uva(&f, 0), 0};
    ck_assert_uint_eq(acked(&f, SET_MEM_TABLE, big, sizeof big, &f.memfd, 1), EINVAL);
    uint64_t shifted[5] = {1, GPA_BASE, GUEST_SIZE, uva(&f, 0), 4096};
    ck_assert_uint_eq(acked(&f, SET_MEM_TABLE, shifted, sizeof shifted, &f.memfd, 1), EINVAL);
    assert_server_alive();
    ck_assert_msg(log_has("SET_MEM_TABLE: region 0: 4194304 bytes at offset 4096 but the file "
                          "has 4194304 bytes"), "%s", (char *)read_file(server_log, NULL));
    fe_free(&f);
    /* The same front end, with a table that fits, is served. */
    fe_start(&f, sock);
    fe_ring(&f, 0);
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 0, 4096, 1), 0);
    assert_same_bytes(host(&f, OFF_DATA), orig, 4096, 0, "read");
    ck_assert_int_eq(stop_server(), 0);
    fe_close(&f);
    free(orig);
}
END_TEST

/* A memfd that allows sealing is sealed against shrinking (as QEMU's
 * memfd backend does): the front end can no longer shrink it. */
START_TEST(mem_sealed)
{
    uint64_t seed = 22;
    uint8_t *orig;
    const char *img = make_qcow2(&seed, &orig, 1u << 20);
    const char *sock = scratch("seal.sock");
    start_server(sock, "--vhost-user-blk", sock, img, NULL);
    struct fe f = {0};
    f.memfd = memfd_create("vhost-test-sealable", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    ck_assert_int_ge(f.memfd, 0);
    ck_assert_int_eq(ftruncate(f.memfd, GUEST_SIZE), 0);
    f.mem = mmap(NULL, GUEST_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f.memfd, 0);
    ck_assert_ptr_ne(f.mem, MAP_FAILED);
    fe_start(&f, sock);
    int seals = fcntl(f.memfd, F_GET_SEALS);
    ck_assert_int_ge(seals, 0);
    ck_assert_msg(seals & F_SEAL_SHRINK, "seals 0x%x", seals);
    errno = 0;
    ck_assert_int_eq(ftruncate(f.memfd, 4096), -1);
    ck_assert_int_eq(errno, EPERM);
    fe_ring(&f, 0);
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 0, 4096, 1), 0);
    assert_same_bytes(host(&f, OFF_DATA), orig, 4096, 0, "read");
    ck_assert_int_eq(stop_server(), 0);
    fe_close(&f);
    free(orig);
}
END_TEST

/* A memfd that cannot be sealed shrinks under the mapping: that front end
 * loses its connection, the process survives, the CD on the other socket
 * still serves, the image and the ISO are unchanged. */
START_TEST(mem_shrunk)
{
    CASE_REQUIRE_PROGRAM("xorriso");
    const char *tree = scratch("shtree"), *iso = scratch("sh.iso");
    RUN_OK("mkdir -p '%s' && head -c 60000 /dev/urandom > '%s/file.bin' && "
           "xorriso -as mkisofs -quiet -R -V SHRINKCD -o '%s' '%s'",
           tree, tree, iso, tree);
    size_t iso_len;
    uint8_t *iso_data = read_file(iso, &iso_len);
    uint64_t seed = 23;
    uint8_t *orig;
    const char *img = make_qcow2(&seed, &orig, 1u << 20);
    const char *bs = scratch("sh-blk.sock"), *cs = scratch("sh-scsi.sock");
    start_server(bs, "--vhost-user-blk", bs, "--vhost-user-scsi", cs, "--cdrom", iso, img, NULL);
    wait_for_file(cs, server_pid);
    struct fe f = {0}, g = {0}, h = {0};
    fe_memory(&f); /* memfd_create without MFD_ALLOW_SEALING: not sealable */
    fe_memory(&g);
    fe_start(&f, bs);
    fe_start(&g, cs);
    ck_assert_int_eq(fcntl(f.memfd, F_GET_SEALS) & F_SEAL_SHRINK, 0);
    fe_ring(&f, 0);
    fe_ring(&g, 0);
    fe_ring(&g, 1);
    fe_ring(&g, 2);
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 0, 4096, 1), 0);
    /* A write made available, then the memory behind it is taken away. */
    struct {
        uint32_t type, reserved;
        uint64_t sector;
    } hdr = {BLK_OUT, 0, 0};
    memcpy(host(&f, OFF_HDR), &hdr, sizeof hdr);
    memset(host(&f, OFF_DATA), 0x5a, 4096);
    struct buf b[3] = {{OFF_HDR, 16, false}, {OFF_DATA, 4096, false}, {OFF_STATUS, 1, true}};
    fe_add(&f, 0, 8, b, 3);
    ck_assert_int_eq(ftruncate(f.memfd, 0), 0);
    munmap(f.mem, GUEST_SIZE); /* this side must not touch it either */
    f.mem = NULL;
    fe_kick(&f, 0);
    char c;
    ssize_t n = recv(f.sock, &c, 1, 0);
    ck_assert_msg(n == 0, "recv on the shrunk front end's socket: %zd (%s)", n,
                  n < 0 ? strerror(errno) : "data");
    assert_server_alive();
    ck_assert_msg(log_has("vanished under its mapping"), "%s", (char *)read_file(server_log, NULL));
    fe_close(&f);

    /* The other device goes on. */
    uint8_t key;
    const uint8_t read10[10] = {0x28, 0, 0, 0, 0, 16, 0, 0, 1, 0};
    ck_assert_uint_eq(scsi_cmd_ua(&g, read10, 10, 2048, &key), 0);
    assert_same_bytes(host(&g, OFF_DATA), iso_data + 16 * 2048, 2048, 16 * 2048, "CD after");
    /* And the disk takes the next front end. */
    fe_memory(&h);
    fe_start(&h, bs);
    fe_ring(&h, 0);
    ck_assert_uint_eq(blk_req(&h, BLK_IN, 0, 4096, 1), 0);
    assert_same_bytes(host(&h, OFF_DATA), orig, 4096, 0, "disk after");

    ck_assert_int_eq(stop_server(), 0);
    fe_close(&g);
    fe_close(&h);
    uint8_t *back = malloc(1u << 20);
    read_image(img, back, 1u << 20, 0);
    assert_same_bytes(back, orig, 1u << 20, 0, "image");
    size_t len2;
    uint8_t *iso_after = read_file(iso, &len2);
    ck_assert_uint_eq(len2, iso_len);
    assert_same_bytes(iso_after, iso_data, iso_len, 0, "ISO");
    free(iso_after);
    free(iso_data);
    free(back);
    free(orig);
}
END_TEST

/* ---- Issue 14 item 7: socket files and the monitor -------------------------------------- */

static ino_t inode_of(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 ? st.st_ino : 0;
}

/* Waits until PATH is a socket other than inode OLD. */
static void wait_for_new_socket(const char *path, ino_t old)
{
    for (int i = 0; i < 1000; i++) {
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino != old)
            return;
        assert_server_alive();
        usleep(10000);
    }
    ck_abort_msg("%s not replaced after 10 s; server log:\n%s", path,
                 (char *)read_file(server_log, NULL));
}

START_TEST(socket_files)
{
    uint64_t seed = 24;
    uint8_t *orig;
    const char *img = make_qcow2(&seed, &orig, 1u << 20);
    const char *other = scratch("other.raw");
    RUN_OK("'%s' create -f raw '%s' 1M", vdisk_bin(), other);
    const char *sock = scratch("sf.sock"), *mon = scratch("sf-mon.sock");
    const char *sock2 = scratch("sf2.sock");
    mode_t old_mask = umask(0);
    start_server(sock, "--vhost-user-blk", sock, "--monitor", mon, img, NULL);
    umask(old_mask);
    wait_for_file(mon, server_pid);
    struct stat st;
    ck_assert_int_eq(lstat(sock, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);
    ck_assert_int_eq(lstat(mon, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);

    /* A second server on the same sockets is refused; the first goes on. */
    ino_t ino = inode_of(sock), mino = inode_of(mon);
    struct run *r = run("timeout 10 '%s' serve --vhost-user-blk '%s' '%s'", vdisk_bin(), sock,
                        other);
    ck_assert_msg(r->status == 1, "status %d: %s", r->status, r->err);
    ck_assert_msg(strstr(r->err, fmt("vdisk: serve: '%s' is in use by another server", sock)),
                  "%s", r->err);
    r = run("timeout 10 '%s' serve --vhost-user-blk '%s' --monitor '%s' '%s'", vdisk_bin(), sock2,
            mon, other);
    ck_assert_msg(r->status == 1, "status %d: %s", r->status, r->err);
    ck_assert_msg(strstr(r->err, fmt("vdisk: serve: '%s' is in use by another server", mon)),
                  "%s", r->err);
    ck_assert_int_ne(access(sock2, F_OK), 0);
    ck_assert_uint_eq(inode_of(sock), ino);
    ck_assert_uint_eq(inode_of(mon), mino);
    struct fe f = {0};
    fe_memory(&f);
    fe_start(&f, sock);
    fe_ring(&f, 0);
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 0, 4096, 1), 0);
    assert_same_bytes(host(&f, OFF_DATA), orig, 4096, 0, "read");
    fe_free(&f);
    monitor(mon, "help\n", "commands:");

    /* The socket file replaced during the run is not removed at exit. */
    ck_assert_int_eq(rename(sock, scratch("sf-moved.sock")), 0);
    write_file(sock, "not yours", 9);
    ck_assert_int_eq(stop_server(), 0);
    size_t len;
    char *left = read_file(sock, &len);
    ck_assert_uint_eq(len, 9);
    ck_assert_int_eq(memcmp(left, "not yours", 9), 0);
    free(left);
    ck_assert_int_ne(access(mon, F_OK), 0); /* still ours: removed */

    /* A stale socket (nobody listening) is replaced. */
    unlink(sock);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    close(fd);
    ino = inode_of(sock);
    snprintf(server_log, sizeof server_log, "%s", scratch("serve.log"));
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int lfd = open(server_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (lfd >= 0) {
            dup2(lfd, 2);
            close(lfd);
        }
        execl(vdisk_bin(), vdisk_bin(), "serve", "--vhost-user-blk", sock, img, (char *)NULL);
        _exit(127);
    }
    server_pid = pid;
    wait_for_new_socket(sock, ino);
    fe_start(&f, sock);
    fe_ring(&f, 0);
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 0, 4096, 1), 0);
    assert_same_bytes(host(&f, OFF_DATA), orig, 4096, 0, "read after the stale socket");
    ck_assert_int_eq(stop_server(), 0);
    ck_assert_int_ne(access(sock, F_OK), 0);
    fe_close(&f);
    free(orig);
}
END_TEST

/* --socket-group: the vhost-user socket is 0660 and the group's; the
 * monitor stays 0600. */
START_TEST(socket_group)
{
    const char *img = scratch("grp.raw");
    RUN_OK("'%s' create -f raw '%s' 1M", vdisk_bin(), img);
    const char *sock = scratch("grp.sock"), *mon = scratch("grp-mon.sock");
    char gid[32];
    snprintf(gid, sizeof gid, "%u", (unsigned)getgid());
    start_server(sock, "--vhost-user-blk", sock, "--socket-group", gid, "--monitor", mon, img,
                 NULL);
    wait_for_file(mon, server_pid);
    struct stat st;
    ck_assert_int_eq(lstat(sock, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0660);
    ck_assert_uint_eq(st.st_gid, getgid());
    ck_assert_int_eq(lstat(mon, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);
    ck_assert_int_eq(stop_server(), 0);
    struct run *r = run("'%s' serve --vhost-user-blk '%s' --socket-group no-such-group-x '%s'",
                        vdisk_bin(), sock, img);
    ck_assert_int_eq(r->status, 1);
    ck_assert_ptr_nonnull(
        strstr(r->err, "vdisk: serve: --socket-group: no group 'no-such-group-x'"));
}
END_TEST

START_TEST(monitor_change_checks)
{
    CASE_REQUIRE_PROGRAM("xorriso");
    const char *tree = scratch("mctree"), *iso = scratch("mc1.iso"), *root = scratch("mcroot");
    const char *outside = scratch("mc-outside.iso"), *fifo = scratch("mc.fifo");
    const char *dir = scratch("mc.dir");
    RUN_OK("mkdir -p '%s' '%s' '%s' && head -c 50000 /dev/urandom > '%s/f.bin' && "
           "xorriso -as mkisofs -quiet -R -V FIRSTCD -o '%s' '%s' && "
           "xorriso -as mkisofs -quiet -R -V SECONDCD -o '%s/in.iso' '%s' && "
           "cp '%s/in.iso' '%s' && ln -s ../mc-outside.iso '%s/link.iso' && mkfifo '%s'",
           tree, root, dir, tree, iso, tree, root, tree, root, outside, root, fifo);
    uint64_t seed = 25;
    uint8_t *content;
    const char *qcow = make_qcow2(&seed, &content, 1u << 20);
    const char *sock = scratch("mc.sock"), *mon = scratch("mc-mon.sock");

    /* Started in the scratch folder: relative paths are taken from there. */
    char cwd[4096];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    ck_assert_int_eq(chdir(scratch_dir()), 0);
    start_server(sock, "--vhost-user-scsi", sock, "--cdrom", iso, "--monitor", mon, NULL);
    ck_assert_int_eq(chdir(cwd), 0);
    wait_for_file(mon, server_pid);
    struct fe f = {0};
    fe_memory(&f);
    fe_start(&f, sock);
    fe_ring(&f, 0);
    fe_ring(&f, 1);
    fe_ring(&f, 2);
    cd_read(&f, 16);
    ck_assert_int_eq(memcmp((uint8_t *)host(&f, OFF_DATA) + 40, "FIRSTCD", 7), 0);

    /* A FIFO (no hang), a directory, a character device: refused. */
    monitor(mon, fmt("change %s\n", fifo),
            fmt("error: %s: not a regular file or block device\n", fifo));
    monitor(mon, fmt("change %s\n", dir),
            fmt("error: %s: not a regular file or block device\n", dir));
    monitor(mon, "change /dev/zero\n", "error: /dev/zero: not a regular file or block device\n");
    monitor(mon, "change mc-missing.iso\n", "error: mc-missing.iso: No such file or directory\n");
    /* The refused changes left the medium in. */
    cd_read(&f, 16);
    ck_assert_int_eq(memcmp((uint8_t *)host(&f, OFF_DATA) + 40, "FIRSTCD", 7), 0);

    /* A qcow2 file is a raw medium: its header, not its guest data. */
    monitor(mon, fmt("change %s\n", qcow), "ok\n");
    cd_read(&f, 0);
    ck_assert_int_eq(memcmp(host(&f, OFF_DATA), "QFI\xfb", 4), 0);

    /* A relative path, from the folder serve started in. */
    monitor(mon, "change mcroot/in.iso\n", "ok\n");
    cd_read(&f, 16);
    ck_assert_int_eq(memcmp((uint8_t *)host(&f, OFF_DATA) + 40, "SECONDCD", 8), 0);
    ck_assert_int_eq(stop_server(), 0);
    fe_free(&f);

    /* --monitor-root: files outside it (also through a symbolic link) are refused. */
    char *real_root = realpath(root, NULL);
    ck_assert_ptr_nonnull(real_root);
    start_server(sock, "--vhost-user-scsi", sock, "--monitor", mon, "--monitor-root", root, NULL);
    wait_for_file(mon, server_pid);
    fe_start(&f, sock);
    fe_ring(&f, 0);
    fe_ring(&f, 1);
    fe_ring(&f, 2);
    monitor(mon, fmt("change %s\n", outside),
            fmt("error: %s: outside the --monitor-root folder %s\n", outside, real_root));
    monitor(mon, fmt("change %s/link.iso\n", root),
            fmt("error: %s/link.iso: outside the --monitor-root folder %s\n", root, real_root));
    monitor(mon, "change /etc/passwd\n",
            fmt("error: /etc/passwd: outside the --monitor-root folder %s\n", real_root));
    monitor(mon, "info\n", "medium: none");
    monitor(mon, fmt("change %s/in.iso\n", root), "ok\n");
    cd_read(&f, 16);
    ck_assert_int_eq(memcmp((uint8_t *)host(&f, OFF_DATA) + 40, "SECONDCD", 8), 0);
    ck_assert_int_eq(stop_server(), 0);
    fe_close(&f);
    free(real_root);
    free(content);
}
END_TEST

/* ---- A hostile front end: the loop never hangs, spins or floods (issue 14) ---------- */

/* Ring 0's call fd replaced by CALL (the test's copy closed): requests go
 * on (fe_wait watches the used index), and the server stays responsive. */
static void hostile_call_fd(int call, const char *sock_name, const char *what)
{
    uint64_t seed = 19;
    uint8_t *orig;
    const char *img = make_qcow2(&seed, &orig, 1u << 20);
    const char *sock = scratch(sock_name);
    start_server(sock, "--vhost-user-blk", sock, img, NULL);
    struct fe f = {0};
    fe_memory(&f);
    fe_start(&f, sock);
    fe_ring(&f, 0);
    uint64_t idx = 0;
    ok(&f, SET_VRING_CALL, &idx, 8, &call, 1);
    close(call);
    /* The old server blocked for good in its first write to CALL: the
     * second request was never served. */
    for (unsigned k = 0; k < 4; k++) {
        ck_assert_uint_eq(blk_req(&f, BLK_IN, 8 * k, 4096, 1), 0);
        assert_same_bytes(host(&f, OFF_DATA), orig + 4096 * k, 4096, 4096 * k, what);
    }
    ck_assert_uint_eq(get_u64(&f, GET_QUEUE_NUM), 1);
    fe_free(&f);
    assert_serves(sock, orig);
    ck_assert_int_eq(stop_server(), 0);
    assert_image_unchanged(img, orig, 1u << 20);
    fe_close(&f);
    free(orig);
}

/* Whether eventfd E is signalled within 10 s (it is read if so). */
static bool signalled(int e)
{
    struct pollfd p = {.fd = e, .events = POLLIN};
    if (poll(&p, 1, 10000) != 1)
        return false;
    uint64_t v;
    return read(e, &v, 8) == 8;
}

/*
 * QEMU starts a ring with SET_VRING_KICK and SET_VRING_ENABLE and sends its
 * call fd only afterwards; a guest that kicks in between has its request
 * completed while there is no call fd.  That completion is signalled as
 * soon as the call fd comes (the old server never signalled it: a Linux
 * guest then waited forever for its first SCSI command, now and then).
 */
START_TEST(call_after_enable)
{
    uint64_t seed = 23;
    uint8_t *orig;
    const char *img = make_qcow2(&seed, &orig, 1u << 20);
    const char *sock = scratch("late-call.sock");
    start_server(sock, "--vhost-user-blk", sock, img, NULL);
    struct fe f = {0};
    fe_memory(&f);
    fe_start(&f, sock);
    fe_ring_layout(&f, 0);
    f.kick[0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    /* fe_wait watches this one; the server never has it. */
    f.call[0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    uint64_t idx = 0;
    ok(&f, SET_VRING_KICK, &idx, 8, &f.kick[0], 1);
    state(&f, SET_VRING_ENABLE, 0, 1);

    ck_assert_uint_eq(blk_req(&f, BLK_IN, 8, 4096, 1), 0);
    assert_same_bytes(host(&f, OFF_DATA), orig + 4096, 4096, 4096, "read before the call fd");

    int call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ck_assert_int_ge(call, 0);
    ok(&f, SET_VRING_CALL, &idx, 8, &call, 1);
    ck_assert_msg(signalled(call), "the request completed before the call fd came was never "
                  "signalled; server log:\n%s", (char *)read_file(server_log, NULL));
    /* Then completions are signalled as usual. */
    close(f.call[0]);
    f.call[0] = call;
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 16, 4096, 1), 0);
    assert_same_bytes(host(&f, OFF_DATA), orig + 8192, 4096, 8192, "read after the call fd");
    ck_assert_int_eq(stop_server(), 0);
    fe_close(&f);
    free(orig);
}
END_TEST

/* A call fd that is a pipe full to the brim, in blocking mode. */
START_TEST(call_full_pipe)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    int fl = fcntl(p[1], F_GETFL);
    ck_assert_int_eq(fcntl(p[1], F_SETFL, fl | O_NONBLOCK), 0);
    char junk[4096] = {0};
    while (write(p[1], junk, sizeof junk) > 0)
        ;
    ck_assert_int_eq(errno, EAGAIN);
    while (write(p[1], junk, 1) > 0)
        ;
    ck_assert_int_eq(fcntl(p[1], F_SETFL, fl & ~O_NONBLOCK), 0);
    hostile_call_fd(p[1], "call-pipe.sock", "read with a full pipe as call fd");
    close(p[0]);
}
END_TEST

/* A call fd that is an eventfd (blocking) at its largest count. */
START_TEST(call_eventfd_max)
{
    int e = eventfd(0, EFD_CLOEXEC);
    ck_assert_int_ge(e, 0);
    uint64_t max = 0xfffffffffffffffeull;
    ck_assert_int_eq(write(e, &max, 8), 8);
    hostile_call_fd(e, "call-eventfd.sock", "read with a full eventfd as call fd");
}
END_TEST

/*
 * One message a byte every 0.5 s on the CD-ROM's socket, from a child: the
 * disk's front end and the monitor are answered while the drip goes on
 * (the old server read the whole message first, 10 s), and the dripping
 * connection is closed at the whole-message deadline.
 */
START_TEST(slow_drip)
{
    uint64_t seed = 23;
    uint8_t *orig;
    const char *img = make_qcow2(&seed, &orig, 1u << 20);
    const char *bs = scratch("drip-blk.sock"), *cs = scratch("drip-scsi.sock"),
               *mon = scratch("drip-mon.sock");
    start_server(bs, "--vhost-user-blk", bs, "--vhost-user-scsi", cs, "--monitor", mon, "-r",
                 img, NULL);
    wait_for_file(cs, server_pid);
    wait_for_file(mon, server_pid);
    int started[2], done[2];
    ck_assert_int_eq(pipe(started), 0);
    ck_assert_int_eq(pipe(done), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        /* SET_VRING_NUM (ring 0, 16) with need_reply: 20 bytes, 10 s. */
        uint32_t m[5] = {SET_VRING_NUM, F_VERSION | F_NEED_REPLY, 8, 0, 16};
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "%s", cs);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
            _exit(3);
        for (unsigned i = 0; i < sizeof m; i++) {
            /* Said before the last byte, which the server must wait for. */
            if (i == sizeof m - 1 && write(done[1], "d", 1) != 1)
                _exit(3);
            if (send(fd, (uint8_t *)m + i, 1, MSG_NOSIGNAL) != 1)
                _exit(2); /* the server hung up */
            if (i == 1 && write(started[1], "s", 1) != 1)
                _exit(3);
            usleep(500000);
        }
        uint32_t reply[5];
        _exit(recv(fd, reply, sizeof reply, MSG_WAITALL) == (ssize_t)sizeof reply ? 0 : 4);
    }
    close(started[1]);
    close(done[1]);
    char c;
    ck_assert_int_eq(read(started[0], &c, 1), 1);

    /* Mid-drip: the disk reads, the monitor answers. */
    struct fe f = {0};
    fe_memory(&f);
    fe_start(&f, bs);
    fe_ring(&f, 0);
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 0, 4096, 1), 0);
    assert_same_bytes(host(&f, OFF_DATA), orig, 4096, 0, "read during the drip");
    monitor(mon, "info\n", "medium: none");
    struct pollfd pd = {.fd = done[0], .events = POLLIN};
    ck_assert_msg(poll(&pd, 1, 0) == 0, "the disk and the monitor were answered only after the "
                  "dripping message was whole");

    /* The drip is cut off at the deadline; the CD-ROM serves the next. */
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 2,
                  "the dripping front end was not hung up on (status 0x%x)", status);
    struct fe g = {0};
    g.sock = fe_connect(cs);
    ck_assert_uint_ne(get_u64(&g, GET_FEATURES) & (1ull << VIRTIO_F_VERSION_1), 0);
    fe_free(&g);
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 8, 4096, 1), 0);
    assert_same_bytes(host(&f, OFF_DATA), orig + 4096, 4096, 4096, "read after the drip");
    fe_free(&f);
    ck_assert_int_eq(stop_server(), 0);
    char *log = read_file(server_log, NULL);
    ck_assert_msg(strstr(log, "did not come whole"), "server log:\n%s", log);
    free(log);
    assert_image_unchanged(img, orig, 1u << 20);
    close(started[0]);
    close(done[0]);
    fe_close(&f);
    free(orig);
}
END_TEST

/* SET_VRING_KICK with KICK on a ring whose error fd is ERR: refused, the
 * error fd signalled, and the server does not spin on KICK (CPU time over
 * 3 s of wall time, a resource bound). */
static void bad_kick(struct fe *f, int kick, int err, const char *what)
{
    uint64_t idx = 0;
    uint64_t ack = acked(f, SET_VRING_KICK, &idx, 8, &kick, 1);
    double cpu0 = server_cpu();
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        usleep(100000);
        clock_gettime(CLOCK_MONOTONIC, &t);
        ck_assert_msg(server_cpu() - cpu0 < 0.5, "%s: the server spins (%.2f s of CPU)", what,
                      server_cpu() - cpu0);
    } while (t.tv_sec - t0.tv_sec < 3);
    ck_assert_msg(ack != 0, "%s taken as a kick fd", what);
    struct pollfd pe = {.fd = err, .events = POLLIN};
    ck_assert_msg(poll(&pe, 1, 10000) == 1, "%s: the error fd was not signalled", what);
    uint64_t v;
    ck_assert_int_eq(read(err, &v, 8), 8);
    assert_server_alive();
}

START_TEST(kick_not_eventfd)
{
    uint64_t seed = 29;
    uint8_t *orig;
    const char *img = make_qcow2(&seed, &orig, 1u << 20);
    const char *sock = scratch("kick.sock");
    start_server(sock, "--vhost-user-blk", sock, img, NULL);
    struct fe f = {0};
    fe_memory(&f);
    fe_start(&f, sock);
    fe_ring(&f, 0);
    int err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    uint64_t idx = 0;
    ok(&f, 14 /* SET_VRING_ERR */, &idx, 8, &err, 1);

    /* A pipe whose writer is gone: always readable, at its end. */
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    close(p[1]);
    bad_kick(&f, p[0], err, "a pipe at its end");
    close(p[0]);
    /* A listening socket with a connection waiting. */
    const char *lpath = scratch("kick-listen.sock");
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", lpath);
    unlink(lpath);
    ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(l, 1), 0);
    int c = fe_connect(lpath);
    bad_kick(&f, l, err, "a listening socket");
    close(c);
    close(l);
    /* A semaphore eventfd at a huge count: each read takes 1 off. */
    int sem = eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE);
    uint64_t big = 1ull << 40;
    ck_assert_int_eq(write(sem, &big, 8), 8);
    bad_kick(&f, sem, err, "a semaphore eventfd");
    close(sem);

    /* A real eventfd brings the ring back. */
    ok(&f, SET_VRING_KICK, &idx, 8, &f.kick[0], 1);
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 0, 4096, 1), 0);
    assert_same_bytes(host(&f, OFF_DATA), orig, 4096, 0, "read after a good kick fd");
    fe_free(&f);
    close(err);
    assert_serves(sock, orig);
    ck_assert_int_eq(stop_server(), 0);
    assert_image_unchanged(img, orig, 1u << 20);
    fe_close(&f);
    free(orig);
}
END_TEST

/* Floods of mistakes: 1,000 malformed messages with and without need_reply,
 * 200 connections with a bad header.  The log stays short. */
START_TEST(log_flood)
{
    uint64_t seed = 31;
    uint8_t *orig;
    const char *img = make_qcow2(&seed, &orig, 1u << 20);
    const char *sock = scratch("flood.sock");
    start_server(sock, "--vhost-user-blk", sock, img, NULL);
    struct fe f = {0};
    fe_memory(&f);
    fe_start(&f, sock);
    uint32_t st[2] = {200, 16};
    for (unsigned k = 0; k < 1000; k++)
        ck_assert_uint_ne(acked(&f, SET_VRING_NUM, st, 8, NULL, 0), 0);
    for (unsigned k = 0; k < 1000; k++)
        send_msg(&f, SET_VRING_NUM, 0, st, 8, NULL, 0);
    ck_assert_uint_ne(get_u64(&f, GET_FEATURES) & (1ull << VIRTIO_F_VERSION_1), 0);
    fe_free(&f);
    for (unsigned k = 0; k < 200; k++) {
        f.sock = fe_connect(sock);
        send_raw(f.sock, GET_FEATURES, 0x2, 0, NULL, 0, NULL, 0);
        char c;
        ck_assert_int_eq(recv(f.sock, &c, 1, 0), 0);
        fe_free(&f);
    }
    assert_serves(sock, orig);
    ck_assert_int_eq(stop_server(), 0);
    size_t len;
    char *log = read_file(server_log, &len);
    unsigned lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += log[i] == '\n';
    ck_assert_msg(lines < 200, "%u lines of log, the first:\n%.2000s", lines, log);
    ck_assert_msg(strstr(log, "suppressed"), "server log:\n%s", log);
    free(log);
    assert_image_unchanged(img, orig, 1u << 20);
    fe_close(&f);
    free(orig);
}
END_TEST

static void teardown(void)
{
    kill_server();
}

static Suite *suite(void)
{
    Suite *s = suite_create("vhost-user");
    TCase *tc = tcase_create("serve");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, blk_io);
    tcase_add_test(tc, malformed);
    tcase_add_test(tc, reconnect);
    tcase_add_test(tc, scsi_cdrom);
    tcase_add_test(tc, two_devices);
    tcase_add_test(tc, cli_errors);
    tcase_add_test(tc, mem_region_past_file);
    tcase_add_test(tc, mem_sealed);
    tcase_add_test(tc, mem_shrunk);
    tcase_add_test(tc, socket_files);
    tcase_add_test(tc, socket_group);
    tcase_add_test(tc, monitor_change_checks);
    tcase_add_test(tc, call_after_enable);
    tcase_add_test(tc, call_full_pipe);
    tcase_add_test(tc, call_eventfd_max);
    tcase_add_test(tc, slow_drip);
    tcase_add_test(tc, kick_not_eventfd);
    tcase_add_test(tc, log_flood);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    return run_suite(suite());
}
