/* SPDX-License-Identifier: MIT */
/*
 * formats/rbd/rbd_syms.h: librbd (and the librados under it), loaded when
 * the first rbd: name is opened or created (loader.c), not linked: a vdisk
 * that never touches Ceph does not map Ceph's libraries (tens of MiB of
 * address space, which the memory bounds of the other verbs cannot spare),
 * as QEMU loads its rbd driver as a module.  Every librbd and librados call
 * of the driver goes through rbd_lib, whose members the macros at the end
 * put in place of the functions' names.
 */
#ifndef VDISK_RBD_SYMS_H
#define VDISK_RBD_SYMS_H

#include <rados/librados.h>
#include <rbd/librbd.h>

#define RBD_SYMS(X)                                                                           \
    X(rados_conf_get) X(rados_conf_parse_env) X(rados_conf_read_file) X(rados_conf_set)       \
    X(rados_connect) X(rados_create) X(rados_ioctx_create) X(rados_ioctx_destroy)             \
    X(rados_ioctx_set_namespace) X(rados_shutdown) X(rbd_aio_create_completion)               \
    X(rbd_aio_discard) X(rbd_aio_flush) X(rbd_aio_get_return_value) X(rbd_aio_readv)          \
    X(rbd_aio_release) X(rbd_aio_write_zeroes) X(rbd_aio_writev) X(rbd_clone3) X(rbd_close)   \
    X(rbd_create4) X(rbd_diff_iterate2) X(rbd_get_features) X(rbd_get_flags) X(rbd_get_size) \
    X(rbd_image_options_create) X(rbd_image_options_destroy) X(rbd_image_options_set_uint64) \
    X(rbd_namespace_exists) X(rbd_open) X(rbd_open_read_only) X(rbd_resize) X(rbd_snap_create)\
    X(rbd_snap_list) X(rbd_snap_list_end) X(rbd_snap_remove) X(rbd_snap_rollback) X(rbd_stat)

struct rbd_syms {
#define RBD_SYM_MEMBER(name) __typeof__(name) *name;
    RBD_SYMS(RBD_SYM_MEMBER)
#undef RBD_SYM_MEMBER
};

extern struct rbd_syms rbd_lib;

/*
 * Loads librbd once per process (later calls return the first result).
 * Returns 0, or -ENOTSUP with a message naming FILENAME when librbd
 * (Debian: librbd1) is not installed or lacks a function.
 */
int rbd_lib_load(const char *filename);

#ifndef RBD_SYMS_LOADER
#define rados_conf_get (rbd_lib.rados_conf_get)
#define rados_conf_parse_env (rbd_lib.rados_conf_parse_env)
#define rados_conf_read_file (rbd_lib.rados_conf_read_file)
#define rados_conf_set (rbd_lib.rados_conf_set)
#define rados_connect (rbd_lib.rados_connect)
#define rados_create (rbd_lib.rados_create)
#define rados_ioctx_create (rbd_lib.rados_ioctx_create)
#define rados_ioctx_destroy (rbd_lib.rados_ioctx_destroy)
#define rados_ioctx_set_namespace (rbd_lib.rados_ioctx_set_namespace)
#define rados_shutdown (rbd_lib.rados_shutdown)
#define rbd_aio_create_completion (rbd_lib.rbd_aio_create_completion)
#define rbd_aio_discard (rbd_lib.rbd_aio_discard)
#define rbd_aio_flush (rbd_lib.rbd_aio_flush)
#define rbd_aio_get_return_value (rbd_lib.rbd_aio_get_return_value)
#define rbd_aio_readv (rbd_lib.rbd_aio_readv)
#define rbd_aio_release (rbd_lib.rbd_aio_release)
#define rbd_aio_write_zeroes (rbd_lib.rbd_aio_write_zeroes)
#define rbd_aio_writev (rbd_lib.rbd_aio_writev)
#define rbd_clone3 (rbd_lib.rbd_clone3)
#define rbd_close (rbd_lib.rbd_close)
#define rbd_create4 (rbd_lib.rbd_create4)
#define rbd_diff_iterate2 (rbd_lib.rbd_diff_iterate2)
#define rbd_get_features (rbd_lib.rbd_get_features)
#define rbd_get_flags (rbd_lib.rbd_get_flags)
#define rbd_get_size (rbd_lib.rbd_get_size)
#define rbd_image_options_create (rbd_lib.rbd_image_options_create)
#define rbd_image_options_destroy (rbd_lib.rbd_image_options_destroy)
#define rbd_image_options_set_uint64 (rbd_lib.rbd_image_options_set_uint64)
#define rbd_namespace_exists (rbd_lib.rbd_namespace_exists)
#define rbd_open (rbd_lib.rbd_open)
#define rbd_open_read_only (rbd_lib.rbd_open_read_only)
#define rbd_resize (rbd_lib.rbd_resize)
#define rbd_snap_create (rbd_lib.rbd_snap_create)
#define rbd_snap_list (rbd_lib.rbd_snap_list)
#define rbd_snap_list_end (rbd_lib.rbd_snap_list_end)
#define rbd_snap_remove (rbd_lib.rbd_snap_remove)
#define rbd_snap_rollback (rbd_lib.rbd_snap_rollback)
#define rbd_stat (rbd_lib.rbd_stat)
#endif

#endif
