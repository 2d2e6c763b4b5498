/* SPDX-License-Identifier: MIT */
/*
 * tests/nbd_client/nbd_client.c: the nbd protocol driver against real NBD
 * servers: qemu-nbd (Unix socket and TCP), qemu-storage-daemon and nbdkit
 * (memory and file plugins; the error filter for I/O errors, the delay
 * filter for many requests in flight).  The CLI's verbs on nbd:// names,
 * a qcow2 overlay over an export, reconnecting after the server dies, and
 * random reads and writes against a model.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"

#define MiB (1024 * 1024)

/* ---- Servers -------------------------------------------------------------- */

/* Where servers' pid files go: a folder that main() makes before the cases
 * run (each case runs in a child with its own scratch folder) and that it
 * empties afterwards, killing what a failed case left running. */
static char pid_dir[256];

/* PID_DIR/NAME; the string stays valid until exit. */
static const char *pidfile(const char *name)
{
    static char paths[32][320];
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char want[320];
        snprintf(want, sizeof want, "%s/%s", pid_dir, name);
        if (!paths[i][0])
            snprintf(paths[i], sizeof paths[i], "%s", want);
        if (strcmp(paths[i], want) == 0)
            return paths[i];
    }
    ck_abort_msg("too many pid files");
    return NULL;
}

/* The pid in PIDFILE (the server wrote it), or 0. */
static pid_t read_pid(const char *pidfile)
{
    for (int i = 0; i < 100; i++) {
        FILE *f = fopen(pidfile, "r");
        long pid = 0;
        if (f) {
            if (fscanf(f, "%ld", &pid) != 1)
                pid = 0;
            fclose(f);
        }
        if (pid > 0)
            return (pid_t)pid;
        usleep(20000);
    }
    return 0;
}

/* Kills the server whose pid is in PIDFILE, and waits until it is gone;
 * its socket SOCK (if any) goes too. */
static void kill_server_sock(const char *pidfile, const char *sock)
{
    pid_t pid = read_pid(pidfile);
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    for (int i = 0; i < 500 && kill(pid, 0) == 0; i++)
        usleep(10000);
    unlink(pidfile);
    if (sock)
        unlink(sock);
}

static void kill_server(const char *pidfile)
{
    kill_server_sock(pidfile, NULL);
}

/* A TCP port on 127.0.0.1 that nothing listens on now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* qemu-nbd serving the raw file IMAGE as export "exp" on the Unix socket
 * SOCK (or on TCP PORT when SOCK is NULL); pid in PIDFILE. */
static void start_qemu_nbd(const char *image, const char *sock, int port, const char *pidfile)
{
    if (sock)
        RUN_OK("qemu-nbd --fork -t -f raw -x exp -k '%s' --pid-file='%s' '%s'", sock, pidfile,
               image);
    else
        RUN_OK("qemu-nbd --fork -t -f raw -x exp -b 127.0.0.1 -p %d --pid-file='%s' '%s'",
               port, pidfile, image);
}

/* nbdkit with ARGS (plugin, filters ...) on the Unix socket SOCK. */
static void start_nbdkit(const char *sock, const char *pidfile, const char *args)
{
    unlink(sock); /* one that a killed server left */
    RUN_OK("nbdkit -U '%s' -P '%s' %s", sock, pidfile, args);
    ck_assert_int_gt(read_pid(pidfile), 0);
}

static char *unix_uri(const char *export, const char *sock)
{
    return fmt("nbd+unix:///%s?socket=%s", export, sock);
}

/* A command's standard output without qemu-io's timing lines. */
static char *io_out(const char *fmt_, const char *image)
{
    struct run *r = run("%s io %s '%s' | grep -v ' ops; '", vdisk_bin(), fmt_, image);
    return strdup(r->out);
}

/* A raw file of SIZE bytes with a few patterns written by qemu-io. */
static void make_patterned(const char *path, const char *size)
{
    RUN_OK("qemu-img create -q -f raw '%s' %s", path, size);
    RUN_OK("qemu-io -f raw -c 'write -P 0xab 1M 64k' -c 'write -P 0x11 3M 4k' "
           "-c 'write -P 0x22 5000 3000' '%s'", path);
}

/* ---- The CLI on an export ------------------------------------------------- */

/* info, map, io, convert both ways and a qcow2 overlay on the export URI
 * served from the raw file IMAGE. */
