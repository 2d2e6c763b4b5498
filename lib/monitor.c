/* SPDX-License-Identifier: MIT */
/*
 * lib/monitor.c: the monitor's line protocol (vdisk/monitor.h): the
 * commands, and their Unix socket (one client, lines put together from a
 * non-blocking stream, answers never waited for).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vdisk/error.h>
#include <vdisk/iso9660.h>
#include <vdisk/monitor.h>

#include "abi.h"
#include "error_internal.h"
#include "log_line.h"
#include "unix_socket.h"

#define VDISK_EXPORT __attribute__((visibility("default")))

#define MON_LINE 4096u

enum { MON_EV_LISTEN = 1, MON_EV_CONN };

struct vdisk_monitor {
    struct vdisk_monitor_params p;
    int dir_fd;              /* relative paths of change */
    char *root;              /* resolved, or NULL */
    char *root_name;
    char *path;              /* the socket file made, or NULL */
    struct unix_sock_file sock;
    int listen_fd, conn_fd, epfd;
    char line[MON_LINE];
    size_t len;
};

/* Appends to the answer being built (REPLY, SIZE bytes). */
struct answer {
    char *buf;
    size_t size, len;
};

static void say(struct answer *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct answer *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = a->size > a->len ? vsnprintf(a->buf + a->len, a->size - a->len, fmt, ap) : 0;
    va_end(ap);
    if (n < 0)
        return;
    a->len += (size_t)n;
    if (a->size && a->len >= a->size)
        a->len = a->size - 1;
}

/*
 * Opens PATH for `change` (relative to the monitor's folder): a regular
 * file or a block device, under the root when there is one, opened without
 * blocking (no FIFO, no device that waits).  Returns the fd, or -1 after
 * answering the error.
 */
