/* SPDX-License-Identifier: MIT */
/*
 * tests/vhost/embed.c: the vhost-user back end used from outside the tree.
 * The build is installed into a scratch prefix (cmake --install), and
 * embed/serve_disk.c, which includes <vdisk/vhost_user.h> alone, is built
 * against the installed headers and library with pkg-config.  It serves a
 * raw image, once from its own poll loop (vdisk_vhost_get_fd and
 * vdisk_vhost_process) and once from the library's helper thread; the tests'
 * front end (frontend.c) reads the image's bytes through a ring, writes,
 * and after SIGTERM the writes are in the image.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"
#include "frontend.h"

#ifndef VDISK_BUILD_DIR
#error "VDISK_BUILD_DIR: the build tree to install"
#endif

static char prefix[4096], program[4096], libdir[4096];

/* Installs the build and builds serve_disk against it, once. */
static void build_program(void)
{
    if (program[0])
        return;
    snprintf(prefix, sizeof prefix, "%s", scratch("prefix"));
    RUN_OK("cmake --install '%s' --prefix '%s' >/dev/null", VDISK_BUILD_DIR, prefix);
    const char *pc = fmt("PKG_CONFIG_PATH='%s/lib/pkgconfig:%s/lib/x86_64-linux-gnu/pkgconfig:"
                         "%s/lib64/pkgconfig'", prefix, prefix, prefix);
    struct run *r = run("%s pkg-config --variable=libdir vdisk", pc);
    ck_assert_msg(r->status == 0, "pkg-config: %s", r->err);
    snprintf(libdir, sizeof libdir, "%s", r->out);
    libdir[strcspn(libdir, "\n")] = 0;
    /* Nothing from the source tree: the installed include folder only. */
    const char *exe = scratch("serve_disk");
    RUN_OK("export %s; cc -std=c11 -Wall -Wextra -Werror %s -o '%s' "
           "'%s/tests/vhost/embed/serve_disk.c' $(pkg-config --cflags --libs vdisk)", pc,
           VDISK_EMBED_CFLAGS, exe, VDISK_SOURCE_DIR);
    snprintf(program, sizeof program, "%s", exe);
    setenv("LD_LIBRARY_PATH", libdir, 1);
}

static void serve_and_check(const char *mode)
{
    build_program();
    uint64_t seed = 0x5eed;
    const size_t size = 1u << 20;
    uint8_t *orig = malloc(size);
    fill_random(orig, size, &seed);
    const char *img = scratch(fmt("disk-%s.raw", mode));
    write_file(img, orig, size);
    const char *sock = scratch(fmt("embed-%s.sock", mode));
    char *argv[] = {program, (char *)img, (char *)sock, (char *)mode, NULL};
    start_program(sock, argv);

    struct fe f = {0};
    fe_memory(&f);
    fe_start(&f, sock);
    fe_ring(&f, 0);
    /* Bytes read back through the ring. */
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 8, 16384, 2), 0);
    assert_same_bytes(host(&f, OFF_DATA), orig + 8 * 512, 16384, 8 * 512, "read");
    /* A write, read back, then in the image after the exit. */
    uint8_t pat[4096];
    fill_random(pat, sizeof pat, &seed);
    memcpy(host(&f, OFF_DATA), pat, sizeof pat);
    ck_assert_uint_eq(blk_req(&f, BLK_OUT, 64, sizeof pat, 1), 0);
    memset(host(&f, OFF_DATA), 0, sizeof pat);
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 64, sizeof pat, 1), 0);
    assert_same_bytes(host(&f, OFF_DATA), pat, sizeof pat, 64 * 512, "read after write");
    /* Past the end: an I/O error, and the server goes on. */
    ck_assert_uint_eq(blk_req(&f, BLK_IN, size / 512, 512, 1), 1);
    ck_assert_uint_eq(blk_req(&f, BLK_IN, 0, 512, 1), 0);
    assert_same_bytes(host(&f, OFF_DATA), orig, 512, 0, "first sector");
    fe_close(&f);

    /* A second front end after the first went. */
    struct fe g = {0};
    fe_memory(&g);
    fe_start(&g, sock);
    fe_ring(&g, 0);
    ck_assert_uint_eq(blk_req(&g, BLK_IN, 2000, 4096, 1), 0);
    assert_same_bytes(host(&g, OFF_DATA), orig + 2000 * 512, 4096, 2000 * 512, "second");
    fe_close(&g);

    ck_assert_int_eq(stop_server(), 0);
    ck_assert_int_ne(access(sock, F_OK), 0);
    uint8_t back[4096];
    read_image(img, back, sizeof back, 64 * 512);
    assert_same_bytes(back, pat, sizeof back, 64 * 512, "image after exit");
    free(orig);
}

START_TEST(own_loop)
{
    serve_and_check("loop");
}
END_TEST

START_TEST(helper_thread)
{
    serve_and_check("thread");
}
END_TEST

static void teardown(void)
{
    kill_server();
}

static Suite *suite(void)
{
    Suite *s = suite_create("vhost-embed");
    TCase *tc = tcase_create("installed");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, own_loop);
    tcase_add_test(tc, helper_thread);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    require_program("cmake");
    require_program("cc");
    require_program("pkg-config");
    return run_suite(suite());
}
