/* SPDX-License-Identifier: MIT */
/*
 * tests/common/harness.h: what the libcheck test programs share: running
 * commands and capturing their output, scratch directories, files.
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

/* Runs a suite and returns the process exit status (0 when all passed). */
int run_suite(Suite *s);

#endif /* VDISK_TEST_HARNESS_H */