static int open_medium(vdisk_monitor *m, const char *path, struct answer *a)
{
    struct stat st, fst;
    if (fstatat(m->dir_fd, path, &st, 0) < 0) {
        say(a, "error: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        say(a, "error: %s: not a regular file or block device\n", path);
        return -1;
    }
    int fd = openat(m->dir_fd, path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        say(a, "error: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &fst) < 0 || (!S_ISREG(fst.st_mode) && !S_ISBLK(fst.st_mode))) {
        say(a, "error: %s: not a regular file or block device\n", path);
        close(fd);
        return -1;
    }
    if (m->root) {
        /* Where the file really is (symbolic links and .. resolved). */
        char link[64], real[PATH_MAX];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, real, sizeof real - 1);
        size_t rl = strlen(m->root);
        if (n > 0)
            real[n] = 0;
        if (n <= 0 || (size_t)n >= sizeof real - 1 ||
            !(strcmp(m->root, "/") == 0 ||
              (strncmp(real, m->root, rl) == 0 && real[rl] == '/'))) {
            say(a, "error: %s: outside the %s %s\n", path, m->root_name, m->root);
            close(fd);
            return -1;
        }
    }
    return fd;
}

static void change(vdisk_monitor *m, const char *iso, struct answer *a)
{
    int fd = -1;
    char proc[64];
    if (iso) {
        if ((fd = open_medium(m, iso, a)) < 0)
            return;
        /* The library opens the very file checked, through the fd. */
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    }
    int r = vdisk_virtio_scsi_change_medium(m->p.cdrom, iso ? proc : NULL);
    if (fd >= 0)
        close(fd);
    if (r < 0) {
        say(a, "error: %s%s%s\n", iso ? iso : "", iso ? ": " : "", vdisk_get_error());
        log_line(m->p.log, m->p.log_opaque, NULL, "monitor: %s%s%s", iso ? iso : "",
                 iso ? ": " : "", vdisk_get_error());
        return;
    }
    say(a, "ok\n");
    if (!(m->p.flags & VDISK_MONITOR_QUIET))
        log_line(m->p.log, m->p.log_opaque, NULL, "medium %s%s", iso ? "changed to " : "ejected",
                 iso ? iso : "");
}

static void info(vdisk_monitor *m, struct answer *a)
{
    struct vdisk_cdrom_media md = {.struct_size = sizeof md};
    if (!m->p.cdrom_dev || vdisk_cdrom_get_media(m->p.cdrom_dev, &md) < 0) {
        say(a, "error: %s\n", m->p.cdrom_dev ? vdisk_get_error() : "no CD-ROM device");
        return;
    }
    if (md.loaded)
        say(a, "medium: loaded, %" PRIu64 " blocks of 2048 bytes, volume id '%s', %" PRIu64
            " changes\n", md.blocks, md.volume_id, md.media_changes);
    else
        say(a, "medium: none, %" PRIu64 " changes\n", md.media_changes);
}

VDISK_EXPORT size_t vdisk_monitor_command(vdisk_monitor *m, const char *text, char *reply,
                                          size_t size)
{
    err_enter(__func__);
    struct answer a = {reply, size, 0};
    if (size)
        reply[0] = 0;
    if (!m || !text)
        return 0;
    /* Blanks around the command, a carriage return at its end. */
    while (*text == ' ' || *text == '\t')
        text++;
    size_t n = strlen(text);
    while (n && (text[n - 1] == '\r' || text[n - 1] == ' ' || text[n - 1] == '\t'))
        n--;
    if (n == 0)
        return 0;
    char *line = strndup(text, n);
    if (!line) {
        say(&a, "error: out of memory\n");
        return a.len;
    }
    if (strcmp(line, "help") == 0) {
        say(&a, "commands: change PATH | eject | info | help\n");
    } else if (!m->p.cdrom) {
        say(&a, "error: no CD-ROM is served\n");
    } else if (strncmp(line, "change ", 7) == 0 || strcmp(line, "change") == 0) {
        const char *iso = line + 6;
        while (*iso == ' ')
            iso++;
        if (!*iso)
            say(&a, "error: change: no path\n");
        else
            change(m, iso, &a);
    } else if (strcmp(line, "eject") == 0) {
        change(m, NULL, &a);
    } else if (strcmp(line, "info") == 0) {
        info(m, &a);
    } else {
        say(&a, "error: unknown command (try 'help')\n");
    }
    free(line);
    return a.len;
}

VDISK_EXPORT int vdisk_monitor_new(vdisk_monitor **out, const struct vdisk_monitor_params *p)
{
    err_enter(__func__);
    if (!out)
        return err_set(-EINVAL, "no monitor pointer given (NULL)");
    *out = NULL;
    vdisk_monitor *m = calloc(1, sizeof *m);
    if (!m)
        return err_set(-ENOMEM, "out of memory");
    m->dir_fd = m->listen_fd = m->conn_fd = m->epfd = -1;
    int r = ABI_IN(vdisk_monitor_params, &m->p, p, VDISK_MONITOR_PARAMS_SIZE_V1);
    if (r < 0)
        goto fail;
    if (m->p.flags & ~(unsigned)VDISK_MONITOR_QUIET) {
        r = err_set(-EINVAL, "unknown flags 0x%x", m->p.flags);
        goto fail;
    }
    const char *dir = m->p.dir ? m->p.dir : ".";
    if ((m->dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
        r = err_set(-errno, "the folder '%s': %s", dir, strerror(errno));
        goto fail;
    }
    if (m->p.root) {
        struct stat st;
        if (!(m->root = realpath(m->p.root, NULL)) || stat(m->root, &st) < 0 ||
            !S_ISDIR(st.st_mode)) {
            r = m->root ? err_set(-ENOTDIR, "the root '%s': not a folder", m->p.root)
                        : err_set(-errno, "the root '%s': %s", m->p.root, strerror(errno));
            goto fail;
        }
    }
    if (!(m->root_name = strdup(m->p.root_name ? m->p.root_name : "root folder"))) {
        r = err_set(-ENOMEM, "out of memory");
        goto fail;
    }
    /* Strings given are not kept: the copies above stand for them. */
    m->p.dir = m->p.root = m->p.root_name = NULL;
    if ((m->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        r = err_set(-errno, "epoll: %s", strerror(errno));
        goto fail;
    }
    *out = m;
    return 0;
fail:
    vdisk_monitor_free(m);
    return r;
}

VDISK_EXPORT int vdisk_monitor_listen(vdisk_monitor *m, const char *path)
{
    err_enter(__func__);
    if (!m || !path)
        return err_set(-EINVAL, "no %s given (NULL)", m ? "path" : "monitor");
    if (m->listen_fd >= 0)
        return err_set(-EBUSY, "the monitor listens on %s already", m->path);
    int fd = unix_listen(path, 0600, (gid_t)-1, &m->sock);
    if (fd < 0)
        return fd;
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = MON_EV_LISTEN};
    if (!(m->path = strdup(path)) || epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
        int r = m->path ? err_set(-errno, "epoll: %s", strerror(errno))
                        : err_set(-ENOMEM, "out of memory");
        close(fd);
        unix_unlink(path, &m->sock);
        m->sock.created = false;
        free(m->path);
        m->path = NULL;
        return r;
    }
    m->listen_fd = fd;
    return 0;
}

VDISK_EXPORT int vdisk_monitor_get_fd(const vdisk_monitor *m)
{
    return m ? m->epfd : -1;
}

static void client_close(vdisk_monitor *m)
{
    if (m->conn_fd < 0)
        return;
    epoll_ctl(m->epfd, EPOLL_CTL_DEL, m->conn_fd, NULL);
    close(m->conn_fd);
    m->conn_fd = -1;
    m->len = 0;
}

static void client_accept(vdisk_monitor *m)
{
    int fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    client_close(m); /* one client at a time: the newest */
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = MON_EV_CONN};
    if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
        close(fd);
        return;
    }
    m->conn_fd = fd;
}