static void cli_on_export(const char *uri, const char *image)
{
    struct run *r = run("%s info '%s'", vdisk_bin(), uri);
    ck_assert_int_eq(r->status, 0);
    ck_assert_str_eq(r->out, fmt("image: %s\nfile format: raw\n"
                                 "virtual size: 16 MiB (16777216 bytes)\n"
                                 "disk size: unavailable\n", uri));

    /* The map matches qemu-img's on the same export. */
    r = run("qemu-img map -f raw '%s'", uri);
    ck_assert_int_eq(r->status, 0);
    char *want = strdup(r->out);
    r = run("%s map '%s'", vdisk_bin(), uri);
    ck_assert_int_eq(r->status, 0);
    ck_assert_str_eq(r->out, want);
    free(want);

    /* io: reads and writes with exact outputs. */
    char *out = io_out("-f raw -c 'read -P 0xab 1M 64k' -c 'write -P 0x5a 7M 12k' "
                       "-c 'read -P 0x5a 7M 12k' -c 'read -P 0x22 5000 3000' -c 'flush'",
                       uri);
    ck_assert_str_eq(out, "read 65536/65536 bytes at offset 1048576\n"
                          "wrote 12288/12288 bytes at offset 7340032\n"
                          "read 12288/12288 bytes at offset 7340032\n"
                          "read 3000/3000 bytes at offset 5000\n");
    free(out);
    RUN_OK("qemu-io -f raw -c 'read -P 0x5a 7M 12k' '%s'", image);

    /* convert: the export to a local qcow2, and a changed qcow2 back. */
    const char *q = scratch("from-nbd.qcow2");
    unlink(q);
    RUN_OK("%s convert -f raw -O qcow2 '%s' '%s'", vdisk_bin(), uri, q);
    RUN_OK("qemu-img compare -f raw -F qcow2 '%s' '%s'", uri, q);
    RUN_OK("qemu-io -f qcow2 -c 'write -P 0x77 9M 1M' -c 'write -z 1M 4k' '%s'", q);
    RUN_OK("%s convert -n -f qcow2 -O raw '%s' '%s'", vdisk_bin(), q, uri);
    RUN_OK("qemu-img compare -f raw -F qcow2 '%s' '%s'", uri, q);
    /* ... and with create, which only checks the export's size. */
    RUN_OK("qemu-io -f qcow2 -c 'write -P 0x78 10M 64k' '%s'", q);
    RUN_OK("%s convert -f qcow2 -O raw '%s' '%s'", vdisk_bin(), q, uri);
    RUN_OK("qemu-img compare -f raw -F qcow2 '%s' '%s'", uri, q);
    RUN_OK("qemu-img compare -f raw -F qcow2 '%s' '%s'", image, q);

    /* A qcow2 overlay whose backing file is the export. */
    const char *ov = scratch("overlay.qcow2");
    unlink(ov);
    RUN_OK("%s create -q -f qcow2 -b '%s' -F raw '%s'", vdisk_bin(), uri, ov);
    /* (A network backing file named by an image needs the user's consent:
     * network_backing.) */
    setenv("VDISK_BACKING_ALLOW_NETWORK", "on", 1);
    out = io_out("-c 'read -P 0x77 9M 1M' -c 'write -P 0x33 9M 4k' -c 'read -P 0x33 9M 4k' "
                 "-c 'read -P 0x77 9441280 1020k'", ov);
    ck_assert_str_eq(out, "read 1048576/1048576 bytes at offset 9437184\n"
                          "wrote 4096/4096 bytes at offset 9437184\n"
                          "read 4096/4096 bytes at offset 9437184\n"
                          "read 1044480/1044480 bytes at offset 9441280\n");
    free(out);
    r = run("qemu-img info '%s' | grep '^backing file:'", ov);
    ck_assert_str_eq(r->out, fmt("backing file: %s\n", uri));
    RUN_OK("qemu-io -f raw -c 'read -P 0x77 9M 4k' '%s'", image); /* the export kept it */
    RUN_OK("qemu-img compare -f qcow2 -F qcow2 '%s' '%s' || true", ov, q);
    r = run("%s map --output=json '%s' | head -1", vdisk_bin(), ov);
    ck_assert_int_eq(r->status, 0);
    unsetenv("VDISK_BACKING_ALLOW_NETWORK");
}

START_TEST(qemu_nbd_unix)
{
    const char *img = scratch("u.raw"), *sock = scratch("u.sock"), *pid = pidfile("u.pid");
    make_patterned(img, "16M");
    start_qemu_nbd(img, sock, 0, pid);
    char *uri = strdup(unix_uri("exp", sock));
    cli_on_export(uri, img);
    free(uri);
    kill_server(pid);
}
END_TEST

START_TEST(qemu_nbd_tcp)
{
    const char *img = scratch("t.raw"), *pid = pidfile("t.pid");
    make_patterned(img, "16M");
    int port = free_port();
    start_qemu_nbd(img, NULL, port, pid);
    char *uri = strdup(fmt("nbd://127.0.0.1:%d/exp", port));
    cli_on_export(uri, img);
    free(uri);
    kill_server(pid);
}
END_TEST

START_TEST(storage_daemon)
{
    CASE_REQUIRE_PROGRAM("qemu-storage-daemon");
    const char *img = scratch("q.raw"), *sock = scratch("q.sock"), *pid = pidfile("q.pid");
    make_patterned(img, "16M");
    RUN_OK("qemu-storage-daemon --daemonize --pidfile '%s' "
           "--blockdev driver=file,node-name=f0,filename='%s' "
           "--nbd-server addr.type=unix,addr.path='%s' "
           "--export type=nbd,id=e0,node-name=f0,name=exp,writable=on", pid, img, sock);
    char *uri = strdup(unix_uri("exp", sock));
    cli_on_export(uri, img);
    free(uri);
    kill_server(pid);
}
END_TEST

START_TEST(nbdkit_memory)
{
    const char *sock = scratch("m.sock"), *pid = pidfile("m.pid");
    start_nbdkit(sock, pid, "memory 8M");
    char *uri = strdup(unix_uri("exp", sock));
    char *out = io_out("-f raw -c 'write -P 0x42 0 1M' -c 'write -z 64k 64k' "
                       "-c 'read -P 0x42 0 64k' -c 'read -P 0 64k 64k' -c 'discard 2M 1M' "
                       "-c 'read -P 0 2M 1M' -c 'write -P 7 8388096 512' -c 'read -P 7 8388096 512'",
                       uri);
    ck_assert_str_eq(out, "wrote 1048576/1048576 bytes at offset 0\n"
                          "wrote 65536/65536 bytes at offset 65536\n"
                          "read 65536/65536 bytes at offset 0\n"
                          "read 65536/65536 bytes at offset 65536\n"
                          "discard 1048576/1048576 bytes at offset 2097152\n"
                          "read 1048576/1048576 bytes at offset 2097152\n"
                          "wrote 512/512 bytes at offset 8388096\n"
                          "read 512/512 bytes at offset 8388096\n");
    free(out);
    /* Past the end: refused by the library, before the server sees it. */
    struct run *r = run("%s io -f raw -c 'read 8M 512' '%s'", vdisk_bin(), uri);
    ck_assert_int_eq(r->status, 1);
    r = run("%s map '%s'", vdisk_bin(), uri);
    ck_assert_int_eq(r->status, 0);
    r = run("qemu-img map -f raw '%s'", uri);
    char *want = strdup(r->out);
    r = run("%s map '%s'", vdisk_bin(), uri);
    ck_assert_str_eq(r->out, want);
    free(want);
    free(uri);
    kill_server(pid);
}
END_TEST

START_TEST(nbdkit_file)
{
    const char *img = scratch("f.raw"), *sock = scratch("f.sock"), *pid = pidfile("f.pid");
    make_patterned(img, "16M");
    start_nbdkit(sock, pid, fmt("file '%s'", img));
    char *uri = strdup(unix_uri("exp", sock));
    cli_on_export(uri, img);
    free(uri);
    kill_server(pid);
}
END_TEST

