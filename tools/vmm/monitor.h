/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the monitor, a Unix socket taking one command a line and
 * answering each with one line (doc/vmm.md):
 *
 *   change ISO   ->  ok | error: MESSAGE
 *   eject        ->  ok | error: MESSAGE
 *   info         ->  ok medium=ISO|none | error: MESSAGE
 *
 * It knows nothing of the machine: the commands reach it through the
 * operations given at creation.  It runs from the caller's event loop
 * through one pollable fd.  Single-threaded: every call from one thread.
 */
#ifndef VDISK_VMM_MONITOR_H
#define VDISK_VMM_MONITOR_H

#include <stddef.h>

struct vmm_monitor_ops {
    /* "change ISO" (ISO set) and "eject" (ISO NULL): the answer in ANSWER. */
    void (*change)(void *opaque, const char *iso, char *answer, size_t len);
    /* "info": the answer in ANSWER. */
    void (*info)(void *opaque, char *answer, size_t len);
};

struct vmm_monitor;

/*
 * Listens on the Unix socket PATH (a stale socket there is replaced; the
 * socket is made 0600).  Errors are logged with vmm_log; returns 0 or -1.
 * OPS and OPAQUE must outlive the monitor.
 */
int vmm_monitor_new(struct vmm_monitor **out, const char *path, const struct vmm_monitor_ops *ops,
                    void *opaque);

/* The fd that becomes readable when the monitor has work (level-triggered). */
int vmm_monitor_fd(const struct vmm_monitor *m);

/* Does the monitor's work without blocking: new connections, commands. */
void vmm_monitor_dispatch(struct vmm_monitor *m);

/* Closes the connections and the socket and removes PATH.  M may be NULL. */
void vmm_monitor_free(struct vmm_monitor *m);

/*
 * One command line (LINE is changed: white space trimmed) run through OPS;
 * the answer, without its newline, in ANSWER.
 */
void vmm_monitor_command(const struct vmm_monitor_ops *ops, void *opaque, char *line,
                         char *answer, size_t len);

#endif /* VDISK_VMM_MONITOR_H */
