/* SPDX-License-Identifier: MIT */
/*
 * tests/common/harness.h: what the libcheck test programs share: running
 * commands and capturing their output, scratch directories, files, seeded
 * random data, byte comparisons and running a check in a child process.
 */
#ifndef VDISK_TEST_HARNESS_H
#define VDISK_TEST_HARNESS_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vdisk/queue.h>

/* SANITIZED: 1 in a sanitizer build (its shadow memory makes address-space
 * limits meaningless, and it is slower), else 0. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* The result of a command: exit status and what it printed. */
struct run {
    int status;   /* exit status, or 128 + signal */
    char *out;    /* standard output, NUL-terminated */
    char *err;    /* standard error, NUL-terminated */
};

/* Runs a shell command (printf-style); the result stays valid until the
 * next run() on this thread. */
struct run *run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Asserts that a command succeeded (exit 0), showing its output otherwise. */
#define RUN_OK(...)                                                                \
    do {                                                                           \
        struct run *r_ = run(__VA_ARGS__);                                         \
        ck_assert_msg(r_->status == 0, "command failed (%d): %s\nstdout: %s\nstderr: %s", \
                      r_->status, harness_last_cmd(), r_->out, r_->err);           \
    } while (0)

const char *harness_last_cmd(void);

/* The result of the last run() (its command: harness_last_cmd()). */
struct run *harness_last_run(void);

/* True when PROGRAM is on the PATH. */
bool have_program(const char *program);

/*
 * Skips.  A test that cannot run what it claims (a tool, a file system, a
 * device or a permission is missing) never passes: it is skipped, with its
 * reason, and CTest reports it as such (exit status 77, SKIP_RETURN_CODE).
 *
 * In CI (CI=true in the environment), where .ci/run installs every tool, a
 * skip is a failure (exit status 1, "FAIL: ..."), unless the test and the
 * reason are on the allow-list tests/ci-skips.txt ($VDISK_CI_SKIPS names
 * another list): a missing /dev/kvm for the vmm-* tests, io_uring being
 * unavailable, and so on.  tests/common/skip.sh applies the same list to the
 * shell tests.
 */

/* Exits 77 (skipped) with a message when PROGRAM is missing: for a program
 * that every case needs.  A case that needs it alone uses
 * CASE_REQUIRE_PROGRAM. */
void require_program(const char *program);

/* Ends the whole program as skipped: prints "SKIP: REASON" and exits 77, or
 * (CI=true, not on the allow-list) prints why that fails and exits 1. */
_Noreturn void skip_test(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The kinds of request a queue takes, for tests that try every one. */
enum aio_kind {
    AIO_READ, AIO_WRITE, AIO_WRITE_FUA, AIO_FLUSH, AIO_DISCARD, AIO_ZEROES, AIO_ZEROES_UNMAP,
    AIO_ZEROES_FUA, AIO_KINDS
};
extern const char *const aio_kind_names[AIO_KINDS];
/* Starts a request of KIND on Q (BUF for reads and writes, LEN bytes at
 * OFF; flushes ignore them); returns what the vdisk_aio_*() call returns. */
int aio_start(vdisk_queue *q, enum aio_kind kind, void *buf, uint64_t off, uint64_t len,
              vdisk_completion_fn cb, void *user);

/* Skips the test (exit 77) where the I/O engine ENGINE ("uring",
 * "threads") cannot open a file here; exits 1 on any other failure. */
void require_engine(const char *engine);

/* Records that a part of the running case did not run, and why (REASON
 * names the case and the part); the rest of the case and the other cases
 * run.  run_suite() then ends as skip_test() does when nothing failed,
 * listing every such reason. */
void skip_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* skip_note() prefixed with the case's name, taken from FUNC (__func__ in a
 * START_TEST body). */