START_TEST(nbdkit_errors)
{
    const char *sock = scratch("e.sock"), *pid = pidfile("e.pid");
    start_nbdkit(sock, pid, "--filter=error memory 1M error-pwrite=EIO error-pwrite-rate=100%");
    char *uri = strdup(unix_uri("", sock));
    /* --debug: the library's detail after qemu-io's line. */
    struct run *r = run("%s io --debug -f raw -c 'read -P 0 0 4k' -c 'write -P 1 4096 512' '%s' "
                        "| grep -v ' ops; '", vdisk_bin(), uri);
    ck_assert_str_eq(r->out, "read 4096/4096 bytes at offset 0\nwrite failed: Input/output error\n");
    ck_assert_str_eq(r->err, fmt("vdisk_pwrite: %s: NBD write of 512 bytes at offset 4096 "
                                 "failed: Input/output error\n", uri));
    kill_server_sock(pid, sock);
    /* Reads fail the same way, and an open that must probe fails cleanly. */
    start_nbdkit(sock, pid, "--filter=error memory 1M error-pread=EIO error-pread-rate=100%");
    r = run("%s io --debug -f raw -c 'read 0 512' '%s'", vdisk_bin(), uri);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->out, "read failed: Input/output error\n");
    ck_assert_str_eq(r->err, fmt("vdisk_pread: %s: NBD read of 512 bytes at offset 0 "
                                 "failed: Input/output error\n", uri));
    r = run("%s info '%s'", vdisk_bin(), uri);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, fmt("vdisk: %s: could not read the first bytes to "
                                 "probe the format: %s: NBD read of 512 bytes at offset 0 "
                                 "failed: Input/output error\n", uri, uri));
    kill_server_sock(pid, sock);
    /* No server at all. */
    r = run("%s info '%s'", vdisk_bin(), uri);
    ck_assert_int_eq(r->status, 1);
    ck_assert_ptr_nonnull(strstr(r->err, fmt("vdisk: Could not open '%s': ", uri)));
    free(uri);
}
END_TEST

/* A qcow2 image served as it is: the format is probed over the export,
 * reads and writes go through it, and a write that would grow the export
 * fails cleanly and leaves the image consistent. */
START_TEST(qcow2_on_export)
{
    const char *img = scratch("e.qcow2"), *sock = scratch("qe.sock"), *pid = pidfile("qe.pid");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 16M", img);
    RUN_OK("qemu-io -f qcow2 -c 'write -P 0x44 0 1M' '%s'", img);
    start_qemu_nbd(img, sock, 0, pid);
    char *uri = strdup(unix_uri("exp", sock));
    struct run *r = run("%s info '%s' | head -2", vdisk_bin(), uri);
    ck_assert_str_eq(r->out, fmt("image: %s\nfile format: qcow2\n", uri));
    char *out = io_out("-c 'read -P 0x44 0 1M' -c 'write -P 0x45 4k 4k' -c 'read -P 0x45 4k 4k' "
                       "-c 'write -P 0x46 8M 64k'", uri);
    ck_assert_str_eq(out, "read 1048576/1048576 bytes at offset 0\n"
                          "wrote 4096/4096 bytes at offset 4096\n"
                          "read 4096/4096 bytes at offset 4096\n"
                          "write failed: No space left on device\n");
    free(out);
    r = run("%s check '%s'", vdisk_bin(), uri);
    ck_assert_int_eq(r->status, 0);
    ck_assert_str_eq(r->out, "No errors were found on the image.\n"
                             "16/256 = 6.25% allocated, 0.00% fragmented, 0.00% compressed "
                             "clusters\nImage end offset: 1376256\n");
    /* The same export by its JSON name (the server's object, as QEMU
     * takes it): read the same, shown as qemu-img shows it. */
    char *json = strdup(fmt("json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"nbd\","
                            "\"server\":{\"type\":\"unix\",\"path\":\"%s\"},\"export\":\"exp\"}}",
                            sock));
    r = run("%s info '%s' | head -3", vdisk_bin(), json);
    char *want = strdup(r->out);
    ck_assert_int_eq(r->status, 0);
    r = run("qemu-img info '%s' | head -3", json);
    ck_assert_str_eq(want, r->out);
    r = run("%s io -c 'read -P 0x45 4k 4k' '%s' | grep -v ' ops; '", vdisk_bin(), json);
    ck_assert_str_eq(r->out, "read 4096/4096 bytes at offset 4096\n");
    free(want);
    free(json);
    free(uri);
    kill_server_sock(pid, sock);
    RUN_OK("qemu-img check -q '%s'", img);
    RUN_OK("qemu-io -f qcow2 -c 'read -P 0x45 4k 4k' -c 'read -P 0 8M 64k' '%s'", img);
}
END_TEST

/* Opens IMAGE with the option backing-allow-network set to ALLOW (NULL:
 * not given): vdisk_open's result. */
static int open_allow(vdisk_dev **d, const char *image, const char *allow)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    if (allow)
        ck_assert_int_eq(vdisk_options_set(o, "backing-allow-network", allow), 0);
    int r = vdisk_open(d, image, o);
    vdisk_options_free(o);
    return r;
}

/* An NBD export named as backing file in an image's header is refused
 * unless backing-allow-network=on (or VDISK_BACKING_ALLOW_NETWORK=on)
 * allows it, down the chain; names the user gives (create -b, info URI)
 * are followed. */
