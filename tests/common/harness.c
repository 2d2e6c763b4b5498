/* SPDX-License-Identifier: MIT */
/* tests/common/harness.c: see harness.h. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

static char *last_cmd;
static struct run last_run;
static char scratch_path[256];

const char *harness_last_cmd(void)
{
    return last_cmd ? last_cmd : "";
}

struct run *harness_last_run(void)
{
    return &last_run;
}

static char *slurp_fd(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

static void run_once(void);

struct run *run(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    free(last_cmd);
    if (vasprintf(&last_cmd, fmt, ap) < 0)
        abort();
    va_end(ap);
    /* QEMU's tools time PBKDF2 before they make a LUKS header (create,
     * convert and measure with encryption), and fail when the thread's CPU
     * clock has not moved ("Unable to get accurate CPU usage"), which a
     * loaded machine brings about now and then. Such a run is tried again:
     * it failed before it wrote anything the command's earlier steps would
     * not write again. */
    for (int tries = 0;; tries++) {
        run_once();
        if (last_run.status == 0 || tries == 9 ||
            !strstr(last_run.err, "Unable to get accurate CPU usage"))
            return &last_run;
    }
}

static void run_once(void)
{
    free(last_run.out);
    free(last_run.err);
    /* Standard output and error go to files, so large outputs cannot block. */
    char out_path[300], err_path[300];
    snprintf(out_path, sizeof out_path, "%s/.run-out", scratch_dir());
    snprintf(err_path, sizeof err_path, "%s/.run-err", scratch_dir());
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int in = open("/dev/null", O_RDONLY);
        dup2(o, 1);
        dup2(e, 2);
        dup2(in, 0);
        execl("/bin/sh", "sh", "-c", last_cmd, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    last_run.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    int fd = open(out_path, O_RDONLY);
    last_run.out = slurp_fd(fd);
    close(fd);
    fd = open(err_path, O_RDONLY);
    last_run.err = slurp_fd(fd);
    close(fd);
}

bool have_program(const char *program)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", program);
    return system(cmd) == 0;
}

void require_program(const char *program)
{
    if (!have_program(program))
        skip_test("%s is not installed", program);
}

/* ---- Skips and the CI policy ------------------------------------------------ */

bool ci_mode(void)
{
    const char *ci = getenv("CI");
    return ci && (strcmp(ci, "true") == 0 || strcmp(ci, "1") == 0);
}

const char *test_name(void)
{
    const char *env = getenv("VDISK_TEST_NAME");
    if (env && *env)
        return env;
    const char *p = program_invocation_short_name;
    return strncmp(p, "test-", 5) == 0 ? p + 5 : p;
}

static const char *ci_skips_path(void)
{
    const char *env = getenv("VDISK_CI_SKIPS");
    return env && *env ? env : VDISK_SOURCE_DIR "/tests/ci-skips.txt";
}

bool ci_skip_allowed(const char *test, const char *reason)
{
    FILE *f = fopen(ci_skips_path(), "r");
    if (!f) {
        printf("cannot read the CI allow-list %s: %s\n", ci_skips_path(), strerror(errno));
        return false;
    }
    char line[1024];
    bool ok = false;
    while (!ok && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *t = line + strspn(line, " \t");
        if (*t == '\0' || *t == '#')
            continue;
        char *r = t + strcspn(t, " \t");
        if (*r == '\0')
            continue; /* a test with no reason: allows nothing */
        *r++ = '\0';
        r += strspn(r, " \t");
        size_t n = strlen(r);
        while (n && (r[n - 1] == ' ' || r[n - 1] == '\t'))
            r[--n] = '\0';
        ok = fnmatch(t, test, 0) == 0 && fnmatch(r, reason, 0) == 0;
    }
    fclose(f);
    return ok;
}

/* Prints why a skip in CI fails; returns whether the skip is allowed. */
static bool ci_accepts(const char *reason)
{
    if (!ci_mode() || ci_skip_allowed(test_name(), reason))
        return true;
    printf("FAIL: %s skipped in CI (CI=true), where every tool is installed, and %s does not "
           "allow it: %s\n", test_name(), ci_skips_path(), reason);
    return false;
}

