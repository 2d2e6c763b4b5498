/* SPDX-License-Identifier: MIT */
/*
 * tests/nbd/interop.c: `vdisk nbd` serving images to the real NBD clients:
 * qemu-img (info, map, convert to and from, compare), qemu-io (read -P,
 * write -P, discard, write -z, exact outputs but for the timing lines),
 * nbdinfo (--list, --map of base:allocation and qemu:allocation-depth),
 * nbdcopy, over a Unix socket and over TCP on 127.0.0.1 (a free port);
 * nbdinfo's view of it and of qemu-nbd on the same image; the server
 * going away after its last client without -t; the CLI's
 * errors as qemu-nbd words them.  Skipped (77) when a tool is missing.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"

/* qemu-io's output without its timing lines. */
#define NO_TIMING " 2>&1 | grep -v ' ops; '"

static const char *pid_file;

/* The servers' pid files: a server still running when the case ends (it
 * failed half-way) is stopped then. */
static const char *pid_files[8];
static unsigned npid_files;

static void kill_servers(void)
{
    for (unsigned i = 0; i < npid_files; i++) {
        FILE *f = fopen(pid_files[i], "r");
        long pid = 0;
        if (f) {
            if (fscanf(f, "%ld", &pid) == 1 && pid > 1)
                kill((pid_t)pid, SIGTERM);
            fclose(f);
        }
    }
}

static void track_pid_file(const char *path)
{
    if (npid_files == 0)
        atexit(kill_servers);
    if (npid_files < sizeof pid_files / sizeof pid_files[0])
        pid_files[npid_files++] = path;
}

/* Starts `vdisk nbd ARGS --fork --pid-file ...`: listening when it returns. */
static void start_server(const char *args)
{
    pid_file = scratch("nbd.pid");
    track_pid_file(pid_file);
    RUN_OK("%s nbd %s --fork --pid-file %s", vdisk_bin(), args, pid_file);
    struct stat st;
    ck_assert_int_eq(stat(pid_file, &st), 0);
}

/* Waits until the server has exited (it removes its pid file last). */
static bool server_gone(unsigned ms)
{
    struct stat st;
    for (unsigned i = 0; i < ms / 10; i++) {
        if (stat(pid_file, &st) < 0)
            return true;
        usleep(10000);
    }
    return false;
}

static void stop_server(void)
{
    size_t len;
    char *s = read_file(pid_file, &len);
    long pid = strtol(s, NULL, 10);
    free(s);
    ck_assert_int_gt(pid, 1);
    ck_assert_int_eq(kill((pid_t)pid, SIGTERM), 0);
    ck_assert_msg(server_gone(10000), "vdisk nbd did not exit on SIGTERM");
}

static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void expect_out(const char *want)
{
    struct run *r = harness_last_run();
    ck_assert_msg(r->status == 0, "%s: exit %d\n%s%s", harness_last_cmd(), r->status, r->out,
                  r->err);
    ck_assert_msg(strcmp(r->out, want) == 0, "%s:\n--- got\n%s--- want\n%s", harness_last_cmd(),
                  r->out, want);
}

/* qemu-img map --output=json reduced to "start length zero data" lines,
 * neighbours with the same zero and data merged. */
#define MAP_NORMALIZE                                                                       \
    " | sed -E 's/.*\"start\": ([0-9]+), \"length\": ([0-9]+),.*\"zero\": (true|false), "     \
    "\"data\": (true|false).*/\\1 \\2 \\3 \\4/'"                                              \
    " | awk '{ if (n && $3 == z && $4 == d) { l += $2 } else { if (n) print s, l, z, d; "    \
    "s = $1; l = $2; z = $3; d = $4; n = 1 } } END { print s, l, z, d }'"

