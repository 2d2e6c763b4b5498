/* SPDX-License-Identifier: MIT */
/*
 * lib/error_internal.h: setting the per-thread error of vdisk/error.h.
 *
 * Each public function calls err_enter(__func__) first; messages set after
 * that start with its name.  Internal code sets messages with err_set(),
 * which returns the (negative) error so that `return err_set(...)` reads well.
 */
#ifndef VDISK_ERROR_INTERNAL_H
#define VDISK_ERROR_INTERNAL_H

#include <stdarg.h>

/* Names the public call in progress on this thread. */
void err_enter(const char *func);

/* The name given to err_enter (for messages built elsewhere). */
const char *err_context(void);

/*
 * Sets the thread's error: ERR is a negative errno, the message is
 * "<call>: <formatted text>".  Returns ERR.
 */
int err_set(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int err_setv(int err, const char *fmt, va_list ap);

/* Sets the error with an explicit call name instead of the current one. */
int err_set_in(const char *func, int err, const char *msg);

/* The thread's error as it is, to put back after internal work. */
struct err_saved {
    char msg[1024];
    size_t detail_pos;
    int errnum;
};
void err_save(struct err_saved *e);
void err_restore(const struct err_saved *e);

/* The message part (without the call name) of the thread's last error. */
const char *err_detail(void);

/*
 * Warnings (vdisk_set_warning_handler): the formatted text goes to the
 * process's handler.  warn_report_once() gives each distinct text once per
 * process.
 */
void warn_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warn_report_once(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Formats into a new string (NULL when out of memory). */
char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *str_vprintf(const char *fmt, va_list ap);

#endif /* VDISK_ERROR_INTERNAL_H */