void skip_test(const char *f, ...)
{
    char reason[1024];
    va_list ap;
    va_start(ap, f);
    vsnprintf(reason, sizeof reason, f, ap);
    va_end(ap);
    printf("SKIP: %s\n", reason);
    bool ok = ci_accepts(reason);
    fflush(stdout);
    exit(ok ? 77 : 1);
}

static char **skips;
static unsigned nskips;

static void free_skips(void)
{
    for (unsigned i = 0; i < nskips; i++)
        free(skips[i]);
    free(skips);
    skips = NULL;
    nskips = 0;
}

static void skip_vnote(const char *prefix, const char *f, va_list ap)
{
    char reason[1024];
    int n = snprintf(reason, sizeof reason, "%s", prefix);
    vsnprintf(reason + n, sizeof reason - (size_t)n, f, ap);
    if (!nskips)
        atexit(free_skips);
    char **grown = realloc(skips, (nskips + 1) * sizeof *skips);
    if (!grown || !(grown[nskips] = strdup(reason)))
        abort();
    skips = grown;
    nskips++;
    printf("SKIP: %s\n", reason);
    fflush(stdout);
}

void skip_note(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    skip_vnote("", f, ap);
    va_end(ap);
}

void skip_note_case(const char *func, const char *f, ...)
{
    /* START_TEST(name) names its function name_fn. */
    char prefix[256];
    size_t n = strlen(func);
    if (n > 3 && strcmp(func + n - 3, "_fn") == 0)
        n -= 3;
    snprintf(prefix, sizeof prefix, "%.*s: ", (int)n, func);
    va_list ap;
    va_start(ap, f);
    skip_vnote(prefix, f, ap);
    va_end(ap);
}

unsigned skip_count(void)
{
    return nskips;
}

static void remove_scratch(void)
{
    if (scratch_path[0] && !getenv("VDISK_KEEP_SCRATCH")) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch_path);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", scratch_path);
    }
}

const char *scratch_dir(void)
{
    if (!scratch_path[0]) {
        const char *base = getenv("VDISK_TEST_TMPDIR");
        if (!base)
            base = "/var/tmp";
        snprintf(scratch_path, sizeof scratch_path, "%s/vdisk-test-XXXXXX", base);
        if (!mkdtemp(scratch_path)) {
            perror("mkdtemp");
            abort();
        }
        atexit(remove_scratch);
    }
    return scratch_path;
}

/* Paths handed out by scratch(): one stable string per name. */
struct scratch_name {
    char *path;
    struct scratch_name *next;
};
static struct scratch_name *scratch_names;

static void free_scratch_names(void)
{
    while (scratch_names) {
        struct scratch_name *n = scratch_names;
        scratch_names = n->next;
        free(n->path);
        free(n);
    }
}

const char *scratch(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", scratch_dir(), name);
    for (struct scratch_name *n = scratch_names; n; n = n->next)
        if (strcmp(n->path, path) == 0)
            return n->path;
    struct scratch_name *n = malloc(sizeof *n);
    if (!n || !(n->path = strdup(path)))
        abort();
    if (!scratch_names)
        atexit(free_scratch_names);
    n->next = scratch_names;
    scratch_names = n;
    return n->path;
}

const char *vdisk_bin(void)
{
    const char *e = getenv("VDISK");
    return e ? e : VDISK_BIN;
}

void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert(fwrite(data, 1, len, f) == len);
    ck_assert(fclose(f) == 0);
}

void *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc((size_t)n + 1);
    ck_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    ((char *)buf)[n] = '\0';
    if (len)
        *len = (size_t)n;
    return buf;
}