START_TEST(unix_socket)
{
    const char *img = scratch("u.qcow2"), *sock = scratch("nbd.sock");
    RUN_OK("qemu-img create -q -f qcow2 %s 64M", img);
    RUN_OK("qemu-io -f qcow2 -c 'write -P 0xab 1M 1M' -c 'write -z 8M 1M' "
           "-c 'write -P 0x11 16M 64k' %s", img);
    start_server(fmt("-k %s -f qcow2 -x disk -D 'test disk' -t -e 4 -A --discard=unmap %s",
                     sock, img));
    const char *uri = fmt("nbd+unix:///disk?socket=%s", sock);

    run("qemu-img info '%s'", uri);
    expect_out(fmt("image: %s\nfile format: raw\nvirtual size: 64 MiB (67108864 bytes)\n"
                   "disk size: unavailable\n", uri));

    run("nbdinfo --list 'nbd+unix:///?socket=%s' | grep -E "
        "'export=|description|export-size|base:|qemu:|is_read_only|can_(fua|trim|zero|multi)'",
        sock);
    expect_out("export=\"disk\":\n\tdescription: test disk\n\texport-size: 67108864 (64M)\n"
               "\t\tbase:allocation\n\t\tqemu:allocation-depth\n\tis_read_only: false\n"
               "\tcan_fua: true\n\tcan_multi_conn: true\n\tcan_trim: true\n\tcan_zero: true\n");

    /* base:allocation: data at 1M and 16M, zeroes elsewhere (8M is a zero
     * cluster, allocated: depth 1). */
    run("nbdinfo --map '%s'", uri);
    expect_out("         0     1048576    3  hole,zero\n"
               "   1048576     1048576    0  data\n"
               "   2097152    14680064    3  hole,zero\n"
               "  16777216       65536    0  data\n"
               "  16842752    50266112    3  hole,zero\n");
    run("nbdinfo --map=qemu:allocation-depth '%s'", uri);
    expect_out("         0     1048576    0  absent\n"
               "   1048576     1048576    1  local\n"
               "   2097152     6291456    0  absent\n"
               "   8388608     1048576    1  local\n"
               "   9437184     7340032    0  absent\n"
               "  16777216       65536    1  local\n"
               "  16842752    50266112    0  absent\n");
    /* The same map as qemu-img's of the image itself, and vdisk map's. */
    run("qemu-img map --output=json -f raw '%s'" MAP_NORMALIZE, uri);
    struct run *r = harness_last_run();
    char *over_nbd = strdup(r->out);
    run("qemu-img map -U --output=json -f qcow2 %s" MAP_NORMALIZE, img);
    expect_out(over_nbd);
    run("%s map -U -f qcow2 --output=json %s" MAP_NORMALIZE, vdisk_bin(), img);
    expect_out(over_nbd);
    free(over_nbd);

    run("qemu-io -f raw -c 'read -P 0xab 1M 1M' -c 'read -P 0 8M 1M' -c 'write -P 0xcd 3M 64k' "
        "-c 'read -P 0xcd 3M 64k' -c 'discard 3M 64k' -c 'write -z 4M 64k' -c 'read -P 0 4M 64k' "
        "-c 'write -z -u 5M 64k' -c 'read -P 0xab 1M 4k' -c 'flush' '%s'" NO_TIMING, uri);
    expect_out("read 1048576/1048576 bytes at offset 1048576\n"
               "read 1048576/1048576 bytes at offset 8388608\n"
               "wrote 65536/65536 bytes at offset 3145728\n"
               "read 65536/65536 bytes at offset 3145728\n"
               "discard 65536/65536 bytes at offset 3145728\n"
               "wrote 65536/65536 bytes at offset 4194304\n"
               "read 65536/65536 bytes at offset 4194304\n"
               "wrote 65536/65536 bytes at offset 5242880\n"
               "read 4096/4096 bytes at offset 1048576\n");
    run("qemu-io -f raw -c 'read -P 0x12 1M 512' '%s'" NO_TIMING, uri);
    expect_out("Pattern verification failed at offset 1048576, 512 bytes\n"
               "read 512/512 bytes at offset 1048576\n");
    /* Out of the export: refused by the client already, or by the server. */
    run("qemu-io -f raw -c 'read 64M 512' '%s'" NO_TIMING, uri);
    expect_out("read failed: Input/output error\n");

    /* Copies out and in. */
    const char *out = scratch("out.qcow2"), *src = scratch("src.raw");
    RUN_OK("qemu-img convert -f raw -O qcow2 '%s' %s", uri, out);
    run("qemu-img compare -f raw -F qcow2 '%s' %s", uri, out);
    expect_out("Images are identical.\n");
    RUN_OK("qemu-img create -q -f raw %s 64M", src);
    RUN_OK("qemu-io -f raw -c 'write -P 7 10M 2M' -c 'write -P 9 63M 1M' %s", src);
    RUN_OK("qemu-img convert -n -f raw -O raw %s '%s'", src, uri);
    run("qemu-img compare -f raw -F raw %s '%s'", src, uri);
    expect_out("Images are identical.\n");
    const char *copy = scratch("copy.raw");
    RUN_OK("nbdcopy '%s' %s", uri, copy);
    RUN_OK("cmp %s %s", src, copy);
    RUN_OK("qemu-io -f raw -c 'write -P 0x55 0 1M' %s", copy);
    RUN_OK("nbdcopy %s '%s'", copy, uri);
    stop_server();
    /* What the clients wrote is in the image. */
    run("qemu-img compare -f raw -F qcow2 %s %s", copy, img);
    expect_out("Images are identical.\n");
    RUN_OK("qemu-img check -q %s", img);
}
END_TEST

