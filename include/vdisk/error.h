/* SPDX-License-Identifier: MIT */
/*
 * vdisk/error.h: the error model of libvdisk.
 *
 * Every public call that can fail returns a negative errno value (-EINVAL,
 * -EIO, -ENOSPC, ...) and, on the calling thread, records a human readable
 * message that explains the failure with its context: the call, the file,
 * the offset, what was expected and what was found, e.g.
 *
 *   vdisk_pread: disk.img: read of 4096 bytes at offset 1099511627776 is
 *   beyond the end of the device (1073741824 bytes)
 *
 * The message always starts with the name of the public call that failed.
 * It is kept per thread (like errno and libnbd's nbd_get_error), so threads
 * never see each other's errors.  Successful calls do not clear it.
 *
 * Asynchronous requests (vdisk/queue.h) that fail record their message on the
 * thread that reaps them, just before their completion callback runs, so the
 * callback can read it with vdisk_get_error().
 */
#ifndef VDISK_ERROR_H
#define VDISK_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * vdisk_get_error: the message of the last error on this thread.
 *
 * Returns a NUL-terminated string owned by the library and valid until the
 * next libvdisk call on this thread; never NULL (an empty string when no
 * error has happened on this thread).  Thread-safe.
 */
const char *vdisk_get_error(void);

/*
 * vdisk_get_errno: the positive errno value of the last error on this thread,
 * or 0 when no error has happened.  Thread-safe.
 */
int vdisk_get_errno(void);

/*
 * Warnings: things a user should know about that do not make a call fail,
 * e.g. that an image's format was guessed (see "format" in vdisk/options.h)
 * or that a backing file's format had to be probed.  The library passes
 * each warning, as complete text (one or more lines, without the final
 * newline), to the process's warning handler.  The default handler writes
 * the text and a newline to standard error, which is what the vdisk tool
 * shows its users.
 */
typedef void (*vdisk_warning_fn)(void *opaque, const char *msg);

/*
 * vdisk_set_warning_handler: makes FN (with OPAQUE) the handler of every
 * later warning of the process; NULL restores the default (standard error).
 * A handler that ignores its calls silences the library.
 *
 * The handler runs on the thread of the call that warns (usually
 * vdisk_open), possibly on several threads at once, and must not call back
 * into libvdisk.  MSG lives until the handler returns.  Set the handler
 * before other threads use the library: the setting itself is atomic, but
 * a warning already in progress may still reach the old handler.
 */
void vdisk_set_warning_handler(vdisk_warning_fn fn, void *opaque);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_ERROR_H */