void *read_file_at(const char *path, uint64_t off, size_t len)
{
    int fd = open(path, O_RDONLY);
    ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
    uint8_t *buf = calloc(1, len ? len : 1);
    ck_assert_ptr_nonnull(buf);
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));
        ck_assert_msg(n >= 0, "read %s: %s", path, strerror(errno));
        if (n == 0)
            break;
        done += (size_t)n;
    }
    close(fd);
    return buf;
}

uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

const char *const aio_kind_names[AIO_KINDS] = {
    "read", "write", "write FUA", "flush", "discard", "write zeroes",
    "write zeroes MAY_UNMAP", "write zeroes FUA",
};

int aio_start(vdisk_queue *q, enum aio_kind kind, void *buf, uint64_t off, uint64_t len,
              vdisk_completion_fn cb, void *user)
{
    struct iovec v = {buf, len};
    switch (kind) {
    case AIO_READ: return vdisk_aio_preadv(q, &v, 1, off, 0, cb, user);
    case AIO_WRITE: return vdisk_aio_pwritev(q, &v, 1, off, 0, cb, user);
    case AIO_WRITE_FUA: return vdisk_aio_pwritev(q, &v, 1, off, VDISK_REQ_FUA, cb, user);
    case AIO_FLUSH: return vdisk_aio_flush(q, cb, user);
    case AIO_DISCARD: return vdisk_aio_discard(q, off, len, cb, user);
    case AIO_ZEROES: return vdisk_aio_write_zeroes(q, off, len, 0, cb, user);
    case AIO_ZEROES_UNMAP:
        return vdisk_aio_write_zeroes(q, off, len, VDISK_REQ_MAY_UNMAP, cb, user);
    case AIO_ZEROES_FUA: return vdisk_aio_write_zeroes(q, off, len, VDISK_REQ_FUA, cb, user);
    case AIO_KINDS: break;
    }
    return -EINVAL;
}

void require_engine(const char *engine)
{
    const char *path = scratch("engine-probe.raw");
    if (vdisk_create(path, "raw", 4096, NULL) < 0) {
        fprintf(stderr, "vdisk_create: %s\n", vdisk_get_error());
        exit(1);
    }
    vdisk_options *o;
    vdisk_dev *dev;
    if (vdisk_options_new(&o) < 0 || vdisk_options_set(o, "engine", engine) < 0) {
        fprintf(stderr, "options: %s\n", vdisk_get_error());
        exit(1);
    }
    int r = vdisk_open(&dev, path, o);
    vdisk_options_free(o);
    if (r == -ENOSYS)
        skip_test("the %s engine is not available here: %s", engine, vdisk_get_error());
    if (r < 0) {
        fprintf(stderr, "vdisk_open: %s\n", vdisk_get_error());
        exit(1);
    }
    vdisk_close(dev);
    unlink(path);
}

int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    /* No fork: sanitizers see the whole process, and scratch files stay. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (!nskips)
        return failed ? 1 : 0;
    /* Cases that did not run all they claim: the run is a skip, not a pass. */
    printf("%u part(s) of the cases did not run:\n", nskips);
    bool ok = true;
    for (unsigned i = 0; i < nskips; i++) {
        printf("SKIP: %s\n", skips[i]);
        ok &= ci_accepts(skips[i]);
    }
    fflush(stdout);
    return failed || !ok ? 1 : 77;
}

char *fmt(const char *f, ...)
{
    static char bufs[4][1024];
    static int next;
    char *b = bufs[next++ % 4];
    va_list ap;
    va_start(ap, f);
    vsnprintf(b, sizeof bufs[0], f, ap);
    va_end(ap);
    return b;
}

void fill_random(void *buf, size_t len, uint64_t *seed)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(rng_next(seed) >> 56);
}

