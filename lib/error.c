/* SPDX-License-Identifier: MIT */
/* lib/error.c: the per-thread last error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ERR_MAX 1024

#define STR_(x) #x
#define STR(x) STR_(x)
#define VDISK_VERSION_STRING \
    STR(VDISK_VERSION_MAJOR) "." STR(VDISK_VERSION_MINOR) "." STR(VDISK_VERSION_PATCH)

static _Thread_local const char *err_func = "vdisk";
static _Thread_local char err_buf[ERR_MAX];
static _Thread_local size_t err_detail_pos;
static _Thread_local int err_errno;

void err_enter(const char *func)
{
    err_func = func;
}

const char *err_context(void)
{
    return err_func;
}

int err_set_in(const char *func, int err, const char *msg)
{
    int n = snprintf(err_buf, sizeof err_buf, "%s: ", func);
    if (n < 0 || (size_t)n >= sizeof err_buf)
        n = 0;
    err_detail_pos = (size_t)n;
    snprintf(err_buf + n, sizeof err_buf - (size_t)n, "%s", msg);
    err_errno = err < 0 ? -err : err;
    return err;
}

int err_setv(int err, const char *fmt, va_list ap)
{
    char msg[ERR_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    return err_set_in(err_func, err, msg);
}

int err_set(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_setv(err, fmt, ap);
    va_end(ap);
    return err;
}

void err_save(struct err_saved *e)
{
    snprintf(e->msg, sizeof e->msg, "%s", err_buf);
    e->detail_pos = err_detail_pos;
    e->errnum = err_errno;
}

void err_restore(const struct err_saved *e)
{
    snprintf(err_buf, sizeof err_buf, "%s", e->msg);
    err_detail_pos = e->detail_pos;
    err_errno = e->errnum;
}

const char *err_detail(void)
{
    return err_buf + err_detail_pos;
}

char *str_vprintf(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        return NULL;
    return s;
}

char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = str_vprintf(fmt, ap);
    va_end(ap);
    return s;
}

VDISK_EXPORT const char *vdisk_get_error(void)
{
    return err_buf;
}

VDISK_EXPORT int vdisk_get_errno(void)
{
    return err_errno;
}

VDISK_EXPORT const char *vdisk_version(void)
{
    return VDISK_VERSION_STRING;
}
