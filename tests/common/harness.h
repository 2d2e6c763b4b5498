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

/* True when PROGRAM is on the PATH. */
bool have_program(const char *program);

/* Exits 77 (skipped) with a message when PROGRAM is missing. */
void require_program(const char *program);

/* A fresh scratch directory, removed at exit; returns its path. */
const char *scratch_dir(void);

/* scratch_dir() + "/" + NAME; the string stays valid until exit. */
const char *scratch(const char *name);

/* The vdisk tool. */
const char *vdisk_bin(void);

/* Writes / reads whole files. */
void write_file(const char *path, const void *data, size_t len);
void *read_file(const char *path, size_t *len);

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

/* Runs a suite and returns the process exit status (0 when all passed). */
int run_suite(Suite *s);

#endif /* VDISK_TEST_HARNESS_H */
