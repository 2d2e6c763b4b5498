/* SPDX-License-Identifier: MIT */
/* lib/unix_socket.c: listening Unix sockets on a path (unix_socket.h). */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stdio.h>
#include <unistd.h>

#include "error_internal.h"
#include "unix_socket.h"

int unix_listen(const char *path, mode_t mode, gid_t gid, struct unix_sock_file *sf)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    *sf = (struct unix_sock_file){0};
    if (!path || !*path)
        return err_set(-EINVAL, "no socket path");
    if (strlen(path) >= sizeof a.sun_path)
        return err_set(-ENAMETOOLONG, "socket path '%s' is longer than %zu bytes", path,
                       sizeof a.sun_path - 1);
    strcpy(a.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return err_set(-EEXIST, "'%s' exists and is not a socket", path);
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int c = probe < 0 ? -1 : connect(probe, (struct sockaddr *)&a, sizeof a);
        int e = errno;
        if (probe >= 0)
            close(probe);
        if (c == 0 || e == EAGAIN || e == EINPROGRESS)
            return err_set(-EADDRINUSE, "'%s' is in use by another server", path);
        if (e != ECONNREFUSED)
            return err_set(-e, "'%s': %s (cannot tell whether a server listens on it)", path,
                           strerror(e));
        /* A stale socket from an earlier run: the rename below replaces it. */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return err_set(-errno, "socket: %s", strerror(errno));
    /* Bind under a temporary name and rename once listening, so that the
     * socket file appears only when it accepts connections. */
    char tmp[sizeof a.sun_path];
    int n = snprintf(tmp, sizeof tmp, "%s.%ld", path, (long)getpid());
    const char *bind_path = n > 0 && (size_t)n < sizeof tmp ? tmp : path;
    strcpy(a.sun_path, bind_path);
    if (bind_path != path)
        unlink(tmp);
    mode_t old_mask = umask(0177); /* never open to others, even for a moment */
    int r = bind(fd, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    umask(old_mask);
    if (r == 0 && gid != (gid_t)-1 && (chown(bind_path, (uid_t)-1, gid) < 0 ||
                                       chmod(bind_path, mode) < 0)) {
        r = -1;
        e = errno;
    }
    if (r == 0 && listen(fd, 4) < 0) {
        r = -1;
        e = errno;
    }
    if (r == 0 && bind_path != path && rename(bind_path, path) < 0) {
        r = -1;
        e = errno;
    }
    if (r == 0 && lstat(path, &st) < 0) {
        r = -1;
        e = errno;
    }
    if (r < 0) {
        unlink(bind_path);
        close(fd);
        return err_set(-e, "%s: %s", path, strerror(e));
    }
    *sf = (struct unix_sock_file){.created = true, .dev = st.st_dev, .ino = st.st_ino};
    return fd;
}

void unix_unlink(const char *path, const struct unix_sock_file *sf)
{
    struct stat st;
    if (path && sf->created && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_dev == sf->dev && st.st_ino == sf->ino)
        unlink(path);
}