START_TEST(network_backing)
{
    const char *base = scratch("nb.raw"), *sock = scratch("nb.sock"), *pid = pidfile("nb.pid");
    const char *top = scratch("nb-top.qcow2"), *mid = scratch("nb-mid.qcow2");
    make_patterned(base, "4M");
    start_qemu_nbd(base, sock, 0, pid);
    char *uri = strdup(unix_uri("exp", sock));
    unsetenv("VDISK_BACKING_ALLOW_NETWORK");
    RUN_OK("%s create -q -f qcow2 -b '%s' -F raw '%s'", vdisk_bin(), uri, mid);
    RUN_OK("%s create -q -f qcow2 -u -b '%s' -F qcow2 '%s' 4M", vdisk_bin(), mid, top);
    vdisk_dev *d = NULL;
    ck_assert_int_eq(open_allow(&d, mid, NULL), -EPERM);
    ck_assert_str_eq(vdisk_get_error(),
                     fmt("vdisk_open: %s: the image's backing file is the network export '%s'; "
                         "opening it needs the open option backing-allow-network=on (or "
                         "VDISK_BACKING_ALLOW_NETWORK=on in the environment)", mid, uri));
    ck_assert_int_eq(open_allow(&d, mid, "off"), -EPERM);
    ck_assert_int_eq(open_allow(&d, top, NULL), -EPERM);
    /* Allowed: the option goes down the chain. */
    ck_assert_msg(open_allow(&d, top, "on") == 0, "%s", vdisk_get_error());
    uint8_t b[4096];
    ck_assert_int_eq(vdisk_pread(d, b, sizeof b, 3 * MiB), 0);
    for (size_t i = 0; i < sizeof b; i++)
        ck_assert_uint_eq(b[i], 0x11);
    vdisk_close(d);
    /* The CLI: refused, then allowed through the environment.  (info
     * without --backing-chain opens no backing file, as qemu-img's: it
     * connects to nothing and shows the names.) */
    struct run *r = run("%s info '%s'", vdisk_bin(), top);
    ck_assert_msg(r->status == 0, "%s", r->err);
    r = run("%s info --backing-chain '%s'", vdisk_bin(), top);
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(strstr(r->err, "backing-allow-network=on"), "%s", r->err);
    r = run("%s io -c 'read -P 0xab 1M 64k' '%s'", vdisk_bin(), top);
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(strstr(r->err, "backing-allow-network=on"), "%s", r->err);
    r = run("VDISK_BACKING_ALLOW_NETWORK=on %s io -c 'read -P 0xab 1M 64k' '%s' | "
            "grep -v ' ops; '", vdisk_bin(), top);
    ck_assert_str_eq(r->out, "read 65536/65536 bytes at offset 1048576\n");
    /* A local backing file stays allowed. */
    const char *local = scratch("nb-local.raw");
    make_patterned(local, "4M");
    RUN_OK("rm -f '%s' && %s create -q -f qcow2 -b '%s' -F raw '%s'", top, vdisk_bin(), local,
           top);
    ck_assert_msg(open_allow(&d, top, NULL) == 0, "%s", vdisk_get_error());
    vdisk_close(d);
    free(uri);
    kill_server_sock(pid, sock);
}
END_TEST

/* A server with 4 KiB blocks and 64 KiB requests at most, that fails any
 * request outside them: the library reads, modifies and writes whole
 * blocks, and cuts long requests. */
START_TEST(block_limits)
{
    const char *sock = scratch("b.sock"), *pid = pidfile("b.pid");
    start_nbdkit(sock, pid, "--filter=blocksize-policy memory 4M blocksize-minimum=4096 "
                 "blocksize-preferred=65536 blocksize-maximum=65536 "
                 "blocksize-error-policy=error");
    char *uri = strdup(unix_uri("exp", sock));
    char *out = io_out("-f raw -c 'write -P 9 100 1000' -c 'read -P 9 100 1000' "
                       "-c 'read -P 0 0 100' -c 'write -P 8 65536 1048576' "
                       "-c 'read -P 8 65536 1048576' -c 'write -z 1048576 2097152' "
                       "-c 'read -P 0 1048576 2097152' -c 'discard 0 2097152'", uri);
    ck_assert_str_eq(out, "wrote 1000/1000 bytes at offset 100\n"
                          "read 1000/1000 bytes at offset 100\n"
                          "read 100/100 bytes at offset 0\n"
                          "wrote 1048576/1048576 bytes at offset 65536\n"
                          "read 1048576/1048576 bytes at offset 65536\n"
                          "wrote 2097152/2097152 bytes at offset 1048576\n"
                          "read 2097152/2097152 bytes at offset 1048576\n"
                          "discard 2097152/2097152 bytes at offset 0\n");
    free(out);
    free(uri);
    kill_server_sock(pid, sock);
}
END_TEST

/* nbds+unix:// with a pre-shared key: the key file may be named by the
 * caller, never by an image's backing file name. */
START_TEST(tls_psk)
{
    const char *sock = scratch("tls.sock"), *pid = pidfile("tls.pid");
    const char *keys = scratch("keys.psk");
    RUN_OK("printf 'alice:%%s\\n' $(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n') "
           "> '%s'", keys);
    struct run *r = run("nbdkit --tls=require --tls-psk='%s' -U '%s' -P '%s' memory 4M", keys,
                        sock, pid);
    if (r->status != 0)
        SKIP_CASE("nbdkit cannot serve TLS here: %s", r->err);
    char *uri = strdup(fmt("nbds+unix://alice@/exp?socket=%s&tls-psk-file=%s", sock, keys));
    char *out = io_out("-f raw -c 'write -P 0x61 0 64k' -c 'read -P 0x61 0 64k'", uri);
    ck_assert_str_eq(out, "wrote 65536/65536 bytes at offset 0\n"
                          "read 65536/65536 bytes at offset 0\n");
    free(out);
    r = run("%s info '%s'", vdisk_bin(), uri);
    ck_assert_str_eq(r->out, fmt("image: %s\nfile format: raw\n"
                                 "virtual size: 4 MiB (4194304 bytes)\n"
                                 "disk size: unavailable\n", uri));
    /* Without TLS the server says no. */
    r = run("%s info '%s'", vdisk_bin(), unix_uri("exp", sock));
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, fmt("vdisk: Could not open '%s': nbd_poll: "
                                 "handshake: server requires TLS encryption first: Operation "
                                 "not supported\n", unix_uri("exp", sock)));
    /* An overlay may not make vdisk read a key file, even where network
     * backing files are allowed (and without that, not connect at all). */
    const char *ov = scratch("tls-overlay.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 -u -b '%s' -F raw '%s' 4M", uri, ov);
    r = run("VDISK_BACKING_ALLOW_NETWORK=on %s io -c 'read 0 512' '%s'", vdisk_bin(), ov);
    ck_assert_int_eq(r->status, 1);
    ck_assert_ptr_nonnull(strstr(r->err, "local file access (tls-psk-file) is not allowed"));
    r = run("%s io -c 'read 0 512' '%s'", vdisk_bin(), ov);
    ck_assert_int_eq(r->status, 1);
    ck_assert_ptr_nonnull(strstr(r->err, "backing-allow-network=on"));
    free(uri);
    kill_server(pid);
}
END_TEST

/* ---- The library on an export --------------------------------------------- */