unsigned *permutation(unsigned n, uint64_t *seed)
{
    unsigned *p = malloc(n * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (unsigned i = 0; i < n; i++)
        p[i] = i;
    for (unsigned i = n - 1; i > 0; i--) {
        unsigned j = (unsigned)(rng_next(seed) % (i + 1));
        unsigned t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    return p;
}

/* S with each "qemu-img: " as "vdisk: " (malloc'd), without the lines of
 * Debian's QEMU about block modules it lacks ("qemu: module
 * block-block-dmg-bz2 not found, do you want to install qemu-block-extra
 * package?": the dmg driver asks for its bzip2 and lzfse modules at every
 * open). */
static char *as_vdisk(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    const char *start = s;
    while (*s) {
        if (strncmp(s, "qemu: module ", 13) == 0 && (s == start || s[-1] == '\n')) {
            const char *nl = strchr(s, '\n');
            s = nl ? nl + 1 : s + strlen(s);
            continue;
        }
        if (strncmp(s, "qemu-img: ", 10) == 0) {
            o = stpcpy(o, "vdisk: ");
            s += 10;
        } else {
            *o++ = *s++;
        }
    }
    *o = '\0';
    return out;
}

/* Both tools' stdout, stderr (the tool's name aside) and exit status for
 * the same verb and arguments. */
void same_as_qemu_img(const char *verb, const char *args)
{
    struct run *r = run("cd '%s' && qemu-img %s %s", scratch_dir(), verb, args);
    int qst = r->status;
    char *qout = strdup(r->out), *qerr = as_vdisk(r->err);
    r = run("cd '%s' && '%s' %s %s", scratch_dir(), vdisk_bin(), verb, args);
    ck_assert_msg(strcmp(qout, r->out) == 0, "%s %s: stdout differs\nqemu-img:\n%s\nvdisk:\n%s",
                  verb, args, qout, r->out);
    ck_assert_msg(strcmp(qerr, r->err) == 0, "%s %s: stderr differs\nqemu-img:\n%s\nvdisk:\n%s",
                  verb, args, qerr, r->err);
    ck_assert_msg(qst == r->status, "%s %s: exit status: qemu-img %d, vdisk %d", verb, args, qst,
                  r->status);
    free(qout);
    free(qerr);
}

/* vdisk convert -O raw and qemu-img convert -O raw of FILE give the same
 * bytes. */
void same_raw_as_qemu_img(const char *file)
{
    RUN_OK("cd '%s' && rm -f q.raw v.raw && qemu-img convert -O raw '%s' q.raw && "
           "'%s' convert -O raw '%s' v.raw", scratch_dir(), file, vdisk_bin(), file);
    size_t qn, vn;
    uint8_t *q = read_file(scratch("q.raw"), &qn), *v = read_file(scratch("v.raw"), &vn);
    ck_assert_msg(qn == vn, "%s: raw sizes differ: qemu-img %zu, vdisk %zu", file, qn, vn);
    assert_same_bytes(v, q, qn, 0, file);
    free(q);
    free(v);
}

const char *patched_copy(const char *src, const char *name, uint64_t off, unsigned len,
                         uint64_t v)
{
    size_t n;
    uint8_t *b = read_file(src, &n);
    ck_assert_uint_ge(n, off + len);
    for (unsigned i = 0; i < len && i < 8; i++)
        b[off + i] = (uint8_t)(v >> (8 * i));
    const char *out = scratch(name);
    write_file(out, b, n);
    free(b);
    return out;
}

void assert_same_bytes(const uint8_t *a, const uint8_t *b, size_t len, uint64_t base,
                       const char *what)
{
    if (memcmp(a, b, len) == 0)
        return;
    size_t i = 0;
    while (a[i] == b[i])
        i++;
    ck_abort_msg("%s: byte at offset %" PRIu64 " is 0x%02x, expected 0x%02x", what,
                 base + i, a[i], b[i]);
}

int harness_child_pipe = -1;

void in_child(const char *what, void (*fn)(void *), void *arg, unsigned timeout_s)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[0]);
        harness_child_pipe = p[1];
        /* libcheck's own SIGALRM handler would kill the whole process group. */
        signal(SIGALRM, SIG_DFL);
        alarm(timeout_s);
        fn(arg);
        _exit(0);
    }
    close(p[1]);
    char msg[1024];
    ssize_t n = read(p[0], msg, sizeof msg - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(p[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        ck_assert_int_eq(errno, EINTR);
    if (WIFSIGNALED(st))
        ck_abort_msg("%s: the process died of signal %d (%s)%s", what, WTERMSIG(st),
                     strsignal(WTERMSIG(st)),
                     WTERMSIG(st) == SIGALRM ? ": it hung" : "");
    ck_assert_msg(WEXITSTATUS(st) == 0, "%s: %s", what,
                  msg[0] ? msg : "the process failed (see its output: a sanitizer report?)");
}

/* ---- Random I/O against a model ------------------------------------------- */

struct model_done {
    int done, failed;
};

static void model_count_done(void *user, int result)
{
    struct model_done *c = user;
    c->done++;
    if (result < 0)
        c->failed++;
}

void random_io_against_model(vdisk_dev *d, uint8_t *model, uint64_t size, int rounds,
                             uint64_t seed)
{
    uint8_t *buf = malloc((4u << 20)), *got = malloc((4u << 20));
    ck_assert_ptr_nonnull(buf);
    ck_assert_ptr_nonnull(got);
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, d, 32), 0);
    for (int round = 0; round < rounds; round++) {
        uint64_t kind = rng_next(&seed) % 9;
        uint64_t maxlen = rng_next(&seed) % 4 == 0 ? (4u << 20) : 70000;
        uint64_t len = 1 + rng_next(&seed) % (maxlen < size ? maxlen : size);
        uint64_t off = rng_next(&seed) % (size - len + 1);
        if (rng_next(&seed) % 3 == 0) { /* sector-aligned, as guests do */
            off &= ~511ull;
            len = (len + 511) & ~511ull;
            if (off + len > size)
                len = size - off;
            if (!len)
                continue;
        }
        if (kind < 3) {
            ck_assert_msg(vdisk_pread(d, got, len, off) == 0, "%s", vdisk_get_error());
            assert_same_bytes(got, model + off, len, off, "read");
        } else if (kind < 5) {
            fill_random(buf, len, &seed);
            ck_assert_msg(vdisk_pwrite(d, buf, len, off) == 0, "%s", vdisk_get_error());
            memcpy(model + off, buf, len);
        } else if (kind == 5) {
            unsigned flags = rng_next(&seed) % 2 ? VDISK_ZEROES_MAY_UNMAP : 0;
            ck_assert_msg(vdisk_write_zeroes(d, off, len, flags) == 0, "%s", vdisk_get_error());
            memset(model + off, 0, len);
        } else if (kind == 6) {
            /* Block status: what it calls zero reads as zeroes. */
            struct vdisk_extent e;
            ck_assert_msg(vdisk_block_status(d, off, len, &e) == 0, "%s", vdisk_get_error());
            ck_assert_uint_gt(e.length, 0);
            ck_assert_uint_le(e.length, len);
            if (e.flags & VDISK_EXT_ZERO)
                for (uint64_t i = 0; i < e.length; i++)
                    ck_assert_msg(model[off + i] == 0, "block status says zero at %" PRIu64
                                  " (extent %" PRIu64 "+%" PRIu64 ") where data is",
                                  off + i, off, e.length);
        } else {
            /* Eight writes (some FUA) in flight on disjoint slots, with
             * iovecs in three pieces, then eight reads at once. */
            enum { K = 8 };
            if (size < 64 * K)
                continue;
            uint64_t slot = size / K, l = 1 + rng_next(&seed) % (slot < 300000 ? slot - 1 : 300000);
            struct model_done c = {0, 0};
            struct iovec v[K][3];
            uint64_t offs[K];
            fill_random(buf, K * l, &seed);
            for (int i = 0; i < K; i++) {
                uint64_t o = (uint64_t)i * slot + rng_next(&seed) % (slot - l + 1);
                uint8_t *b = buf + (uint64_t)i * l;
                uint64_t a = l / 3, bb = l / 3;
                v[i][0] = (struct iovec){b, a};
                v[i][1] = (struct iovec){b + a, bb};
                v[i][2] = (struct iovec){b + a + bb, l - a - bb};
                unsigned fl = i % 3 == 0 ? VDISK_REQ_FUA : 0;
                ck_assert_int_eq(vdisk_aio_pwritev(q, v[i], 3, o, fl, model_count_done, &c), 0);
                memcpy(model + o, b, l);
                offs[i] = o;
            }
            ck_assert_int_ge(vdisk_queue_submit(q), 0);
            while (c.done < K)
                ck_assert_int_ge(vdisk_queue_reap(q, 1, -1), 0);
            ck_assert_int_eq(c.failed, 0);
            c = (struct model_done){0, 0};
            memset(got, 0xee, K * l);
            for (int i = 0; i < K; i++) {
                struct iovec rv = {got + (uint64_t)i * l, l};
                ck_assert_int_eq(vdisk_aio_preadv(q, &rv, 1, offs[i], 0, model_count_done, &c), 0);
            }
            ck_assert_int_ge(vdisk_queue_submit(q), 0);
            while (c.done < K)
                ck_assert_int_ge(vdisk_queue_reap(q, 1, -1), 0);
            ck_assert_int_eq(c.failed, 0);
            for (int i = 0; i < K; i++)
                assert_same_bytes(got + (uint64_t)i * l, model + offs[i], l, offs[i],
                                  "read in flight");
        }
    }
    vdisk_queue_free(q);
    ck_assert_int_eq(vdisk_flush(d), 0);
    free(buf);
    free(got);
}