void skip_note_case(const char *func, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* In a START_TEST body: records the skip of the whole case and returns. */
#define SKIP_CASE(...)                                                             \
    do {                                                                           \
        skip_note_case(__func__, __VA_ARGS__);                                     \
        return;                                                                    \
    } while (0)

/* In a START_TEST body: skips the case when PROGRAM is missing. */
#define CASE_REQUIRE_PROGRAM(program)                                              \
    do {                                                                           \
        if (!have_program(program))                                                \
            SKIP_CASE("%s is not installed", program);                             \
    } while (0)

/* The number of skips skip_note() recorded so far. */
unsigned skip_count(void);

/* The test's CTest name: $VDISK_TEST_NAME, else the program's name without
 * its "test-" prefix. */
const char *test_name(void);

/* Whether CI=true (or CI=1) is in the environment. */
bool ci_mode(void);

/* Whether the allow-list lets TEST skip for REASON in CI: a line
 * "TEST-GLOB REASON-GLOB" of tests/ci-skips.txt (or $VDISK_CI_SKIPS) whose
 * shell patterns match TEST and the whole of REASON. */
bool ci_skip_allowed(const char *test, const char *reason);

/* A fresh scratch directory, removed at exit; returns its path. */
const char *scratch_dir(void);

/* scratch_dir() + "/" + NAME; the string stays valid until exit. */
const char *scratch(const char *name);

/* The vdisk tool. */
const char *vdisk_bin(void);

/* Writes / reads whole files. */
void write_file(const char *path, const void *data, size_t len);
void *read_file(const char *path, size_t *len);
/* LEN bytes of PATH at OFF, read with plain pread (zeroes past the end);
 * free() the result. */
void *read_file_at(const char *path, uint64_t off, size_t len);

/* Deterministic pseudo-random numbers for seeded workloads. */
uint64_t rng_next(uint64_t *state);

/* printf into one of four rotating static buffers (1 KiB each): for test
 * names and paths built inline; not thread-safe. */
char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

/* LEN bytes from rng_next(SEED). */
void fill_random(void *buf, size_t len, uint64_t *seed);

/* The numbers 0..N-1 shuffled with rng_next(SEED); the caller frees it. */
unsigned *permutation(unsigned n, uint64_t *seed);

/* Asserts that LEN bytes at A and B are equal, naming the first difference
 * by its offset BASE + i and WHAT. */
void assert_same_bytes(const uint8_t *a, const uint8_t *b, size_t len, uint64_t base,
                       const char *what);

/*
 * In the scratch folder, `qemu-img VERB ARGS` and `vdisk VERB ARGS` print
 * the same standard output and standard error (each "qemu-img: " read as
 * "vdisk: ") and exit with the same status; fails the test otherwise.
 */
void same_as_qemu_img(const char *verb, const char *args);

/* vdisk_open() of PATH read-only (as FORMAT, or probed when NULL) fails
 * with ERR, its message "vdisk_open: PATH: MSG"; fails the test otherwise. */
void open_refused(const char *format, const char *path, int err, const char *msg);

/*
 * An independent reader from the libyal project, LIB ("vhdi" or "vmdk":
 * LIBinfo and LIBmount from Debian's libLIB-utils), reads IMG as the raw
 * file RAW: LIBinfo accepts it and the last image LIBmount shows through
 * FUSE (IMG itself, after its parents) has RAW's bytes.  WHAT names the
 * case in messages.  Without the tools, or where FUSE cannot mount, the part
 * is recorded with skip_note().
 */
void libyal_reads(const char *lib, const char *img, const char *raw, const char *what);

/* In the scratch folder, qemu-img and vdisk agree on the image NAME: info
 * (human and JSON), map (JSON and human), check (human and JSON) and the
 * bytes convert -O raw gives (q.raw and v.raw are left there). */
void reads_as_qemu_img(const char *name);

/* In the scratch folder, qemu-img convert -O raw and vdisk convert -O raw
 * of FILE give the same bytes (q.raw and v.raw are left there). */
void same_raw_as_qemu_img(const char *file);

/* A copy of the file SRC as scratch(NAME), with the LEN bytes (at most 8)
 * at OFF replaced by V, little-endian; returns scratch(NAME). */
const char *patched_copy(const char *src, const char *name, uint64_t off, unsigned len,
                         uint64_t v);

/*
 * ROUNDS rounds of random I/O on D (SIZE bytes, at least 1) against MODEL
 * (its expected bytes, kept up to date): synchronous reads (compared),
 * writes and zeroes (with and without MAY_UNMAP) of 1 byte to 4 MiB, some
 * sector-aligned; block status (what it calls zero must be zero in the
 * model); eight writes in flight at once (some FUA, three iovecs each) and
 * their reads.  Flushes at the end.  Fails the test on any difference.
 */
void random_io_against_model(vdisk_dev *d, uint8_t *model, uint64_t size, int rounds,
                             uint64_t seed);

/*
 * Runs FN(ARG) in a child process, so that a crash or a hang in the library
 * fails this test only and the other tests still run and report: the child
 * is killed after TIMEOUT_S seconds.  In the child, CHILD_CHECK reports a
 * failure through a pipe.
 */
void in_child(const char *what, void (*fn)(void *), void *arg, unsigned timeout_s);

/* The write end of in_child's pipe, in the child. */
extern int harness_child_pipe;

#define CHILD_CHECK(cond, ...)                                                     \
    do {                                                                           \
        if (!(cond)) {                                                             \
            char m_[1024];                                                         \
            int n_ = snprintf(m_, sizeof m_, __VA_ARGS__);                         \
            size_t l_ = n_ < 0 ? 0 : (size_t)n_ < sizeof m_ ? (size_t)n_ : sizeof m_ - 1; \
            if (write(harness_child_pipe, m_, l_) < 0)                             \
                _exit(3);                                                          \
            _exit(1);                                                              \
        }                                                                          \
    } while (0)

/* Runs a suite and returns the process exit status: 1 when a case failed,
 * else 77 when a case recorded a skip (skip_note(); 1 instead when CI=true
 * does not allow it), else 0. */
int run_suite(Suite *s);

#endif /* VDISK_TEST_HARNESS_H */