/* Opens URI as a raw image with CONNS connections (NULL: the default). */
static vdisk_dev *open_conns(const char *uri, const char *conns)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "raw"), 0);
    if (conns)
        ck_assert_int_eq(vdisk_options_set(o, "connections", conns), 0);
    vdisk_dev *d = NULL;
    int r = vdisk_open(&d, uri, o);
    vdisk_options_free(o);
    ck_assert_msg(r == 0, "open %s: %s", uri, vdisk_get_error());
    return d;
}

static vdisk_dev *open_rw(const char *uri)
{
    return open_conns(uri, NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct done_count {
    int done, failed;
};

static void count_done(void *user, int result)
{
    struct done_count *c = user;
    c->done++;
    if (result < 0)
        c->failed++;
}

/* 64 reads at once on a server that delays each by half a second: they
 * overlap, so all take far less than 64 half-seconds. */
START_TEST(many_in_flight)
{
    const char *sock = scratch("d.sock"), *pid = pidfile("d.pid");
    start_nbdkit(sock, pid, "--filter=delay memory 64M rdelay=500ms");
    vdisk_dev *d = open_rw(unix_uri("", sock));
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, d, 128), 0);
    enum { N = 64 };
    static uint8_t bufs[N][4096];
    struct done_count c = {0, 0};
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        struct iovec v = {bufs[i], sizeof bufs[i]};
        ck_assert_int_eq(vdisk_aio_preadv(q, &v, 1, (uint64_t)i * MiB, 0, count_done, &c), 0);
    }
    ck_assert_int_ge(vdisk_queue_submit(q), 0);
    while (c.done < N)
        ck_assert_int_ge(vdisk_queue_reap(q, 1, -1), 0);
    double t = now_s() - t0;
    ck_assert_int_eq(c.failed, 0);
    ck_assert_msg(t < 10.0, "64 delayed reads took %.1f s: they did not overlap", t);
    vdisk_queue_free(q);
    vdisk_close(d);
    kill_server(pid);
}
END_TEST

struct restart_args {
    const char *img, *sock, *pid;
    unsigned delay_ms;
};

static void *restart_later(void *arg)
{
    struct restart_args *a = arg;
    usleep(a->delay_ms * 1000);
    run("qemu-nbd --fork -t -f raw -x exp -k '%s' --pid-file='%s' '%s'", a->sock, a->pid,
        a->img);
    return NULL;
}

/* The server dies and comes back: reads, writes and flushes go on. */
START_TEST(reconnect)
{
    const char *img = scratch("r.raw"), *sock = scratch("r.sock"), *pid = pidfile("r.pid");
    make_patterned(img, "16M");
    start_qemu_nbd(img, sock, 0, pid);
    char *uri = strdup(unix_uri("exp", sock));
    vdisk_dev *d = open_rw(uri);
    uint8_t buf[4096], want[4096];
    memset(want, 0xab, sizeof want);
    ck_assert_int_eq(vdisk_pread(d, buf, sizeof buf, MiB), 0);
    ck_assert_mem_eq(buf, want, sizeof buf);

    /* Killed and restarted before the next request. */
    kill_server(pid);
    start_qemu_nbd(img, sock, 0, pid);
    ck_assert_msg(vdisk_pread(d, buf, sizeof buf, MiB) == 0, "%s", vdisk_get_error());
    ck_assert_mem_eq(buf, want, sizeof buf);

    /* Killed, and back only while the request waits for it. */
    kill_server(pid);
    pthread_t t;
    struct restart_args a = {img, sock, pid, 400};
    ck_assert_int_eq(pthread_create(&t, NULL, restart_later, &a), 0);
    ck_assert_msg(vdisk_pread(d, buf, sizeof buf, MiB) == 0, "%s", vdisk_get_error());
    pthread_join(t, NULL);
    ck_assert_mem_eq(buf, want, sizeof buf);
    memset(want, 0x3c, sizeof want);
    kill_server(pid);
    ck_assert_int_eq(pthread_create(&t, NULL, restart_later, &a), 0);
    ck_assert_msg(vdisk_pwrite(d, want, sizeof want, 2 * MiB) == 0, "%s", vdisk_get_error());
    ck_assert_msg(vdisk_flush(d) == 0, "%s", vdisk_get_error());
    pthread_join(t, NULL);
    RUN_OK("qemu-io -r -U -f raw -c 'read -P 0x3c 2M 4k' '%s'", img);

    /* Many reads in flight when the server dies. */
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, d, 64), 0);
    enum { N = 32 };
    static uint8_t bufs[N][65536];
    struct done_count c = {0, 0};
    for (int i = 0; i < N; i++) {
        struct iovec v = {bufs[i], sizeof bufs[i]};
        ck_assert_int_eq(vdisk_aio_preadv(q, &v, 1, MiB, 0, count_done, &c), 0);
    }
    ck_assert_int_ge(vdisk_queue_submit(q), 0);
    kill_server(pid);
    ck_assert_int_eq(pthread_create(&t, NULL, restart_later, &a), 0);
    while (c.done < N)
        ck_assert_int_ge(vdisk_queue_reap(q, 1, -1), 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(c.failed, 0);
    memset(want, 0xab, sizeof want);
    for (int i = 0; i < N; i++)
        ck_assert_mem_eq(bufs[i], want, sizeof want);
    vdisk_queue_free(q);

    /* Gone for good: the request fails, with a message, in bounded time. */
    kill_server(pid);
    double t0 = now_s();
    ck_assert_int_eq(vdisk_pread(d, buf, sizeof buf, 0), -EIO);
    ck_assert_msg(now_s() - t0 < 15.0, "giving up took %.1f s", now_s() - t0);
    ck_assert_ptr_nonnull(strstr(vdisk_get_error(), "NBD read of 4096 bytes at offset 0 failed"));
    /* The next request tries one connection, and fails at once when that
     * fails: it used to start a whole round of attempts again, whose
     * pauses alone come to 5.5 s (found by tests/nbd/scale-netns.sh). */
    t0 = now_s();
    ck_assert_int_eq(vdisk_pread(d, buf, sizeof buf, 0), -EIO);
    ck_assert_msg(now_s() - t0 < 5.0, "a request on a broken connection took %.1f s",
                  now_s() - t0);
    ck_assert_ptr_nonnull(strstr(vdisk_get_error(), "NBD read of 4096 bytes at offset 0 failed"));
    /* ... and once the server is back, so is the device. */
    start_qemu_nbd(img, sock, 0, pid);
    ck_assert_msg(vdisk_pread(d, buf, sizeof buf, MiB) == 0, "%s", vdisk_get_error());
    ck_assert_mem_eq(buf, want, sizeof buf);
    vdisk_close(d);
    free(uri);
    kill_server(pid);
}
END_TEST