START_TEST(tcp)
{
    const char *img = scratch("t.raw");
    RUN_OK("qemu-img create -q -f raw %s 16M", img);
    RUN_OK("qemu-io -f raw -c 'write -P 0x42 0 4M' %s", img);
    /* Without -t: gone after its one client. */
    unsigned port = free_port();
    start_server(fmt("-b 127.0.0.1 -p %u -r -f raw %s", port, img));
    const char *uri = fmt("nbd://127.0.0.1:%u", port);
    /* A client that hangs up before the handshake ends does not count (as
     * with qemu-nbd 7.2): the server still serves the next one. */
    int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    ck_assert_int_eq(connect(probe, (struct sockaddr *)&a, sizeof a), 0);
    char greeting[18];
    ck_assert_int_eq(recv(probe, greeting, sizeof greeting, MSG_WAITALL), 18);
    close(probe);
    usleep(200000); /* (time for the server to see it go) */
    run("qemu-img info '%s'", uri);
    expect_out(fmt("image: %s\nfile format: raw\nvirtual size: 16 MiB (16777216 bytes)\n"
                   "disk size: unavailable\n", uri));
    ck_assert_msg(server_gone(10000), "vdisk nbd without -t did not exit after its client");

    /* Read-only, persistent, 8 clients at once (nbdcopy's connections). */
    port = free_port();
    start_server(fmt("-b 127.0.0.1 -p %u -r -t -e 8 -x ro -f raw %s", port, img));
    uri = fmt("nbd://127.0.0.1:%u/ro", port);
    run("qemu-io -r -f raw -c 'read -P 0x42 0 4M' -c 'read -P 0 4M 12M' '%s'" NO_TIMING, uri);
    expect_out("read 4194304/4194304 bytes at offset 0\n"
               "read 12582912/12582912 bytes at offset 4194304\n");
    /* (EPERM for writes: tests/nbd/hostile.c; qemu-io will not write to a
     * read-only export at all.) */
    run("nbdinfo '%s' | grep -E 'is_read_only|can_trim|can_zero'", uri);
    expect_out("\tis_read_only: true\n\tcan_trim: false\n\tcan_zero: false\n");
    const char *copy = scratch("tcopy.raw");
    RUN_OK("nbdcopy '%s' %s", uri, copy);
    RUN_OK("cmp %s %s", img, copy);
    run("qemu-img compare -f raw -F raw %s '%s'", img, uri);
    expect_out("Images are identical.\n");
    stop_server();

    /* Writable over TCP, with FUA and detect-zeroes. */
    port = free_port();
    start_server(fmt("-b 127.0.0.1 -p %u -t --detect-zeroes=on -f raw %s", port, img));
    uri = fmt("nbd://127.0.0.1:%u", port);
    run("qemu-io -f raw -c 'write -f -P 0x77 8M 1M' -c 'write -P 0 0 1M' -c 'read -P 0 0 1M' "
        "-c 'read -P 0x77 8M 1M' '%s'" NO_TIMING, uri);
    expect_out("wrote 1048576/1048576 bytes at offset 8388608\n"
               "wrote 1048576/1048576 bytes at offset 0\n"
               "read 1048576/1048576 bytes at offset 0\n"
               "read 1048576/1048576 bytes at offset 8388608\n");
    stop_server();
}
END_TEST