void open_refused(const char *format, const char *path, int err, const char *msg)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    if (format)
        ck_assert_int_eq(vdisk_options_set(o, "format", format), 0);
    vdisk_dev *d = NULL;
    int r = vdisk_open(&d, path, o);
    vdisk_options_free(o);
    if (r == 0)
        vdisk_close(d);
    ck_assert_msg(r == err, "%s: %d (%s), expected %d", path, r, r ? vdisk_get_error() : "opened",
                  err);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_open: %s: %s", path, msg));
}

void libyal_reads(const char *lib, const char *img, const char *raw, const char *what)
{
    /* Not fmt(): WHAT may be one of its buffers. */
    char info[32], mount[32], mnt[4096];
    snprintf(info, sizeof info, "%sinfo", lib);
    snprintf(mount, sizeof mount, "%smount", lib);
    snprintf(mnt, sizeof mnt, "%s/%s-mnt", scratch_dir(), lib);
    if (!have_program(info) || !have_program(mount)) {
        skip_note("%s: libyal's tools (lib%s-utils) are not installed", what, lib);
        return;
    }
    struct run *r = run("%s '%s'", info, img);
    ck_assert_msg(r->status == 0, "%s %s: %s%s", info, img, r->out, r->err);
    mkdir(mnt, 0755);
    r = run("timeout 30 %s '%s' '%s'", mount, img, mnt);
    if (r->status != 0) {
        skip_note("%s: %s cannot mount here (FUSE): %s", what, mount, r->err);
        return;
    }
    r = run("ls '%s' | sort -V | tail -1", mnt);
    char *last = strdup(r->out);
    last[strcspn(last, "\n")] = 0;
    r = run("cmp '%s/%s' '%s'", mnt, last, raw);
    int st = r->status;
    char *cmp_out = strdup(r->out);
    run("umount '%s'", mnt);
    ck_assert_msg(st == 0, "%s: lib%s reads %s otherwise: %s", what, lib, img, cmp_out);
    free(last);
    free(cmp_out);
}

void reads_as_qemu_img(const char *name)
{
    char json[1100];
    snprintf(json, sizeof json, "--output=json %s", name); /* (not fmt(): NAME may be one) */
    same_as_qemu_img("info", name);
    same_as_qemu_img("info", json);
    same_as_qemu_img("map", json);
    same_as_qemu_img("map", name);
    same_as_qemu_img("check", name);
    same_as_qemu_img("check", json);
    same_raw_as_qemu_img(name);
}