struct nbdkit_restart {
    const char *sock, *pid, *args;
    unsigned delay_ms;
};

static void *nbdkit_later(void *arg)
{
    struct nbdkit_restart *a = arg;
    usleep(a->delay_ms * 1000);
    run("nbdkit -U '%s' -P '%s' %s", a->sock, a->pid, a->args);
    return NULL;
}

/* The server dies with reads and writes in flight (held there by the delay
 * filter): after the reconnect every one is sent again and succeeds. */
START_TEST(reconnect_in_flight)
{
    const char *img = scratch("w.raw"), *sock = scratch("w.sock"), *pid = pidfile("w.pid");
    make_patterned(img, "16M");
    char *args = strdup(fmt("--filter=delay file '%s' rdelay=300ms wdelay=300ms", img));
    start_nbdkit(sock, pid, args);
    vdisk_dev *d = open_rw(unix_uri("exp", sock));
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, d, 64), 0);
    enum { N = 16 };
    static uint8_t rbufs[N][65536], wbufs[N][65536];
    struct done_count c = {0, 0};
    for (int i = 0; i < N; i++) {
        memset(wbufs[i], 0x40 + i, sizeof wbufs[i]);
        struct iovec r = {rbufs[i], sizeof rbufs[i]}, w = {wbufs[i], sizeof wbufs[i]};
        ck_assert_int_eq(vdisk_aio_preadv(q, &r, 1, MiB, 0, count_done, &c), 0);
        ck_assert_int_eq(vdisk_aio_pwritev(q, &w, 1, 8 * MiB + (uint64_t)i * 65536, 0,
                                           count_done, &c), 0);
    }
    ck_assert_int_ge(vdisk_queue_submit(q), 0);
    usleep(100000);
    ck_assert_uint_gt(vdisk_queue_in_flight(q), 0);
    kill_server_sock(pid, sock);
    pthread_t t;
    struct nbdkit_restart a = {sock, pid, args, 300};
    ck_assert_int_eq(pthread_create(&t, NULL, nbdkit_later, &a), 0);
    while (c.done < 2 * N)
        ck_assert_int_ge(vdisk_queue_reap(q, 1, -1), 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(c.failed, 0);
    uint8_t want[65536];
    memset(want, 0xab, sizeof want);
    for (int i = 0; i < N; i++)
        ck_assert_mem_eq(rbufs[i], want, sizeof want);
    vdisk_queue_free(q);
    ck_assert_int_eq(vdisk_flush(d), 0);
    vdisk_close(d);
    kill_server(pid);
    for (int i = 0; i < N; i++)
        RUN_OK("qemu-io -r -f raw -c 'read -P 0x%x %d 64k' '%s'", 0x40 + i,
               8 * MiB + i * 65536, img);
    free(args);
}
END_TEST

/* One write with FLAGS (VDISK_REQ_FUA or 0) through a queue. */
static void write_flags(vdisk_dev *d, uint64_t off, uint8_t fill, uint32_t flags)
{
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, d, 4), 0);
    static uint8_t buf[4096];
    memset(buf, fill, sizeof buf);
    struct iovec v = {buf, sizeof buf};
    struct done_count c = {0, 0};
    ck_assert_int_eq(vdisk_aio_pwritev(q, &v, 1, off, flags, count_done, &c), 0);
    ck_assert_int_ge(vdisk_queue_submit(q), 0);
    while (c.done < 1)
        ck_assert_int_ge(vdisk_queue_reap(q, 1, -1), 0);
    ck_assert_int_eq(c.failed, 0);
    vdisk_queue_free(q);
}

/* A write answered without FUA and not flushed when the server dies (the
 * memory plugin loses it): every later flush fails, with a message.  With
 * FUA, or a flush before the server dies, flushes go on succeeding. */
START_TEST(lost_writes_fail_flush)
{
    const char *sock = scratch("l.sock"), *pid = pidfile("l.pid");
    char *uri = strdup(unix_uri("", sock));
    for (int mode = 0; mode < 3; mode++) {
        start_nbdkit(sock, pid, "memory 8M");
        vdisk_dev *d = open_rw(uri);
        write_flags(d, MiB, 0x11, mode == 1 ? VDISK_REQ_FUA : 0);
        if (mode == 2)
            ck_assert_int_eq(vdisk_flush(d), 0);
        kill_server_sock(pid, sock);
        start_nbdkit(sock, pid, "memory 8M");
        if (mode == 0) {
            ck_assert_int_eq(vdisk_flush(d), -EIO);
            char *want = strdup(fmt("vdisk_flush: %s: the NBD connection was lost after 1 "
                                    "write(s) that no flush covered; the server may have lost "
                                    "them, so no later flush can succeed", uri));
            ck_assert_str_eq(vdisk_get_error(), want);
            free(want);
            /* Reads and writes go on; flushes keep failing. */
            write_flags(d, 2 * MiB, 0x22, 0);
            ck_assert_int_eq(vdisk_flush(d), -EIO);
            ck_assert_int_eq(vdisk_flush(d), -EIO);
        } else {
            ck_assert_msg(vdisk_flush(d) == 0, "%s", vdisk_get_error());
            write_flags(d, 2 * MiB, 0x22, 0);
            ck_assert_msg(vdisk_flush(d) == 0, "%s", vdisk_get_error());
        }
        vdisk_close(d);
        kill_server_sock(pid, sock);
    }
    free(uri);
}
END_TEST

struct msg_done {
    int done, result;
    char msg[512];
};

static void keep_msg(void *user, int result)
{
    struct msg_done *m = user;
    m->done = 1;
    m->result = result;
    if (result < 0)
        snprintf(m->msg, sizeof m->msg, "%s", vdisk_get_error());
}

/* The server comes back without features it had at open: the commands that
 * need them fail with a message (never sent); a new size or a read-only
 * export fails everything. */