/* What nbdinfo sees of vdisk nbd and of qemu-nbd serving the same image:
 * the same flags (multi-conn: neither offers it with one client at a
 * time), sizes, contexts and maps, but for the socket in the URI. */
START_TEST(same_as_qemu_nbd)
{
    CASE_REQUIRE_PROGRAM("qemu-nbd");
    const char *img = scratch("q.qcow2"), *base = scratch("qb.qcow2");
    /* A backing file with data at 40M and 1M: allocation depths 2. */
    RUN_OK("qemu-img create -q -f qcow2 %s 64M", base);
    RUN_OK("qemu-io -f qcow2 -c 'write -P 7 40M 128k' -c 'write -P 8 1536k 64k' %s", base);
    RUN_OK("qemu-img create -q -f qcow2 -b %s -F qcow2 %s 64M", base, img);
    RUN_OK("qemu-io -f qcow2 -c 'write -P 0xab 1M 1M' -c 'write -z 8M 1M' -c 'write -P 1 20M 64k' "
           "-c 'write -z 30M 64k' %s", img);
    const char *qsock = scratch("q.sock"), *qpid = scratch("q.pid"), *vsock = scratch("v.sock");
    track_pid_file(qpid);
    RUN_OK("qemu-nbd -r -A -k %s -f qcow2 -x d -D 'same disk' -t --fork --pid-file %s %s", qsock,
           qpid, img);
    start_server(fmt("-r -A -k %s -f qcow2 -x d -D 'same disk' -t %s", vsock, img));
    static const char *const what[] = {"", "--map", "--map=qemu:allocation-depth"};
    for (int i = 0; i < 3; i++) {
        const char *filter = i ? "" : " | grep -v -E '^\turi:'";
        run("nbdinfo %s 'nbd+unix:///d?socket=%s'%s", what[i], qsock, filter);
        char *theirs = strdup(harness_last_run()->out);
        ck_assert_msg(harness_last_run()->status == 0 && theirs[0], "%s: %s", harness_last_cmd(),
                      harness_last_run()->err);
        run("nbdinfo %s 'nbd+unix:///d?socket=%s'%s", what[i], vsock, filter);
        expect_out(theirs);
        free(theirs);
    }
    stop_server();
    size_t len;
    char *s = read_file(qpid, &len);
    kill((pid_t)strtol(s, NULL, 10), SIGTERM);
    free(s);
    unlink(qpid); /* stopped: not to be signalled again at exit */
}
END_TEST

/* In the foreground (no --fork): the exit status and all it writes on
 * standard error, after its one client (no -t), and on SIGTERM with -t and
 * -v (under ASan a leak at exit would show here too). */
