/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/locking.c: image locking against QEMU 7.2 (issue 13 item 2).
 *
 * A running qemu-io or qemu-storage-daemon holds an image and vdisk's verbs
 * that write it (io write, snapshot -c, resize, check -r all, create,
 * convert onto it) fail with QEMU's message and leave it as it was, its
 * readers fail unless -U; a running vdisk holds an image and qemu-io,
 * qemu-img and other vdisk processes are refused in the same way; backing
 * files are held read-only; two processes using the library conflict;
 * read-only opens coexist; locking=off ignores the locks; the locks go
 * with the last close.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"

#define V vdisk_bin()

/* ---- A process holding an image open -------------------------------------- */

struct holder {
    pid_t pid;
    int in, out;            /* its standard input; its standard output + error */
    char buf[16384];
    size_t len;
};

/* The processes a test started, ended by the fixture if the test fails. */
static pid_t started[16];
static unsigned nstarted;

static void remember(pid_t pid)
{
    ck_assert(nstarted < sizeof started / sizeof started[0]);
    started[nstarted++] = pid;
}

static void forget(pid_t pid)
{
    for (unsigned i = 0; i < nstarted; i++)
        if (started[i] == pid)
            started[i] = started[--nstarted];
}

static void end_leftovers(void)
{
    while (nstarted) {
        pid_t pid = started[--nstarted];
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

/* Starts the shell command CMD with pipes on its standard input and output. */
static void holder_start(struct holder *h, const char *cmd)
{
    int in[2], out[2];
    ck_assert(pipe(in) == 0 && pipe(out) == 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(out[1], 2);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    remember(pid);
    close(in[0]);
    close(out[1]);
    h->pid = pid;
    h->in = in[1];
    h->out = out[0];
    h->len = 0;
}

/* Sends LINE (may be NULL) and waits until the output holds WANT. */
static void holder_say(struct holder *h, const char *line, const char *want)
{
    if (line) {
        size_t n = strlen(line);
        ck_assert_msg(write(h->in, line, n) == (ssize_t)n, "write to the holder: %s",
                      strerror(errno));
    }
    h->len = 0;
    h->buf[0] = '\0';
    /* A readiness wait, not a timing assertion: two minutes for a command
     * that takes milliseconds. */
    for (int waited = 0; waited < 120; waited++) {
        struct pollfd p = {.fd = h->out, .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0)
            continue;
        ssize_t n = read(h->out, h->buf + h->len, sizeof h->buf - 1 - h->len);
        ck_assert_msg(n > 0, "the holder exited before printing '%s'; it printed:\n%s", want,
                      h->buf);
        h->len += (size_t)n;
        h->buf[h->len] = '\0';
        if (strstr(h->buf, want))
            return;
        if (h->len == sizeof h->buf - 1)
            h->len = 0;
    }
    ck_abort_msg("the holder did not print '%s' within 120 s; it printed:\n%s", want, h->buf);
}

/* Ends the holder (EOF on its input, or SIGTERM) and returns its exit status. */
static int holder_stop(struct holder *h, bool term)
{
    close(h->in);
    if (term)
        kill(h->pid, SIGTERM);
    int st = 0;
    ck_assert(waitpid(h->pid, &st, 0) == h->pid);
    forget(h->pid);
    close(h->out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Waits until some process holds lock byte 100 of PATH (from /proc/locks). */
static void wait_locked(const char *path)
{
    struct stat st;
    ck_assert_msg(stat(path, &st) == 0, "%s: %s", path, strerror(errno));
    char key[128];
    snprintf(key, sizeof key, " %02x:%02x:%lu 100 ", major(st.st_dev), minor(st.st_dev),
             (unsigned long)st.st_ino);
    for (int i = 0; i < 12000; i++) {
        /* /proc/locks has no size: read it to its end. */
        static char locks[1 << 20];
        size_t len = 0;
        FILE *f = fopen("/proc/locks", "r");
        if (f) {
            size_t n;
            while (len < sizeof locks - 1 &&
                   (n = fread(locks + len, 1, sizeof locks - 1 - len, f)) > 0)
                len += n;
            fclose(f);
        }
        locks[len] = '\0';
        if (strstr(locks, key))
            return;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    ck_abort_msg("nobody locked %s within 120 s", path);
}

/* ---- Expectations ---------------------------------------------------------- */

/* The message of a vdisk verb whose open of FILE a lock refused. */
static const char *refused(const char *file, bool shared, const char *perm)
{
    return fmt("vdisk: Could not open '%s': Failed to get %s\"%s\" lock\n"
               "Is another process using the image [%s]?\n",
               file, shared ? "shared " : "", perm, file);
}

static void expect(struct run *r, int status, const char *err)
{
    ck_assert_msg(r->status == status && strcmp(r->err, err) == 0,
                  "%s\nexit %d (expected %d), stderr:\n%s\nexpected:\n%s", harness_last_cmd(),
                  r->status, status, r->err, err);
}

/* Fails unless the command succeeded. */
static struct run *ok(struct run *r)
{
    ck_assert_msg(r->status == 0, "%s\nexit %d, stdout:\n%s\nstderr:\n%s", harness_last_cmd(),
                  r->status, r->out, r->err);
    return r;
}

static char *sum(const char *file)
{
    return strdup(ok(run("sha256sum < '%s'", file))->out);
}

static void clean(const char *img)
{
    struct run *r = run("qemu-img check '%s'", img);
    ck_assert_msg(r->status == 0, "qemu-img check %s: %s %s", img, r->out, r->err);
}

static void make_qcow2(const char *name, int pattern)
{
    RUN_OK("qemu-img create -q -f qcow2 %s 8M", name);
    RUN_OK("qemu-io -c 'write -q -P %d 0 1M' %s", pattern, name);
}

/* ---- QEMU holds, vdisk is refused ----------------------------------------- */

/* vdisk's verbs on IMG (qcow2, holding 1 MiB of 0x11) while QEMU writes it. */
static void vdisk_refused_while_qemu_writes(const char *img)
{
    const char *w = refused(img, false, "write");
    const char *sw = refused(img, true, "write");
    expect(run("%s io -c 'write -P 0x22 0 64k' %s", V, img), 1, w);
    expect(run("%s snapshot -c snap %s", V, img), 1, w);
    expect(run("%s resize %s 16M", V, img), 1, w);
    expect(run("%s check -r all %s", V, img), 1, w);
    expect(run("%s amend -o lazy_refcounts=on %s", V, img), 1, w);
    expect(run("%s convert -n -O qcow2 %s %s", V, img, img), 1, sw);
    /* Readers of a qcow2 image need it unchanged. */
    expect(run("%s info %s", V, img), 1, sw);
    expect(run("%s check %s", V, img), 1, sw);
    expect(run("%s map %s", V, img), 1, sw);
    expect(run("%s io -r -c 'read 0 512' %s", V, img), 1, sw);
    /* ... unless they share (-U), as qemu-img's. */
    ck_assert(strstr(ok(run("%s info -U %s", V, img))->out, "file format: qcow2\n"));
    ok(run("%s check -U %s", V, img));
    ok(run("%s map -U --output=json %s", V, img));
    ok(run("%s compare -U %s %s", V, img, img));
    ok(run("%s measure -U -O qcow2 %s", V, img));
    ok(run("%s snapshot -U -l %s", V, img));
    ok(run("%s convert -U -O raw %s copy.raw", V, img));
    ok(run("%s io -r -U -c 'read -P 0x11 0 1M' %s", V, img));
    /* -U is for reading only. */
    expect(run("%s io -U -c 'write 0 512' %s", V, img), 1,
           "vdisk: force-share=on can only be used with read-only images\n");
    expect(run("%s check -U -r all %s", V, img), 1,
           "vdisk: force-share=on can only be used with read-only images\n");
    /* Creating over it: refused before anything is truncated. */
    const char *cw = fmt("vdisk: %s: Failed to get \"write\" lock\n"
                         "Is another process using the image [%s]?\n", img, img);
    struct run *r = run("%s create -f qcow2 %s 1M", V, img);
    ck_assert_msg(r->status == 1 && strstr(r->err, cw), "%s: %d %s", harness_last_cmd(),
                  r->status, r->err);
    r = run("%s create -f raw %s 1M", V, img);
    ck_assert_msg(r->status == 1 && strstr(r->err, cw), "%s: %d %s", harness_last_cmd(),
                  r->status, r->err);
}

START_TEST(qemu_io_holds)
{
    make_qcow2("q.qcow2", 0x11);
    char *before = sum("q.qcow2");
    struct holder h;
    holder_start(&h, "exec qemu-io -f qcow2 q.qcow2");
    holder_say(&h, "read -P 0x11 0 1M\n", "read 1048576/1048576 bytes");
    vdisk_refused_while_qemu_writes("q.qcow2");
    ck_assert_int_eq(holder_stop(&h, false), 0);
    /* Nothing changed: the same bytes, clean, no snapshot, the old size. */
    char *after = sum("q.qcow2");
    ck_assert_str_eq(before, after);
    clean("q.qcow2");
    RUN_OK("qemu-io -c 'read -P 0x11 0 1M' q.qcow2");
    ck_assert_str_eq(ok(run("qemu-img snapshot -l q.qcow2"))->out, "");
    ck_assert(strstr(ok(run("qemu-img info q.qcow2"))->out,
                     "virtual size: 8 MiB (8388608 bytes)"));
    /* Once QEMU has let go, vdisk writes. */
    RUN_OK("%s io -c 'write -P 0x22 0 64k' q.qcow2", V);
    free(before);
    free(after);
}
END_TEST

START_TEST(qemu_storage_daemon_holds)
{
    CASE_REQUIRE_PROGRAM("qemu-storage-daemon");
    make_qcow2("d.qcow2", 0x11);
    RUN_OK("qemu-img create -q -f raw d.raw 4M");
    /* A qcow2 node, and a raw file exported writable over NBD (a user of
     * the raw image that writes it and does not share resizing). */
    struct holder h;
    holder_start(&h, fmt("exec qemu-storage-daemon"
                         " --blockdev driver=file,node-name=f1,filename=d.qcow2"
                         " --blockdev driver=qcow2,node-name=q1,file=f1"
                         " --blockdev driver=file,node-name=f2,filename=d.raw"
                         " --nbd-server addr.type=unix,addr.path=%s"
                         " --export type=nbd,id=e2,node-name=f2,writable=on",
                         scratch("nbd.sock")));
    wait_locked("d.qcow2");
    wait_locked("d.raw");
    vdisk_refused_while_qemu_writes("d.qcow2");
    /* The raw image: vdisk does not write it either (qemu-io would: it lets
     * other writers in, vdisk does not), and reads it as qemu-img does. */
    expect(run("%s io -f raw -c 'write 0 512' d.raw", V), 1,
           refused("d.raw", true, "write"));
    expect(run("%s resize -f raw d.raw 8M", V), 1,
           refused("d.raw", true, "write"));
    ck_assert(strstr(ok(run("%s info -f raw d.raw", V))->out, "virtual size: 4 MiB"));
    ok(run("%s io -f raw -r -c 'read -P 0 0 4M' d.raw", V));
    ck_assert_int_eq(holder_stop(&h, true), 0);
    clean("d.qcow2");
    RUN_OK("%s resize -f raw d.raw 8M", V);
}
END_TEST

/* ---- vdisk holds, QEMU is refused ----------------------------------------- */

static const char *qemu_refused(const char *tool, const char *file, bool shared)
{
    if (strcmp(tool, "qemu-io") == 0)
        return fmt("qemu-io: can't open device %s: Failed to get %s\"write\" lock\n"
                   "Is another process using the image [%s]?\n",
                   file, shared ? "shared " : "", file);
    return fmt("qemu-img: Could not open '%s': Failed to get %s\"write\" lock\n"
               "Is another process using the image [%s]?\n",
               file, shared ? "shared " : "", file);
}

START_TEST(vdisk_holds)
{
    make_qcow2("v.qcow2", 0x11);
    struct holder h;
    holder_start(&h, fmt("exec '%s' io -f qcow2 v.qcow2", V));
    holder_say(&h, "read -P 0x11 0 1M\n", "read 1048576/1048576 bytes");
    expect(run("qemu-io -c 'write 0 512' v.qcow2"), 1, qemu_refused("qemu-io", "v.qcow2", false));
    expect(run("qemu-img snapshot -c s v.qcow2"), 1, qemu_refused("qemu-img", "v.qcow2", false));
    expect(run("qemu-img resize v.qcow2 16M"), 1, qemu_refused("qemu-img", "v.qcow2", false));
    expect(run("qemu-img check -r all v.qcow2"), 1, qemu_refused("qemu-img", "v.qcow2", false));
    expect(run("qemu-img info v.qcow2"), 1, qemu_refused("qemu-img", "v.qcow2", true));
    expect(run("qemu-io -r -c 'read 0 512' v.qcow2"), 1,
           qemu_refused("qemu-io", "v.qcow2", true));
    ck_assert(strstr(ok(run("qemu-img info -U v.qcow2"))->out, "file format: qcow2\n"));
    ok(run("qemu-io -r -U -c 'read -P 0x11 0 1M' v.qcow2"));
    /* A second vdisk process is refused like QEMU. */
    expect(run("%s io -c 'write 0 512' v.qcow2", V), 1,
           refused("v.qcow2", false, "write"));
    expect(run("%s info v.qcow2", V), 1, refused("v.qcow2", true, "write"));
    ok(run("%s info -U v.qcow2", V));
    /* The holder writes on; then it lets go and QEMU finds it clean. */
    holder_say(&h, "write -P 0x33 64k 64k\n", "wrote 65536/65536 bytes");
    ck_assert_int_eq(holder_stop(&h, false), 0);
    clean("v.qcow2");
    RUN_OK("qemu-io -c 'read -P 0x11 0 64k' -c 'read -P 0x33 64k 64k' "
           "-c 'read -P 0x11 128k 896k' v.qcow2");
}
END_TEST

START_TEST(vdisk_holds_raw)
{
    RUN_OK("qemu-img create -q -f raw v.raw 4M");
    struct holder h;
    holder_start(&h, fmt("exec '%s' io -f raw v.raw", V));
    holder_say(&h, "write -P 0x44 0 4k\n", "wrote 4096/4096 bytes");
    expect(run("qemu-io -f raw -c 'write 0 512' v.raw"), 1,
           qemu_refused("qemu-io", "v.raw", false));
    expect(run("qemu-img resize -f raw v.raw 8M"), 1, qemu_refused("qemu-img", "v.raw", false));
    /* Reading a raw image shares everything, in QEMU and in vdisk. */
    ok(run("qemu-img info -f raw v.raw"));
    ok(run("%s io -r -f raw -c 'read -P 0x44 0 4k' v.raw", V));
    ck_assert_int_eq(holder_stop(&h, false), 0);
    RUN_OK("qemu-io -f raw -c 'write -P 0x55 0 512' v.raw");
}
END_TEST

/* The backing chain is locked too: backing files read-only, not shared for
 * writing. */
START_TEST(backing_chain)
{
    make_qcow2("base.qcow2", 0x11);
    RUN_OK("qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2");
    struct holder h;
    holder_start(&h, fmt("exec '%s' io top.qcow2", V));
    holder_say(&h, "read -P 0x11 0 1M\n", "read 1048576/1048576 bytes");
    expect(run("qemu-io -c 'write 0 512' base.qcow2"), 1,
           qemu_refused("qemu-io", "base.qcow2", false));
    expect(run("%s io -c 'write 0 512' base.qcow2", V), 1,
           refused("base.qcow2", false, "write"));
    ok(run("qemu-img info base.qcow2")); /* readers share a backing file */
    ok(run("%s info base.qcow2", V));
    ck_assert_int_eq(holder_stop(&h, false), 0);

    /* QEMU holds the overlay: vdisk may read the base, not write it. */
    holder_start(&h, "exec qemu-io top.qcow2");
    holder_say(&h, "read -P 0x11 0 1M\n", "read 1048576/1048576 bytes");
    expect(run("%s io -c 'write 0 512' base.qcow2", V), 1,
           refused("base.qcow2", false, "write"));
    ok(run("%s io -r -c 'read -P 0x11 0 1M' base.qcow2", V));
    ck_assert_int_eq(holder_stop(&h, false), 0);

    /* vdisk commit writes the base it also reads as a backing file (one
     * process: no conflict), and is refused while QEMU reads the base. */
    RUN_OK("%s io -c 'write -P 0x66 0 64k' top.qcow2", V);
    holder_start(&h, "exec qemu-io -r base.qcow2");
    holder_say(&h, "read -P 0x11 0 1M\n", "read 1048576/1048576 bytes");
    expect(run("%s commit top.qcow2", V), 1,
           refused("base.qcow2", false, "write"));
    ck_assert_int_eq(holder_stop(&h, false), 0);
    RUN_OK("%s commit top.qcow2", V);
    RUN_OK("qemu-io -c 'read -P 0x66 0 64k' base.qcow2");
    clean("base.qcow2");
    clean("top.qcow2");
}
END_TEST

/* ---- The library: two processes, options ---------------------------------- */

static int open_with(vdisk_dev **d, const char *file, const char *opts)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_parse(o, opts), 0);
    int r = vdisk_open(d, file, o);
    vdisk_options_free(o);
    return r;
}

/* A child that opens FILE with OPTS, says 'o', waits for a byte, closes the
 * device, says 'c', waits for a byte, exits. */
struct child {
    pid_t pid;
    int to, from;
};

static void child_start(struct child *c, const char *file, const char *opts)
{
    int a[2], b[2];
    ck_assert(pipe(a) == 0 && pipe(b) == 0);
    c->pid = fork();
    ck_assert(c->pid >= 0);
    if (c->pid == 0) {
        close(a[1]);
        close(b[0]);
        char x;
        vdisk_dev *d;
        if (open_with(&d, file, opts) < 0) {
            fprintf(stderr, "child: %s\n", vdisk_get_error());
            _exit(1);
        }
        if (write(b[1], "o", 1) != 1 || read(a[0], &x, 1) != 1)
            _exit(2);
        vdisk_close(d);
        if (write(b[1], "c", 1) != 1 || read(a[0], &x, 1) != 1)
            _exit(3);
        _exit(0);
    }
    remember(c->pid);
    close(a[0]);
    close(b[1]);
    c->to = a[1];
    c->from = b[0];
    char x = 0;
    ck_assert_msg(read(c->from, &x, 1) == 1 && x == 'o', "the child could not open %s", file);
}

static void child_close(struct child *c)
{
    char x = 0;
    ck_assert(write(c->to, "x", 1) == 1);
    ck_assert(read(c->from, &x, 1) == 1 && x == 'c');
}

static void child_end(struct child *c)
{
    /* One byte to close (unless child_close did), one to exit. */
    ck_assert(write(c->to, "xx", 2) == 2);
    int st;
    ck_assert(waitpid(c->pid, &st, 0) == c->pid);
    forget(c->pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(c->to);
    close(c->from);
}

static void open_fails(const char *file, const char *opts, bool shared, const char *perm)
{
    vdisk_dev *d = NULL;
    int r = open_with(&d, file, opts);
    const char *want = fmt("vdisk_open: Could not open '%s': Failed to get %s\"%s\" lock\n"
                           "Is another process using the image [%s]?",
                           file, shared ? "shared " : "", perm, file);
    ck_assert_msg(r == -EAGAIN && d == NULL && strcmp(vdisk_get_error(), want) == 0,
                  "open %s with %s: %d, '%s'; expected -EAGAIN, '%s'", file, opts, r,
                  vdisk_get_error(), want);
}

static void open_works(const char *file, const char *opts)
{
    vdisk_dev *d = NULL;
    ck_assert_msg(open_with(&d, file, opts) == 0, "open %s with %s: %s", file, opts,
                  vdisk_get_error());
    vdisk_close(d);
}

START_TEST(two_processes)
{
    make_qcow2("p.qcow2", 0x11);
    RUN_OK("qemu-img create -q -f raw p.raw 1M");
    struct child c;
    /* A writer excludes writers and qcow2 readers, in another process. */
    child_start(&c, "p.qcow2", "");
    open_fails("p.qcow2", "", false, "write");
    open_fails("p.qcow2", "locking=on", false, "write");
    open_fails("p.qcow2", "read-only=on", true, "write");
    open_works("p.qcow2", "read-only=on,force-share=on");
    open_works("p.qcow2", "locking=off,read-only=on");
    child_close(&c);
    /* Its locks went with vdisk_close, before it exited. */
    open_works("p.qcow2", "");
    child_end(&c);

    /* Readers coexist; a writer is refused by them. */
    child_start(&c, "p.qcow2", "read-only=on");
    open_works("p.qcow2", "read-only=on");
    open_fails("p.qcow2", "", false, "write");
    child_end(&c);

    /* Raw: a writer excludes writers, not readers. */
    child_start(&c, "p.raw", "format=raw");
    open_fails("p.raw", "format=raw", false, "write");
    open_works("p.raw", "format=raw,read-only=on");
    child_end(&c);

    /* locking=off: takes nothing, ignores the others. */
    child_start(&c, "p.qcow2", "locking=off");
    open_works("p.qcow2", "");
    child_end(&c);
}
END_TEST

START_TEST(same_process)
{
    make_qcow2("s.qcow2", 0x11);
    vdisk_dev *rw = NULL, *ro = NULL;
    ck_assert_int_eq(open_with(&rw, "s.qcow2", ""), 0);
    ck_assert_int_eq(open_with(&ro, "s.qcow2", "read-only=on"), 0);
    expect(run("qemu-io -c 'write 0 512' s.qcow2"), 1, qemu_refused("qemu-io", "s.qcow2", false));
    expect(run("qemu-img info s.qcow2"), 1, qemu_refused("qemu-img", "s.qcow2", true));
    /* The writer goes: readers may come, writers may not. */
    vdisk_close(rw);
    ok(run("qemu-img info s.qcow2"));
    expect(run("qemu-io -c 'write 0 512' s.qcow2"), 1, qemu_refused("qemu-io", "s.qcow2", false));
    /* The last one goes: nothing is left locked. */
    vdisk_close(ro);
    RUN_OK("qemu-io -c 'write -P 0x77 0 512' s.qcow2");
}
END_TEST

/* A process that dies with the image open (no vdisk_close) leaves no locks
 * behind once it is gone, whatever its I/O engine still holds. */
START_TEST(dead_holder)
{
    make_qcow2("dead.qcow2", 0x11);
    for (int i = 0; i < 20; i++) {
        pid_t pid = fork();
        ck_assert(pid >= 0);
        if (pid == 0) {
            vdisk_dev *d;
            static uint8_t buf[65536];
            if (open_with(&d, "dead.qcow2", i % 2 ? "engine=threads" : "") < 0 ||
                vdisk_pwrite(d, buf, sizeof buf, (uint64_t)i * sizeof buf) < 0)
                _exit(1);
            _exit(0);
        }
        int st;
        ck_assert(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
        open_works("dead.qcow2", "");
    }
    clean("dead.qcow2");
}
END_TEST

/* A child made by fork() is another process: its own opens conflict with
 * its parent's. */
START_TEST(forked_child_is_another_process)
{
    make_qcow2("f.qcow2", 0x11);
    vdisk_dev *d = NULL;
    ck_assert_int_eq(open_with(&d, "f.qcow2", ""), 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        vdisk_dev *c = NULL;
        int r = open_with(&c, "f.qcow2", "");
        int r2 = open_with(&c, "f.qcow2", "read-only=on,force-share=on");
        if (r2 == 0)
            vdisk_close(c);
        _exit(r == -EAGAIN && r2 == 0 ? 0 : 1);
    }
    int st;
    ck_assert(waitpid(pid, &st, 0) == pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child's open was not refused");
    vdisk_close(d);
    RUN_OK("qemu-io -c 'write 0 512' f.qcow2");
}
END_TEST

START_TEST(option_errors)
{
    make_qcow2("e.qcow2", 0x11);
    vdisk_dev *d = NULL;
    ck_assert_int_eq(open_with(&d, "e.qcow2", "locking=maybe"), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(),
                     "vdisk_open: invalid locking mode 'maybe' (expected auto, on or off)");
    ck_assert_int_eq(open_with(&d, "e.qcow2", "force-share=on"), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(),
                     "vdisk_open: force-share=on can only be used with read-only images");
    ck_assert_int_eq(open_with(&d, "e.qcow2", "read-only=on,force-share=perhaps"), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(),
                     "vdisk_open: option 'force-share' expects 'on' or 'off', not 'perhaps'");
    open_works("e.qcow2", "locking=on,read-only=on,force-share=off");
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    signal(SIGPIPE, SIG_IGN);
    if (chdir(scratch_dir()) != 0)
        return 1;
    /* The scratch file system must have OFD locks, as QEMU needs them. */
    int fd = open("probe", O_RDWR | O_CREAT, 0644);
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1};
    if (fd < 0 || fcntl(fd, F_OFD_SETLK, &fl) < 0)
        skip_test("%s: no OFD locks on this file system (%s)", scratch_dir(), strerror(errno));
    close(fd);
    Suite *s = suite_create("locking");
    TCase *tc = tcase_create("locking");
    tcase_set_timeout(tc, 600);
    tcase_add_checked_fixture(tc, NULL, end_leftovers);
    tcase_add_test(tc, qemu_io_holds);
    tcase_add_test(tc, qemu_storage_daemon_holds);
    tcase_add_test(tc, vdisk_holds);
    tcase_add_test(tc, vdisk_holds_raw);
    tcase_add_test(tc, backing_chain);
    tcase_add_test(tc, two_processes);
    tcase_add_test(tc, same_process);
    tcase_add_test(tc, dead_holder);
    tcase_add_test(tc, forked_child_is_another_process);
    tcase_add_test(tc, option_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