START_TEST(features_lost)
{
    const char *sock = scratch("f.sock"), *pid = pidfile("f.pid");
    char *uri = strdup(unix_uri("", sock));
    start_nbdkit(sock, pid, "memory 8M");
    vdisk_dev *d = open_rw(uri);
    ck_assert_int_eq(vdisk_flush(d), 0);
    kill_server_sock(pid, sock);
    /* The eval plugin on a file: no FUA, no trim; the nozero filter: no
     * write zeroes.  (The fua filter's fuamode=none is refused by nbdkit
     * 1.32.) */
    const char *img = scratch("f.raw");
    RUN_OK("truncate -s 8M '%s'", img);
    start_nbdkit(sock, pid, fmt("--filter=nozero eval get_size='echo 8388608' "
                                "pread='dd if=%s skip=$4 count=$3 iflag=skip_bytes,count_bytes "
                                "status=none' pwrite='dd of=%s seek=$4 conv=notrunc "
                                "oflag=seek_bytes status=none' can_write='exit 0' "
                                "can_flush='exit 0' flush='exit 0' can_fua='echo none' "
                                "zeromode=none", img, img));
    write_flags(d, MiB, 0x11, 0); /* plain writes go on */
    ck_assert_int_eq(vdisk_flush(d), 0);
    char *want = strdup(fmt("vdisk_aio_pwritev: %s: NBD write of 4096 bytes at offset %d "
                            "failed: the server no longer offers FUA since a reconnect", uri,
                            2 * MiB));
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, d, 4), 0);
    static uint8_t buf[4096];
    struct iovec v = {buf, sizeof buf};
    struct msg_done m = {0, 0, ""};
    ck_assert_int_eq(vdisk_aio_pwritev(q, &v, 1, 2 * MiB, VDISK_REQ_FUA, keep_msg, &m), 0);
    ck_assert_int_ge(vdisk_queue_submit(q), 0);
    while (!m.done)
        ck_assert_int_ge(vdisk_queue_reap(q, 1, -1), 0);
    ck_assert_int_eq(m.result, -EIO);
    ck_assert_str_eq(m.msg, want);
    vdisk_queue_free(q);
    free(want);
    ck_assert_int_eq(vdisk_write_zeroes(d, 3 * MiB, 65536, 0), -EIO);
    ck_assert_ptr_nonnull(strstr(vdisk_get_error(), "no longer offers write zeroes since a reconnect"));
    ck_assert_int_eq(vdisk_discard(d, 4 * MiB, 65536), -EIO);
    ck_assert_ptr_nonnull(strstr(vdisk_get_error(), "no longer offers trim since a reconnect"));
    ck_assert_int_eq(vdisk_flush(d), 0);

    /* Smaller: everything fails, for good (no reconnect tried again, even
     * once an export like the first is back: the device is marked). */
    kill_server_sock(pid, sock);
    start_nbdkit(sock, pid, "memory 4M");
    uint8_t rb[512];
    ck_assert_int_eq(vdisk_pread(d, rb, sizeof rb, 0), -EIO);
    ck_assert_ptr_nonnull(strstr(vdisk_get_error(),
                                 "the export's size changed from 8388608 to 4194304 bytes"));
    ck_assert_ptr_nonnull(strstr(vdisk_get_error(), "the device is unusable"));
    kill_server_sock(pid, sock);
    start_nbdkit(sock, pid, "memory 8M");
    ck_assert_int_eq(vdisk_pread(d, rb, sizeof rb, 0), -EIO);
    ck_assert_ptr_nonnull(strstr(vdisk_get_error(),
                                 "the export's size changed from 8388608 to 4194304 bytes"));
    ck_assert_int_eq(vdisk_pwrite(d, rb, sizeof rb, 0), -EIO);
    ck_assert_int_eq(vdisk_flush(d), -EIO);
    vdisk_close(d);
    /* Read-only: the same. */
    d = open_rw(uri);
    kill_server_sock(pid, sock);
    start_nbdkit(sock, pid, "-r memory 8M");
    ck_assert_int_eq(vdisk_pread(d, rb, sizeof rb, 0), -EIO);
    ck_assert_ptr_nonnull(strstr(vdisk_get_error(), "the export became read-only"));
    kill_server_sock(pid, sock);
    start_nbdkit(sock, pid, "memory 8M");
    ck_assert_int_eq(vdisk_pread(d, rb, sizeof rb, 0), -EIO);
    ck_assert_ptr_nonnull(strstr(vdisk_get_error(), "the export became read-only"));
    vdisk_close(d);
    kill_server_sock(pid, sock);
    free(uri);
}
END_TEST

/* vdisk_open of URI as raw with the option timeout=SECONDS: its result. */
static int open_timeout(vdisk_dev **d, const char *uri, const char *seconds)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "raw"), 0);
    ck_assert_int_eq(vdisk_options_set(o, "timeout", seconds), 0);
    int r = vdisk_open(d, uri, o);
    vdisk_options_free(o);
    return r;
}

/* A server that never answers a command, or never greets: the timeout
 * (option timeout=1) ends the wait, with ETIMEDOUT and a message. */
