/* SPDX-License-Identifier: MIT */
/*
 * vdisk/monitor.h: the monitor: a small line protocol to change or eject a
 * served CD-ROM's medium and ask about it, for a program serving the
 * models of vdisk/virtio.h (`vdisk serve --monitor`, `vdisk-vmm
 * --monitor`).
 *
 * The grammar: one command a line (a newline ends it; a carriage return,
 * spaces and tabs around it are ignored; an empty line is ignored; a line
 * is 4095 bytes at most), each answered by one line:
 *     help          "commands: change PATH | eject | info | help"
 *     change PATH   loads PATH (a raw ISO image: a regular file or block
 *                   device, opened read-only without blocking; a relative
 *                   PATH is taken from the monitor's folder) in the
 *                   CD-ROM, and the guest sees a media change: "ok"
 *     eject         leaves the drive empty: "ok"
 *     info          "medium: loaded, N blocks of 2048 bytes, volume id 'V',
 *                   C changes" or "medium: none, C changes"
 * and every failure "error: TEXT" (an unknown command, no CD-ROM, a file
 * that cannot be used: "error: PATH: No such file or directory").
 *
 * It is spoken over a Unix socket (vdisk_monitor_listen: one client at a
 * time, the newest; e.g. `echo info | socat - UNIX-CONNECT:SOCK`), or
 * over any transport the program has, a line at a time
 * (vdisk_monitor_command).
 *
 * Errors: calls return 0 (or a value) or a negative errno, with a message
 * from vdisk_get_error().
 *
 * Thread-safety: a monitor is used by one thread at a time, and it drives
 * the CD-ROM model: that must be the thread that drives the model (the
 * vdisk_vhost handle serving it, or the VMM's loop).  A program whose
 * other threads use the model too, under a lock of its own, holds that
 * lock around vdisk_monitor_process() and vdisk_monitor_command() (as
 * vdisk-vmm does: its vCPU threads reach the model).
 *
 * Security: `change` opens any file this process can read, unless a root
 * folder confines it (after symbolic links and ..): the socket is made
 * mode 0600.
 */
#ifndef VDISK_MONITOR_H
#define VDISK_MONITOR_H

#include <stddef.h>

#include <vdisk/device.h>
#include <vdisk/virtio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vdisk_monitor vdisk_monitor;

/* vdisk_monitor_params.flags: no log line for a change that succeeded. */
#define VDISK_MONITOR_QUIET (1u << 0)

/*
 * What a monitor acts on.  The caller sets struct_size to
 * sizeof(struct vdisk_monitor_params) (see "Structures that grow" in
 * vdisk/device.h: fields an older caller's version lacks are 0).
 */
struct vdisk_monitor_params {
    size_t struct_size;
    unsigned flags;          /* VDISK_MONITOR_* */
    /* The CD-ROM: its virtio-scsi model (vdisk_virtio_scsi_cdrom_new) and
     * its device (vdisk_open_cdrom), both the caller's, outliving the
     * monitor; NULL: every command but help answers an error. */
    vdisk_virtio *cdrom;
    vdisk_dev *cdrom_dev;
    /* Where a relative `change PATH` starts; NULL: the current folder when
     * vdisk_monitor_new() is called (whatever the process does later). */
    const char *dir;
    /* `change` takes only files under this folder (resolved at
     * vdisk_monitor_new); NULL: any. */
    const char *root;
    /* How the refusal names ROOT: "error: PATH: outside the ROOT_NAME
     * ROOT"; NULL: "root folder". */
    const char *root_name;
    /* Log lines (medium changed, a change that failed), one line of text
     * without its newline; NULL: none. */
    void (*log)(void *opaque, const char *line);
    void *log_opaque;
};
#define VDISK_MONITOR_PARAMS_SIZE_V1 VDISK_STRUCT_END(struct vdisk_monitor_params, log_opaque)

/*
 * vdisk_monitor_new: a monitor over P's CD-ROM.  Returns 0 and *OUT, or
 * -errno: -EINVAL (bad parameters or flags), the error of opening DIR
 * (-ENOENT, -ENOTDIR, -EACCES ...), -ENOTDIR when ROOT is not a folder or
 * the error of resolving it, -ENOMEM.  Does not block.
 */
int vdisk_monitor_new(vdisk_monitor **out, const struct vdisk_monitor_params *p);

/*
 * vdisk_monitor_command: runs one command LINE (without its newline) and
 * writes its answer, newline included, in REPLY (SIZE bytes, NUL-ended,
 * cut short if it does not fit).  Returns the answer's length (0 for an
 * empty line: no answer).  `change` and `info` read the medium's first
 * blocks: they may block on the file for as long as that takes.
 */
size_t vdisk_monitor_command(vdisk_monitor *m, const char *line, char *reply, size_t size);

/*
 * vdisk_monitor_listen: the monitor answers on a new Unix socket PATH,
 * mode 0600 (an existing socket file nothing listens on is replaced; any
 * other file, or a live server's socket, is refused: -EEXIST,
 * -EADDRINUSE).  One client at a time: a new one replaces the one before.
 * vdisk_monitor_free() removes the file if it is still the one made.
 * Returns 0 or -errno (-EBUSY: listening already).
 */
int vdisk_monitor_listen(vdisk_monitor *m, const char *path);

/*
 * vdisk_monitor_get_fd: a file descriptor (an epoll instance) that polls
 * readable when vdisk_monitor_process() has work; the monitor's, never
 * read or closed by the caller.
 */
int vdisk_monitor_get_fd(const vdisk_monitor *m);

/*
 * vdisk_monitor_process: accepts a client, reads what it sent and answers
 * the whole lines (a line too long gets "error: line too long" and the
 * client is dropped; at its end, a last line without a newline is run).
 * Does not wait for the client (answers it does not read are dropped).
 * Returns the number of events handled, or -errno (epoll).
 */
int vdisk_monitor_process(vdisk_monitor *m);

/* vdisk_monitor_free: closes the socket and client, removes the socket
 * file if it is still the one made, frees.  NULL is a no-op. */
void vdisk_monitor_free(vdisk_monitor *m);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_MONITOR_H */