START_TEST(foreground)
{
    const char *img = scratch("f.raw"), *sock = scratch("f.sock"), *err = scratch("f.err");
    RUN_OK("qemu-img create -q -f raw %s 4M", img);
    const char *wait_sock = fmt("i=0; while [ ! -S %s ] && [ $i -lt 1000 ]; do sleep 0.01; "
                                "i=$((i+1)); done", sock);
    run("%s nbd -k %s -f raw %s 2>%s & p=$!; %s; "
        "qemu-io -f raw -c 'write -P 3 0 64k' 'nbd+unix:///?socket=%s' >/dev/null; "
        "wait $p; echo \"exit $?\"; cat %s; test -e %s || echo 'socket removed'",
        vdisk_bin(), sock, img, err, wait_sock, sock, err, sock);
    expect_out("exit 0\nsocket removed\n");
    run("qemu-io -f raw -c 'read -P 3 0 64k' %s" NO_TIMING, img);
    expect_out("read 65536/65536 bytes at offset 0\n");
    run("%s nbd -t -v -k %s -f raw %s 2>%s & p=$!; %s; "
        "nbdinfo --size 'nbd+unix:///?socket=%s'; nbdinfo --size 'nbd+unix:///?socket=%s'; "
        "kill -TERM $p; wait $p; echo \"exit $?\"; cat %s",
        vdisk_bin(), sock, img, err, wait_sock, sock, sock, err);
    expect_out("4194304\n4194304\nexit 0\n"
               "vdisk: nbd: client 1 connected\nvdisk: nbd: client 1 disconnected\n"
               "vdisk: nbd: client 2 connected\nvdisk: nbd: client 2 disconnected\n");
}
END_TEST

START_TEST(cli_errors)
{
    const char *img = scratch("e.raw");
    RUN_OK("qemu-img create -q -f raw %s 1M", img);
    static const struct {
        const char *args, *err;
    } cases[] = {
        {"--discard=foo", "vdisk: Invalid discard mode `foo'\n"},
        {"--cache=foo", "vdisk: Invalid cache option: foo\n"},
        {"--detect-zeroes=foo",
         "vdisk: Failed to parse detect_zeroes mode: invalid parameter value: foo\n"},
        {"--detect-zeroes=unmap", "vdisk: setting detect-zeroes to unmap is not allowed without "
                                  "setting discard operation to unmap\n"},
        {"-e x", "vdisk: Invalid shared device number 'x'\n"},
        {"-p 70000", "vdisk: Invalid port number `70000'\n"},
        {"--aio=native", "vdisk: --aio=native is not supported (use threads or io_uring)\n"},
        {"--tls-creds=tls0", "vdisk: Failed to get TLS creds: No TLS credentials with id "
                             "'tls0'\n"},
        {"--object tls-creds-x509,id=tls0,dir=/nonexistent --tls-creds=tls0",
         "vdisk: Expecting TLS credentials with a server endpoint\n"},
        {"--object tls-creds-x509,id=tls0,dir=/d,endpoint=server,verify-peer=maybe",
         "vdisk: Parameter 'verify-peer' expects 'on' or 'off'\n"},
        {"--object tls-creds-x509,id=tls0,dir=/d,endpoint=server,priority=NORMAL",
         "vdisk: Parameter 'priority' is unexpected\n"},
        {"--object authz-simple,id=a0,identity=x", "vdisk: --object authz-simple is not "
                                                   "supported by vdisk nbd (secret, "
                                                   "tls-creds-x509 and tls-creds-psk are)\n"},
        {"--tls-authz=a0", "vdisk: --tls-authz is not supported by vdisk nbd\n"},
        {"-c /dev/nbd0", "vdisk: -c is not supported by vdisk nbd\n"},
        {"--offset=512", "vdisk: --offset is not supported by vdisk nbd\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run *r = run("%s nbd %s -k %s %s", vdisk_bin(), cases[i].args,
                            scratch("never.sock"), img);
        ck_assert_int_eq(r->status, 1);
        ck_assert_str_eq(r->err, cases[i].err);
    }
    struct run *r = run("%s nbd", vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, "vdisk: Not enough arguments\n"
                             "Try 'vdisk nbd --help' for more information.\n");
    /* The port is taken: the error, and --fork's parent fails too. */
    unsigned port = free_port();
    start_server(fmt("-b 127.0.0.1 -p %u -t -r -f raw %s", port, img));
    const char *pf = pid_file;
    r = run("%s nbd -b 127.0.0.1 -p %u -r -f raw --fork %s", vdisk_bin(), port, img);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, fmt("vdisk: Failed to bind socket: Address "
                                 "already in use (127.0.0.1 port %u)\n", port));
    pid_file = pf;
    stop_server();
}
END_TEST