START_TEST(timeouts)
{
    const char *sock = scratch("t.sock"), *pid = pidfile("t.pid");
    char *uri = strdup(unix_uri("", sock));
    start_nbdkit(sock, pid, "--filter=delay memory 8M rdelay=20");
    vdisk_dev *d = NULL;
    ck_assert_msg(open_timeout(&d, uri, "1") == 0, "%s", vdisk_get_error());
    uint8_t buf[512];
    double t0 = now_s();
    ck_assert_int_eq(vdisk_pread(d, buf, sizeof buf, 0), -ETIMEDOUT);
    double t = now_s() - t0;
    ck_assert_msg(t >= 0.9 && t < 15.0, "the read gave up after %.1f s", t);
    char *want = strdup(fmt("vdisk_pread: %s: NBD read of 512 bytes at offset 0 failed: no "
                            "answer from the server within 1 s", uri));
    ck_assert_str_eq(vdisk_get_error(), want);
    free(want);
    /* The connection was made again: writes (not delayed) go on. */
    memset(buf, 0x5a, sizeof buf);
    ck_assert_msg(vdisk_pwrite(d, buf, sizeof buf, 0) == 0, "%s", vdisk_get_error());
    ck_assert_msg(vdisk_flush(d) == 0, "%s", vdisk_get_error());
    t0 = now_s();
    vdisk_close(d);
    ck_assert_msg(now_s() - t0 < 15.0, "close took %.1f s", now_s() - t0);
    kill_server_sock(pid, sock);
    ck_assert_int_eq(open_timeout(&d, uri, "0"), -EINVAL);

    /* A socket that takes connections into its backlog and never greets. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    t0 = now_s();
    ck_assert_int_eq(open_timeout(&d, uri, "1"), -ETIMEDOUT);
    t = now_s() - t0;
    ck_assert_msg(t >= 0.9 && t < 15.0, "the open gave up after %.1f s", t);
    want = strdup(fmt("vdisk_open: Could not open '%s': no answer from the server "
                      "within 1 s", uri));
    ck_assert_str_eq(vdisk_get_error(), want);
    free(want);
    close(fd);
    unlink(sock);
    free(uri);
}
END_TEST

/* Random reads, writes and zeroes of many sizes and offsets, synchronous and
 * several at once, against a model of the export. */
static void random_io(const char *conns)
{
    const char *sock = scratch("p.sock"), *pid = pidfile("p.pid");
    enum { SIZE = 8 * MiB };
    start_nbdkit(sock, pid, "memory 8M");
    vdisk_dev *d = open_conns(unix_uri("", sock), conns);
    uint8_t *model = calloc(1, SIZE), *got = malloc(SIZE);
    ck_assert_ptr_nonnull(model);
    ck_assert_ptr_nonnull(got);
    random_io_against_model(d, model, SIZE, 600, 0x6e6264);
    ck_assert_int_eq(vdisk_flush(d), 0);
    ck_assert_int_eq(vdisk_pread(d, got, SIZE, 0), 0);
    assert_same_bytes(got, model, SIZE, 0, "whole export");
    vdisk_close(d);
    /* Another client sees the same bytes. */
    write_file(scratch("model.raw"), model, SIZE);
    RUN_OK("qemu-img compare -f raw -F raw '%s' '%s'", unix_uri("", sock), scratch("model.raw"));
    free(model);
    free(got);
    kill_server(pid);
}

START_TEST(random_against_model)
{
    random_io(NULL);
}
END_TEST

/* The same over four connections (nbdkit's memory plugin has multi-conn). */
START_TEST(random_multi_conn)
{
    random_io("4");
}
END_TEST

/* Four connections: delayed reads overlap, and a server without multi-conn
 * gets one connection. */
START_TEST(multi_conn)
{
    const char *sock = scratch("mc.sock"), *pid = pidfile("mc.pid");
    const char *log = scratch("mc.log");
    start_nbdkit(sock, pid, fmt("--filter=log --filter=delay memory 64M rdelay=500ms "
                                "logfile='%s'", log));
    vdisk_dev *d = open_conns(unix_uri("", sock), "4");
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, d, 128), 0);
    enum { N = 64 };
    static uint8_t bufs[N][4096];
    struct done_count c = {0, 0};
    for (int i = 0; i < N; i++) {
        struct iovec v = {bufs[i], sizeof bufs[i]};
        ck_assert_int_eq(vdisk_aio_preadv(q, &v, 1, (uint64_t)i * MiB, 0, count_done, &c), 0);
    }
    ck_assert_int_ge(vdisk_queue_submit(q), 0);
    while (c.done < N)
        ck_assert_int_ge(vdisk_queue_reap(q, 1, -1), 0);
    ck_assert_int_eq(c.failed, 0);
    vdisk_queue_free(q);
    vdisk_close(d);
    kill_server_sock(pid, sock);
    /* Four connections, and reads on each. */
    struct run *r = run("grep -c ' Connect export=' '%s'", log);
    ck_assert_str_eq(r->out, "4\n");
    r = run("grep ' Read id=' '%s' | sed 's/.*connection=\\([0-9]*\\) .*/\\1/' | sort -u",
            log);
    ck_assert_str_eq(r->out, "1\n2\n3\n4\n");
    start_nbdkit(sock, pid, "--filter=multi-conn memory 1M multi-conn-mode=disable");
    d = open_conns(unix_uri("", sock), "4");
    uint8_t b[512] = {1};
    ck_assert_int_eq(vdisk_pwrite(d, b, sizeof b, 0), 0);
    ck_assert_int_eq(vdisk_pread(d, b, sizeof b, 0), 0);
    ck_assert_int_eq(b[0], 1);
    vdisk_close(d);
    kill_server_sock(pid, sock);
    /* A count out of range is refused with a message. */
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "connections", "17"), 0);
    ck_assert_int_eq(vdisk_open(&d, unix_uri("", sock), o), -EINVAL);
    vdisk_options_free(o);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("nbd-client");
    TCase *tc = tcase_create("nbd");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, qemu_nbd_unix);
    tcase_add_test(tc, qemu_nbd_tcp);
    tcase_add_test(tc, storage_daemon);
    tcase_add_test(tc, nbdkit_memory);
    tcase_add_test(tc, nbdkit_file);
    tcase_add_test(tc, nbdkit_errors);
    tcase_add_test(tc, tls_psk);
    tcase_add_test(tc, block_limits);
    tcase_add_test(tc, qcow2_on_export);
    tcase_add_test(tc, network_backing);
    tcase_add_test(tc, many_in_flight);
    tcase_add_test(tc, reconnect);
    tcase_add_test(tc, reconnect_in_flight);
    tcase_add_test(tc, lost_writes_fail_flush);
    tcase_add_test(tc, features_lost);
    tcase_add_test(tc, timeouts);
    tcase_add_test(tc, random_against_model);
    tcase_add_test(tc, random_multi_conn);
    tcase_add_test(tc, multi_conn);
    suite_add_tcase(s, tc);
    return s;
}

/* Every server a case started and did not stop (it failed midway). */
static void kill_leftover_servers(void)
{
    struct run *r = run("ls '%s'", pid_dir);
    char *list = strdup(r->out), *save = NULL;
    for (char *name = strtok_r(list, "\n", &save); name; name = strtok_r(NULL, "\n", &save))
        kill_server(pidfile(name));
    free(list);
    rmdir(pid_dir);
}

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    require_program("qemu-nbd");
    require_program("nbdkit");
    const char *base = getenv("VDISK_TEST_TMPDIR");
    snprintf(pid_dir, sizeof pid_dir, "%s/vdisk-nbd-pids-XXXXXX", base ? base : "/var/tmp");
    if (!mkdtemp(pid_dir)) {
        perror("mkdtemp");
        return 1;
    }
    int status = run_suite(make_suite());
    kill_leftover_servers();
    return status;
}
