/* SPDX-License-Identifier: MIT */
/*
 * lib/log_line.c: one line of text to a caller's log callback (log_line.h).
 */
#include <errno.h>
#include <stdio.h>

#include "log_line.h"

void log_vline(log_line_fn *fn, void *opaque, const char *name, const char *fmt, va_list ap)
{
    if (!fn && !name)
        return;
    int saved = errno;
    char line[LOG_LINE_MAX];
    if (vsnprintf(line, sizeof line, fmt, ap) >= 0) {
        if (fn)
            fn(opaque, line);
        else
            fprintf(stderr, "vdisk: %s: %s\n", name, line);
    }
    errno = saved;
}

void log_line(log_line_fn *fn, void *opaque, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vline(fn, opaque, name, fmt, ap);
    va_end(ap);
}
