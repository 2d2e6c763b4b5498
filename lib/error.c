/* SPDX-License-Identifier: MIT */
/* lib/error.c: the per-thread last error, warnings, vdisk_version. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
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

/* ---- Warnings ------------------------------------------------------------- */

static pthread_mutex_t warn_lock = PTHREAD_MUTEX_INITIALIZER;
static vdisk_warning_fn warn_fn;
static void *warn_opaque;
/* The warnings given once already (hashes); when full, warnings repeat. */
#define WARN_ONCE_MAX 256
static uint64_t warn_seen[WARN_ONCE_MAX];
static unsigned warn_nseen;

VDISK_EXPORT void vdisk_set_warning_handler(vdisk_warning_fn fn, void *opaque)
{
    pthread_mutex_lock(&warn_lock);
    warn_fn = fn;
    warn_opaque = opaque;
    pthread_mutex_unlock(&warn_lock);
}

static void warn_deliver(const char *msg)
{
    pthread_mutex_lock(&warn_lock);
    vdisk_warning_fn fn = warn_fn;
    void *opaque = warn_opaque;
    pthread_mutex_unlock(&warn_lock);
    if (fn)
        fn(opaque, msg);
    else
        fprintf(stderr, "%s\n", msg);
}

static void warn_v(bool once, const char *fmt, va_list ap)
{
    char *msg = str_vprintf(fmt, ap);
    if (!msg)
        return;
    if (once) {
        uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
        for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
            h = (h ^ *p) * 0x100000001b3ull;
        bool seen = false;
        pthread_mutex_lock(&warn_lock);
        for (unsigned i = 0; i < warn_nseen && !seen; i++)
            seen = warn_seen[i] == h;
        if (!seen && warn_nseen < WARN_ONCE_MAX)
            warn_seen[warn_nseen++] = h;
        pthread_mutex_unlock(&warn_lock);
        if (seen) {
            free(msg);
            return;
        }
    }
    warn_deliver(msg);
    free(msg);
}

void warn_report(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    warn_v(false, fmt, ap);
    va_end(ap);
}

void warn_report_once(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    warn_v(true, fmt, ap);
    va_end(ap);
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
