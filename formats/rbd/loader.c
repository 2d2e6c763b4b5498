/* SPDX-License-Identifier: MIT */
/* formats/rbd/loader.c: librbd loaded on first use (see rbd_syms.h). */
#define RBD_SYMS_LOADER
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "driver.h"
#include "rbd_syms.h"

#define LIBRBD_SONAME "librbd.so.1"

struct rbd_syms rbd_lib;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char load_error[512];

static void load(void)
{
    /* Never closed: librbd's threads and atexit handlers outlive any use. */
    void *h = dlopen(LIBRBD_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(load_error, sizeof load_error, "%s", dlerror());
        return;
    }
#define RBD_SYM_LOAD(name)                                                                    \
    if (!load_error[0]) {                                                                     \
        *(void **)&rbd_lib.name = dlsym(h, #name);                                            \
        if (!rbd_lib.name)                                                                    \
            snprintf(load_error, sizeof load_error, "%s has no %s", LIBRBD_SONAME, #name);    \
    }
    RBD_SYMS(RBD_SYM_LOAD)
#undef RBD_SYM_LOAD
}

int rbd_lib_load(const char *filename)
{
    pthread_once(&once, load);
    if (load_error[0])
        return err_set(-ENOTSUP, "%s: RBD images need librbd (Debian: librbd1), which could "
                       "not be loaded: %s", filename, load_error);
    return 0;
}
