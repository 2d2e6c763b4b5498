/* SPDX-License-Identifier: MIT */
/*
 * vdisk/options.h: key=value options for opening and creating devices.
 *
 * Options are strings, as on qemu-img's command line, so that the set of
 * options can grow without changing the ABI.  A device consumes the options
 * it understands; an option that nothing consumed makes vdisk_open() or
 * vdisk_create() fail with -EINVAL and a message naming it.
 *
 * Options understood when opening (vdisk_open):
 *   format     raw | offset | ... ; the format driver.  Without it the format
 *              is probed from the first bytes of the file.  Probing never
 *              chooses a format with a backing file for a file that a guest
 *              can write: give the format for untrusted images.
 *   read-only  on | off (default off)
 *   cache      writeback (default) | none | writethrough | directsync | unsafe,
 *              with QEMU's meaning: "none" and "directsync" bypass the host
 *              page cache (O_DIRECT), "writethrough" and "directsync" make
 *              every write durable before it completes, "unsafe" ignores
 *              flushes.
 *   engine     auto (default) | uring | threads: the I/O engine used by the
 *              device's queues.  "auto" takes io_uring when the kernel allows
 *              it and falls back to worker threads otherwise.  The
 *              environment variable VDISK_ENGINE=uring|threads sets the
 *              default.
 *   threads    number of worker threads per queue for the threads engine
 *              (1..256, default 16).
 *   backing-confine  on | off (default off): for untrusted images.  A
 *              backing file name (qcow2) must stay inside the folder of the
 *              image that names it: names that are absolute, name a
 *              protocol ("x://"), climb out with "..", or reach outside
 *              through a symbolic link fail the open with -EPERM before the
 *              file is opened.  The rule applies down the whole backing
 *              chain.  Formats without backing files accept and ignore it.
 *              (External data files are not supported at all.)
 *   locking    auto (default) | on | off: image locking, compatible with
 *              QEMU's (see "Image locking" in vdisk/device.h).  "auto"
 *              locks where the file system supports OFD locks and goes on
 *              without locks, silently, where it does not (some network
 *              file systems); "on" fails the open there; "off" takes no
 *              locks and ignores other processes' locks: the caller then
 *              answers for not corrupting an image that is in use.  The
 *              mode applies to the whole backing chain.
 *   force-share  on | off (default off): with read-only=on only (-EINVAL
 *              otherwise), as qemu-img -U: open even while another process
 *              writes the image, and let it go on writing.  The data read
 *              may be inconsistent (a qcow2 image's metadata can change
 *              underneath); meant for looking at images in use (info, map,
 *              a convert of a paused guest's disk).  Applies to the whole
 *              backing chain.
 *   repair     on | off (default off): open for repair with vdisk_check():
 *              a qcow2 image marked corrupt opens read-write (writes stay
 *              refused until a check that repairs everything clears the
 *              mark), as qemu-img check -r does.  Formats without a corrupt
 *              mark accept and ignore it.
 *
 * Options understood when creating (vdisk_create), for the raw format:
 *   preallocation  off (default) | falloc | full
 *
 * Thread-safety: an options object may be read by several threads at once
 * (vdisk_open and vdisk_create do not modify it) but must not be modified
 * while it is being used.
 */
#ifndef VDISK_OPTIONS_H
#define VDISK_OPTIONS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vdisk_options vdisk_options;

/*
 * vdisk_options_new: an empty options object, stored in *optsp.
 * Returns 0, or -ENOMEM.  Free it with vdisk_options_free().
 */
int vdisk_options_new(vdisk_options **optsp);

/*
 * vdisk_options_free: frees the object; NULL is a no-op.
 */
void vdisk_options_free(vdisk_options *opts);

/*
 * vdisk_options_set: sets KEY to VALUE (both copied), replacing any earlier
 * value of KEY.  Returns 0, -EINVAL for an empty key or a key containing '='
 * or ',', or -ENOMEM.
 */
int vdisk_options_set(vdisk_options *opts, const char *key, const char *value);

/*
 * vdisk_options_parse: sets every key=value pair of a comma-separated list,
 * as qemu-img's -o takes it ("cluster_size=65536,compat=1.1").  A comma is
 * written inside a value as ",,".  Returns 0, or -EINVAL with a message for
 * a pair without '=', or -ENOMEM.
 */
int vdisk_options_parse(vdisk_options *opts, const char *list);

/*
 * vdisk_options_get: the value of KEY, or NULL when it is not set.  The
 * string belongs to the object and lives until the key is set again or the
 * object is freed.
 */
const char *vdisk_options_get(const vdisk_options *opts, const char *key);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_OPTIONS_H */