/* vdisk's NBD client with the open options tls-psk-file and tls-username
 * (not in the name) on vdisk nbd with pre-shared keys: the bytes read and
 * written; the options' errors. */
static int open_opts(vdisk_dev **d, const char *uri, const char *const *kv)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "raw"), 0);
    for (; kv[0]; kv += 2)
        ck_assert_int_eq(vdisk_options_set(o, kv[0], kv[1]), 0);
    int r = vdisk_open(d, uri, o);
    vdisk_options_free(o);
    return r;
}

START_TEST(tls_client_options)
{
    const char *img = scratch("t.raw"), *sock = scratch("t.sock"), *dir = scratch("psk");
    RUN_OK("qemu-img create -q -f raw %s 1M", img);
    RUN_OK("qemu-io -f raw -c 'write -P 0x3c 0 64k' %s", img);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    const char *keys = scratch("psk/keys.psk");
    const char *line = "bob:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";
    write_file(keys, line, strlen(line));
    start_server(fmt("-t -k %s -f raw --object tls-creds-psk,id=t,dir=%s,endpoint=server "
                     "--tls-creds t %s", sock, dir, img));
    char *uri = strdup(fmt("nbds+unix:///?socket=%s", sock));
    vdisk_dev *d = NULL;
    const char *ok[] = {"tls-psk-file", keys, "tls-username", "bob", NULL};
    ck_assert_msg(open_opts(&d, uri, ok) == 0, "%s", vdisk_get_error());
    uint8_t b[65536], want[65536];
    memset(want, 0x3c, sizeof want);
    ck_assert_int_eq(vdisk_pread(d, b, sizeof b, 0), 0);
    ck_assert_int_eq(memcmp(b, want, sizeof b), 0);
    memset(want, 0x5d, sizeof want);
    ck_assert_int_eq(vdisk_pwrite(d, want, sizeof want, 65536), 0);
    ck_assert_int_eq(vdisk_flush(d), 0);
    vdisk_close(d);
    d = NULL;
    /* Another user: no key for it. */
    const char *nokey[] = {"tls-psk-file", keys, "tls-username", "eve", NULL};
    ck_assert_int_lt(open_opts(&d, uri, nokey), 0);
    /* The options' errors. */
    const char *plain_uri = fmt("nbd+unix:///?socket=%s", sock);
    ck_assert_int_eq(open_opts(&d, plain_uri, ok), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_open: the option tls-username needs TLS: an "
                                        "nbds:// or nbds+unix:// URI");
    const char *both[] = {"tls-psk-file", keys, "tls-certificates", dir, NULL};
    ck_assert_int_eq(open_opts(&d, uri, both), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_open: the options tls-certificates and "
                                        "tls-psk-file exclude each other");
    const char *badbool[] = {"tls-verify-peer", "maybe", NULL};
    ck_assert_int_eq(open_opts(&d, uri, badbool), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_open: option 'tls-verify-peer' expects 'on' or "
                                        "'off', not 'maybe'");
    stop_server();
    free(uri);
    run("qemu-io -f raw -c 'read -P 0x5d 64k 64k' %s" NO_TIMING, img);
    expect_out("read 65536/65536 bytes at offset 65536\n");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("nbd-interop");
    TCase *tc = tcase_create("nbd");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, unix_socket);
    tcase_add_test(tc, tcp);
    tcase_add_test(tc, same_as_qemu_nbd);
    tcase_add_test(tc, foreground);
    tcase_add_test(tc, cli_errors);
    tcase_add_test(tc, tls_client_options);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    require_program("qemu-img");
    require_program("qemu-io");
    require_program("nbdinfo");
    require_program("nbdcopy");
    return run_suite(suite());
}