/* Sends an answer, never waiting: one the client does not read is lost. */
static void client_say(vdisk_monitor *m, const char *s, size_t len)
{
    if (len && send(m->conn_fd, s, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* The reader went away or does not read; its next read tells. */
    }
}

static void client_line(vdisk_monitor *m, const char *line)
{
    char reply[1024];
    size_t n = vdisk_monitor_command(m, line, reply, sizeof reply);
    client_say(m, reply, n);
}

static void client_read(vdisk_monitor *m)
{
    for (;;) {
        ssize_t n = read(m->conn_fd, m->line + m->len, sizeof m->line - 1 - m->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            if (m->len) { /* a last line without its newline */
                m->line[m->len] = 0;
                client_line(m, m->line);
            }
            client_close(m);
            return;
        }
        m->len += (size_t)n;
        char *nl;
        while ((nl = memchr(m->line, '\n', m->len))) {
            *nl = 0;
            client_line(m, m->line);
            size_t used = (size_t)(nl + 1 - m->line);
            memmove(m->line, nl + 1, m->len - used);
            m->len -= used;
        }
        if (m->len == sizeof m->line - 1) {
            static const char too_long[] = "error: line too long\n";
            client_say(m, too_long, sizeof too_long - 1);
            client_close(m);
            return;
        }
    }
}

VDISK_EXPORT int vdisk_monitor_process(vdisk_monitor *m)
{
    err_enter(__func__);
    if (!m)
        return err_set(-EINVAL, "no monitor given (NULL)");
    struct epoll_event ev[4];
    int n;
    do
        n = epoll_wait(m->epfd, ev, 4, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return err_set(-errno, "epoll_wait: %s", strerror(errno));
    for (int k = 0; k < n; k++) {
        if (ev[k].data.u64 == MON_EV_LISTEN)
            client_accept(m);
        else if (m->conn_fd >= 0)
            client_read(m);
    }
    return n;
}

VDISK_EXPORT void vdisk_monitor_free(vdisk_monitor *m)
{
    if (!m)
        return;
    client_close(m);
    if (m->listen_fd >= 0)
        close(m->listen_fd);
    unix_unlink(m->path, &m->sock);
    if (m->epfd >= 0)
        close(m->epfd);
    if (m->dir_fd >= 0)
        close(m->dir_fd);
    free(m->path);
    free(m->root);
    free(m->root_name);
    free(m);
}
