/* SPDX-License-Identifier: MIT */
/*
 * lib/log_line.h: one line of text to a log callback of the caller's, the
 * `log` and `log_opaque` of the parameters of vdisk/monitor.h and
 * vdisk/vhost_user.h: formatted here once for both.
 */
#ifndef VDISK_LOG_LINE_H
#define VDISK_LOG_LINE_H

#include <stdarg.h>

/* The longest line handed over, its NUL included: longer text is cut. */
#define LOG_LINE_MAX 1024u

/* A log callback: LINE is one line of text without its newline, valid
 * during the call only. */
typedef void log_line_fn(void *opaque, const char *line);

/*
 * Formats FMT (printf) into one line and hands it to FN(OPAQUE, line).
 * Without FN, the line goes to standard error as "vdisk: NAME: line" when
 * NAME is given, nowhere when it is NULL.  Keeps errno; never fails (a
 * line that cannot be formatted is dropped).
 */
void log_line(log_line_fn *fn, void *opaque, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void log_vline(log_line_fn *fn, void *opaque, const char *name, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

#endif /* VDISK_LOG_LINE_H */
