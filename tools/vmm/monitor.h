/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the monitor.  It is the library's (vdisk/monitor.h: its
 * grammar, its commands change PATH, eject, info and help, its Unix
 * socket); this part only puts it on the machine's CD-ROM drive:
 *
 *   - the drive's model is used by the vCPU threads too, under the drive's
 *     lock: every monitor call that may reach it runs under that lock;
 *   - its log lines go to vmm_log, as "cdrom: LINE".
 *
 * It runs from the caller's event loop through one pollable fd.
 * Single-threaded: every call from one thread (the I/O thread).
 */
#ifndef VDISK_VMM_MONITOR_H
#define VDISK_VMM_MONITOR_H

#include <pthread.h>
#include <stddef.h>

#include <vdisk/device.h>
#include <vdisk/virtio.h>

/* The CD-ROM drive the monitor acts on; all three NULL: there is none
 * (every command but help answers an error). */
struct vmm_monitor_drive {
    vdisk_virtio *model;        /* its virtio-scsi model */
    vdisk_dev *dev;             /* the CD-ROM device the model serves */
    pthread_mutex_t *lock;      /* held by whoever uses the model */
};

struct vmm_monitor;

/*
 * A monitor over DRIVE (its model, device and lock must outlive the
 * monitor; the struct itself need not), listening on the Unix socket PATH
 * when PATH is not NULL (made 0600; a stale socket there is replaced, any
 * other file refused).  Errors are logged with vmm_log; returns 0 or -1.
 */
int vmm_monitor_new(struct vmm_monitor **out, const char *path,
                    const struct vmm_monitor_drive *drive);

/* The fd that becomes readable when the monitor has work (level-triggered). */
int vmm_monitor_fd(const struct vmm_monitor *m);

/* Does the monitor's work without blocking on its clients: new
 * connections, commands (a command may wait for the medium's file). */
void vmm_monitor_dispatch(struct vmm_monitor *m);

/* Runs one command LINE (the monitor's grammar) as if a client sent it;
 * its answer, newline included, in ANSWER (LEN bytes, NUL-ended). */
void vmm_monitor_run(struct vmm_monitor *m, const char *line, char *answer, size_t len);

/* Closes the connection and the socket and removes PATH.  M may be NULL. */
void vmm_monitor_free(struct vmm_monitor *m);

#endif /* VDISK_VMM_MONITOR_H */
