/* SPDX-License-Identifier: MIT */
/*
 * lib/unix_socket.h: listening Unix sockets on a path, for the servers of
 * the library (vdisk/vhost_user.h, vdisk/monitor.h).
 */
#ifndef VDISK_UNIX_SOCKET_H
#define VDISK_UNIX_SOCKET_H

#include <stdbool.h>
#include <sys/types.h>

/* A socket file made here: removed only while it is still the same file
 * (not one that replaced it). */
struct unix_sock_file {
    bool created;
    dev_t dev;
    ino_t ino;
};

/*
 * A listening socket (non-blocking, close-on-exec) on PATH, created with
 * MODE (0600, or 0660 with a group GID when GID is not -1) whatever the
 * umask, appearing only once it listens (bound under PATH.PID, then
 * renamed).  An existing socket file is replaced only when nothing
 * listens on it (a stale one); any other file (-EEXIST), or a live
 * server's socket (-EADDRINUSE), is refused.  Returns the fd, or -errno
 * with the error message set (err_set).
 */
int unix_listen(const char *path, mode_t mode, gid_t gid, struct unix_sock_file *sf);

/* Removes PATH if it is still the socket file SF made. */
void unix_unlink(const char *path, const struct unix_sock_file *sf);

#endif /* VDISK_UNIX_SOCKET_H */
